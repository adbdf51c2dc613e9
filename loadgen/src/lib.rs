//! badgepulse-loadgen: seeded, realistic badge traffic for demos, tests
//! and benchmarks, with a ground-truth ledger of what the pipeline must
//! report for it.
//!
//! - [`catalog`]: the fixed vocabulary (orgs, badge names, User-Agents,
//!   Referers) and the explicit Referer → view source expectation.
//! - [`generate`]: [`plan`], the pure, seeded model producing platform
//!   events, beacon hits and the [`Ledger`].
//! - [`ledger`]: the expected SPEC §7 numbers per badge class, issuer, org.
//! - [`mod@send`]: [`send()`] a plan to a running ingest and check its counters.
//! - [`mod@check`]: [`check()`] a running pipeline (exporter API,
//!   ClickHouse) against a ledger.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let plan = badgepulse_loadgen::plan(42, 1, chrono::Utc::now(), 14);
//! let target = badgepulse_loadgen::Target {
//!     ingest: "http://127.0.0.1:8080".into(),
//!     token: "token".into(),
//!     kid: "k1".into(),
//!     key: "demo-pixel-key-0123456789".into(),
//!     concurrency: 32,
//!     metrics: Some("http://127.0.0.1:8083".into()),
//!     rate: None,
//! };
//! let report = badgepulse_loadgen::send(&plan, &target).await?;
//! assert_eq!(report.events_sent, plan.ledger.traffic.platform_events_sent);
//! # Ok(()) }
//! ```

pub mod catalog;
pub mod check;
pub mod generate;
pub mod ledger;
pub mod send;

pub use check::{check, Pipeline};
pub use generate::{
    is_valid_run, plan, plan_run, Beacon, BeaconKind, Plan, Transport, MAX_HITS_PER_CLIENT,
    MAX_SCALE,
};
pub use ledger::{Counts, Ledger};
pub use send::{send, IngestCounters, SendReport, Target};
