//! badgepulse-exporter: serves badge analytics from ClickHouse — the
//! analytics API (SPEC §8) and Prometheus metrics (SPEC §9).
//!
//! The binary (`main.rs`) only wires these modules together:
//!
//! - [`config`]: `[exporter]` plus the shared sections, and validation.
//! - [`auth`]: API keys by SHA-256 and scope resolution into a
//!   [`queries::Filter`].
//! - [`window`]: `from`/`to` parsing and the decomposition of a window
//!   into day/hour/minute rollup buckets and raw edges.
//! - [`measures`]: SPEC §7 counts and the ratios and scores derived from
//!   them.
//! - [`analytics`]: one data function per analytics endpoint (SPEC §7),
//!   returning typed bodies that serialise to JSON and convert to CSV;
//!   HTTP handlers and other renderers (charts) share them.
//! - [`drivers`]: the drivers analysis (groups, lifts, p-values,
//!   insights); [`stats`]: the significance tests and special functions.
//! - [`charts`]: the analytics bodies drawn as SVG, rasterised to PNG;
//!   [`report`]: the printable HTML report of a scope.
//! - [`csv`]: RFC 4180 output with formula neutralisation.
//! - [`openapi`]: the OpenAPI 3 document of the API.
//! - [`queries`]: every SQL statement, built but not executed
//!   ([`queries::sample_queries`] lists them all for compatibility tests).
//! - [`store`]: executes queries with timing, timeouts and typed errors,
//!   through [`cache`], the result cache that [`notices`] keeps true to
//!   the aggregator's change notices on NATS.
//! - [`views`]: whole answers kept in that cache and recomputed in the
//!   background when a notice touches them, served within freshness
//!   bounds ([`analytics::Analytics::answer`] asks through it).
//! - [`metrics`]: pipeline metrics and the cached business metrics.
//! - [`http`]: the axum router.

pub mod analytics;
pub mod auth;
pub mod cache;
pub mod charts;
pub mod config;
pub mod csv;
pub mod drivers;
pub mod http;
pub mod measures;
pub mod metrics;
pub mod notices;
pub mod openapi;
pub mod queries;
pub mod report;
pub mod stats;
pub mod store;
pub mod views;
pub mod window;

pub use queries::sample_queries;
