//! badgepulse-ingest as a library: `main.rs` wires these modules together;
//! tests reach them here. A beacon's way: [`http`] (what the request says)
//! → [`beacons`] (the decision: signature, bots, rate, viewer identity) →
//! [`publish`] (micro-batches to JetStream); a platform event's: [`http`]
//! → [`platform`] (token, validation) → [`publish`] (one message each,
//! PubAck before the answer).
//!
//! - [`config`], [`metrics`].

pub mod beacons;
pub mod config;
pub mod http;
pub mod metrics;
pub mod platform;
pub mod publish;
