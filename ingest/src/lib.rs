//! badgepulse-ingest as a library: `main.rs` wires these modules together;
//! tests reach the pure parts here.
//!
//! - [`http`]: the routes of SPEC §4.
//! - [`beacon`]: pure beacon logic (parsing, bots, sources, client IP,
//!   viewer keys, rate limiting).
//! - [`publish`]: JetStream publishing of events and beacon batches.
//! - [`salt`]: daily viewer-key salts in NATS KV.
//! - [`config`], [`metrics`].

pub mod beacon;
pub mod config;
pub mod http;
pub mod metrics;
pub mod publish;
pub mod salt;
