//! Query parameters of the API: parsing the query string, refusing
//! unknown and repeated parameters by name, and reading each typed
//! parameter (dimension, ranking, metrics, granularity, format, chart
//! size), every error naming the parameter.

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::{header, HeaderMap};

use super::errors::ApiError;
use badgepulse_contract::event::check_id;
use chrono_tz::Tz;

use crate::analytics::impact::ImpactRequest;
use crate::analytics::top_badges::{Order, Ranking};
use crate::analytics::trends::TrendRequest;
use crate::analytics::Question;
use crate::model::cohorts::{Stage, GRANULARITIES};
use crate::model::impact::{DEFAULT_DAYS, DEFAULT_HORIZON, MAX_DAYS, MAX_HORIZON};
use crate::model::measures::{Dimension, NAMES};
use crate::model::window::{Granularity, Window};
use crate::render::charts::ChartKind;

pub(super) type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The query string as name/value pairs.
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn from_query(query: QueryPairs) -> Result<Params, ApiError> {
        query
            .map(|Query(pairs)| Params(pairs))
            .map_err(|e| ApiError::bad_request(format!("query string: {}", e.body_text())))
    }

    /// The value of `name`; a parameter given twice is an error.
    pub(super) fn get(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self
            .0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::bad_request(format!(
                "{name}: given more than once"
            )));
        }
        Ok(first)
    }

    /// Refuses any parameter not in `allowed`, naming it.
    pub(super) fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.0.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((k, _)) => Err(ApiError::bad_request(format!(
                "{k}: unknown parameter (expected {})",
                allowed.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// An integer in `min..=max`, or `default` when absent.
    pub(super) fn int(
        &self,
        name: &str,
        min: u64,
        max: u64,
        default: u64,
    ) -> Result<u64, ApiError> {
        match self.get(name)? {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{name}: expected an integer from {min} to {max}, got {v:?}"
                    ))
                }),
        }
    }
}

/// The parameters every analytics GET takes.
pub(super) const COMMON_PARAMS: [&str; 7] = [
    "access_token",
    "org",
    "issuer",
    "badge_class",
    "from",
    "to",
    "format",
];

/// How to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Json,
    Csv,
}

/// Whether `Cache-Control` asks for a fresh answer (`no-cache`,
/// `no-store` or `max-age=0`, as browsers send on a forced reload).
pub(super) fn wants_fresh(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .any(|d| d == "no-cache" || d == "no-store" || d == "max-age=0")
}

/// The required `dimension` parameter.
pub(super) fn dimension_param(params: &Params) -> Result<Dimension, ApiError> {
    let expected = || {
        Dimension::ALL
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match params.get("dimension")? {
        None => Err(ApiError::bad_request(format!(
            "dimension: required (one of {})",
            expected()
        ))),
        Some(v) => Dimension::parse(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "dimension: expected one of {}, got {v:?}",
                expected()
            ))
        }),
    }
}

/// A measure name of SPEC §7, or an error naming `param`.
pub(super) fn metric_param(param: &str, value: &str) -> Result<&'static str, ApiError> {
    crate::analytics::metric(value).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{param}: unknown metric {value:?} (expected one of {})",
            NAMES.join(", ")
        ))
    })
}

/// The `sort`, `order` and `limit` parameters of top badges.
pub(super) fn ranking_param(params: &Params) -> Result<Ranking, ApiError> {
    let mut ranking = Ranking::default();
    if let Some(v) = params.get("sort")? {
        ranking.sort = metric_param("sort", v)?;
    }
    if let Some(v) = params.get("order")? {
        ranking.order = Order::parse(v).ok_or_else(|| {
            ApiError::bad_request(format!("order: expected desc or asc, got {v:?}"))
        })?;
    }
    ranking.limit = params.int("limit", 1, 1_000, 20)? as usize;
    Ok(ranking)
}

/// The default `metrics` of a trend.
pub(super) const DEFAULT_TREND_METRICS: [&str; 4] = ["awarded", "accepted", "shared", "views"];

/// The trend asked for by the `metrics` and `granularity` parameters,
/// checked against `window`.
pub(super) fn trend_param(params: &Params, window: Window) -> Result<Question, ApiError> {
    let metrics = match params.get("metrics")? {
        None => DEFAULT_TREND_METRICS.to_vec(),
        Some(list) => {
            let mut out: Vec<&'static str> = Vec::new();
            for name in list.split(',').map(str::trim) {
                if name.is_empty() {
                    return Err(ApiError::bad_request(
                        "metrics: empty metric name in the list",
                    ));
                }
                let m = metric_param("metrics", name)?;
                if out.contains(&m) {
                    return Err(ApiError::bad_request(format!(
                        "metrics: {name:?} is listed twice"
                    )));
                }
                out.push(m);
            }
            out
        }
    };
    trend_question(window, granularity_param(params)?, metrics)
}

/// A trends question, if `window` has no more buckets than allowed.
pub(super) fn trend_question(
    window: Window,
    granularity: Granularity,
    metrics: Vec<&'static str>,
) -> Result<Question, ApiError> {
    TrendRequest::new(window, granularity, metrics.clone()).map_err(ApiError::bad_request)?;
    Ok(Question::Trends {
        granularity,
        metrics,
    })
}

/// The `granularity` parameter (default `day`).
pub(super) fn granularity_param(params: &Params) -> Result<Granularity, ApiError> {
    match params.get("granularity")? {
        None => Ok(Granularity::Day),
        Some(v) => Granularity::parse(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "granularity: expected one of minute, hour, day, week, month, got {v:?}"
            ))
        }),
    }
}

/// The extra parameters of each chart: its JSON endpoint's, plus the size.
pub(super) fn chart_params(kind: ChartKind) -> &'static [&'static str] {
    match kind {
        ChartKind::Overview | ChartKind::Drivers | ChartKind::Lifecycle | ChartKind::Benchmark => {
            &["width", "height"]
        }
        ChartKind::Distribution => &["dimension", "width", "height"],
        ChartKind::TopBadges => &["sort", "order", "limit", "width", "height"],
        ChartKind::Trends => &["metrics", "granularity", "width", "height"],
        ChartKind::Impact => &["annotation", "days", "horizon", "width", "height"],
        ChartKind::Timing => &["tz", "width", "height"],
        ChartKind::Cohorts => &["granularity", "stage", "width", "height"],
    }
}

/// The impact asked for by `annotation` (required), `days` and `horizon`.
pub(super) fn impact_param(params: &Params) -> Result<Question, ApiError> {
    let annotation = params
        .get("annotation")?
        .ok_or_else(|| ApiError::bad_request("annotation: required (an annotation id)"))?;
    check_id("annotation", annotation).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Question::Impact(ImpactRequest {
        annotation: annotation.to_owned(),
        days: params.int("days", 1, u64::from(MAX_DAYS), u64::from(DEFAULT_DAYS))? as u32,
        horizon: params.int(
            "horizon",
            1,
            u64::from(MAX_HORIZON),
            u64::from(DEFAULT_HORIZON),
        )? as u32,
    }))
}

/// The `tz` parameter: an IANA time zone name (default `UTC`).
pub(super) fn tz_param(params: &Params) -> Result<Tz, ApiError> {
    match params.get("tz")? {
        None => Ok(Tz::UTC),
        Some(v) => v.parse::<Tz>().map_err(|_| {
            ApiError::bad_request(format!(
                "tz: unknown time zone {v:?} (expected an IANA name such as Europe/Paris or UTC)"
            ))
        }),
    }
}

/// The cohorts asked for by `granularity` (`week` or `month`, default
/// `month`) and `stage` (default `accepted`).
pub(super) fn cohorts_param(params: &Params) -> Result<Question, ApiError> {
    let granularity = match params.get("granularity")? {
        None => Granularity::Month,
        Some(v) => Granularity::parse(v)
            .filter(|g| GRANULARITIES.contains(g))
            .ok_or_else(|| {
                ApiError::bad_request(format!("granularity: expected week or month, got {v:?}"))
            })?,
    };
    let stage = match params.get("stage")? {
        None => Stage::Accepted,
        Some(v) => Stage::parse(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "stage: expected accepted, shared or viewed, got {v:?}"
            ))
        })?,
    };
    Ok(Question::Cohorts { granularity, stage })
}

/// Refuses `from` and `to` where the windows follow from something else.
pub(super) fn no_window(params: &Params, why: &str) -> Result<(), ApiError> {
    for name in ["from", "to"] {
        if params.get(name)?.is_some() {
            return Err(ApiError::bad_request(format!(
                "{name}: not accepted here; {why}"
            )));
        }
    }
    Ok(())
}

/// Refuses `format` where the answer has one fixed format.
pub(super) fn no_format(params: &Params, why: &str) -> Result<(), ApiError> {
    match params.get("format")? {
        None => Ok(()),
        Some(_) => Err(ApiError::bad_request(format!(
            "format: not accepted here; {why}"
        ))),
    }
}
