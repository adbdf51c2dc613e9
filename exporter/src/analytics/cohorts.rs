//! SPEC §7.9 `GET /api/v1/cohorts?granularity=month&stage=accepted`: the
//! retention triangle of the award cohorts (`model::cohorts`).

use serde::Serialize;

use super::{now, Analytics, PeriodJson};
use crate::db::store::StoreError;
use crate::freshness::ReadMode;
use crate::model::cohorts::{self, CohortRow, Stage};
use crate::model::scope::Filter;
use crate::model::window::{Granularity, Window};

/// The default window of the cohorts: the last 365 days.
pub const DEFAULT_SPAN: u32 = 365 * 86_400;

/// The body of `GET /api/v1/cohorts`.
#[derive(Debug, Clone, Serialize)]
pub struct Cohorts {
    pub scope: Filter,
    pub period: PeriodJson,
    pub granularity: &'static str,
    pub stage: Stage,
    pub cohorts: Vec<CohortRow>,
}

impl Analytics {
    /// SPEC §7.9. `StoreError::Request` when the triangle would be too
    /// large.
    pub async fn cohorts(
        &self,
        filter: &Filter,
        window: Window,
        granularity: Granularity,
        stage: Stage,
        mode: ReadMode,
    ) -> Result<Cohorts, StoreError> {
        let now = now();
        cohorts::check_span(granularity, window, now).map_err(StoreError::Request)?;
        let rows = self
            .reader
            .cohort_reach(filter, window, granularity, stage, mode)
            .await?;
        Ok(Cohorts {
            scope: filter.clone(),
            period: window.into(),
            granularity: granularity.as_str(),
            stage,
            cohorts: cohorts::triangle(granularity, &rows, i64::from(now)),
        })
    }
}
