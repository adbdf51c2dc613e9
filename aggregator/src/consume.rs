//! One partition's consumer: fetch a batch from JetStream, decode it
//! (undecodable messages to the dead-letter stream), carry out the write
//! plan of `plan.rs`, announce the change, then ack.
//!
//! The exactly-once protocol (argued in ARCHITECTURE.md; its decisions are
//! `plan.rs`'s):
//! - Every row written carries the stream sequence of the message it came
//!   from (`events.seq`, `max_seq` states in derived tables), so each table
//!   knows its high-water mark per partition.
//! - A partition is consumed by one task, in stream order, one batch at a
//!   time; each table receives a batch in a single INSERT, moved
//!   server-side from a staging table so a client killed mid-upload never
//!   leaves part of a batch behind (`Store::write`).
//! - Normal path: when no table has seen the batch, one INSERT into the Null
//!   table `events_input` fans it out to every table through materialised
//!   views.
//! - Recovery path (after a crash or a failed write, when marks disagree):
//!   `events` gets the rows above its mark directly, and each derived table
//!   is recomputed from `events` for the sequence range above its own mark.
//! - Messages are acked (AckAll, double ack) only after the writes return;
//!   after any error the marks are re-read from ClickHouse before retrying.
//! - Between the writes and the ack, a change notice (org and
//!   `occurred_at` span of the rows written, or "everything" after a
//!   recovery) goes out on core NATS for the exporters' result caches
//!   (`badgepulse_contract::changes`).
//! - Recovery recomputes rollup buckets only where retention still keeps
//!   them (`retention.rs`), and never runs concurrently with retention.
//!
//! Must not: ack before the rows are in ClickHouse, or drop a message it
//! cannot decode (those go to the dead-letter stream first).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::PullConsumer, Message};
use async_nats::HeaderMap;
use badgepulse_contract::changes::{self, Change};
use badgepulse_contract::event::decode_payload;
use badgepulse_contract::subject::{self, BEACON_HEADER, DEAD_LETTER_PREFIX};
use futures::StreamExt;
use rand::Rng;
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use badgepulse_contract::tables::Tier;

use crate::config::AggregatorConfig;
use crate::metrics::Metrics;
use crate::plan::{self, Marks, Notice, Recovery, RowsInto};
use crate::retention;
use crate::store::{Store, StoreError};

/// The partitions whose tables this instance knows to be consistent: a
/// batch of each was written and acked since the instance started and
/// since its last failed write. A write cut between the views of one
/// insert (a crash, a write whose outcome is unknown) is recovered by the
/// next batch, so until then the seal job leaves the partition's days
/// alone, unique viewers and lifecycle (`maintenance::sealing`).
pub type Settled = Arc<std::sync::Mutex<std::collections::HashSet<u16>>>;

pub struct PartitionConsumer {
    pub partition: u16,
    pub stream: jetstream::stream::Stream,
    pub consumer: PullConsumer,
    /// Consumer (delivery) sequence of the last message received: a jump
    /// means deliveries were lost in transit.
    last_delivery: Option<u64>,
    pub jetstream: jetstream::Context,
    pub store: Store,
    pub config: AggregatorConfig,
    pub metrics: Metrics,
    /// Read-held while a batch is written; retention takes the write half.
    pub batch_lock: Arc<RwLock<()>>,
    /// Shared with the seal job: this partition is in it while its
    /// tables are known consistent.
    pub settled: Settled,
    /// Stop once the stream holds nothing more for this consumer (rebuild).
    pub until_caught_up: bool,
    /// High-water marks as last known; `None` forces a re-read.
    marks: Option<Marks>,
    /// What the batch in hand is doing, for the error of one that runs
    /// past `write_timeout_secs`.
    stage: Stage,
}

/// The steps of one batch, in order ([`PartitionConsumer::process`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    DeadLetters,
    Marks,
    Lookups,
    Write,
    Recovery,
    Announce,
    Ack,
}

impl Stage {
    fn describe(self) -> &'static str {
        match self {
            Stage::DeadLetters => "moving undecodable messages to the dead letters",
            Stage::Marks => "reading the marks",
            Stage::Lookups => "looking up stored events and first awards",
            Stage::Write => "writing the batch",
            Stage::Recovery => "recovering tables from events",
            Stage::Announce => "announcing the change",
            Stage::Ack => "acking",
        }
    }

    /// Whether the step waits on NATS (else on ClickHouse).
    fn on_nats(self) -> bool {
        matches!(self, Stage::DeadLetters | Stage::Announce | Stage::Ack)
    }
}

/// (Re)creates the durable consumer of `partition` so that it delivers, in
/// stream order, everything after its ack floor.
///
/// JetStream redelivers unacked messages only after `ack_wait` and meanwhile
/// delivers newer ones; with AckAll, acking a newer message would then ack
/// older ones never written. Starting over at the ack floor (everything at
/// or below it is written) restores strict order. Each partition has exactly
/// one owner, so deleting its consumer is safe.
pub async fn open_consumer(
    stream: &jetstream::stream::Stream,
    config: &AggregatorConfig,
    partition: u16,
) -> Result<PullConsumer, async_nats::Error> {
    let name = format!("{}-{partition}", config.consumer_prefix);
    let deliver_policy = match stream
        .get_consumer::<jetstream::consumer::pull::Config>(&name)
        .await
    {
        Ok(mut existing) => {
            let floor = existing.info().await?.ack_floor.stream_sequence;
            stream.delete_consumer(&name).await?;
            tracing::info!(
                partition,
                ack_floor = floor,
                "consumer restarts after its ack floor"
            );
            jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: floor + 1,
            }
        }
        Err(_) => jetstream::consumer::DeliverPolicy::All,
    };
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: subject::partition_filter(partition),
            deliver_policy,
            ack_policy: jetstream::consumer::AckPolicy::All,
            ack_wait: Duration::from_secs(config.ack_wait_secs),
            max_ack_pending: (config.batch_max_messages * 2) as i64,
            max_deliver: -1,
            ..Default::default()
        })
        .await?;
    Ok(consumer)
}

/// How long after its `expires` a pull is given to end on its own.
const PULL_GRACE: Duration = Duration::from_millis(250);

/// A fetched batch, decoded.
struct Batch<'m> {
    /// Its decodable messages.
    decoded: Vec<plan::Message>,
    /// The lowest and highest stream sequence of every message.
    first: u64,
    last: u64,
    /// The message to ack (AckAll: acks everything up to it).
    last_message: &'m Message,
}

/// Why a batch was not written and acked; it is retried from memory,
/// with its marks read again.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    ClickHouse(#[from] StoreError),
    #[error("nats: {0}")]
    Nats(String),
    #[error("no end within {secs} s while {}", .stage.describe())]
    TimedOut { stage: Stage, secs: u64 },
}

impl PartitionConsumer {
    /// Everything one partition's loop owns; the arguments are its parts,
    /// each from a different place at start-up.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        partition: u16,
        stream: jetstream::stream::Stream,
        consumer: PullConsumer,
        jetstream: jetstream::Context,
        store: Store,
        config: AggregatorConfig,
        metrics: Metrics,
        batch_lock: Arc<RwLock<()>>,
    ) -> Self {
        PartitionConsumer {
            partition,
            stream,
            consumer,
            last_delivery: None,
            jetstream,
            store,
            config,
            metrics,
            batch_lock,
            settled: Settled::default(),
            until_caught_up: false,
            marks: None,
            stage: Stage::DeadLetters,
        }
    }

    /// Consumes until `shutdown`; a batch in flight is finished (written
    /// and acked) first, or left unacked for redelivery if it cannot be.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let p = self.partition.to_string();
        let mut backoff = Backoff::default();
        while !shutdown.is_cancelled() {
            let fetch_started = Instant::now();
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                b = self.fetch() => b,
            };
            self.metrics
                .fetch_seconds
                .observe(fetch_started.elapsed().as_secs_f64());
            let messages = match batch {
                Ok(m) => m,
                Err(e) => {
                    self.metrics.nats_errors.inc();
                    tracing::warn!(partition = self.partition, error = %e, "fetch failed");
                    backoff.sleep(&shutdown).await;
                    continue;
                }
            };
            let mut caught_up = false;
            if let Ok(info) = self.consumer.info().await {
                caught_up = info.num_pending == 0 && info.num_ack_pending == 0;
                self.metrics
                    .consumer_pending
                    .with_label_values(&[&p])
                    .set(info.num_pending as i64);
                self.metrics
                    .consumer_ack_pending
                    .with_label_values(&[&p])
                    .set(info.num_ack_pending as i64);
                self.metrics
                    .consumer_redelivered
                    .with_label_values(&[&p])
                    .set(info.num_redelivered as i64);
            }
            if let Err(gap) = self.check_deliveries(&messages) {
                tracing::warn!(
                    partition = self.partition,
                    gap,
                    "deliveries lost in transit; restarting the consumer at its ack floor"
                );
                self.metrics.nats_errors.inc();
                match open_consumer(&self.stream, &self.config, self.partition).await {
                    Ok(c) => self.consumer = c,
                    Err(e) => {
                        tracing::warn!(partition = self.partition, error = %e, "reopening the consumer failed");
                        backoff.sleep(&shutdown).await;
                    }
                }
                self.last_delivery = None;
                self.marks = None;
                self.settle(false);
                continue;
            }
            if messages.is_empty() {
                if caught_up && self.until_caught_up {
                    tracing::info!(partition = self.partition, "caught up with the stream");
                    break;
                }
                continue;
            }
            // Retry this batch until it is in; on shutdown leave it unacked.
            loop {
                let limit = self.config.write_timeout();
                let outcome = tokio::time::timeout(limit, self.process(&messages))
                    .await
                    .unwrap_or_else(|_| {
                        Err(BatchError::TimedOut {
                            stage: self.stage,
                            secs: limit.as_secs(),
                        })
                    });
                match outcome {
                    Ok(()) => {
                        backoff.reset();
                        self.settle(true);
                        break;
                    }
                    Err(e) => {
                        self.marks = None;
                        self.settle(false);
                        let on_nats = match &e {
                            BatchError::ClickHouse(_) => false,
                            BatchError::Nats(_) => true,
                            BatchError::TimedOut { stage, .. } => stage.on_nats(),
                        };
                        if on_nats {
                            self.metrics.nats_errors.inc();
                        } else {
                            self.metrics.clickhouse_errors.inc();
                        }
                        tracing::warn!(partition = self.partition, error = %e, "batch failed; retrying");
                        if shutdown.is_cancelled() {
                            return;
                        }
                        backoff.sleep(&shutdown).await;
                    }
                }
            }
        }
        tracing::info!(partition = self.partition, "consumer stopped");
    }

    /// Checks that `messages` continue the delivery sequence without a hole;
    /// on success records the last one.
    fn check_deliveries(&mut self, messages: &[Message]) -> Result<(), String> {
        for m in messages {
            let delivery = m.info().map_err(|e| e.to_string())?.consumer_sequence;
            if let Some(last) = self.last_delivery {
                if delivery != last + 1 {
                    return Err(format!("expected delivery {} but got {delivery}", last + 1));
                }
            }
            self.last_delivery = Some(delivery);
        }
        Ok(())
    }

    /// One pull: up to `batch_max_messages` / `batch_max_bytes`, waiting at
    /// most `flush_interval_ms`.
    async fn fetch(&self) -> Result<Vec<Message>, async_nats::Error> {
        let expires = Duration::from_millis(self.config.flush_interval_ms.max(50));
        // The server ends a pull at `expires` with a status message; when
        // that status goes missing (seen with nats-server 2.9 on pulls that
        // got some messages), async-nats waits another 5 s, stalling
        // freshness. So stop reading shortly after `expires` ourselves. The
        // server sends nothing more on an expired pull; and were a message
        // ever lost this way, the delivery-gap check would reopen the
        // consumer at its ack floor.
        // Messages still streaming in past the deadline extend it: only a
        // pull idle for `PULL_GRACE` after its expiry is cut.
        let mut deadline = tokio::time::Instant::now() + expires + PULL_GRACE;
        let mut batch = self
            .consumer
            .batch()
            .max_messages(self.config.batch_max_messages)
            .max_bytes(self.config.batch_max_bytes)
            .expires(expires)
            .messages()
            .await?;
        let mut out = Vec::new();
        loop {
            let next = match tokio::time::timeout_at(deadline, batch.next()).await {
                Ok(Some(next)) => {
                    deadline = deadline.max(tokio::time::Instant::now() + PULL_GRACE);
                    next
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::debug!(
                        partition = self.partition,
                        messages = out.len(),
                        "pull ended by the client-side deadline"
                    );
                    break;
                }
            };
            match next {
                Ok(m) => out.push(m),
                // The server ends a pull with a status when the next message
                // would pass `max_bytes` (409 "Message Size Exceeds
                // MaxBytes"): the messages received so far are the batch.
                // Dropping them would leave a hole in the delivery order.
                Err(e) if !out.is_empty() => {
                    tracing::debug!(partition = self.partition, error = %e, messages = out.len(), "pull ended early");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Recomputes a table's share of this partition's messages from
    /// `events`, for the buckets retention keeps.
    async fn recover(&self, r: Recovery) -> Result<(), StoreError> {
        let keep_from = Tier::of_table(r.table)
            .and_then(|t| {
                retention::keep_from(t, self.config.retention_days(t), chrono::Utc::now())
            })
            .map_or(0, |t| t.timestamp().clamp(0, i64::from(u32::MAX)) as u32);
        self.store
            .recover(r.table, self.partition, r.after, r.upto, keep_from)
            .await?;
        self.metrics.recoveries.with_label_values(&[r.table]).inc();
        tracing::info!(
            partition = self.partition,
            table = r.table,
            after = r.after,
            upto = r.upto,
            "recovered table from events"
        );
        Ok(())
    }

    /// Records whether this partition's tables are known consistent
    /// ([`Settled`]).
    fn settle(&self, consistent: bool) {
        let mut settled = self.settled.lock().expect("settled set poisoned");
        if consistent {
            settled.insert(self.partition);
        } else {
            settled.remove(&self.partition);
        }
    }

    /// The marks as last known, or read from ClickHouse (first batch,
    /// after an error); then every derived table that holds nothing of
    /// this partition while `events` does is filled, and lookup tables a
    /// cut write left behind `events` are brought up to it
    /// (`plan::before_lookups`), and "everything" announced at once:
    /// should this batch fail, its retry finds the tables filled and
    /// would not say so.
    async fn current_marks(&mut self) -> Result<Marks, StoreError> {
        if let Some(m) = self.marks.take() {
            return Ok(m);
        }
        // The staging table may be gone (dropped database, new node).
        self.store.ensure_staging(self.partition).await?;
        let mut marks = self.store.marks(self.partition).await?;
        let fills = plan::before_lookups(&marks);
        for r in &fills {
            self.recover(*r).await?;
            marks.derived.insert(r.table, r.upto);
        }
        if !fills.is_empty() {
            self.announce(&Change::everything()).await;
        }
        Ok(marks)
    }

    /// Publishes `change` on core NATS for the exporters' result caches
    /// (`badgepulse_contract::changes`). A notice that cannot be sent is
    /// counted and logged, never retried at the batch's expense: readers
    /// bound what they miss by their own maximum age.
    async fn announce(&self, change: &Change) {
        if change.is_empty() {
            return;
        }
        let kind = if change.all { "everything" } else { "spans" };
        let sent = self
            .jetstream
            .client()
            .publish(changes::SUBJECT, change.encode().into())
            .await;
        let outcome = match sent {
            Ok(()) => "sent",
            Err(e) => {
                tracing::warn!(partition = self.partition, error = %e, "change notice not sent");
                "failed"
            }
        };
        self.metrics
            .change_notices
            .with_label_values(&[kind, outcome])
            .inc();
    }

    /// One batch: decode (undecodable messages to the dead letters),
    /// plan against the marks (`plan.rs`), write, announce, ack.
    async fn process(&mut self, messages: &[Message]) -> Result<(), BatchError> {
        let lock = self.batch_lock.clone();
        let _batch = lock.read().await;
        let started = Instant::now();
        self.stage = Stage::DeadLetters;
        let Some(batch) = self.decode(messages).await? else {
            return Ok(());
        };
        self.stage = Stage::Marks;
        let mut marks = self.current_marks().await?;
        self.stage = Stage::Lookups;
        let stored = self
            .store
            .existing(
                &plan::to_look_up(&batch.decoded, marks.events),
                marks.events,
            )
            .await?;
        let (mut rows, duplicates) =
            plan::new_rows(&batch.decoded, marks.events, self.partition, &stored);
        self.metrics.duplicates.inc_by(duplicates);
        if let Some(first) = rows.first().map(|r| r.seq) {
            let known = self
                .store
                .first_awards(&plan::assertions_to_look_up(&rows), first)
                .await?;
            plan::file_by_award(&mut rows, &known);
        }
        let write = plan::plan(&marks, batch.first, batch.last, !rows.is_empty());
        self.stage = Stage::Write;
        match write.rows_into {
            Some(RowsInto::Input) => {
                self.store
                    .write(self.partition, "events_input", &rows)
                    .await?
            }
            Some(RowsInto::Events) => {
                self.store
                    .write(self.partition, &self.store.schema.local("events"), &rows)
                    .await?
            }
            None => {}
        }
        self.stage = Stage::Recovery;
        for r in &write.recover {
            self.recover(*r).await?;
        }
        marks.advance_to(batch.last);
        self.marks = Some(marks);
        crash_point_after_write();
        // Before the ack: a crash in between redelivers the batch, whose
        // replay announces everything.
        self.stage = Stage::Announce;
        self.announce(&match write.notice {
            Notice::Everything => Change::everything(),
            Notice::Spans => {
                Change::of_events(rows.iter().map(|r| (r.org_id.as_str(), r.occurred_at)))
            }
        })
        .await;
        self.stage = Stage::Ack;
        batch
            .last_message
            .double_ack()
            .await
            .map_err(|e| BatchError::Nats(format!("ack of seq {}: {e}", batch.last)))?;

        let events: usize = batch.decoded.iter().map(|m| m.events.len()).sum();
        self.metrics.batches.inc();
        self.metrics.messages.inc_by(messages.len() as u64);
        self.metrics.events_written.inc_by(rows.len() as u64);
        self.metrics.batch_messages.observe(messages.len() as f64);
        self.metrics.batch_events.observe(events as f64);
        self.metrics
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(
            partition = self.partition,
            messages = messages.len(),
            rows = rows.len(),
            seq_lo = batch.first,
            seq_hi = batch.last,
            "batch written"
        );
        Ok(())
    }

    /// Decodes `messages` (`None`: an empty batch). An undecodable one goes
    /// to the dead-letter stream (PubAck awaited) and takes no further
    /// part, but its sequence still counts in the batch's span and ack.
    async fn decode<'m>(&self, messages: &'m [Message]) -> Result<Option<Batch<'m>>, BatchError> {
        let mut decoded = Vec::with_capacity(messages.len());
        let mut span: Option<(u64, u64, &Message)> = None;
        for m in messages {
            let seq = seq_of(m)?;
            span = Some(match span {
                None => (seq, seq, m),
                Some((first, last, _)) if seq > last => (first.min(seq), seq, m),
                Some((first, last, at)) => (first.min(seq), last, at),
            });
            match decode_payload(&m.payload) {
                Ok(events) => decoded.push(plan::Message {
                    seq,
                    events,
                    beacons: m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(BEACON_HEADER))
                        .is_some(),
                }),
                Err(reason) => self.dead_letter(m, seq, &reason).await?,
            }
        }
        Ok(span.map(|(first, last, last_message)| Batch {
            decoded,
            first,
            last,
            last_message,
        }))
    }

    /// Publishes an undecodable message to `badgepulse.dead.<partition>`
    /// (deduplicated by its stream sequence) and waits for the PubAck.
    async fn dead_letter(&self, m: &Message, seq: u64, reason: &str) -> Result<(), BatchError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            "Badgepulse-Error",
            reason.chars().take(512).collect::<String>().as_str(),
        );
        headers.insert("Badgepulse-Subject", m.subject.as_str());
        headers.insert("Badgepulse-Seq", seq.to_string().as_str());
        headers.insert("Nats-Msg-Id", format!("dead-{seq}").as_str());
        let ack = self
            .jetstream
            .publish_with_headers(
                format!("{DEAD_LETTER_PREFIX}.{}", self.partition),
                headers,
                m.payload.clone(),
            )
            .await
            .map_err(|e| BatchError::Nats(format!("dead-letter publish: {e}")))?;
        ack.await
            .map_err(|e| BatchError::Nats(format!("dead-letter ack: {e}")))?;
        self.metrics.dead_letters.inc();
        tracing::warn!(
            partition = self.partition,
            seq,
            reason,
            "message moved to the dead-letter stream"
        );
        Ok(())
    }
}

/// Fault injection for the exactly-once tests: with
/// `BADGEPULSE_TEST_CRASH_AFTER_WRITES=N` in the environment, the process
/// aborts after its N-th batch is written and before it is acked, the
/// worst moment for exactly-once. Unset in production: a no-op.
fn crash_point_after_write() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let limit = LIMIT.get_or_init(|| {
        std::env::var("BADGEPULSE_TEST_CRASH_AFTER_WRITES")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(n) = limit {
        if WRITES.fetch_add(1, Ordering::SeqCst) + 1 >= *n {
            tracing::warn!(
                "BADGEPULSE_TEST_CRASH_AFTER_WRITES reached: aborting between write and ack"
            );
            std::process::abort();
        }
    }
}

fn seq_of(m: &Message) -> Result<u64, BatchError> {
    Ok(m.info()
        .map_err(|e| BatchError::Nats(format!("message without JetStream info: {e}")))?
        .stream_sequence)
}

/// Exponential backoff with full jitter, 100 ms to 10 s.
#[derive(Default)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    async fn sleep(&mut self, shutdown: &CancellationToken) {
        let cap = 100u64.saturating_mul(1 << self.attempt.min(7)).min(10_000);
        self.attempt += 1;
        let ms = rand::thread_rng().gen_range(cap / 2..=cap);
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
        }
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}
