//! Answers that stay fresh without asking ClickHouse each time: the
//! result cache ([`cache`]), kept current by the aggregator's change
//! notices ([`change_feed`]); reads through it with concurrent misses
//! shared ([`reader`], [`single_flight`]); and whole answers recomputed in
//! the background when a notice touches them ([`kept_answers`]).
//!
//! Imports `db`, `model` and `telemetry`; nothing above.

pub mod cache;
pub mod change_feed;
pub mod kept_answers;
pub mod reader;
pub mod single_flight;

/// Whether a read may be answered from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// From the cache where it may serve, else from ClickHouse.
    Cached,
    /// From ClickHouse, refreshing the cache (`Cache-Control: no-cache`).
    Fresh,
}
