//! The handlers of the API listener: each authenticates, resolves the
//! scope and window, reads its parameters (`params.rs`) and answers from
//! the analytics as JSON, CSV, a chart or the report.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono_tz::Tz;
use serde::Serialize;

use super::auth::ApiKeys;
use super::errors::ApiError;
use super::params::*;
use super::AppState;
use crate::analytics::annotations::{NewAnnotation, DEFAULT_ANNOTATIONS, MAX_ANNOTATIONS};
use crate::analytics::benchmark::Benchmark;
use crate::analytics::cohorts::{Cohorts, DEFAULT_SPAN as COHORTS_SPAN};
use crate::analytics::impact::{Impact, ImpactRequest};
use crate::analytics::timing::Timing;
use crate::analytics::top_badges::Ranking;
use crate::analytics::trends::Trends;
use crate::analytics::{Answer, AnswerKey, Body, Question};
use crate::freshness::ReadMode;
use crate::model::benchmark::Level;
use crate::model::cohorts::{check_span, Stage};
use crate::model::impact::{DEFAULT_DAYS, DEFAULT_HORIZON};
use crate::model::measures::Dimension;
use crate::model::scope::{resolve, Filter, Scope};
use crate::model::window::{Granularity, Window, WindowSpec};
use crate::render::charts::{self, ChartKind, ImageFormat, Size};
use crate::render::csv::Tabular;

/// The API key's scope. Authentication comes before any other check, so
/// a request without a valid key learns nothing about its parameters.
fn authenticate<'k>(
    keys: &'k ApiKeys,
    headers: &HeaderMap,
    params: &Params,
) -> Result<&'k Scope, ApiError> {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    Ok(keys.authenticate(authorization, params.get("access_token")?)?)
}

/// An authenticated, authorised analytics request.
struct ApiRequest {
    params: Params,
    filter: Filter,
    /// The window as asked (it may end now, whenever that is).
    spec: WindowSpec,
    /// The window at the time of the request, for checks.
    window: Window,
    format: Format,
    /// `Cache-Control: no-cache` (or `max-age=0`): answer from ClickHouse,
    /// not from the result cache.
    fresh: bool,
}

impl ApiRequest {
    /// Authenticates, checks that only the common parameters and `extra`
    /// are present, resolves the scope and the window, and reads `format`.
    fn new(
        s: &AppState,
        headers: &HeaderMap,
        query: QueryPairs,
        extra: &[&str],
    ) -> Result<ApiRequest, ApiError> {
        let params = Params::from_query(query)?;
        let scope = authenticate(&s.keys, headers, &params)?;
        let allowed: Vec<&str> = COMMON_PARAMS.iter().chain(extra).copied().collect();
        params.only(&allowed)?;
        let filter = resolve(
            scope,
            params.get("org")?,
            params.get("issuer")?,
            params.get("badge_class")?,
        )?;
        let now = u32::try_from(chrono::Utc::now().timestamp().max(0)).unwrap_or(u32::MAX);
        let spec = WindowSpec::parse(params.get("from")?, params.get("to")?)
            .map_err(ApiError::bad_request)?;
        let window = spec.at(now).map_err(ApiError::bad_request)?;
        let format = format_param(&params)?;
        Ok(ApiRequest {
            params,
            filter,
            spec,
            window,
            format,
            fresh: wants_fresh(headers),
        })
    }

    /// The request with `span` seconds (instead of 30 days) before `to`
    /// when `from` is not given.
    fn with_default_span(mut self, span: u32) -> Result<ApiRequest, ApiError> {
        let now = u32::try_from(chrono::Utc::now().timestamp().max(0)).unwrap_or(u32::MAX);
        self.spec = self.spec.with_default_span(span);
        self.window = self.spec.at(now).map_err(ApiError::bad_request)?;
        Ok(self)
    }

    /// Whether the result cache may answer: not when the client asked for
    /// fresh data.
    fn mode(&self) -> ReadMode {
        read_mode(self.fresh)
    }

    /// The answer to `question` in the request's scope and window.
    async fn answer(&self, s: &AppState, question: Question) -> Result<Answer, ApiError> {
        let key = AnswerKey {
            question,
            filter: self.filter.clone(),
            window: self.spec,
        };
        Ok(s.analytics.answer(key, self.mode()).await?)
    }

    /// The answer to `question` as JSON or CSV, with its `Age` in seconds
    /// (RFC 9111): how long ago it was computed.
    async fn reply(&self, s: &AppState, question: Question) -> Result<Response, ApiError> {
        let answer = self.answer(s, question).await?;
        let mut response = self.respond(&answer.body);
        let age_secs =
            (chrono::Utc::now().timestamp_millis() - answer.computed_at_ms).max(0) / 1000;
        response
            .headers_mut()
            .insert(header::AGE, HeaderValue::from(age_secs));
        Ok(response)
    }

    /// `body` as JSON, or as CSV with `format=csv`.
    fn respond<T: Serialize + Tabular>(&self, body: &T) -> Response {
        respond(self.format, body)
    }
}

/// `Cache-Control: no-cache` asks for fresh data: answer from ClickHouse,
/// not from the result cache.
fn read_mode(fresh: bool) -> ReadMode {
    if fresh {
        ReadMode::Fresh
    } else {
        ReadMode::Cached
    }
}

/// `format`: `json` (the default) or `csv`.
fn format_param(params: &Params) -> Result<Format, ApiError> {
    match params.get("format")? {
        None | Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(other) => Err(ApiError::bad_request(format!(
            "format: expected json or csv, got {other:?}"
        ))),
    }
}

/// `body` as JSON, or as CSV.
fn respond<T: Serialize + Tabular>(format: Format, body: &T) -> Response {
    match format {
        Format::Json => Json(body).into_response(),
        Format::Csv => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"badgepulse-{}.csv\"",
                        body.csv_name()
                    ),
                ),
            ],
            body.table().to_csv(),
        )
            .into_response(),
    }
}

/// `GET /api/v1/overview` (SPEC §7.1).
#[tracing::instrument(skip_all)]
pub(super) async fn overview(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &[])?;
    req.reply(&s, Question::Overview).await
}

/// `GET /api/v1/distribution?dimension=…` (SPEC §7.2).
#[tracing::instrument(skip_all)]
pub(super) async fn distribution(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &["dimension"])?;
    let dimension = dimension_param(&req.params)?;
    req.reply(&s, Question::Distribution(dimension)).await
}

/// `GET /api/v1/top-badges?sort=performance&order=desc&limit=20` (SPEC §7.3).
#[tracing::instrument(skip_all)]
pub(super) async fn top_badges(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &["sort", "order", "limit"])?;
    let ranking = ranking_param(&req.params)?;
    req.reply(&s, Question::TopBadges(ranking)).await
}

/// `GET /api/v1/trends?metrics=…&granularity=day` (SPEC §7.4).
#[tracing::instrument(skip_all)]
pub(super) async fn trends(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &["metrics", "granularity"])?;
    let question = trend_param(&req.params, req.window)?;
    req.reply(&s, question).await
}

/// `GET /api/v1/drivers` (SPEC §7.5).
#[tracing::instrument(skip_all)]
pub(super) async fn drivers(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &[])?;
    req.reply(&s, Question::Drivers).await
}

/// `GET /api/v1/lifecycle` (SPEC §7.6).
#[tracing::instrument(skip_all)]
pub(super) async fn lifecycle(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &[])?;
    req.reply(&s, Question::Lifecycle).await
}

/// `GET /api/v1/impact?annotation=ID&days=28&horizon=7` (SPEC §7.7).
#[tracing::instrument(skip_all)]
pub(super) async fn impact(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &["annotation", "days", "horizon"])?;
    no_window(&req.params, IMPACT_WINDOWS)?;
    let question = impact_param(&req.params)?;
    req.reply(&s, question).await
}

/// Why an impact takes no `from`/`to`.
const IMPACT_WINDOWS: &str = "the windows are the `days` before and after the annotation";

/// `GET /api/v1/timing?tz=Europe/Paris` (SPEC §7.8).
#[tracing::instrument(skip_all)]
pub(super) async fn timing(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &["tz"])?;
    let tz = tz_param(&req.params)?;
    req.reply(&s, Question::Timing(tz)).await
}

/// `GET /api/v1/cohorts?granularity=month&stage=accepted` (SPEC §7.9);
/// the default window is the last 365 days.
#[tracing::instrument(skip_all)]
pub(super) async fn cohorts(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &["granularity", "stage"])?
        .with_default_span(COHORTS_SPAN)?;
    let question = cohorts_param(&req.params)?;
    req.reply(&s, question).await
}

/// `GET /api/v1/benchmark` (SPEC §7.10): `400` for a badge-class scope.
#[tracing::instrument(skip_all)]
pub(super) async fn benchmark(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &[])?;
    Level::of(&req.filter).map_err(ApiError::bad_request)?;
    req.reply(&s, Question::Benchmark).await
}

/// `GET /api/v1/annotations`: those in scope with `at` in the window.
#[tracing::instrument(skip_all)]
pub(super) async fn list_annotations(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &["limit"])?;
    let limit = req
        .params
        .int("limit", 1, MAX_ANNOTATIONS, DEFAULT_ANNOTATIONS)?;
    let body = s
        .analytics
        .annotations(&req.filter, req.window, limit, req.mode())
        .await?;
    Ok(req.respond(&body))
}

/// `GET /api/v1/scopes`: the orgs, issuers and badge classes the key may
/// see (narrowed by `org`, `issuer`, `badge_class`), with their awards of
/// all time. No window: `from` and `to` are refused.
#[tracing::instrument(skip_all)]
pub(super) async fn scopes(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let params = Params::from_query(query)?;
    let scope = authenticate(&s.keys, &headers, &params)?;
    params.only(&["access_token", "org", "issuer", "badge_class", "format"])?;
    let filter = resolve(
        scope,
        params.get("org")?,
        params.get("issuer")?,
        params.get("badge_class")?,
    )?;
    let format = format_param(&params)?;
    let body = s
        .analytics
        .scopes(&filter, read_mode(wants_fresh(&headers)))
        .await?;
    Ok(respond(format, &body))
}

/// The fields of a new annotation.
pub(super) const ANNOTATION_FIELDS: [&str; 6] =
    ["at", "title", "text", "org", "issuer", "badge_class"];

/// The scope parameters, which `POST /api/v1/annotations` takes in its
/// query string like every GET, or in its body.
pub(super) const SCOPE_PARAMS: [&str; 3] = ["org", "issuer", "badge_class"];

/// Largest `POST /api/v1/annotations` body.
pub const MAX_ANNOTATION_BODY: usize = 64 * 1024;

/// `POST /api/v1/annotations[?org=&issuer=&badge_class=]` with
/// `{"at","title","text"?,"org"?,"issuer"?,"badge_class"?}`: `201` and the
/// stored annotation. The scope is given as query parameters or body
/// fields (both given and different: `400` naming it) and resolved against
/// the key like a GET's: a scoped key fills in its own scope and cannot
/// create outside it. Every read that starts after the `201` includes it
/// (`QueryCache::apply_write`).
#[tracing::instrument(skip_all)]
pub(super) async fn create_annotation(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let params = Params::from_query(query)?;
    let scope = authenticate(&s.keys, &headers, &params)?;
    params.only(&["access_token", "org", "issuer", "badge_class"])?;
    // Read only after authentication, bounded in size and in time.
    let body = match tokio::time::timeout(
        s.body_timeout,
        axum::body::to_bytes(body, MAX_ANNOTATION_BODY),
    )
    .await
    {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "body: not received within {} s (exporter.header_read_timeout_secs)",
                    s.body_timeout.as_secs()
                ),
            ))
        }
        Ok(Err(e)) if e.to_string().contains("length limit") => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body: larger than {} KiB", MAX_ANNOTATION_BODY / 1024),
            ))
        }
        Ok(Err(e)) => return Err(ApiError::bad_request(format!("body: {e}"))),
        Ok(Ok(bytes)) => bytes,
    };
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body: not JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| ApiError::bad_request("body: expected a JSON object"))?;
    if let Some(k) = object
        .keys()
        .find(|k| !ANNOTATION_FIELDS.contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "{k}: unknown field (expected {})",
            ANNOTATION_FIELDS.join(", ")
        )));
    }
    let field = |name: &str| -> Result<Option<&str>, ApiError> {
        match object.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(ApiError::bad_request(format!("{name}: expected a string"))),
        }
    };
    let mut target_params = [None; 3];
    for (slot, name) in target_params.iter_mut().zip(SCOPE_PARAMS) {
        *slot = match (params.get(name)?, field(name)?) {
            (Some(q), Some(b)) if q != b => {
                return Err(ApiError::bad_request(format!(
                    "{name}: {q:?} in the query string but {b:?} in the body"
                )))
            }
            (q, b) => q.or(b),
        };
    }
    let [org, issuer, badge_class] = target_params;
    let target = resolve(scope, org, issuer, badge_class)?;
    if target.org.is_none() {
        return Err(ApiError::bad_request(
            "org: required to create an annotation with an admin key",
        ));
    }
    let at = field("at")?.ok_or_else(|| ApiError::bad_request("at: required"))?;
    let title = field("title")?.ok_or_else(|| ApiError::bad_request("title: required"))?;
    let new = NewAnnotation::new(at, title, field("text")?).map_err(ApiError::bad_request)?;
    let created = s.analytics.create_annotation(&target, new).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /api/v1/charts/{overview|trends|distribution|top-badges|drivers|lifecycle|impact|timing|cohorts|benchmark}.{png|svg}`:
/// the matching JSON endpoint's body drawn as a chart of
/// `width`×`height` pixels.
#[tracing::instrument(skip_all, fields(file = %file))]
pub(super) async fn chart(
    State(s): State<Arc<AppState>>,
    Path(file): Path<String>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let (kind, format) = match charts::parse_file(&file) {
        Ok(parsed) => parsed,
        Err(e) => {
            // Authentication still comes first.
            let params = Params::from_query(query)?;
            authenticate(&s.keys, &headers, &params)?;
            return Err(ApiError::new(StatusCode::NOT_FOUND, e));
        }
    };
    let mut req = ApiRequest::new(&s, &headers, query, chart_params(kind))?;
    no_format(
        &req.params,
        "the file extension (.png or .svg) selects the format",
    )?;
    if kind == ChartKind::Cohorts {
        req = req.with_default_span(COHORTS_SPAN)?;
    }
    let size = Size::parse(req.params.get("width")?, req.params.get("height")?)
        .map_err(ApiError::bad_request)?;
    let question = match kind {
        ChartKind::Overview => Question::Overview,
        ChartKind::Trends => trend_param(&req.params, req.window)?,
        ChartKind::Distribution => Question::Distribution(dimension_param(&req.params)?),
        ChartKind::TopBadges => Question::TopBadges(ranking_param(&req.params)?),
        ChartKind::Drivers => Question::Drivers,
        ChartKind::Lifecycle => Question::Lifecycle,
        ChartKind::Impact => {
            no_window(&req.params, IMPACT_WINDOWS)?;
            impact_param(&req.params)?
        }
        ChartKind::Timing => Question::Timing(tz_param(&req.params)?),
        ChartKind::Cohorts => cohorts_param(&req.params)?,
        ChartKind::Benchmark => {
            Level::of(&req.filter).map_err(ApiError::bad_request)?;
            Question::Benchmark
        }
    };
    let data = req.answer(&s, question).await?.body;
    let svg = data.svg(size);
    let body = match format {
        ImageFormat::Svg => svg.into_bytes(),
        ImageFormat::Png => charts::png_async(svg).await.map_err(|e| {
            tracing::error!(error = %e, "chart rendering failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "chart: rendering failed")
        })?,
    };
    Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response())
}

/// `GET /report`: the printable HTML report of the scope and window
/// (`granularity` sets the trend buckets, default `day`).
#[tracing::instrument(skip_all)]
pub(super) async fn report(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &["granularity", "tz"])?;
    no_format(&req.params, "the report is HTML")?;
    let tz = tz_param(&req.params)?;
    let trend = trend_question(
        req.window,
        granularity_param(&req.params)?,
        DEFAULT_TREND_METRICS.to_vec(),
    )?;
    let ask = |question| req.answer(&s, question);
    let (overview, trends, top_badges, drivers, lifecycle, d0, d1, d2, d3) = tokio::try_join!(
        ask(Question::Overview),
        ask(trend),
        ask(Question::TopBadges(Ranking::default())),
        ask(Question::Drivers),
        ask(Question::Lifecycle),
        ask(Question::Distribution(Dimension::AwardMethod)),
        ask(Question::Distribution(Dimension::ShareChannel)),
        ask(Question::Distribution(Dimension::ViewSource)),
        ask(Question::Distribution(Dimension::ViewCountry)),
    )?;
    let computed_at_ms = [
        &overview,
        &trends,
        &top_badges,
        &drivers,
        &lifecycle,
        &d0,
        &d1,
        &d2,
        &d3,
    ]
    .iter()
    .map(|a| a.computed_at_ms)
    .max()
    .unwrap_or_default();
    let (
        Body::Overview(overview),
        Body::Trends(trends),
        Body::TopBadges(top_badges),
        Body::Drivers(drivers),
        Body::Lifecycle(lifecycle),
        Body::Distribution(d0),
        Body::Distribution(d1),
        Body::Distribution(d2),
        Body::Distribution(d3),
    ) = (
        overview.body,
        trends.body,
        top_badges.body,
        drivers.body,
        lifecycle.body,
        d0.body,
        d1.body,
        d2.body,
        d3.body,
    )
    else {
        unreachable!("each question is answered with its own body")
    };
    let insights = report_insights(&req, &s, &trends, tz).await?;
    let html = crate::render::report::render(&crate::render::report::ReportData {
        overview,
        trends,
        distributions: vec![d0, d1, d2, d3],
        top_badges,
        drivers,
        lifecycle,
        impacts: insights.impacts,
        timing: insights.timing,
        cohorts: insights.cohorts,
        benchmark: insights.benchmark,
        computed_at: computed_at_ms.max(insights.computed_at_ms) / 1000,
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, crate::render::report::CSP),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        html,
    )
        .into_response())
}

/// Most annotations whose impact the report shows (the latest ones).
pub const REPORT_IMPACTS: usize = 3;

/// A report's window up to this long has weekly cohorts, a longer one
/// monthly.
const REPORT_WEEKLY_COHORTS_SECS: u32 = 182 * 86_400;

/// The insight sections of a report.
struct ReportInsights {
    impacts: Vec<Impact>,
    timing: Timing,
    cohorts: Result<Cohorts, String>,
    benchmark: Result<Benchmark, String>,
    /// When the newest of these answers was computed.
    computed_at_ms: i64,
}

/// The impact of the latest annotations of `trends`, the timing in `tz`,
/// the cohorts of the window (weekly up to 26 weeks, else monthly) and
/// the benchmark, if the scope has one.
async fn report_insights(
    req: &ApiRequest,
    s: &AppState,
    trends: &Trends,
    tz: Tz,
) -> Result<ReportInsights, ApiError> {
    let latest = trends.annotations.iter().rev().take(REPORT_IMPACTS);
    let impacts = futures::future::try_join_all(latest.map(|a| {
        req.answer(
            s,
            Question::Impact(ImpactRequest {
                annotation: a.id.clone(),
                days: DEFAULT_DAYS,
                horizon: DEFAULT_HORIZON,
            }),
        )
    }));
    let granularity = if req.window.len_secs() <= REPORT_WEEKLY_COHORTS_SECS {
        Granularity::Week
    } else {
        Granularity::Month
    };
    let now = u32::try_from(chrono::Utc::now().timestamp().max(0)).unwrap_or(u32::MAX);
    let cohorts = async {
        match check_span(granularity, req.window, now) {
            Ok(()) => req
                .answer(
                    s,
                    Question::Cohorts {
                        granularity,
                        stage: Stage::Accepted,
                    },
                )
                .await
                .map(Ok),
            Err(why) => Ok(Err(why)),
        }
    };
    let benchmark = async {
        match Level::of(&req.filter) {
            Ok(_) => req.answer(s, Question::Benchmark).await.map(Ok),
            Err(why) => Ok(Err(format!("Not available for this scope: {why}"))),
        }
    };
    let (impacts, timing, cohorts, benchmark) = tokio::try_join!(
        impacts,
        req.answer(s, Question::Timing(tz)),
        cohorts,
        benchmark,
    )?;
    let computed_at_ms = impacts
        .iter()
        .chain([&timing])
        .chain(cohorts.as_ref().ok())
        .chain(benchmark.as_ref().ok())
        .map(|a| a.computed_at_ms)
        .max()
        .unwrap_or_default();
    let impacts = impacts
        .into_iter()
        .map(|a| match a.body {
            Body::Impact(i) => i,
            _ => unreachable!("an impact question has an impact body"),
        })
        .collect();
    let Body::Timing(timing) = timing.body else {
        unreachable!("a timing question has a timing body")
    };
    let cohorts = cohorts.map(|a| match a.body {
        Body::Cohorts(c) => c,
        _ => unreachable!("a cohorts question has a cohorts body"),
    });
    let benchmark = benchmark.map(|a| match a.body {
        Body::Benchmark(b) => b,
        _ => unreachable!("a benchmark question has a benchmark body"),
    });
    Ok(ReportInsights {
        impacts,
        timing,
        cohorts,
        benchmark,
        computed_at_ms,
    })
}

/// `GET /api/v1/openapi.json`.
pub(super) async fn openapi(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let params = Params::from_query(query)?;
    authenticate(&s.keys, &headers, &params)?;
    params.only(&["access_token"])?;
    Ok(Json(crate::render::openapi::document()).into_response())
}
