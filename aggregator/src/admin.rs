//! The aggregator's admin listener (`badgepulse_runtime::ops`): its
//! readiness is NATS connected and ClickHouse answering.

use axum::Router;
use badgepulse_runtime::ops;

use crate::metrics::Metrics;
use crate::store::Store;

/// `/healthz`, `/readyz` and `/metrics` of the aggregator.
pub fn router(metrics: Metrics, nats: async_nats::Client, store: Store) -> Router {
    ops::router(
        move || {
            let (nats, store) = (nats.clone(), store.clone());
            async move {
                if nats.connection_state() != async_nats::connection::State::Connected {
                    return Err("nats: not connected".to_owned());
                }
                store.ping().await.map_err(|e| e.to_string())
            }
        },
        move || metrics.render(),
    )
}
