//! The exporter's HTTP interface (SPEC §8): the analytics API under
//! `/api/v1/`, `/metrics`, `/healthz` and `/readyz`.
//!
//! Handlers parse and check parameters, authenticate (`auth.rs`), call the
//! store and shape JSON; they hold no SQL. Every error is JSON
//! `{"error": "…"}` naming the parameter at fault; ClickHouse failures are
//! logged and answered 503 without internals.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::auth::{self, ApiKeys, AuthError};
use crate::measures::{self, Counts, Measures, Trend};
use crate::metrics::Metrics;
use crate::queries::{Filter, Period};
use crate::store::{Store, StoreError};
use crate::window::{resolve_window, Window};

/// What every handler needs.
pub struct AppState {
    pub store: Store,
    pub keys: ApiKeys,
    pub metrics: Metrics,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v1/overview", get(overview))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
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
        tracing::error!(error = %e, "query failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "analytics database unavailable; retry later",
        )
    }
}

/// The query string as name/value pairs.
struct Params(Vec<(String, String)>);

impl Params {
    fn from_query(
        query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    ) -> Result<Params, ApiError> {
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
}

/// Authenticates the request and resolves `org`/`issuer`/`badge_class`
/// against the key's scope.
fn authorize(keys: &ApiKeys, headers: &HeaderMap, params: &Params) -> Result<Filter, ApiError> {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let scope = keys.authenticate(authorization, params.get("access_token")?)?;
    Ok(auth::resolve(
        scope,
        params.get("org")?,
        params.get("issuer")?,
        params.get("badge_class")?,
    )?)
}

/// The `[from, to)` window of the request (default: the last 30 days).
fn window(params: &Params) -> Result<Window, ApiError> {
    let now = u32::try_from(chrono::Utc::now().timestamp().max(0)).unwrap_or(u32::MAX);
    resolve_window(params.get("from")?, params.get("to")?, now).map_err(ApiError::bad_request)
}

#[derive(serde::Serialize)]
pub struct PeriodJson {
    from: String,
    to: String,
}

/// `{metric: {"current", "previous", "change"}}` in measure order.
pub struct Trends(Vec<(&'static str, Trend)>);

impl Serialize for Trends {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, trend) in &self.0 {
            map.serialize_entry(name, trend)?;
        }
        map.end()
    }
}

/// The body of `GET /api/v1/overview`.
#[derive(serde::Serialize)]
pub struct Overview {
    scope: Filter,
    period: PeriodJson,
    /// All-time values; `from`/`to` do not apply.
    kpis: Measures,
    /// Values for `[from, to)`.
    period_values: Measures,
    /// The window against the equally long window before it.
    trends: Trends,
}

/// `GET /api/v1/overview` (SPEC §7.1, §8).
#[tracing::instrument(skip_all)]
async fn overview(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Overview>, ApiError> {
    let params = Params::from_query(query)?;
    let filter = authorize(&s.keys, &headers, &params)?;
    let window = window(&params)?;
    tracing::debug!(?filter, from = window.from(), to = window.to(), "overview");

    let previous = async {
        match window.previous() {
            Some(p) => s.store.measure_counts(&filter, Period::Window(p)).await,
            None => Ok(Counts::default()),
        }
    };
    let (all_time, current, previous) = tokio::try_join!(
        s.store.measure_counts(&filter, Period::AllTime),
        s.store.measure_counts(&filter, Period::Window(window)),
        previous,
    )?;
    let current = Measures::derive(current);
    let previous = Measures::derive(previous);
    let body = Overview {
        scope: filter,
        period: PeriodJson {
            from: window.from_rfc3339(),
            to: window.to_rfc3339(),
        },
        kpis: Measures::derive(all_time),
        trends: Trends(measures::trends(&current, &previous)),
        period_values: current,
    };
    Ok(Json(body))
}

async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    match s.store.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        s.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use axum::body::Body;
    use tower::ServiceExt;

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
        ])
        .unwrap();
        router(Arc::new(AppState {
            store: Store::new(client, metrics.clone(), Duration::from_secs(5)),
            keys,
            metrics,
        }))
    }

    async fn get(uri: &str, bearer: Option<&str>) -> (StatusCode, serde_json::Value) {
        let mut req = axum::http::Request::get(uri);
        if let Some(k) = bearer {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let resp = app()
            .oneshot(req.body(Body::empty()).unwrap())
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

        let (status, body) = get("/api/v1/overview?org=a&org=b", Some("adm")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"].as_str().unwrap().starts_with("org:"),
            "{body}"
        );

        let (status, body) = get("/api/v1/nope", Some("adm")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"].is_string());
    }

    #[tokio::test]
    async fn store_failure_is_503_json() {
        let (status, body) = get("/api/v1/overview?from=2024-03-01", Some("acme")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body["error"].is_string(), "{body}");
    }
}
