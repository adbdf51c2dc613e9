//! SPEC §7.7 `GET /api/v1/impact?annotation=ID&days=28&horizon=7`: an
//! annotation's program update, the windows before and after it, and how
//! five measures changed between them (`model::impact`).

use serde::Serialize;

use super::annotations::Annotation;
use super::{now, Analytics, PeriodJson};
use crate::db::store::StoreError;
use crate::freshness::ReadMode;
use crate::model::impact::{self, Cohort, Inputs, MeasureChange, Windows};
use crate::model::measures::Counts;
use crate::model::scope::Filter;
use crate::model::tiers::Resolution;
use crate::model::window::{rfc3339, Window};

/// What an impact question asks besides the scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImpactRequest {
    /// The annotation's id.
    pub annotation: String,
    /// Length of each window, 1 to 365.
    pub days: u32,
    /// Days within which an award must be accepted (and shared), 1 to 365.
    pub horizon: u32,
}

/// `{"from", "to", "complete"}` of the after window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AfterJson {
    pub from: String,
    pub to: String,
    /// False when the window is cut at now.
    pub complete: bool,
}

/// The body of `GET /api/v1/impact`.
#[derive(Debug, Clone, Serialize)]
pub struct Impact {
    /// The request's scope narrowed to the annotation's own.
    pub scope: Filter,
    /// From the start of the before window to the end of the after one.
    pub period: PeriodJson,
    pub annotation: Annotation,
    pub days: u32,
    pub horizon: u32,
    pub before: PeriodJson,
    pub after: AfterJson,
    pub measures: Vec<MeasureChange>,
    pub insights: Vec<String>,
}

fn span((from, to): (u32, u32)) -> PeriodJson {
    PeriodJson {
        from: rfc3339(from),
        to: rfc3339(to),
    }
}

impl Analytics {
    /// SPEC §7.7. `StoreError::NotFound` when `filter` cannot see the
    /// annotation.
    pub async fn impact(
        &self,
        filter: &Filter,
        request: &ImpactRequest,
        mode: ReadMode,
    ) -> Result<Impact, StoreError> {
        let row = self
            .reader
            .annotation(filter, &request.annotation, mode)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "annotation: no annotation {:?} in this scope",
                    request.annotation
                ))
            })?;
        let own = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let scope = Filter {
            org: Some(row.org_id.clone()),
            issuer: filter.issuer.clone().or_else(|| own(&row.issuer_id)),
            badge_class: filter
                .badge_class
                .clone()
                .or_else(|| own(&row.badge_class_id)),
        };
        let windows = Windows::new(row.at, request.days, request.horizon, now());
        let inputs = if windows.future {
            Inputs::default()
        } else {
            self.impact_inputs(&scope, &windows, request.horizon, mode)
                .await?
        };
        let measures = impact::compare(&windows, &inputs, self.settings.min_awarded);
        let insights = impact::insights(&measures, &row.title, request.horizon);
        Ok(Impact {
            scope,
            period: span((windows.before.0, windows.after.1)),
            annotation: Annotation::from(row),
            days: request.days,
            horizon: request.horizon,
            before: span(windows.before),
            after: AfterJson {
                from: rfc3339(windows.after.0),
                to: rfc3339(windows.after.1),
                complete: windows.complete,
            },
            measures,
            insights,
        })
    }

    /// The cohorts and the window counts of `windows`.
    async fn impact_inputs(
        &self,
        scope: &Filter,
        windows: &Windows,
        horizon: u32,
        mode: ReadMode,
    ) -> Result<Inputs, StoreError> {
        let period =
            |(from, to): (u32, u32)| Window::new(from, to).map(|w| self.period(w, Resolution::Day));
        let (before, after) = (period(windows.before), period(windows.after));
        let (cohorts, counts) = tokio::try_join!(
            self.reader.impact_cohorts(scope, windows, horizon, mode),
            self.reader.impact_window_counts(
                scope,
                windows,
                (before.as_ref(), after.as_ref()),
                mode
            ),
        )?;
        // The comparison reads these three counts of each window.
        let window = |awarded, shares, views| Counts {
            awarded,
            shares,
            views,
            ..Counts::default()
        };
        Ok(Inputs {
            before_cohort: Cohort {
                awarded: cohorts.before_awarded,
                accepted: cohorts.before_accepted,
                shared: cohorts.before_shared,
            },
            after_cohort: Cohort {
                awarded: cohorts.after_awarded,
                accepted: cohorts.after_accepted,
                shared: cohorts.after_shared,
            },
            before: window(
                counts.before_awarded,
                counts.before_shares,
                counts.before_views,
            ),
            after: window(
                counts.after_awarded,
                counts.after_shares,
                counts.after_views,
            ),
        })
    }
}
