//! SPEC §7.4 `GET /api/v1/trends`: a series per measure, every bucket of
//! the window present, with the window's annotations.

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use super::annotations::{Annotation, DEFAULT_ANNOTATIONS};
use super::{Analytics, PeriodJson};
use crate::db::counts::TrendRow;
use crate::db::store::StoreError;
use crate::freshness::ReadMode;
use crate::model::measures::{Counts, Measures, Value};
use crate::model::scope::Filter;
use crate::model::window::Window;
use crate::model::window::{buckets, rfc3339_i64, Granularity};

/// Most buckets of one trend series.
pub const MAX_BUCKETS: usize = 5_000;

// ------------------------------------------------------------------ trends

/// A validated trends request: the granularity, the measures and every
/// bucket of the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrendRequest {
    pub granularity: Granularity,
    pub metrics: Vec<&'static str>,
    pub buckets: Vec<i64>,
}

impl TrendRequest {
    /// Errors name the parameter: `granularity` when the window has more
    /// than [`MAX_BUCKETS`] buckets, `metrics` for an empty list.
    pub fn new(
        window: Window,
        granularity: Granularity,
        metrics: Vec<&'static str>,
    ) -> Result<TrendRequest, String> {
        if metrics.is_empty() {
            return Err("metrics: name at least one metric".into());
        }
        let buckets = buckets(window, granularity, MAX_BUCKETS).map_err(|_| {
            format!(
                "granularity: the window has more than {MAX_BUCKETS} {} buckets; choose a coarser granularity or a shorter window",
                granularity.as_str()
            )
        })?;
        Ok(TrendRequest {
            granularity,
            metrics,
            buckets,
        })
    }
}

/// The measures of every bucket: each row goes to the bucket holding its
/// time; buckets without a row are zeros.
pub fn fill(buckets: &[i64], rows: &[TrendRow]) -> Vec<Measures> {
    let mut counts = vec![Counts::default(); buckets.len()];
    for row in rows {
        let t = i64::from(row.t);
        // The last bucket starting at or before t (a bucket before 1970
        // comes back from ClickHouse clamped to 1970-01-01).
        let i = buckets.partition_point(|&b| b <= t).saturating_sub(1);
        if let Some(c) = counts.get_mut(i) {
            let r = row.counts();
            c.awarded += r.awarded;
            c.accepted += r.accepted;
            c.shared += r.shared;
            c.shares += r.shares;
            c.views += r.views;
            c.unique_viewers += r.unique_viewers;
            c.revoked += r.revoked;
            c.badge_classes += r.badge_classes;
        }
    }
    counts.into_iter().map(Measures::derive).collect()
}

/// The body of `GET /api/v1/trends`.
#[derive(Debug, Clone)]
pub struct Trends {
    pub scope: Filter,
    pub period: PeriodJson,
    pub granularity: Granularity,
    pub metrics: Vec<&'static str>,
    /// Bucket starts, epoch seconds.
    pub buckets: Vec<i64>,
    /// The measures of each bucket.
    pub values: Vec<Measures>,
    pub annotations: Vec<Annotation>,
}

/// `{metric: [{"t", "value"}]}`.
struct Series<'a>(&'a Trends);

#[derive(Serialize)]
struct Point {
    t: String,
    value: Option<Value>,
}

impl Serialize for Series<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tr = self.0;
        let times: Vec<String> = tr.buckets.iter().map(|&b| rfc3339_i64(b)).collect();
        let mut map = serializer.serialize_map(Some(tr.metrics.len()))?;
        for m in &tr.metrics {
            let points: Vec<Point> = times
                .iter()
                .zip(&tr.values)
                .map(|(t, v)| Point {
                    t: t.clone(),
                    value: v.get(m),
                })
                .collect();
            map.serialize_entry(m, &points)?;
        }
        map.end()
    }
}

impl Serialize for Trends {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Trends", 5)?;
        s.serialize_field("scope", &self.scope)?;
        s.serialize_field("period", &self.period)?;
        s.serialize_field("granularity", self.granularity.as_str())?;
        s.serialize_field("series", &Series(self))?;
        s.serialize_field("annotations", &self.annotations)?;
        s.end()
    }
}

impl Analytics {
    /// SPEC §7.4.
    pub async fn trends(
        &self,
        filter: &Filter,
        window: Window,
        request: TrendRequest,
        mode: ReadMode,
    ) -> Result<Trends, StoreError> {
        let period = self.period(window, request.granularity.coarsest_resolution());
        let (rows, annotations) = tokio::try_join!(
            self.reader
                .trend_counts(filter, &period, request.granularity, mode),
            self.reader
                .annotations(filter, window, DEFAULT_ANNOTATIONS, mode),
        )?;
        let values = fill(&request.buckets, &rows);
        Ok(Trends {
            scope: filter.clone(),
            period: window.into(),
            granularity: request.granularity,
            metrics: request.metrics,
            buckets: request.buckets,
            values,
            annotations: annotations.into_iter().map(Annotation::from).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> u32 {
        crate::model::window::parse_time("t", s).unwrap()
    }

    #[test]
    fn trend_buckets_are_filled_with_zeros() {
        let w = Window::new(t("2024-03-01T10:30:00Z"), t("2024-03-01T13:00:01Z")).unwrap();
        let req =
            TrendRequest::new(w, Granularity::Hour, vec!["awarded", "acceptance_rate"]).unwrap();
        assert_eq!(
            req.buckets,
            [
                i64::from(t("2024-03-01T10:00:00Z")),
                i64::from(t("2024-03-01T11:00:00Z")),
                i64::from(t("2024-03-01T12:00:00Z")),
                i64::from(t("2024-03-01T13:00:00Z")),
            ]
        );
        let row = |at: &str, awarded, accepted| TrendRow {
            t: t(at),
            awarded,
            accepted,
            shared: 0,
            shares: 0,
            views: 0,
            unique_viewers: 0,
            revoked: 0,
            badge_classes: 1,
        };
        let values = fill(
            &req.buckets,
            &[
                row("2024-03-01T10:00:00Z", 4, 2),
                row("2024-03-01T12:00:00Z", 1, 1),
            ],
        );
        let trends = Trends {
            scope: Filter::default(),
            period: w.into(),
            granularity: req.granularity,
            metrics: req.metrics.clone(),
            buckets: req.buckets.clone(),
            values,
            annotations: Vec::new(),
        };
        let json = serde_json::to_value(&trends).unwrap();
        assert_eq!(json["granularity"], "hour");
        assert_eq!(
            json["series"]["awarded"],
            serde_json::json!([
                {"t": "2024-03-01T10:00:00Z", "value": 4},
                {"t": "2024-03-01T11:00:00Z", "value": 0},
                {"t": "2024-03-01T12:00:00Z", "value": 1},
                {"t": "2024-03-01T13:00:00Z", "value": 0},
            ])
        );
        assert_eq!(
            json["series"]["acceptance_rate"],
            serde_json::json!([
                {"t": "2024-03-01T10:00:00Z", "value": 0.5},
                {"t": "2024-03-01T11:00:00Z", "value": null},
                {"t": "2024-03-01T12:00:00Z", "value": 1.0},
                {"t": "2024-03-01T13:00:00Z", "value": null},
            ])
        );
        // Its CSV table: `render::tables`.
    }
    #[test]
    fn trend_requests_are_bounded() {
        let month = Window::new(t("2024-01-01"), t("2024-02-01")).unwrap();
        let err = TrendRequest::new(month, Granularity::Minute, vec!["views"]).unwrap_err();
        assert!(err.starts_with("granularity:"), "{err}");
        assert_eq!(
            TrendRequest::new(month, Granularity::Hour, vec!["views"])
                .unwrap()
                .buckets
                .len(),
            744
        );
        let err = TrendRequest::new(month, Granularity::Day, Vec::new()).unwrap_err();
        assert!(err.starts_with("metrics:"), "{err}");
        // A week bucket before 1970 takes the rows ClickHouse clamps to 0.
        let early = Window::new(0, 86_400 * 10).unwrap();
        let req = TrendRequest::new(early, Granularity::Week, vec!["awarded"]).unwrap();
        assert_eq!(req.buckets, [-3 * 86_400, 4 * 86_400]);
        let row = TrendRow {
            t: 0,
            awarded: 3,
            accepted: 0,
            shared: 0,
            shares: 0,
            views: 0,
            unique_viewers: 0,
            revoked: 0,
            badge_classes: 1,
        };
        assert_eq!(fill(&req.buckets, &[row])[0].counts.awarded, 3);
    }
}
