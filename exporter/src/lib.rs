//! badgepulse-exporter: serves badge analytics from ClickHouse — the
//! analytics API (SPEC §8) and Prometheus metrics (SPEC §9). `main.rs`
//! only wires these together.
//!
//! The layers, each importing only those before it:
//!
//! 1. [`model`]: the domain, pure — scopes, windows, rollup tiers, the
//!    SPEC §7 formulas, statistics, the performance drivers analysis.
//! 2. [`db`]: the SQL of every query family and the store that runs it.
//! 3. [`freshness`]: the result cache kept true by the aggregator's change
//!    notices, single-flight reads through it, and whole answers kept up
//!    to date in the background.
//! 4. [`analytics`]: one file per endpoint: its body and how it is
//!    computed; [`analytics::Analytics::answer`] is the way in.
//! 5. [`render`]: CSV, charts, the HTML report, the OpenAPI document.
//! 6. [`http`]: the API listener's route table, parameters, keys, errors.
//!
//! Beside them: [`telemetry`] (the exporter's own metrics, importing
//! nothing of the crate), [`business_metrics`] (the `/metrics` business
//! metrics, from `db`), [`config`].
//!
//! The way of one request: `http::api` (authenticate, resolve scope and
//! window) → `Analytics::answer` (kept answer, or compute) → the
//! endpoint's file → `freshness::Reader` (cache, single flight) →
//! `db::store::Store` → ClickHouse; then `render` for CSV, charts or the
//! report.

pub mod analytics;
pub mod business_metrics;
pub mod config;
pub mod db;
pub mod freshness;
pub mod http;
pub mod model;
pub mod render;
pub mod telemetry;
