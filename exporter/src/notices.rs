//! Follows the change notices on NATS (`badgepulse_contract::changes`) for
//! the result cache, and sends this exporter's own (a new annotation).
//!
//! The cache serves only while this follower knows it misses nothing: it
//! starts following once the subscription is live on a connected server
//! (a PING round trip after the SUB), and stops, emptying the cache, on a
//! disconnect or when the server drops notices for a slow consumer.
//! Without NATS the exporter still answers everything, from ClickHouse.
//!
//! Must not: block a request on NATS, or let the cache serve across a
//! gap in the notices.

use std::sync::Arc;

use async_nats::{Client, Event};
use badgepulse_contract::changes::{self, Change};
use badgepulse_contract::settings::NatsConfig;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cache::QueryCache;
use crate::metrics::Metrics;

/// The connection that carries the notices.
#[derive(Clone)]
pub struct Notices {
    client: Client,
}

impl Notices {
    /// Connects to NATS in the background and applies every notice to
    /// `cache` until `shutdown`. Returns at once, even with NATS down.
    pub async fn follow(
        nats: &NatsConfig,
        cache: Arc<QueryCache>,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Notices, JoinHandle<()>)> {
        // Connection events, in order, for the loop below; a full queue
        // can only hold more of the same news.
        let (events_tx, events) = mpsc::channel(64);
        let client = async_nats::ConnectOptions::new()
            .name("badgepulse-exporter")
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let events_tx = events_tx.clone();
                async move {
                    if events_tx.try_send(event).is_err() {
                        tracing::debug!("connection event queue full");
                    }
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
            shutdown,
        ));
        Ok((Notices { client }, task))
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
    mut events: mpsc::Receiver<Event>,
    cache: Arc<QueryCache>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(event) = events.recv() => match event {
                Event::Connected => {
                    // The SUB goes out before this PING, so once the PONG
                    // is back no notice can slip past.
                    match client.flush().await {
                        Ok(()) => {
                            cache.follow(true);
                            tracing::info!("result cache following change notices");
                        }
                        Err(e) => tracing::warn!(error = %e, "change notices: flush failed"),
                    }
                }
                Event::Disconnected | Event::Closed => {
                    cache.follow(false);
                    tracing::warn!(%event, "result cache off until NATS is back");
                }
                Event::SlowConsumer(_) => {
                    // Notices were dropped: forget everything, go on.
                    cache.follow(true);
                    tracing::warn!("change notices dropped (slow consumer); result cache emptied");
                }
                _ => {}
            },
            message = subscription.next() => {
                let Some(message) = message else { break };
                match Change::decode(&message.payload) {
                    Ok(change) => {
                        cache.apply(&change);
                        metrics.change_notices.with_label_values(&["applied"]).inc();
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
