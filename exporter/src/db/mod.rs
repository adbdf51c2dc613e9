//! ClickHouse, read and written: one file per query family (the SQL text
//! of each, built with [`sql`] and returned unexecuted, so tests collect
//! the exact text), and [`store`], which runs them.
//!
//! - [`counts`]: the SPEC §7 counts over a period, per badge class, per
//!   trend bucket;
//! - [`distribution`], [`lifecycle`], [`badge_classes`], [`annotations`];
//! - the insights: [`impact`], [`timing`], [`cohorts`], [`benchmark`];
//! - [`scopes`]: the orgs, issuers and badge classes a key may see;
//! - [`award_days`]: the sealed cohort of each org and award day, which
//!   the `/metrics` lifecycle and the org-wide insights add up;
//! - [`totals`]: the all-time totals behind `/metrics`;
//! - [`samples`]: every query with sample parameters (compatibility test).
//!
//! Imports only `model` and `telemetry`.

pub mod annotations;
pub mod award_days;
pub mod badge_classes;
pub mod benchmark;
pub mod cohorts;
pub mod counts;
pub mod distribution;
pub mod impact;
pub mod lifecycle;
pub mod samples;
pub mod scopes;
pub mod sql;
pub mod store;
pub mod timing;
pub mod totals;
pub mod viewers;

#[cfg(test)]
mod tests;
