//! The wire contract of badgepulse (SPEC §3–5, §11): what more than one
//! service must agree on, and nothing else.
//!
//! - [`changes`]: the change notices the aggregator publishes after each
//!   commit, which the exporter's result cache follows.
//! - [`event`]: event types, the validated [`event::Event`] that travels
//!   through NATS, and validation of platform input.
//! - [`subject`]: the JetStream stream, subjects and org → partition mapping.
//! - [`signing`]: pixel signatures and signed pixel URLs; [`pixel`]: their
//!   query read back.
//! - [`tables`]: the ClickHouse names and sketch parameters the aggregator
//!   writes and the exporter reads.
//!
//! Pure: no I/O, no HTTP, no configuration loading (that is
//! `badgepulse_runtime`, which services run on).

pub mod changes;
pub mod event;
pub mod pixel;
pub mod signing;
pub mod subject;
pub mod tables;
