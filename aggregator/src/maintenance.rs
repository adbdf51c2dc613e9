//! The aggregator's duties beside consuming: dropping expired rollup
//! partitions (`retention.rs` says which) and compacting `scope_total`,
//! each a loop until shutdown.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::AggregatorConfig;
use crate::metrics::Metrics;
use crate::store::Store;

/// Drops expired rollup partitions at start-up and then hourly.
pub async fn retention(
    store: Store,
    config: AggregatorConfig,
    batch_lock: Arc<tokio::sync::RwLock<()>>,
    shutdown: CancellationToken,
) {
    loop {
        {
            let _exclusive = batch_lock.write().await;
            if let Err(e) = store.enforce_retention(&config, chrono::Utc::now()).await {
                tracing::warn!(error = %e, "retention run failed; next try in an hour");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
        }
    }
}

/// Every `interval`, merges the parts of `scope_total` on the node this
/// instance writes through (`crate::store::Store::compact_totals`). Every instance
/// does: in a cluster each compacts its own shard; instances sharing a
/// node repeat the work, one rewrite of a small table each.
pub async fn compaction(
    store: Store,
    interval: std::time::Duration,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let started = std::time::Instant::now();
        match store.compact_totals().await {
            Ok(()) => {
                metrics.compactions.with_label_values(&["ok"]).inc();
                tracing::debug!(
                    seconds = started.elapsed().as_secs_f64(),
                    "compacted scope_total"
                );
            }
            Err(e) => {
                metrics.compactions.with_label_values(&["failed"]).inc();
                tracing::warn!(error = %e, "compacting scope_total failed; next try in one interval");
            }
        }
    }
}
