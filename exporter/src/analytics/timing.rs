//! SPEC §7.8 `GET /api/v1/timing?tz=Europe/Paris`: acceptance of the
//! cohort awarded in the window by local weekday and hour
//! (`model::timing`).

use chrono_tz::Tz;
use serde::Serialize;

use super::{Analytics, PeriodJson};
use crate::db::store::StoreError;
use crate::freshness::ReadMode;
use crate::model::scope::Filter;
use crate::model::timing::{self, Analysis};
use crate::model::window::Window;

/// The body of `GET /api/v1/timing`.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub scope: Filter,
    pub period: PeriodJson,
    /// The IANA name of the time zone.
    pub tz: &'static str,
    #[serde(flatten)]
    pub analysis: Analysis,
}

impl Analytics {
    /// SPEC §7.8.
    pub async fn timing(
        &self,
        filter: &Filter,
        window: Window,
        tz: Tz,
        mode: ReadMode,
    ) -> Result<Timing, StoreError> {
        let slot = timing::slot_secs(tz, window.from(), window.to());
        let rows = self.reader.timing_slots(filter, window, slot, mode).await?;
        Ok(Timing {
            scope: filter.clone(),
            period: window.into(),
            tz: tz.name(),
            analysis: timing::analyse(tz, slot, &rows, self.settings.min_awarded),
        })
    }
}
