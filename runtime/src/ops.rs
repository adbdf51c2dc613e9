//! The admin listener every service runs beside its public one:
//! `/healthz` (the process is alive), `/readyz` (it can do its work) and
//! `/metrics` (Prometheus text format), and nothing else.
//!
//! These never share a listener with what the outside world reaches
//! (SPEC §4, §8): the exporter's `/metrics` holds every tenant's business
//! figures, and ingest's public port is reached by any badge page. Bind the
//! admin listener where probes and Prometheus reach it (default loopback).
//!
//! Must not: serve anything a tenant or a badge page should reach, or
//! depend on a service's own types (each service hands in its readiness
//! check and its metrics renderer).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::server;

/// The paths of the admin listener, which every public listener answers
/// `404`.
pub const ADMIN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The admin router: `ready()` says whether the service can do its work
/// (`Err` names what is missing; answered `503`), `metrics()` renders the
/// Prometheus text.
pub fn router<R, RF, M>(ready: R, metrics: M) -> Router
where
    R: Fn() -> RF + Clone + Send + Sync + 'static,
    RF: Future<Output = Result<(), String>> + Send + 'static,
    M: Fn() -> Vec<u8> + Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move { readiness(ready().await) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], metrics()) }
            }),
        )
}

fn readiness(outcome: Result<(), String>) -> Response {
    match outcome {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

/// Binds `addr` (the service's `admin_bind`) and serves `router` on it
/// until `shutdown`, with the same header limits as the public listeners.
/// Binding fails at once, naming `key`; serving runs as a task.
pub fn spawn(
    key: &str,
    addr: SocketAddr,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, String> {
    let listener = server::bind(addr).map_err(|e| format!("binding {key} {addr}: {e}"))?;
    Ok(tokio::spawn(async move {
        server::serve(
            listener,
            router,
            header_read_timeout,
            shutdown,
            server::Threads::Runtime,
        )
        .await
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_path(app: &Router, path: &str) -> (StatusCode, String, Option<String>) {
        let r = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let content_type = r
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (
            status,
            String::from_utf8(body.to_vec()).unwrap(),
            content_type,
        )
    }

    #[tokio::test]
    async fn health_readiness_and_metrics() {
        let ok = router(|| async { Ok(()) }, || b"up 1\n".to_vec());
        assert_eq!(get_path(&ok, "/healthz").await.0, StatusCode::OK);
        assert_eq!(get_path(&ok, "/readyz").await.1, "ready\n");
        let (status, body, content_type) = get_path(&ok, "/metrics").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "up 1\n"));
        assert_eq!(content_type.as_deref(), Some(METRICS_CONTENT_TYPE));
        assert_eq!(get_path(&ok, "/api").await.0, StatusCode::NOT_FOUND);

        let down = router(|| async { Err("nats: not connected".into()) }, Vec::new);
        let (status, body, _) = get_path(&down, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "nats: not connected\n");
        assert_eq!(get_path(&down, "/healthz").await.0, StatusCode::OK);
    }
}
