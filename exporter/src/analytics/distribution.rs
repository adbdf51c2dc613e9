//! SPEC §7.2 `GET /api/v1/distribution`: counts and shares by award
//! method, share channel, view source or country.

use serde::Serialize;

use super::{Analytics, PeriodJson};
use crate::db::distribution::DistributionRow;
use crate::db::store::StoreError;
use crate::freshness::ReadMode;
use crate::model::measures::Dimension;
use crate::model::scope::Filter;
use crate::model::tiers::Resolution;
use crate::model::window::Window;

/// The value shown for views without a known country.
pub const UNKNOWN_COUNTRY: &str = "unknown";

// ------------------------------------------------------------ distribution

/// One row of a distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DistributionEntry {
    pub value: String,
    pub count: u64,
    /// `count` ÷ the dimension's total; null when the total is 0.
    pub share: Option<f64>,
}

/// The body of `GET /api/v1/distribution`.
#[derive(Debug, Clone, Serialize)]
pub struct Distribution {
    pub scope: Filter,
    pub period: PeriodJson,
    pub dimension: &'static str,
    pub rows: Vec<DistributionEntry>,
}

/// Shares of the total, unknown countries named, by count descending then
/// value; values with a zero count are left out.
pub fn distribution_rows(
    rows: Vec<DistributionRow>,
    dimension: Dimension,
) -> Vec<DistributionEntry> {
    let total: u64 = rows.iter().map(|r| r.count).sum();
    let mut out: Vec<DistributionEntry> = rows
        .into_iter()
        .filter(|r| r.count > 0)
        .map(|r| DistributionEntry {
            value: if dimension == Dimension::ViewCountry && r.value.is_empty() {
                UNKNOWN_COUNTRY.to_owned()
            } else {
                r.value
            },
            count: r.count,
            share: (total > 0).then(|| r.count as f64 / total as f64),
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    out
}

impl Analytics {
    /// SPEC §7.2.
    pub async fn distribution(
        &self,
        filter: &Filter,
        window: Window,
        dimension: Dimension,
        mode: ReadMode,
    ) -> Result<Distribution, StoreError> {
        let rows = self
            .reader
            .distribution(
                filter,
                &self.period(window, Resolution::Day),
                dimension,
                mode,
            )
            .await?;
        Ok(Distribution {
            scope: filter.clone(),
            period: window.into(),
            dimension: dimension.as_str(),
            rows: distribution_rows(rows, dimension),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_shares_and_order() {
        let rows = vec![
            DistributionRow {
                value: "".into(),
                count: 2,
            },
            DistributionRow {
                value: "NL".into(),
                count: 5,
            },
            DistributionRow {
                value: "DE".into(),
                count: 2,
            },
            DistributionRow {
                value: "FR".into(),
                count: 0,
            },
        ];
        let out = distribution_rows(rows.clone(), Dimension::ViewCountry);
        let got: Vec<(&str, u64, Option<f64>)> = out
            .iter()
            .map(|r| (r.value.as_str(), r.count, r.share))
            .collect();
        assert_eq!(
            got,
            [
                ("NL", 5, Some(5.0 / 9.0)),
                ("DE", 2, Some(2.0 / 9.0)),
                ("unknown", 2, Some(2.0 / 9.0)),
            ]
        );
        // Only countries have an "unknown" value.
        let out = distribution_rows(rows, Dimension::ViewSource);
        assert_eq!(out[1].value, "");
        assert!(distribution_rows(Vec::new(), Dimension::AwardMethod).is_empty());
    }
}
