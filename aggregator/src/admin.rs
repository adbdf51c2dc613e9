//! Admin HTTP of the aggregator: `/healthz` (process alive), `/readyz`
//! (NATS connected and ClickHouse answering), `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, TextEncoder};

use crate::metrics::Metrics;
use crate::store::Store;

pub struct AdminState {
    pub metrics: Metrics,
    pub nats: async_nats::Client,
    pub store: Store,
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    if s.nats.connection_state() != async_nats::connection::State::Connected {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "nats: not connected\n".to_owned(),
        );
    }
    match s.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

async fn metrics(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&s.metrics.registry.gather(), &mut buf)
        .expect("text encoding of gathered metrics");
    (
        [(
            header::CONTENT_TYPE,
            TextEncoder::new().format_type().to_owned(),
        )],
        buf,
    )
}
