//! badgepulse-aggregator as a library: the binary in `main.rs` wires these
//! modules together; end-to-end tests reach the schema and queries here.
//! A batch's way: [`consume`] (fetch, decode, dead letters) → [`plan`]
//! (the exactly-once decisions, pure) → [`store`] (the writes, whose SQL is
//! [`schema`]'s) → change notice → ack.
//!
//! - [`rows`]: event → row mapping.
//! - [`retention`]: which rollup partitions to drop; [`maintenance`]: the
//!   retention and compaction loops.
//! - [`shards`]: the ClickHouse node each partition is written through.
//! - [`config`], [`metrics`], [`admin`]: configuration, pipeline metrics,
//!   the admin listener's readiness.

pub mod admin;
pub mod config;
pub mod consume;
pub mod maintenance;
pub mod metrics;
pub mod plan;
pub mod retention;
pub mod rows;
pub mod schema;
pub mod shards;
pub mod store;
