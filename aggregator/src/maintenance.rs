//! The aggregator's duties beside consuming: dropping expired rollup
//! partitions (`retention.rs` says which), compacting `scope_total` and
//! sealing the unique viewers of closed days, each a loop until shutdown.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::AggregatorConfig;
use crate::consume::Settled;
use crate::metrics::Metrics;
use crate::shards::Shards;
use crate::store::{within, Store, StoreError};

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

/// Every `interval`, seals what the exporter would otherwise count from
/// rows, for the partitions this instance consumes, each on the node of
/// its shard (`shards`), where all its rows are:
///
/// - for each org day whose views with a viewer key went past its last
///   seal (`view_days`), the distinct viewer keys counted exactly from
///   `events` into `viewer_hours` and `viewer_days`. A day counts as
///   closed ten minutes after midnight (views still in flight then reseal
///   it);
/// - for each org award day whose cohort changed after its last seal
///   (`lifecycle_touches`), what its cohort holds (stage counts, timing
///   slots, stage reach days, accept delays) into `lifecycle_days`, today
///   included.
///
/// Both wait until the partition's consumer has written a batch since it
/// started and since its last failed write ([`Settled`]): a touch
/// (`view_days`, `lifecycle_touches`) whose rows a cut write left out (the
/// views of one insert may fill in any order on current ClickHouse) is
/// then recovered before its day is sealed. Sealed before, the day would
/// keep a seal as recent as its touch without the rows, for good.
///
/// Each day is sealed under the write half of the batch lock: a batch
/// half-written (its `view_days` row visible before its `events` rows)
/// would otherwise be sealed without its views. Readers never trust a
/// seal older than the day's last change (`view_days`,
/// `lifecycle_touches`), so sealing changes no answer, it only lets the
/// exporter read one number per day.
pub async fn sealing(
    shards: Shards,
    interval: std::time::Duration,
    limit: std::time::Duration,
    batch_lock: Arc<tokio::sync::RwLock<()>>,
    settled: Settled,
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
            let consistent = settled
                .lock()
                .expect("settled set poisoned")
                .contains(&partition);
            if !consistent {
                continue;
            }
            let viewers = seal_viewers(store, partition, before, limit, &batch_lock, &metrics);
            failed(partition, "unique viewers", viewers.await, &metrics);
            let lifecycle = seal_lifecycle(store, partition, limit, &batch_lock, &metrics);
            failed(partition, "lifecycle", lifecycle.await, &metrics);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// How many award days one lifecycle seal statement takes, under the
/// batch lock, and how many statements one pass runs per partition: a
/// history's days are sealed up to a thousand per partition and pass,
/// each statement short enough not to hold batches back.
const LIFECYCLE_SEAL_DAYS: u64 = 100;
const LIFECYCLE_SEALS_PER_PASS: usize = 10;

/// Counts and logs a sealing pass that stopped at a failure; the days
/// left wait for the next pass.
fn failed(partition: u16, what: &str, outcome: Result<(), StoreError>, metrics: &Metrics) {
    if let Err(e) = outcome {
        metrics.seals.with_label_values(&["failed"]).inc();
        tracing::warn!(partition, what, error = %e, "sealing failed; next try in one interval");
    }
}

/// Seals up to [`SEAL_BATCH`] org days' unique viewers of one partition,
/// one statement each.
async fn seal_viewers(
    store: &Store,
    partition: u16,
    before: u32,
    limit: std::time::Duration,
    batch_lock: &tokio::sync::RwLock<()>,
    metrics: &Metrics,
) -> Result<(), StoreError> {
    let days = within(
        limit,
        "listing days to seal",
        store.days_to_seal(partition, before, SEAL_BATCH),
    )
    .await?;
    for day in &days {
        let _exclusive = batch_lock.write().await;
        within(limit, "seal", store.seal(day)).await?;
        metrics.seals.with_label_values(&["ok"]).inc();
        tracing::debug!(
            partition,
            org = day.org_id,
            day = day.day,
            "sealed unique viewers"
        );
    }
    Ok(())
}

/// Seals the lifecycle of the award days of one partition that changed
/// after their last seal, [`LIFECYCLE_SEAL_DAYS`] a statement.
async fn seal_lifecycle(
    store: &Store,
    partition: u16,
    limit: std::time::Duration,
    batch_lock: &tokio::sync::RwLock<()>,
    metrics: &Metrics,
) -> Result<(), StoreError> {
    for _ in 0..LIFECYCLE_SEALS_PER_PASS {
        let days = {
            let _exclusive = batch_lock.write().await;
            let listed = store.lifecycle_days_to_seal(partition, LIFECYCLE_SEAL_DAYS);
            let days = within(limit, "listing days to seal", listed).await?;
            if days.is_empty() {
                return Ok(());
            }
            let seal = store.seal_lifecycle_days(partition, &days);
            within(limit, "seal", seal).await?;
            days
        };
        metrics.seals.with_label_values(&["ok"]).inc();
        tracing::debug!(partition, days = days.len(), "sealed lifecycle days");
        if (days.len() as u64) < LIFECYCLE_SEAL_DAYS {
            return Ok(());
        }
    }
    Ok(())
}
