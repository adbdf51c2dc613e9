//! Publishing to JetStream (SPEC §5).
//!
//! - Platform events: one message per event, `Nats-Msg-Id = event_id`,
//!   all of a request pipelined, answered only when every PubAck is in.
//! - Beacons: a bounded queue feeds the batcher, which groups them by
//!   (partition, type) into messages of up to `batch_max_beacons`, each with
//!   a fresh UUIDv7 batch id as `Nats-Msg-Id`. A batch is retried with the
//!   same id and payload until JetStream acks it, so a beacon taken into a
//!   batch is neither lost nor published twice (JetStream drops the copy
//!   inside its duplicate window; past half the window the retry is no
//!   longer marked as beacons, so the aggregator checks its ids).
//!
//! Must not: answer a platform request before its PubAcks, or block a pixel
//! request on NATS (a full queue drops the beacon and counts it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage as Publish};
use badgepulse_contract::event::{encode_payload, Event, EventType};
use badgepulse_contract::subject::{event_subject, partition_of, BEACON_HEADER};
use bytes::Bytes;
use rand::Rng;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::metrics::Metrics;

/// Why platform events could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("JetStream did not take the write: {0}")]
    Unavailable(String),
}

/// Publishes platform events, returning (stored, duplicates) once every
/// PubAck has arrived.
pub async fn publish_events(
    js: &jetstream::Context,
    events: &[Event],
    partitions: u16,
    timeout: Duration,
    metrics: &Metrics,
) -> Result<(usize, usize), PublishError> {
    let started = Instant::now();
    let work = async {
        let mut acks = Vec::with_capacity(events.len());
        for e in events {
            let subject = event_subject(partition_of(&e.org_id, partitions), e.kind);
            let msg = Publish::build()
                .payload(Bytes::from(encode_payload(std::slice::from_ref(e))))
                .message_id(&e.event_id);
            let ack = js
                .send_publish(subject, msg)
                .await
                .map_err(|err| PublishError::Unavailable(err.to_string()))?;
            acks.push(ack);
        }
        let mut duplicates = 0;
        for ack in acks {
            let ack = ack
                .await
                .map_err(|err| PublishError::Unavailable(err.to_string()))?;
            duplicates += usize::from(ack.duplicate);
        }
        Ok((events.len() - duplicates, duplicates))
    };
    let outcome = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(PublishError::Unavailable(format!(
            "no PubAck within {} ms",
            timeout.as_millis()
        ))),
    };
    match &outcome {
        Ok(_) => metrics
            .publish_seconds
            .with_label_values(&["event"])
            .observe(started.elapsed().as_secs_f64()),
        Err(_) => metrics.publish_failures.with_label_values(&["event"]).inc(),
    }
    outcome
}

/// The pixel side of the queue: never waits.
#[derive(Clone)]
pub struct BeaconQueue {
    tx: mpsc::Sender<Event>,
    metrics: Metrics,
}

impl BeaconQueue {
    /// Hands a beacon to the batcher; false (and nothing queued) when full.
    pub fn offer(&self, event: Event) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => {
                self.metrics.buffer_depth.inc();
                true
            }
            Err(_) => false,
        }
    }
}

/// Batching parameters.
#[derive(Debug, Clone)]
pub struct BatcherConfig {
    pub capacity: usize,
    pub max_beacons: usize,
    pub max_delay: Duration,
    pub max_inflight: usize,
    pub partitions: u16,
    pub duplicate_window: Duration,
}

/// Creates the queue and its batcher task. The batcher ends when every
/// `BeaconQueue` clone is dropped and all batches are published, or when
/// `give_up` fires (then remaining batches are abandoned, logged).
pub fn spawn_batcher(
    js: jetstream::Context,
    config: BatcherConfig,
    metrics: Metrics,
    give_up: tokio_util::sync::CancellationToken,
) -> (BeaconQueue, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(config.capacity);
    let queue = BeaconQueue {
        tx,
        metrics: metrics.clone(),
    };
    let handle = tokio::spawn(run_batcher(rx, js, config, metrics, give_up));
    (queue, handle)
}

async fn run_batcher(
    mut rx: mpsc::Receiver<Event>,
    js: jetstream::Context,
    config: BatcherConfig,
    metrics: Metrics,
    give_up: tokio_util::sync::CancellationToken,
) {
    let inflight = Arc::new(Semaphore::new(config.max_inflight));
    let mut tasks = JoinSet::new();
    let mut groups: HashMap<(u16, EventType), Vec<Event>> = HashMap::new();
    let mut oldest: Option<Instant> = None;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let wait = oldest.map_or(Duration::from_secs(3600), |t| {
            config.max_delay.saturating_sub(t.elapsed())
        });
        let received = tokio::select! {
            n = rx.recv_many(&mut buf, 1024) => Some(n),
            _ = tokio::time::sleep(wait) => None,
        };
        match received {
            Some(0) => break,
            Some(_) => {
                for e in buf.drain(..) {
                    let key = (partition_of(&e.org_id, config.partitions), e.kind);
                    let group = groups.entry(key).or_default();
                    group.push(e);
                    if group.len() >= config.max_beacons {
                        let batch = std::mem::take(group);
                        launch(
                            &mut tasks, &inflight, &js, &config, &metrics, &give_up, key, batch,
                        )
                        .await;
                    }
                }
                oldest.get_or_insert_with(Instant::now);
            }
            None => {
                for (key, group) in groups.iter_mut().filter(|(_, g)| !g.is_empty()) {
                    let batch = std::mem::take(group);
                    launch(
                        &mut tasks, &inflight, &js, &config, &metrics, &give_up, *key, batch,
                    )
                    .await;
                }
                oldest = None;
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    for (key, group) in groups.into_iter().filter(|(_, g)| !g.is_empty()) {
        launch(
            &mut tasks, &inflight, &js, &config, &metrics, &give_up, key, group,
        )
        .await;
    }
    while tasks.join_next().await.is_some() {}
}

/// Starts publishing one batch once an in-flight slot is free.
#[allow(clippy::too_many_arguments)]
async fn launch(
    tasks: &mut JoinSet<()>,
    inflight: &Arc<Semaphore>,
    js: &jetstream::Context,
    config: &BatcherConfig,
    metrics: &Metrics,
    give_up: &tokio_util::sync::CancellationToken,
    (partition, kind): (u16, EventType),
    batch: Vec<Event>,
) {
    let permit = inflight
        .clone()
        .acquire_owned()
        .await
        .expect("semaphore never closed");
    let js = js.clone();
    let metrics = metrics.clone();
    let give_up = give_up.clone();
    let window = config.duplicate_window;
    tasks.spawn(async move {
        let _permit = permit;
        publish_batch(&js, partition, kind, batch, window, &metrics, &give_up).await;
    });
}

/// Publishes one batch, retrying with the same message id until acked.
async fn publish_batch(
    js: &jetstream::Context,
    partition: u16,
    kind: EventType,
    batch: Vec<Event>,
    duplicate_window: Duration,
    metrics: &Metrics,
    give_up: &tokio_util::sync::CancellationToken,
) {
    let n = batch.len();
    let batch_id = uuid::Uuid::now_v7().to_string();
    let payload = Bytes::from(encode_payload(&batch));
    drop(batch);
    let subject = event_subject(partition, kind);
    let first_try = Instant::now();
    let mut attempt = 0u32;
    loop {
        let started = Instant::now();
        let mut msg = Publish::build()
            .payload(payload.clone())
            .message_id(&batch_id);
        if first_try.elapsed() < duplicate_window / 2 {
            msg = msg.header(BEACON_HEADER, "1");
        }
        let result = async {
            js.send_publish(subject.clone(), msg).await?.await?;
            Ok::<(), async_nats::Error>(())
        };
        let outcome = tokio::select! {
            r = result => r,
            _ = give_up.cancelled() => {
                tracing::error!(beacons = n, batch_id, "shutdown deadline passed; beacon batch not published");
                metrics.beacons.with_label_values(&[kind_label(kind), "dropped"]).inc_by(n as u64);
                metrics.buffer_depth.sub(n as i64);
                return;
            }
        };
        match outcome {
            Ok(()) => {
                metrics
                    .publish_seconds
                    .with_label_values(&["beacon_batch"])
                    .observe(started.elapsed().as_secs_f64());
                metrics.batch_size.observe(n as f64);
                metrics.buffer_depth.sub(n as i64);
                return;
            }
            Err(e) => {
                metrics
                    .publish_failures
                    .with_label_values(&["beacon_batch"])
                    .inc();
                if attempt % 10 == 0 {
                    tracing::warn!(error = %e, beacons = n, batch_id, attempt, "beacon batch publish failed; retrying");
                }
                attempt += 1;
                let cap = 50u64.saturating_mul(1 << attempt.min(7)).min(5_000);
                let ms = rand::thread_rng().gen_range(cap / 2..=cap);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    _ = give_up.cancelled() => {}
                }
            }
        }
    }
}

/// The `kind` label of a beacon's event type.
pub fn kind_label(kind: EventType) -> &'static str {
    if kind == EventType::Shared {
        "share"
    } else {
        "view"
    }
}
