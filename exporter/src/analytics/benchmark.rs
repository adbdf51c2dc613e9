//! SPEC §7.10 `GET /api/v1/benchmark`: where the scope's org or issuer
//! stands among its peers on each rate (`model::benchmark`). Reads every
//! org's counts; answers only the scope's own value and figures over all
//! qualifying peers.

use serde::Serialize;

use super::{Analytics, PeriodJson};
use crate::db::store::StoreError;
use crate::freshness::ReadMode;
use crate::model::benchmark::{self, Benchmarked, Level, Rules};
use crate::model::scope::Filter;
use crate::model::tiers::Resolution;
use crate::model::window::Window;

/// The body of `GET /api/v1/benchmark`.
#[derive(Debug, Clone, Serialize)]
pub struct Benchmark {
    pub scope: Filter,
    pub period: PeriodJson,
    pub level: Level,
    /// Awards a peer needs in the window to qualify.
    pub min_awarded: u64,
    /// Qualifying peers needed for a rank and quartiles.
    pub min_peers: u64,
    pub measures: Vec<Benchmarked>,
}

impl Analytics {
    /// SPEC §7.10. `StoreError::Request` for a badge-class scope or one
    /// across every org.
    pub async fn benchmark(
        &self,
        filter: &Filter,
        window: Window,
        mode: ReadMode,
    ) -> Result<Benchmark, StoreError> {
        let level = Level::of(filter).map_err(StoreError::Request)?;
        // Whole months from scope_month: every org's (or issuer's) rows
        // of a day lie among its badge classes' rows, so a long window read
        // day by day reads nearly all of scope_day.
        let period = self.period(window, Resolution::Month);
        let peers = self.reader.peer_counts(level, &period, mode).await?;
        let org = filter.org.as_deref().unwrap_or_default();
        let issuer = filter.issuer.as_deref().unwrap_or_default();
        let rules = Rules {
            min_awarded: self.settings.min_awarded,
            min_peers: self.settings.benchmark_min_peers,
        };
        Ok(Benchmark {
            scope: filter.clone(),
            period: window.into(),
            level,
            min_awarded: rules.min_awarded,
            min_peers: rules.min_peers,
            measures: benchmark::benchmark((org, issuer), &peers, rules),
        })
    }
}
