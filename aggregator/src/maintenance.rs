//! The aggregator's duties beside consuming: dropping expired rollup
//! partitions (`retention.rs` says which), compacting `scope_total` and
//! sealing the unique viewers of closed days, each a loop until shutdown.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::AggregatorConfig;
use crate::metrics::Metrics;
use crate::shards::Shards;
use crate::store::within;

/// Drops expired rollup partitions at start-up and then hourly, those
/// each node this instance writes through holds (on every replica of its
/// shard: `ON CLUSTER`).
pub async fn retention(
    shards: Shards,
    config: AggregatorConfig,
    batch_lock: Arc<tokio::sync::RwLock<()>>,
    shutdown: CancellationToken,
) {
    loop {
        {
            let _exclusive = batch_lock.write().await;
            for store in shards.nodes() {
                let run = store.enforce_retention(&config, chrono::Utc::now());
                if let Err(e) = within(config.write_timeout(), "retention run", run).await {
                    tracing::warn!(node = store.url, error = %e, "retention run failed; next try in an hour");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
        }
    }
}

/// Every `interval`, merges the parts of `scope_total` on each node this
/// instance writes through (`crate::store::Store::compact_totals`): in a
/// cluster, one node of each shard it writes, whose merge the shard's
/// other replicas repeat. Instances sharing a node repeat the work, one
/// rewrite of a small table each.
pub async fn compaction(
    shards: Shards,
    interval: std::time::Duration,
    limit: std::time::Duration,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        for store in shards.nodes() {
            let started = std::time::Instant::now();
            match within(limit, "compaction", store.compact_totals()).await {
                Ok(()) => {
                    metrics.compactions.with_label_values(&["ok"]).inc();
                    tracing::debug!(
                        node = store.url,
                        seconds = started.elapsed().as_secs_f64(),
                        "compacted scope_total"
                    );
                }
                Err(e) => {
                    metrics.compactions.with_label_values(&["failed"]).inc();
                    tracing::warn!(node = store.url, error = %e, "compacting scope_total failed; next try in one interval");
                }
            }
        }
    }
}

/// How many org days one sealing pass takes per partition; the rest wait
/// for the next pass (a re-laid database seals its history over a few).
const SEAL_BATCH: u64 = 200;

/// Every `interval`, seals the unique viewers of closed UTC days of the
/// partitions this instance consumes, each on the node of its shard
/// (`shards`), where all its events are: for each org day whose views with
/// a viewer key went past its last seal, counts them exactly from
/// `events` into `viewer_hours` and `viewer_days`. A day counts as closed
/// ten minutes after midnight (views still in flight then reseal it).
///
/// Each day is sealed under the write half of the batch lock: a batch
/// half-written (its `view_days` row visible before its `events` rows)
/// would otherwise be sealed without its views. Readers never trust a
/// seal older than the day's last view (`view_days`), so sealing changes
/// no answer, it only lets the exporter read one number per day.
pub async fn sealing(
    shards: Shards,
    interval: std::time::Duration,
    limit: std::time::Duration,
    batch_lock: Arc<tokio::sync::RwLock<()>>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    loop {
        let closed = (chrono::Utc::now() - chrono::Duration::minutes(10))
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp();
        let before = u32::try_from(closed).unwrap_or(u32::MAX);
        for (partition, store) in shards.partitions() {
            if shutdown.is_cancelled() {
                return;
            }
            let listed = store.days_to_seal(partition, before, SEAL_BATCH);
            let days = match within(limit, "listing days to seal", listed).await {
                Ok(days) => days,
                Err(e) => {
                    tracing::warn!(partition, error = %e, "listing days to seal failed; next try in one interval");
                    continue;
                }
            };
            for day in &days {
                let outcome = {
                    let _exclusive = batch_lock.write().await;
                    within(limit, "seal", store.seal(day)).await
                };
                match outcome {
                    Ok(()) => {
                        metrics.seals.with_label_values(&["ok"]).inc();
                        tracing::debug!(
                            partition,
                            org = day.org_id,
                            day = day.day,
                            "sealed unique viewers"
                        );
                    }
                    Err(e) => {
                        metrics.seals.with_label_values(&["failed"]).inc();
                        tracing::warn!(partition, org = day.org_id, day = day.day, error = %e, "sealing failed; next try in one interval");
                        break;
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
