//! The API listener (SPEC §8): one route table ([`routes`]) from which the
//! router, the OpenAPI check and the tests all read; the handlers
//! ([`api`]); their parameters ([`params`]), keys ([`auth`]) and error
//! answers ([`errors`]); `ETag` and `304 Not Modified` for every GET
//! ([`etag`]). The admin listener (`/healthz`, `/readyz`,
//! `/metrics`) is `badgepulse_runtime::ops`', wired in `main.rs`.
//!
//! Imports `render`, `analytics`, `freshness` (the read mode), `model` and
//! `telemetry`.

pub mod api;
pub mod auth;
pub mod errors;
pub mod etag;
pub mod params;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, MethodRouter};
use axum::Router;

use crate::analytics::Analytics;
use crate::telemetry::Metrics;
use api::MAX_ANNOTATION_BODY;
use auth::ApiKeys;
use errors::ApiError;

/// What every handler needs.
pub struct AppState {
    pub analytics: Analytics,
    pub keys: ApiKeys,
    pub metrics: Metrics,
    /// How long a request body may take to arrive
    /// (`exporter.header_read_timeout_secs`).
    pub body_timeout: Duration,
}

/// One route of the API listener.
pub struct Route {
    /// As the router matches it.
    pub path: &'static str,
    /// As the OpenAPI document names it.
    pub documented: &'static str,
    pub methods: &'static [&'static str],
    handler: MethodRouter<Arc<AppState>>,
}

/// Every route of the API listener, in the order the OpenAPI document
/// lists them.
pub fn routes() -> Vec<Route> {
    let route = |path, methods, handler| Route {
        path,
        documented: path,
        methods,
        handler,
    };
    vec![
        route("/api/v1/overview", &["get"], get(api::overview)),
        route("/api/v1/distribution", &["get"], get(api::distribution)),
        route("/api/v1/top-badges", &["get"], get(api::top_badges)),
        route("/api/v1/trends", &["get"], get(api::trends)),
        route("/api/v1/drivers", &["get"], get(api::drivers)),
        route("/api/v1/lifecycle", &["get"], get(api::lifecycle)),
        route("/api/v1/impact", &["get"], get(api::impact)),
        route("/api/v1/timing", &["get"], get(api::timing)),
        route("/api/v1/cohorts", &["get"], get(api::cohorts)),
        route("/api/v1/benchmark", &["get"], get(api::benchmark)),
        route(
            "/api/v1/annotations",
            &["get", "post"],
            get(api::list_annotations)
                .post(api::create_annotation)
                .layer(DefaultBodyLimit::max(MAX_ANNOTATION_BODY)),
        ),
        route("/api/v1/scopes", &["get"], get(api::scopes)),
        route("/api/v1/openapi.json", &["get"], get(api::openapi)),
        Route {
            // One capture: `{chart}.{ext}` is parsed by the handler.
            path: "/api/v1/charts/{file}",
            documented: "/api/v1/charts/{chart}.{ext}",
            methods: &["get"],
            handler: get(api::chart),
        },
        route("/report", &["get"], get(api::report)),
    ]
}

/// Every route as documented, with its methods.
pub fn api_routes() -> Vec<(&'static str, &'static [&'static str])> {
    routes()
        .into_iter()
        .map(|r| (r.documented, r.methods))
        .collect()
}

/// The `route` label of a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

pub fn router(state: Arc<AppState>) -> Router {
    let routes = routes();
    state
        .metrics
        .http_durations
        .declare(routes.iter().map(|r| r.path).chain([UNMATCHED_ROUTE]));
    routes
        .into_iter()
        .fold(Router::new(), |router, r| router.route(r.path, r.handler))
        .route_layer(middleware::from_fn(etag::conditional))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .fallback(not_found)
        .with_state(state)
}

/// Counts and times responses by matched route (the template of the
/// route table, e.g. `/api/v1/charts/{file}`) and status.
async fn count_requests(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| UNMATCHED_ROUTE.into());
    let response = next.run(req).await;
    s.metrics
        .count_request(&route, response.status().as_u16(), started);
    response
}

async fn not_found(State(s): State<Arc<AppState>>) -> ApiError {
    let started = Instant::now();
    let error = ApiError::new(StatusCode::NOT_FOUND, "no such endpoint");
    s.metrics.count_request(UNMATCHED_ROUTE, 404, started);
    error
}
