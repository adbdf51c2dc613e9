//! The exporter's HTTP interface (SPEC §8): the analytics API under
//! `/api/v1/`, `/metrics`, `/healthz` and `/readyz`.
//!
//! Handlers check parameters (unknown ones are refused, naming them),
//! authenticate (`auth.rs`), call the analytics data functions
//! (`analytics.rs`, which renderers such as charts reuse) and answer JSON
//! or, with `format=csv`, CSV (`csv.rs`); they hold no SQL. Every error is
//! JSON `{"error": "…"}` whose message starts with the parameter at fault;
//! ClickHouse failures are logged and answered 503 without internals.
//!
//! Charts (`/api/v1/charts/NAME.png|svg`) and the HTML report (`/report`)
//! take the same parameters, auth and scope as the JSON endpoints, fetch
//! the same bodies and hand them to `charts.rs` / `report.rs`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::analytics::{
    self, Analytics, Answer, Body, NewAnnotation, Order, Question, Ranking, TrendRequest,
    DEFAULT_ANNOTATIONS, MAX_ANNOTATIONS,
};
use crate::auth::{self, ApiKeys, AuthError, Scope};
use crate::charts::{self, ChartKind, ImageFormat, Size};
use crate::csv::Tabular;
use crate::measures::{Dimension, NAMES};
use crate::metrics::Metrics;
use crate::queries::Filter;
use crate::store::StoreError;
use crate::window::{Granularity, Window, WindowSpec};

/// What every handler needs.
pub struct AppState {
    pub analytics: Analytics,
    pub keys: ApiKeys,
    pub metrics: Metrics,
    /// How long a request body may take to arrive
    /// (`exporter.header_read_timeout_secs`).
    pub body_timeout: Duration,
}

/// Every route of the analytics API with its methods; the OpenAPI
/// document must describe each (tested).
pub const API_ROUTES: [(&str, &[&str]); 10] = [
    ("/api/v1/overview", &["get"]),
    ("/api/v1/distribution", &["get"]),
    ("/api/v1/top-badges", &["get"]),
    ("/api/v1/trends", &["get"]),
    ("/api/v1/drivers", &["get"]),
    ("/api/v1/lifecycle", &["get"]),
    ("/api/v1/annotations", &["get", "post"]),
    ("/api/v1/openapi.json", &["get"]),
    ("/api/v1/charts/{chart}.{ext}", &["get"]),
    ("/report", &["get"]),
];

/// Largest `POST /api/v1/annotations` body.
pub const MAX_ANNOTATION_BODY: usize = 64 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v1/overview", get(overview))
        .route("/api/v1/distribution", get(distribution))
        .route("/api/v1/top-badges", get(top_badges))
        .route("/api/v1/trends", get(trends))
        .route("/api/v1/drivers", get(drivers))
        .route("/api/v1/lifecycle", get(lifecycle))
        .route(
            "/api/v1/annotations",
            get(list_annotations)
                .post(create_annotation)
                .layer(DefaultBodyLimit::max(MAX_ANNOTATION_BODY)),
        )
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/charts/{file}", get(chart))
        .route("/report", get(report))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .fallback(not_found)
        .with_state(state)
}

/// Counts responses by matched route and status.
async fn count_requests(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(req).await;
    s.metrics
        .http_requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    response
}

async fn not_found(State(s): State<Arc<AppState>>) -> ApiError {
    s.metrics
        .http_requests
        .with_label_values(&["unmatched", "404"])
        .inc();
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

/// An error answer: `{"error": message}` with a 4xx/5xx status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        if self.status == StatusCode::UNAUTHORIZED {
            (self.status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match e {
            AuthError::Missing | AuthError::NotBearer | AuthError::Unknown => {
                StatusCode::UNAUTHORIZED
            }
            AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
            AuthError::BadParam(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if let StoreError::Request(message) = e {
            return ApiError::bad_request(message);
        }
        tracing::error!(error = %e, "query failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "analytics database unavailable; retry later",
        )
    }
}

type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The query string as name/value pairs.
struct Params(Vec<(String, String)>);

impl Params {
    fn from_query(query: QueryPairs) -> Result<Params, ApiError> {
        query
            .map(|Query(pairs)| Params(pairs))
            .map_err(|e| ApiError::bad_request(format!("query string: {}", e.body_text())))
    }

    /// The value of `name`; a parameter given twice is an error.
    fn get(&self, name: &str) -> Result<Option<&str>, ApiError> {
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
    fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.0.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((k, _)) => Err(ApiError::bad_request(format!(
                "{k}: unknown parameter (expected {})",
                allowed.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// An integer in `min..=max`, or `default` when absent.
    fn int(&self, name: &str, min: u64, max: u64, default: u64) -> Result<u64, ApiError> {
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
const COMMON_PARAMS: [&str; 7] = [
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
enum Format {
    Json,
    Csv,
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

/// Whether `Cache-Control` asks for a fresh answer (`no-cache`,
/// `no-store` or `max-age=0`, as browsers send on a forced reload).
fn wants_fresh(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .any(|d| d == "no-cache" || d == "no-store" || d == "max-age=0")
}

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
        let filter = auth::resolve(
            scope,
            params.get("org")?,
            params.get("issuer")?,
            params.get("badge_class")?,
        )?;
        let now = u32::try_from(chrono::Utc::now().timestamp().max(0)).unwrap_or(u32::MAX);
        let spec = WindowSpec::parse(params.get("from")?, params.get("to")?)
            .map_err(ApiError::bad_request)?;
        let window = spec.at(now).map_err(ApiError::bad_request)?;
        let format = match params.get("format")? {
            None | Some("json") => Format::Json,
            Some("csv") => Format::Csv,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "format: expected json or csv, got {other:?}"
                )))
            }
        };
        Ok(ApiRequest {
            params,
            filter,
            spec,
            window,
            format,
            fresh: wants_fresh(headers),
        })
    }

    /// The analytics to answer with: through the result cache unless the
    /// client asked for fresh data.
    fn analytics<'s>(&self, s: &'s AppState) -> Cow<'s, Analytics> {
        if self.fresh {
            Cow::Owned(s.analytics.bypassing_cache())
        } else {
            Cow::Borrowed(&s.analytics)
        }
    }

    /// The answer to `question` in the request's scope and window.
    async fn answer(&self, s: &AppState, question: Question) -> Result<Answer, ApiError> {
        Ok(self
            .analytics(s)
            .answer(&self.filter, self.spec, question)
            .await?)
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
        match self.format {
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
}

/// `GET /api/v1/overview` (SPEC §7.1).
#[tracing::instrument(skip_all)]
async fn overview(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &[])?;
    req.reply(&s, Question::Overview).await
}

/// `GET /api/v1/distribution?dimension=…` (SPEC §7.2).
#[tracing::instrument(skip_all)]
async fn distribution(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &["dimension"])?;
    let dimension = dimension_param(&req.params)?;
    req.reply(&s, Question::Distribution(dimension)).await
}

/// The required `dimension` parameter.
fn dimension_param(params: &Params) -> Result<Dimension, ApiError> {
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
fn metric_param(param: &str, value: &str) -> Result<&'static str, ApiError> {
    analytics::metric(value).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{param}: unknown metric {value:?} (expected one of {})",
            NAMES.join(", ")
        ))
    })
}

/// `GET /api/v1/top-badges?sort=performance&order=desc&limit=20` (SPEC §7.3).
#[tracing::instrument(skip_all)]
async fn top_badges(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &["sort", "order", "limit"])?;
    let ranking = ranking_param(&req.params)?;
    req.reply(&s, Question::TopBadges(ranking)).await
}

/// The `sort`, `order` and `limit` parameters of top badges.
fn ranking_param(params: &Params) -> Result<Ranking, ApiError> {
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
const DEFAULT_TREND_METRICS: [&str; 4] = ["awarded", "accepted", "shared", "views"];

/// `GET /api/v1/trends?metrics=…&granularity=day` (SPEC §7.4).
#[tracing::instrument(skip_all)]
async fn trends(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &["metrics", "granularity"])?;
    let question = trend_param(&req.params, req.window)?;
    req.reply(&s, question).await
}

/// The trend asked for by the `metrics` and `granularity` parameters,
/// checked against `window`.
fn trend_param(params: &Params, window: Window) -> Result<Question, ApiError> {
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
fn trend_question(
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
fn granularity_param(params: &Params) -> Result<Granularity, ApiError> {
    match params.get("granularity")? {
        None => Ok(Granularity::Day),
        Some(v) => Granularity::parse(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "granularity: expected one of minute, hour, day, week, month, got {v:?}"
            ))
        }),
    }
}

/// `GET /api/v1/drivers` (SPEC §7.5).
#[tracing::instrument(skip_all)]
async fn drivers(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &[])?;
    req.reply(&s, Question::Drivers).await
}

/// `GET /api/v1/lifecycle` (SPEC §7.6).
#[tracing::instrument(skip_all)]
async fn lifecycle(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &[])?;
    req.reply(&s, Question::Lifecycle).await
}

/// `GET /api/v1/annotations`: those in scope with `at` in the window.
#[tracing::instrument(skip_all)]
async fn list_annotations(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &["limit"])?;
    let limit = req
        .params
        .int("limit", 1, MAX_ANNOTATIONS, DEFAULT_ANNOTATIONS)?;
    let body = req
        .analytics(&s)
        .annotations(&req.filter, req.window, limit)
        .await?;
    Ok(req.respond(&body))
}

/// The fields of a new annotation.
const ANNOTATION_FIELDS: [&str; 6] = ["at", "title", "text", "org", "issuer", "badge_class"];

/// The scope parameters, which `POST /api/v1/annotations` takes in its
/// query string like every GET, or in its body.
const SCOPE_PARAMS: [&str; 3] = ["org", "issuer", "badge_class"];

/// `POST /api/v1/annotations[?org=&issuer=&badge_class=]` with
/// `{"at","title","text"?,"org"?,"issuer"?,"badge_class"?}`: `201` and the
/// stored annotation. The scope is given as query parameters or body
/// fields (both given and different: `400` naming it) and resolved against
/// the key like a GET's: a scoped key fills in its own scope and cannot
/// create outside it. Every read that starts after the `201` includes it
/// (`QueryCache::apply_write`).
#[tracing::instrument(skip_all)]
async fn create_annotation(
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
    let target = auth::resolve(scope, org, issuer, badge_class)?;
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

/// The extra parameters of each chart: its JSON endpoint's, plus the size.
fn chart_params(kind: ChartKind) -> &'static [&'static str] {
    match kind {
        ChartKind::Overview | ChartKind::Drivers | ChartKind::Lifecycle => &["width", "height"],
        ChartKind::Distribution => &["dimension", "width", "height"],
        ChartKind::TopBadges => &["sort", "order", "limit", "width", "height"],
        ChartKind::Trends => &["metrics", "granularity", "width", "height"],
    }
}

/// Refuses `format` where the answer has one fixed format.
fn no_format(params: &Params, why: &str) -> Result<(), ApiError> {
    match params.get("format")? {
        None => Ok(()),
        Some(_) => Err(ApiError::bad_request(format!(
            "format: not accepted here; {why}"
        ))),
    }
}

/// `GET /api/v1/charts/{overview|trends|distribution|top-badges|drivers|lifecycle}.{png|svg}`:
/// the matching JSON endpoint's body drawn as a chart of
/// `width`×`height` pixels.
#[tracing::instrument(skip_all, fields(file = %file))]
async fn chart(
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
    let req = ApiRequest::new(&s, &headers, query, chart_params(kind))?;
    no_format(
        &req.params,
        "the file extension (.png or .svg) selects the format",
    )?;
    let size = Size::parse(req.params.get("width")?, req.params.get("height")?)
        .map_err(ApiError::bad_request)?;
    let question = match kind {
        ChartKind::Overview => Question::Overview,
        ChartKind::Trends => trend_param(&req.params, req.window)?,
        ChartKind::Distribution => Question::Distribution(dimension_param(&req.params)?),
        ChartKind::TopBadges => Question::TopBadges(ranking_param(&req.params)?),
        ChartKind::Drivers => Question::Drivers,
        ChartKind::Lifecycle => Question::Lifecycle,
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
async fn report(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let req = ApiRequest::new(&s, &headers, query, &["granularity"])?;
    no_format(&req.params, "the report is HTML")?;
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
    let html = crate::report::render(&crate::report::ReportData {
        overview,
        trends,
        distributions: vec![d0, d1, d2, d3],
        top_badges,
        drivers,
        lifecycle,
        generated_at: chrono::Utc::now().timestamp(),
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, crate::report::CSP),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        html,
    )
        .into_response())
}

/// `GET /api/v1/openapi.json`.
async fn openapi(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let params = Params::from_query(query)?;
    authenticate(&s.keys, &headers, &params)?;
    params.only(&["access_token"])?;
    Ok(Json(crate::openapi::document()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use axum::body::Body;
    use tower::ServiceExt;

    use crate::analytics::Settings;
    use crate::store::Store;

    fn app() -> Router {
        let metrics = Metrics::new();
        // Nothing listens here: requests that reach the store fail fast.
        let client = clickhouse::Client::default()
            .with_url("http://127.0.0.1:9")
            .with_database("bp_test");
        let keys = ApiKeys::from_config(&[
            crate::config::ApiKeyConfig {
                sha256: auth::hash_key("adm"),
                scope: "admin".into(),
            },
            crate::config::ApiKeyConfig {
                sha256: auth::hash_key("acme"),
                scope: "org:acme".into(),
            },
            crate::config::ApiKeyConfig {
                sha256: auth::hash_key("b1"),
                scope: "badge:acme/b1".into(),
            },
        ])
        .unwrap();
        let store = Store::new(client, metrics.clone(), Duration::from_secs(5));
        router(Arc::new(AppState {
            analytics: Analytics::new(
                store,
                Settings::from_config(&crate::config::ExporterConfig::default()),
            ),
            keys,
            metrics,
            body_timeout: Duration::from_secs(2),
        }))
    }

    async fn send(
        method: &str,
        uri: &str,
        bearer: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = axum::http::Request::builder().method(method).uri(uri);
        if let Some(k) = bearer {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let resp = app()
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    async fn get(uri: &str, bearer: Option<&str>) -> (StatusCode, serde_json::Value) {
        send("GET", uri, bearer, "").await
    }

    /// `uri` answers 400 with an error naming `param`.
    async fn bad(uri: &str, param: &str) {
        let (status, body) = get(uri, Some("adm")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.starts_with(&format!("{param}:")), "{uri}: {msg}");
    }

    #[tokio::test]
    async fn errors_are_json_naming_the_parameter() {
        let (status, body) = get("/api/v1/overview", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            body["error"].as_str().unwrap().contains("API key"),
            "{body}"
        );

        let (status, _) = get("/api/v1/overview?access_token=nope", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let (status, body) = get("/api/v1/overview?org=globex", Some("acme")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            body["error"].as_str().unwrap().starts_with("org:"),
            "{body}"
        );

        let (status, body) = get(
            "/api/v1/overview?from=2024-03-10&to=2024-03-01",
            Some("acme"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"].as_str().unwrap().starts_with("from:"),
            "{body}"
        );

        let (status, body) = get("/api/v1/overview?to=tomorrow&access_token=acme", None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().starts_with("to:"), "{body}");

        bad("/api/v1/overview?org=a&org=b", "org").await;

        let (status, body) = get("/api/v1/nope", Some("adm")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"].is_string());
    }

    #[tokio::test]
    async fn every_endpoint_checks_its_parameters() {
        // Unauthenticated requests learn nothing about their parameters.
        let (status, _) = get("/api/v1/trends?granularity=year", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        bad("/api/v1/overview?granularity=day", "granularity").await;
        bad("/api/v1/overview?format=xml", "format").await;
        bad("/api/v1/distribution", "dimension").await;
        bad("/api/v1/distribution?dimension=channel", "dimension").await;
        bad("/api/v1/top-badges?sort=fame", "sort").await;
        bad("/api/v1/top-badges?order=up", "order").await;
        bad("/api/v1/top-badges?limit=0", "limit").await;
        bad("/api/v1/top-badges?limit=1001", "limit").await;
        bad("/api/v1/top-badges?limit=ten", "limit").await;
        bad("/api/v1/trends?granularity=year", "granularity").await;
        bad("/api/v1/trends?metrics=views,fame", "metrics").await;
        bad("/api/v1/trends?metrics=views,,awarded", "metrics").await;
        bad("/api/v1/trends?metrics=views,views", "metrics").await;
        // The default window (30 days) has 43,200 minutes.
        bad("/api/v1/trends?granularity=minute", "granularity").await;
        bad("/api/v1/drivers?sort=views", "sort").await;
        bad("/api/v1/lifecycle?dimension=x", "dimension").await;
        bad("/api/v1/annotations?limit=100000", "limit").await;
        bad("/api/v1/openapi.json?format=csv", "format").await;
        bad("/api/v1/lifecycle?issuer=i1", "org").await;
    }

    #[tokio::test]
    async fn annotations_are_validated_before_storing() {
        let post = |key: &'static str, body: &'static str| async move {
            send("POST", "/api/v1/annotations", Some(key), body).await
        };
        let (status, _) = send("POST", "/api/v1/annotations", None, "{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let cases = [
            ("acme", "nope", StatusCode::BAD_REQUEST, "body:"),
            ("acme", "[1]", StatusCode::BAD_REQUEST, "body:"),
            ("acme", r#"{"title":"x"}"#, StatusCode::BAD_REQUEST, "at:"),
            (
                "acme",
                r#"{"at":"2024-03-01"}"#,
                StatusCode::BAD_REQUEST,
                "title:",
            ),
            (
                "acme",
                r#"{"at":"2024-03-01","title":""}"#,
                StatusCode::BAD_REQUEST,
                "title:",
            ),
            (
                "acme",
                r#"{"at":"2024-03-01","title":"x","colour":"red"}"#,
                StatusCode::BAD_REQUEST,
                "colour:",
            ),
            (
                "acme",
                r#"{"at":"2024-03-01","title":5}"#,
                StatusCode::BAD_REQUEST,
                "title:",
            ),
            (
                "acme",
                r#"{"at":"2024-03-01","title":"x","org":"globex"}"#,
                StatusCode::FORBIDDEN,
                "org:",
            ),
            (
                "b1",
                r#"{"at":"2024-03-01","title":"x","badge_class":"b2"}"#,
                StatusCode::FORBIDDEN,
                "badge_class:",
            ),
            (
                "adm",
                r#"{"at":"2024-03-01","title":"x"}"#,
                StatusCode::BAD_REQUEST,
                "org:",
            ),
        ];
        for (key, body, status, prefix) in cases {
            let (got, json) = post(key, body).await;
            assert_eq!(got, status, "{body}: {json}");
            assert!(
                json["error"].as_str().unwrap().starts_with(prefix),
                "{body}: {json}"
            );
        }
        let big = format!(
            r#"{{"at":"2024-03-01","title":"x","text":"{}"}}"#,
            "y".repeat(MAX_ANNOTATION_BODY)
        );
        let (status, json) = send("POST", "/api/v1/annotations", Some("acme"), &big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{json}");
        assert!(json["error"].as_str().unwrap().starts_with("body:"));
        // The scope in the query string, as every GET takes it.
        let in_query = [
            (
                "adm",
                "/api/v1/annotations?org=acme&org=acme",
                r#"{"at":"2024-03-01","title":"x"}"#,
                StatusCode::BAD_REQUEST,
                "org:",
            ),
            (
                "adm",
                "/api/v1/annotations?org=acme",
                r#"{"at":"2024-03-01","title":"x","org":"globex"}"#,
                StatusCode::BAD_REQUEST,
                "org:",
            ),
            (
                "acme",
                "/api/v1/annotations?issuer=i1",
                r#"{"at":"2024-03-01","title":"x","issuer":"i2"}"#,
                StatusCode::BAD_REQUEST,
                "issuer:",
            ),
            (
                "acme",
                "/api/v1/annotations?org=globex",
                r#"{"at":"2024-03-01","title":"x"}"#,
                StatusCode::FORBIDDEN,
                "org:",
            ),
            (
                "acme",
                "/api/v1/annotations?limit=3",
                r#"{"at":"2024-03-01","title":"x"}"#,
                StatusCode::BAD_REQUEST,
                "limit:",
            ),
        ];
        for (key, path, body, status, prefix) in in_query {
            let (got, json) = send("POST", path, Some(key), body).await;
            assert_eq!(got, status, "{path} {body}: {json}");
            assert!(
                json["error"].as_str().unwrap().starts_with(prefix),
                "{path} {body}: {json}"
            );
        }
        // Valid annotations reach the (absent) store: the scope in the
        // body, in the query string, or in both alike.
        let (status, _) = post("b1", r#"{"at":"2024-03-01","title":"Launch"}"#).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        for (path, body) in [
            (
                "/api/v1/annotations?org=acme",
                r#"{"at":"2024-03-01","title":"x"}"#,
            ),
            (
                "/api/v1/annotations?org=acme&issuer=i1",
                r#"{"at":"2024-03-01","title":"x","org":"acme"}"#,
            ),
        ] {
            let (status, json) = send("POST", path, Some("adm"), body).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {json}");
        }
    }

    #[tokio::test]
    async fn openapi_describes_every_route() {
        let (status, doc) = get("/api/v1/openapi.json", Some("acme")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(doc["openapi"], "3.0.3");
        for (path, methods) in API_ROUTES {
            for m in methods {
                assert!(
                    doc["paths"][path][m].is_object(),
                    "{m} {path} missing from the OpenAPI document"
                );
                // And the router serves it (401 without a key, not 404/405).
                let (status, _) = send(&m.to_uppercase(), path, None, "").await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{m} {path}");
            }
        }
        let documented = doc["paths"].as_object().unwrap().len();
        assert_eq!(documented, API_ROUTES.len());
        // Every parameter a chart accepts is documented on the chart path.
        let chart_doc: Vec<&str> = doc["paths"]["/api/v1/charts/{chart}.{ext}"]["get"]
            ["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for kind in ChartKind::ALL {
            for p in chart_params(kind) {
                assert!(chart_doc.contains(p), "chart parameter {p} undocumented");
            }
            assert!(doc.to_string().contains(&format!("\"{}\"", kind.as_str())));
        }
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
        assert_eq!(schemes["accessToken"]["name"], "access_token");
        // Every $ref resolves.
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/").skip(1) {
            let target = &r[..r.find('"').unwrap()];
            let (kind, name) = target.split_once('/').unwrap();
            assert!(
                doc["components"][kind][name].is_object(),
                "dangling $ref {target}"
            );
        }
    }

    #[tokio::test]
    async fn charts_and_report_check_their_parameters() {
        // Authentication first, whatever the chart or parameter.
        for uri in [
            "/api/v1/charts/overview.png",
            "/api/v1/charts/pie.png?width=1",
            "/report?granularity=year",
        ] {
            let (status, _) = get(uri, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        }
        for uri in ["/api/v1/charts/pie.png", "/api/v1/charts/overview.gif"] {
            let (status, body) = get(uri, Some("adm")).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
            assert!(body["error"].as_str().unwrap().starts_with("chart:"));
        }
        bad("/api/v1/charts/overview.png?width=199", "width").await;
        bad("/api/v1/charts/overview.svg?width=4001", "width").await;
        bad("/api/v1/charts/lifecycle.svg?height=big", "height").await;
        bad("/api/v1/charts/overview.svg?format=csv", "format").await;
        // Each chart takes its JSON endpoint's parameters, and only those.
        bad(
            "/api/v1/charts/overview.svg?dimension=award_method",
            "dimension",
        )
        .await;
        bad("/api/v1/charts/distribution.svg", "dimension").await;
        bad("/api/v1/charts/top-badges.png?limit=0", "limit").await;
        bad(
            "/api/v1/charts/trends.png?granularity=minute",
            "granularity",
        )
        .await;
        bad("/api/v1/charts/trends.svg?metrics=fame", "metrics").await;
        bad("/api/v1/charts/drivers.svg?sort=views", "sort").await;
        bad("/report?sort=views", "sort").await;
        bad("/report?format=csv", "format").await;
        bad("/report?granularity=minute", "granularity").await;
        let (status, body) = get("/report?org=globex", Some("acme")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, _) = get("/report?access_token=b1&badge_class=b2", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn health_and_metrics_are_not_on_the_api_listener() {
        for path in badgepulse_runtime::ops::ADMIN_PATHS {
            for key in [None, Some("adm")] {
                let (status, json) = get(path, key).await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {json}");
            }
        }
    }

    #[tokio::test]
    async fn store_failure_is_503_json() {
        for uri in [
            "/api/v1/overview?from=2024-03-01",
            "/api/v1/distribution?dimension=view_country",
            "/api/v1/top-badges",
            "/api/v1/trends?format=csv",
            "/api/v1/drivers",
            "/api/v1/lifecycle",
            "/api/v1/annotations",
            "/api/v1/charts/overview.png?width=300",
            "/api/v1/charts/distribution.svg?dimension=share_channel",
            "/report",
        ] {
            let (status, body) = get(uri, Some("acme")).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
            assert!(body["error"].is_string(), "{uri}: {body}");
        }
    }
}
