//! The wire contract of badgepulse (SPEC §3–5, §11): what more than one
//! service must agree on, and nothing else.
//!
//! - [`changes`]: the change notices the aggregator publishes after each
//!   commit, which the exporter's result cache follows.
//! - [`event`]: event types, the validated [`event::Event`] that travels
//!   through NATS, and validation of platform input.
//! - [`subject`]: the JetStream stream, subjects and org → partition mapping.
//! - [`signing`]: pixel signatures and signed pixel URLs.
//! - [`settings`]: the `[nats]` and `[clickhouse]` config sections and the
//!   loader every binary uses (`--config FILE` + `BADGEPULSE__…` overrides).
//! - [`ops`]: the admin listener of every service (`/healthz`, `/readyz`,
//!   `/metrics`), never the public one.
//! - [`server`]: the HTTP server loop of ingest and the exporter, with the
//!   limits every public endpoint needs against slow and oversized clients
//!   (header read timeout, header size).
//! - [`tables`]: the ClickHouse names and sketch parameters the aggregator
//!   writes and the exporter reads.
//!
//! This crate does no I/O besides reading the config file and, in
//! [`server`], serving the connections of a listener it is handed.

pub mod changes;
pub mod event;
pub mod ops;
pub mod server;
pub mod settings;
pub mod signing;
pub mod subject;
pub mod tables;
