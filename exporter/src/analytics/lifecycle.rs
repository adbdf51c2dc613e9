//! SPEC §7.6 `GET /api/v1/lifecycle`: the cohort awarded in the window,
//! its stages, conversions and median times.

use serde::Serialize;

use super::{Analytics, PeriodJson};
use crate::db::lifecycle::LifecycleRow;
use crate::db::store::StoreError;
use crate::freshness::ReadMode;
use crate::model::scope::Filter;
use crate::model::window::Window;

// --------------------------------------------------------------- lifecycle

/// One stage of the lifecycle funnel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// `awarded`, `accepted`, `shared` or `viewed`.
    pub stage: &'static str,
    pub count: u64,
    /// `count ÷ previous stage's count`; 1 for `awarded`; null when the
    /// previous count is 0.
    pub conversion: Option<f64>,
    /// `1 − conversion`.
    pub drop_off: Option<f64>,
}

/// Median times between the stages, hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MedianHours {
    pub award_to_accept: Option<f64>,
    pub accept_to_share: Option<f64>,
    pub share_to_view: Option<f64>,
}

/// The body of `GET /api/v1/lifecycle`.
#[derive(Debug, Clone, Serialize)]
pub struct Lifecycle {
    pub scope: Filter,
    pub period: PeriodJson,
    pub stages: Vec<Stage>,
    pub median_hours: MedianHours,
}

/// The stages and medians of a cohort.
pub fn lifecycle_of(row: &LifecycleRow) -> (Vec<Stage>, MedianHours) {
    let counts = [
        ("awarded", row.awarded),
        ("accepted", row.accepted),
        ("shared", row.shared),
        ("viewed", row.viewed),
    ];
    let mut stages = Vec::with_capacity(4);
    let mut previous: Option<u64> = None;
    for (stage, count) in counts {
        let conversion = match previous {
            None => Some(1.0),
            Some(0) => None,
            Some(p) => Some(count as f64 / p as f64),
        };
        stages.push(Stage {
            stage,
            count,
            conversion,
            drop_off: conversion.map(|c| 1.0 - c),
        });
        previous = Some(count);
    }
    let hours = |n: u64, secs: f64| (n > 0).then(|| secs / 3_600.0);
    let median_hours = MedianHours {
        award_to_accept: hours(row.award_to_accept_n, row.award_to_accept_secs),
        accept_to_share: hours(row.accept_to_share_n, row.accept_to_share_secs),
        share_to_view: hours(row.share_to_view_n, row.share_to_view_secs),
    };
    (stages, median_hours)
}

impl Analytics {
    /// SPEC §7.6.
    pub async fn lifecycle(
        &self,
        filter: &Filter,
        window: Window,
        mode: ReadMode,
    ) -> Result<Lifecycle, StoreError> {
        let row = self.reader.lifecycle(filter, window, mode).await?;
        let (stages, median_hours) = lifecycle_of(&row);
        Ok(Lifecycle {
            scope: filter.clone(),
            period: window.into(),
            stages,
            median_hours,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_stages() {
        let row = LifecycleRow {
            awarded: 10,
            accepted: 8,
            shared: 2,
            viewed: 0,
            award_to_accept_n: 8,
            award_to_accept_secs: 5_400.0,
            accept_to_share_n: 2,
            accept_to_share_secs: 36_000.0,
            share_to_view_n: 0,
            share_to_view_secs: 0.0,
        };
        let (stages, medians) = lifecycle_of(&row);
        let got: Vec<_> = stages
            .iter()
            .map(|s| (s.stage, s.count, s.conversion, s.drop_off))
            .collect();
        assert_eq!(
            got,
            [
                ("awarded", 10, Some(1.0), Some(0.0)),
                ("accepted", 8, Some(0.8), Some(0.19999999999999996)),
                ("shared", 2, Some(0.25), Some(0.75)),
                ("viewed", 0, Some(0.0), Some(1.0)),
            ]
        );
        assert_eq!(
            medians,
            MedianHours {
                award_to_accept: Some(1.5),
                accept_to_share: Some(10.0),
                share_to_view: None,
            }
        );
        // An empty cohort: nothing divides by zero.
        let (stages, medians) = lifecycle_of(&LifecycleRow::default());
        assert_eq!(stages[0].conversion, Some(1.0));
        assert!(stages[1..]
            .iter()
            .all(|s| s.conversion.is_none() && s.drop_off.is_none()));
        assert_eq!(medians, MedianHours::default());
    }
}
