//! badgepulse-aggregator as a library: the binary in `main.rs` wires these
//! modules together; end-to-end tests reach the schema and queries here.
//!
//! - [`schema`]: every DDL statement and query text (SQL lives only there).
//! - [`store`]: executes them against ClickHouse.
//! - [`consume`]: one partition's consume → write → ack loop (exactly once).
//! - [`rows`]: event → row mapping.
//! - [`retention`]: which rollup partitions to drop.
//! - [`config`], [`metrics`], [`admin`]: configuration, pipeline metrics,
//!   admin HTTP.

pub mod admin;
pub mod config;
pub mod consume;
pub mod metrics;
pub mod retention;
pub mod rows;
pub mod schema;
pub mod store;
