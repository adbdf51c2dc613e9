//! SPEC §7.5 `GET /api/v1/drivers`: the performance drivers analysis
//! (`model::performance_drivers`) over the scope's badge classes.

use serde::Serialize;

use super::{Analytics, PeriodJson};
use crate::db::store::StoreError;
use crate::freshness::ReadMode;
use crate::model::scope::Filter;
use crate::model::window::Window;
use std::collections::HashMap;

use crate::model::measures::Counts;
use crate::model::performance_drivers::{self as drivers};
use crate::model::tiers::Resolution;

// ----------------------------------------------------------------- drivers

/// The body of `GET /api/v1/drivers`.
#[derive(Debug, Clone, Serialize)]
pub struct Drivers {
    pub scope: Filter,
    pub period: PeriodJson,
    #[serde(flatten)]
    pub analysis: drivers::Analysis,
}

impl Analytics {
    /// SPEC §7.5.
    pub async fn drivers(
        &self,
        filter: &Filter,
        window: Window,
        mode: ReadMode,
    ) -> Result<Drivers, StoreError> {
        let period = self.period(window, Resolution::Month);
        let (counts, meta) = tokio::try_join!(
            self.reader.class_counts(filter, &period, mode),
            self.reader.badge_classes(filter, mode),
        )?;
        let counts: HashMap<(String, String), Counts> = counts
            .into_iter()
            .map(|c| {
                let n = c.counts();
                ((c.org_id, c.badge_class_id), n)
            })
            .collect();
        let (attributes, classes) = drivers::inputs(&meta, &counts);
        Ok(Drivers {
            scope: filter.clone(),
            period: window.into(),
            analysis: drivers::analyse(&attributes, &classes),
        })
    }
}
