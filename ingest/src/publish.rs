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
//! - The queue holds each beacon as its payload line, encoded by the pixel
//!   request that offered it: the encoding cost is spread over the HTTP
//!   threads instead of falling on the one batcher, and a queued beacon
//!   takes the few hundred bytes of its line. `buffer_capacity` bounds
//!   every beacon not yet acked (queued, being batched or in flight), so
//!   memory stays bounded however long JetStream stalls.
//!
//! Must not: answer a platform request before its PubAcks, or block a pixel
//! request on NATS (a full queue drops the beacon and counts it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage as Publish};
use badgepulse_contract::event::{encode_line, encode_payload, Event, EventType};
use badgepulse_contract::subject::{event_subject, partition_of, BEACON_HEADER};
use bytes::Bytes;
use rand::Rng;
use tokio::sync::{Notify, Semaphore};
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
    metrics.events_in_flight.add(events.len() as i64);
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
    metrics.events_in_flight.sub(events.len() as i64);
    match &outcome {
        Ok(_) => metrics
            .publish_seconds
            .with_label_values(&["event"])
            .observe(started.elapsed().as_secs_f64()),
        Err(_) => metrics.publish_failures.with_label_values(&["event"]).inc(),
    }
    outcome
}

/// A beacon as queued: where it goes and its payload line.
struct Queued {
    partition: u16,
    kind: EventType,
    line: Vec<u8>,
}

/// Beacons taken by pixel requests and not yet grouped into batches.
struct Pending {
    events: Mutex<Vec<Queued>>,
    /// Beacons offered and not yet acked or dropped: these, queued or
    /// not, are what `capacity` bounds.
    unpublished: AtomicUsize,
    capacity: usize,
    /// Rings when the buffer gains its first beacon, fills a batch, or
    /// closes: the batcher sleeps otherwise, so a pixel request does not
    /// wake it (and a parked worker thread) for each beacon.
    bell: Notify,
    closed: AtomicBool,
}

/// The pixel side of the queue: never waits.
#[derive(Clone)]
pub struct BeaconQueue {
    sender: Arc<Sender>,
    metrics: Metrics,
    max_beacons: usize,
    partitions: u16,
}

/// Closes the queue when the last [`BeaconQueue`] clone is dropped.
struct Sender(Arc<Pending>);

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.bell.notify_waiters();
    }
}

impl BeaconQueue {
    /// Hands a beacon to the batcher; false (and nothing queued) when
    /// `capacity` beacons are already waiting for their PubAck.
    pub fn offer(&self, event: &Event) -> bool {
        let pending = &self.sender.0;
        let reserved = pending
            .unpublished
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < pending.capacity).then_some(n + 1)
            });
        if reserved.is_err() {
            return false;
        }
        let queued = Queued {
            partition: partition_of(&event.org_id, self.partitions),
            kind: event.kind,
            line: encode_line(event),
        };
        let depth = {
            let mut events = pending.events.lock().expect("beacon buffer lock");
            events.push(queued);
            events.len()
        };
        self.metrics.buffer_depth.inc();
        if depth == 1 || depth.is_multiple_of(self.max_beacons) {
            pending.bell.notify_waiters();
        }
        true
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
    let pending = Arc::new(Pending {
        events: Mutex::new(Vec::new()),
        unpublished: AtomicUsize::new(0),
        capacity: config.capacity,
        bell: Notify::new(),
        closed: AtomicBool::new(false),
    });
    let queue = BeaconQueue {
        sender: Arc::new(Sender(pending.clone())),
        metrics: metrics.clone(),
        max_beacons: config.max_beacons.max(1),
        partitions: config.partitions,
    };
    let handle = tokio::spawn(run_batcher(pending, js, config, metrics, give_up));
    (queue, handle)
}

/// Every `max_delay` after the first beacon of a round (sooner when a
/// batch fills), takes the whole buffer, groups it by (partition, type)
/// and publishes each group in batches of at most `max_beacons`.
async fn run_batcher(
    pending: Arc<Pending>,
    js: jetstream::Context,
    config: BatcherConfig,
    metrics: Metrics,
    give_up: tokio_util::sync::CancellationToken,
) {
    let inflight = Arc::new(Semaphore::new(config.max_inflight));
    let mut tasks = JoinSet::new();
    let max_beacons = config.max_beacons.max(1);
    let mut taken = Vec::new();
    loop {
        let closed = pending.closed.load(Ordering::Acquire);
        if !closed {
            // Armed before each look at the buffer, so a ring between the
            // look and the wait is not missed (rings store no permits).
            let first = pending.bell.notified();
            tokio::pin!(first);
            first.as_mut().enable();
            if pending
                .events
                .lock()
                .expect("beacon buffer lock")
                .is_empty()
            {
                first.await;
            }
            // The first beacon of a round waits `max_delay` for company,
            // unless a full batch or the closing rings the bell again.
            let more = pending.bell.notified();
            tokio::pin!(more);
            more.as_mut().enable();
            let full = pending.events.lock().expect("beacon buffer lock").len() >= max_beacons;
            if !full && !pending.closed.load(Ordering::Acquire) {
                tokio::select! {
                    () = more => {}
                    () = tokio::time::sleep(config.max_delay) => {}
                }
            }
        }
        std::mem::swap(
            &mut *pending.events.lock().expect("beacon buffer lock"),
            &mut taken,
        );
        let mut groups: HashMap<(u16, EventType), Vec<Queued>> = HashMap::new();
        for q in taken.drain(..) {
            groups.entry((q.partition, q.kind)).or_default().push(q);
        }
        for (key, group) in groups {
            for batch in group.chunks(max_beacons) {
                let mut payload = Vec::with_capacity(batch.iter().map(|q| q.line.len()).sum());
                for q in batch {
                    payload.extend_from_slice(&q.line);
                }
                launch(
                    &mut tasks,
                    &inflight,
                    &js,
                    &pending,
                    &config,
                    &metrics,
                    &give_up,
                    key,
                    (batch.len(), payload),
                )
                .await;
            }
        }
        while tasks.try_join_next().is_some() {}
        if closed {
            break;
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Starts publishing one batch once an in-flight slot is free.
#[allow(clippy::too_many_arguments)]
async fn launch(
    tasks: &mut JoinSet<()>,
    inflight: &Arc<Semaphore>,
    js: &jetstream::Context,
    pending: &Arc<Pending>,
    config: &BatcherConfig,
    metrics: &Metrics,
    give_up: &tokio_util::sync::CancellationToken,
    (partition, kind): (u16, EventType),
    (n, payload): (usize, Vec<u8>),
) {
    let permit = inflight
        .clone()
        .acquire_owned()
        .await
        .expect("semaphore never closed");
    let js = js.clone();
    let pending = pending.clone();
    let metrics = metrics.clone();
    let give_up = give_up.clone();
    let window = config.duplicate_window;
    tasks.spawn(async move {
        let _permit = permit;
        let batch = Batch {
            partition,
            kind,
            n,
            payload: Bytes::from(payload),
        };
        publish_batch(&js, batch, window, &metrics, &give_up).await;
        // Acked or given up: either way no longer held.
        pending.unpublished.fetch_sub(n, Ordering::AcqRel);
    });
}

/// One JetStream message of beacons: `n` payload lines.
struct Batch {
    partition: u16,
    kind: EventType,
    n: usize,
    payload: Bytes,
}

/// Publishes one batch, retrying with the same message id until acked.
async fn publish_batch(
    js: &jetstream::Context,
    Batch {
        partition,
        kind,
        n,
        payload,
    }: Batch,
    duplicate_window: Duration,
    metrics: &Metrics,
    give_up: &tokio_util::sync::CancellationToken,
) {
    let batch_id = uuid::Uuid::now_v7().to_string();
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
            let ack = js.send_publish(subject.clone(), msg).await?.await?;
            Ok::<bool, async_nats::Error>(ack.duplicate)
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
            Ok(duplicate) => {
                if duplicate {
                    // An earlier attempt stored it; its PubAck was lost.
                    metrics.count_beacons(kind_label(kind), "duplicate", n as u64);
                }
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
                if attempt.is_multiple_of(10) {
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

/// Readiness (the admin listener's `/readyz`): NATS connected and the
/// event stream present.
pub async fn ready(
    nats: &async_nats::Client,
    jetstream: &jetstream::Context,
) -> Result<(), String> {
    if nats.connection_state() != async_nats::connection::State::Connected {
        return Err("nats: not connected".into());
    }
    let stream = badgepulse_contract::subject::STREAM;
    match tokio::time::timeout(Duration::from_secs(2), jetstream.get_stream(stream)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("stream {stream}: {e}")),
        Err(_) => Err("nats: timed out".into()),
    }
}
