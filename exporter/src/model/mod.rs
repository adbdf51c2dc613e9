//! The domain of the analytics: who may read what ([`scope`]), time
//! windows and trend buckets ([`window`]), which rollup tier answers each
//! piece of a window ([`tiers`]), the SPEC §7 formulas ([`measures`]), the
//! statistics ([`stats`]), the performance drivers analysis
//! ([`performance_drivers`]), the insights of SPEC §7.7–§7.10 ([`impact`],
//! [`timing`], [`cohorts`], [`benchmark`]), and what an answer depends on
//! ([`reach`]).
//!
//! Pure: no I/O, no SQL, no HTTP. Everything else in the crate builds on it.

pub mod badge_class;
pub mod benchmark;
pub mod cohorts;
pub mod impact;
pub mod measures;
pub mod performance_drivers;
pub mod reach;
pub mod scope;
pub mod stats;
pub mod tiers;
pub mod timing;
pub mod window;
