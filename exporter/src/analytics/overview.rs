//! SPEC §7.1 `GET /api/v1/overview`: all-time KPI tiles, the window's
//! values and their change against the equally long window before.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::{Analytics, PeriodJson};
use crate::db::store::StoreError;
use crate::freshness::ReadMode;
use crate::model::measures::{self, Counts, Measures, Trend};
use crate::model::scope::Filter;
use crate::model::tiers::{Period, Resolution};
use crate::model::window::Window;

// ---------------------------------------------------------------- overview

/// `{metric: {"current", "previous", "change"}}` in measure order.
#[derive(Debug, Clone)]
pub struct Indicators(pub Vec<(&'static str, Trend)>);

impl Serialize for Indicators {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, trend) in &self.0 {
            map.serialize_entry(name, trend)?;
        }
        map.end()
    }
}

/// The body of `GET /api/v1/overview`.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub scope: Filter,
    pub period: PeriodJson,
    /// All-time values; `from`/`to` do not apply.
    pub kpis: Measures,
    /// Values for `[from, to)`.
    pub period_values: Measures,
    /// The window against the equally long window before it.
    pub trends: Indicators,
}

impl Analytics {
    /// SPEC §7.1.
    pub async fn overview(
        &self,
        filter: &Filter,
        window: Window,
        mode: ReadMode,
    ) -> Result<Overview, StoreError> {
        let current_period = self.period(window, Resolution::Month);
        let previous_period = window.previous().map(|p| self.period(p, Resolution::Month));
        let previous = async {
            match &previous_period {
                Some(p) => self.reader.measure_counts(filter, p, mode).await,
                None => Ok(Counts::default()),
            }
        };
        let (all_time, current, previous) = tokio::try_join!(
            self.reader.measure_counts(filter, &Period::AllTime, mode),
            self.reader.measure_counts(filter, &current_period, mode),
            previous,
        )?;
        let current = Measures::derive(current);
        let previous = Measures::derive(previous);
        Ok(Overview {
            scope: filter.clone(),
            period: window.into(),
            kpis: Measures::derive(all_time),
            trends: Indicators(measures::trends(&current, &previous)),
            period_values: current,
        })
    }
}
