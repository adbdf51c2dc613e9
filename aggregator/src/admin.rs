//! The aggregator's admin listener (`badgepulse_runtime::ops`): its
//! readiness is NATS connected and every ClickHouse node it writes
//! through answering.

use axum::Router;
use badgepulse_runtime::ops;

use crate::metrics::Metrics;
use crate::store::Store;

/// `/healthz`, `/readyz` and `/metrics` of the aggregator.
pub fn router(metrics: Metrics, nats: async_nats::Client, nodes: Vec<Store>) -> Router {
    ops::router(
        move || {
            let (nats, nodes) = (nats.clone(), nodes.clone());
            async move {
                if nats.connection_state() != async_nats::connection::State::Connected {
                    return Err("nats: not connected".to_owned());
                }
                for node in &nodes {
                    node.ping()
                        .await
                        .map_err(|e| format!("{}: {e}", node.url))?;
                }
                Ok(())
            }
        },
        move || metrics.render(),
    )
}
