//! Follows the change notices on NATS (`badgepulse_contract::changes`) for
//! the result cache, and sends this exporter's own (a new annotation).
//!
//! The cache serves only while this follower knows it misses nothing: it
//! starts following once a message has come back on the subscription
//! after a (re)connect (it sends an empty notice to itself to make one),
//! which proves the server has the SUB; it stops, emptying the cache, on
//! a disconnect or a server error (e.g. a refused subscription), and
//! empties it when the server drops notices for a slow consumer.
//! Without NATS the exporter still answers everything, from ClickHouse.
//!
//! Must not: block a request on NATS, or let the cache serve across a
//! gap in the notices.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, Event};
use badgepulse_contract::changes::{self, Change};
use badgepulse_runtime::settings::NatsConfig;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::cache::QueryCache;
use crate::telemetry::Metrics;

/// The connection that carries the notices.
#[derive(Clone)]
pub struct ChangeFeed {
    client: Client,
}

impl ChangeFeed {
    /// Connects to NATS in the background and applies every notice to
    /// `cache` until `shutdown`. Returns at once, even with NATS down.
    /// With `replica_grace`, every notice is applied again that much
    /// later: a read replica that had not caught up when the notice came
    /// may have been read and cached in between.
    pub async fn follow(
        nats: &NatsConfig,
        cache: Arc<QueryCache>,
        metrics: Metrics,
        replica_grace: Option<Duration>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(ChangeFeed, JoinHandle<()>)> {
        // Connection events, in order and none lost, for the loop below
        // (they are rare).
        let (events_tx, events) = mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::new()
            .name("badgepulse-exporter")
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let events_tx = events_tx.clone();
                async move {
                    // Fails only once the loop has ended.
                    let _ = events_tx.send(event);
                }
            })
            .connect(nats.server_addrs().map_err(anyhow::Error::msg)?)
            .await?;
        let subscription = client.subscribe(changes::SUBJECT).await?;
        let task = tokio::spawn(run(
            client.clone(),
            subscription,
            events,
            cache,
            metrics,
            replica_grace,
            shutdown,
        ));
        Ok((ChangeFeed { client }, task))
    }

    /// Tells every exporter (this one included) about `change`; a notice
    /// that cannot be sent is logged, the caller has applied it locally.
    pub async fn announce(&self, change: &Change) {
        if let Err(e) = self
            .client
            .publish(changes::SUBJECT, change.encode().into())
            .await
        {
            tracing::warn!(error = %e, "change notice not sent");
        }
    }
}

async fn run(
    client: Client,
    mut subscription: async_nats::Subscriber,
    mut events: mpsc::UnboundedReceiver<Event>,
    cache: Arc<QueryCache>,
    metrics: Metrics,
    replica_grace: Option<Duration>,
    shutdown: CancellationToken,
) {
    // ChangeFeed to apply again, each with when (in arrival order, so due
    // times never decrease).
    let mut again: VecDeque<(Instant, Change)> = VecDeque::new();
    // Set on (re)connecting: the next message received starts following.
    let mut awaiting_echo = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = sleep_until_first(&again) => {
                let (_, change) = again.pop_front().expect("a due notice");
                cache.apply(&change);
            }
            Some(event) = events.recv() => match event {
                Event::Connected => {
                    awaiting_echo = true;
                    // An empty notice changes nothing; once it (or any
                    // notice) comes back, the SUB is live.
                    if let Err(e) = client
                        .publish(changes::SUBJECT, Change::default().encode().into())
                        .await
                    {
                        tracing::warn!(error = %e, "change notices: echo not sent");
                    }
                }
                Event::Disconnected | Event::Closed | Event::ServerError(_) => {
                    cache.follow(false);
                    awaiting_echo = true;
                    tracing::warn!(%event, "result cache off until notices arrive again");
                }
                Event::SlowConsumer(_) => {
                    // ChangeFeed were dropped: forget everything, go on.
                    cache.follow(true);
                    tracing::warn!("change notices dropped (slow consumer); result cache emptied");
                }
                _ => {}
            },
            message = subscription.next() => {
                let Some(message) = message else { break };
                if awaiting_echo {
                    awaiting_echo = false;
                    cache.follow(true);
                    tracing::info!("result cache following change notices");
                }
                match Change::decode(&message.payload) {
                    Ok(change) => {
                        cache.apply(&change);
                        metrics.change_notices.with_label_values(&["applied"]).inc();
                        if let Some(grace) = replica_grace.filter(|_| !change.is_empty()) {
                            if again.len() == MAX_PENDING_AGAIN {
                                // Too many to keep: one that covers them all.
                                again.clear();
                                again.push_back((Instant::now() + grace, Change::everything()));
                            } else {
                                again.push_back((Instant::now() + grace, change));
                            }
                        }
                    }
                    Err(e) => {
                        // Whatever it meant, something changed.
                        cache.apply(&Change::everything());
                        metrics.change_notices.with_label_values(&["malformed"]).inc();
                        tracing::warn!(error = %e, "malformed change notice; result cache emptied");
                    }
                }
            }
        }
    }
    cache.follow(false);
}

/// Most notices waiting to be applied again.
const MAX_PENDING_AGAIN: usize = 10_000;

/// Resolves when the first of `again` is due; never while it is empty.
async fn sleep_until_first(again: &VecDeque<(Instant, Change)>) {
    match again.front() {
        Some((due, _)) => tokio::time::sleep_until(*due).await,
        None => std::future::pending().await,
    }
}
