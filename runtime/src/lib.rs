//! What every badgepulse service runs on, and nothing of what it does:
//!
//! - [`settings`]: the config loader (`--config FILE` or
//!   `BADGEPULSE_CONFIG`, plus
//!   `BADGEPULSE__SECTION__KEY` overrides) and the `[nats]` and
//!   `[clickhouse]` sections that several services read;
//! - [`server`]: the HTTP server loop, with the limits every public
//!   listener needs against slow and oversized clients;
//! - [`ops`]: the admin listener (`/healthz`, `/readyz`, `/metrics`),
//!   never the public one;
//! - [`signals`]: shutdown on SIGTERM or Ctrl-C;
//! - [`logging`]: the tracing subscriber (stderr, text or JSON) and its
//!   `[log]` section;
//! - [`metrics`]: what every service exposes beside its own metrics
//!   (`badgepulse_build_info`, the process metrics) and the HTTP request
//!   duration histograms;
//! - [`keys`]: secrets configured by their SHA-256 and looked up in
//!   constant time (ingest's tokens, the exporter's API keys).
//!
//! The wire contract between the services (events, subjects, tables) is
//! `badgepulse_contract`; this crate does not depend on it.

pub mod keys;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod server;
pub mod settings;
pub mod signals;
