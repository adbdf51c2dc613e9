//! The beacon decision (SPEC §4): whether a view pixel, share pixel or
//! `sendBeacon` is a person's signed beacon within its rate, and the event
//! it becomes. The HTTP layer hands in what the request said
//! ([`BeaconRequest`]) and always answers the same; the outcome goes to
//! `badgepulse_ingest_beacons_total` (and bots to
//! `badgepulse_ingest_bots_total`).
//!
//! In order: ids, signature, share channel, bot, rate limit, then the
//! viewer's identity (source, country, daily-salted viewer key) and the
//! queue. Each concern is a module:
//! - [`bots`]: bot families by User-Agent;
//! - [`source`]: Referer → view source, share channel;
//! - [`viewer`]: client address behind trusted proxies, viewer key,
//!   rate-limiter key; [`salt`]: the daily salt of viewer keys, shared
//!   by every instance through NATS KV;
//! - [`rate_limit`]: the per-client limit.
//!
//! Must not: keep a raw IP address or User-Agent past the call, or wait on
//! NATS (the queue never blocks).

pub mod bots;
pub mod rate_limit;
pub mod salt;
pub mod source;
pub mod viewer;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use badgepulse_contract::event::{parse_country, Event, EventType};
use badgepulse_contract::pixel::PixelQuery;
use badgepulse_contract::signing::verify;
use chrono::Utc;

use crate::config::IngestConfig;
use crate::metrics::Metrics;
use crate::publish::{kind_label, BeaconQueue};
use bots::BotFamily;
use rate_limit::RateLimiter;
use salt::Salts;

/// Most distinct clients the rate limiter tracks in one minute; beyond it,
/// new clients are refused.
const MAX_LIMITED_CLIENTS: usize = 1_000_000;

/// What one beacon request said, borrowed from it.
#[derive(Debug, Clone)]
pub struct BeaconRequest<'a> {
    pub kind: EventType,
    pub query: PixelQuery,
    /// The socket peer.
    pub peer: IpAddr,
    pub user_agent: Option<&'a str>,
    pub forwarded_for: Option<&'a str>,
    pub referer: Option<&'a str>,
    /// The value of the configured country header, if any.
    pub country: Option<&'a str>,
}

/// What became of a beacon (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// Malformed ids or an unknown share channel.
    Invalid,
    /// Missing or unknown key id, or a bad signature.
    BadSignature,
    Bot(BotFamily),
    RateLimited,
    /// The queue holds `ingest.buffer_capacity` beacons already.
    Dropped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Invalid => "invalid",
            Outcome::BadSignature => "bad_signature",
            Outcome::Bot(_) => "bot",
            Outcome::RateLimited => "rate_limited",
            Outcome::Dropped => "dropped",
        }
    }
}

/// Everything the decision needs, built once at start-up.
pub struct Beacons {
    pixel_keys: BTreeMap<String, Vec<u8>>,
    config: IngestConfig,
    limiter: Mutex<RateLimiter>,
    /// Process-local random key of the rate limiter's client hashes.
    limiter_key: std::hash::RandomState,
    salts: Salts,
    queue: BeaconQueue,
    metrics: Metrics,
}

impl Beacons {
    pub fn new(config: IngestConfig, salts: Salts, queue: BeaconQueue, metrics: Metrics) -> Self {
        let pixel_keys = config
            .pixel_keys
            .iter()
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .collect();
        for family in BotFamily::ALL {
            metrics.bots.with_label_values(&[family.as_str()]);
        }
        Beacons {
            pixel_keys,
            limiter: Mutex::new(RateLimiter::new(
                config.rate_limit_per_minute,
                MAX_LIMITED_CLIENTS,
            )),
            limiter_key: std::hash::RandomState::new(),
            config,
            salts,
            queue,
            metrics,
        }
    }

    /// Decides `r`, queues its event if it is accepted, and counts the
    /// outcome.
    pub async fn take(&self, r: BeaconRequest<'_>) -> Outcome {
        let kind = r.kind;
        let outcome = self.decide(r).await;
        if let Outcome::Bot(family) = outcome {
            self.metrics
                .bots
                .with_label_values(&[family.as_str()])
                .inc();
        }
        self.metrics
            .count_beacon(kind_label(kind), outcome.as_str());
        outcome
    }

    async fn decide(&self, r: BeaconRequest<'_>) -> Outcome {
        let q = r.query;
        if q.check_ids().is_err() {
            return Outcome::Invalid;
        }
        match self.pixel_keys.get(&q.kid) {
            Some(key) if verify(key, &q.ids(), &q.sig) => {}
            _ => return Outcome::BadSignature,
        }
        let channel = if r.kind == EventType::Shared {
            match source::share_channel(q.channel.as_deref()) {
                Ok(c) => Some(c),
                Err(_) => return Outcome::Invalid,
            }
        } else {
            None
        };
        let user_agent = r.user_agent.unwrap_or("");
        if let Some(family) = bots::bot_family(Some(user_agent)) {
            return Outcome::Bot(family);
        }
        let ip = viewer::client_ip(r.peer, r.forwarded_for, &self.config.trusted_proxies);
        let now = Utc::now();
        let client = viewer::client_key(&self.limiter_key, ip, user_agent);
        let allowed = self
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(client, now.timestamp());
        if !allowed {
            return Outcome::RateLimited;
        }
        let (source, country, viewer_key) = if r.kind == EventType::Viewed {
            let keyer = self.salts.keyer(now.date_naive()).await;
            // Cloudflare's `XX` is "unknown".
            let country = r.country.and_then(parse_country).filter(|c| c != "XX");
            (
                Some(source::view_source(
                    q.src.as_deref(),
                    r.referer,
                    &self.config.platform_hosts,
                )),
                country,
                Some(keyer.key(ip, user_agent, &q.org_id)),
            )
        } else {
            (None, None, None)
        };
        let event = Event {
            event_id: uuid::Uuid::now_v7().to_string(),
            kind: r.kind,
            occurred_at: now,
            received_at: now,
            org_id: q.org_id,
            issuer_id: q.issuer_id,
            badge_class_id: q.badge_class_id,
            assertion_id: q.assertion_id,
            award_method: None,
            channel,
            source,
            country,
            viewer_key,
            badge_class: None,
        };
        if self.queue.offer(&event) {
            Outcome::Accepted
        } else {
            Outcome::Dropped
        }
    }
}
