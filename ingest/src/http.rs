//! The HTTP interface of ingest (SPEC §4): pixels, share beacons,
//! `sendBeacon`, platform events, health, readiness and metrics.
//!
//! Must not: answer a pixel with anything but the GIF, let a raw IP address
//! or User-Agent leave the request (only keyed hashes do), or accept a
//! platform event before its PubAck.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use badgepulse_contract::event::{raw_event_id, validate_platform_event, Event, EventType};
use badgepulse_contract::signing::{verify, PixelIds};
use chrono::Utc;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::beacon::{self, BeaconParams, RateLimiter};
use crate::config::IngestConfig;
use crate::metrics::{Metrics, ROUTES};
use crate::publish::{kind_label, publish_events, BeaconQueue};
use crate::salt::Salts;

/// The 43-byte transparent 1×1 GIF.
pub const GIF: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Most events in one `POST /v1/events`.
pub const MAX_EVENTS: usize = 1_000;
/// Largest `POST /v1/events` body.
pub const MAX_EVENTS_BODY: usize = 1 << 20;
/// Largest `POST /v1/beacon` body.
pub const MAX_BEACON_BODY: usize = 8 << 10;
/// How much of a body over its limit is still read, and thrown away, before
/// the answer. A connection closed with request bytes unread is reset by
/// the kernel, which can destroy the answer (`413`, `204`) before the
/// client reads it; reading the rest lets the client see the answer and
/// keep the connection. A body larger still is cut off.
pub const MAX_DISCARDED_BODY: usize = 4 << 20;

/// The share-button script served at `/v1/share.js`.
const SHARE_JS: &str = include_str!("share.js");

/// A configured bearer token: SHA-256 and the orgs it may write.
struct Token {
    sha256: [u8; 32],
    all_orgs: bool,
    orgs: Vec<String>,
}

pub struct AppState {
    pub config: IngestConfig,
    pub partitions: u16,
    pub nats: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
    pub metrics: Metrics,
    pub salts: Salts,
    pub queue: BeaconQueue,
    tokens: Vec<Token>,
    pixel_keys: BTreeMap<String, Vec<u8>>,
    limiter: Mutex<RateLimiter>,
    /// Process-local random key for rate-limiter client hashes.
    limiter_key: std::hash::RandomState,
}

impl AppState {
    pub fn new(
        config: IngestConfig,
        partitions: u16,
        nats: async_nats::Client,
        jetstream: async_nats::jetstream::Context,
        metrics: Metrics,
        salts: Salts,
        queue: BeaconQueue,
    ) -> Self {
        let tokens = config
            .tokens
            .iter()
            .map(|t| {
                let mut sha256 = [0u8; 32];
                hex::decode_to_slice(&t.sha256, &mut sha256).expect("validated at start-up");
                Token {
                    sha256,
                    all_orgs: t.orgs.iter().any(|o| o == "*"),
                    orgs: t.orgs.clone(),
                }
            })
            .collect();
        let pixel_keys = config
            .pixel_keys
            .iter()
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .collect();
        for family in beacon::BotFamily::ALL {
            metrics.bots.with_label_values(&[family.as_str()]);
        }
        let limiter = Mutex::new(RateLimiter::new(config.rate_limit_per_minute, 1_000_000));
        let limiter_key = std::hash::RandomState::new();
        AppState {
            config,
            partitions,
            nats,
            jetstream,
            metrics,
            salts,
            queue,
            tokens,
            pixel_keys,
            limiter,
            limiter_key,
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    // The pixels count their own requests: the request-counting middleware
    // (boxed futures, a state clone) cost them 8 % of their throughput.
    let pixel_methods = || {
        any(|State(s): State<Arc<AppState>>, req: Request| async move {
            s.metrics.count_request(req.uri().path(), 405);
            StatusCode::METHOD_NOT_ALLOWED
        })
    };
    let counted = Router::new()
        .route("/v1/beacon", post(send_beacon))
        .route("/v1/events", post(platform_events))
        .route("/v1/share.js", get(share_js))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ));
    Router::new()
        .route("/p.gif", get(view_pixel).fallback(pixel_methods()))
        .route("/s.gif", get(share_pixel).fallback(pixel_methods()))
        .merge(counted)
        .with_state(state)
}

/// Counts every request by route (`other` for unknown paths) and status.
async fn count_requests(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = ROUTES
        .into_iter()
        .find(|r| *r == req.uri().path())
        .unwrap_or("other");
    let response = next.run(req).await;
    s.metrics.count_request(route, response.status().as_u16());
    response
}

fn gif() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/gif")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"),
            ),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        GIF.as_slice(),
    )
        .into_response()
}

async fn view_pixel(
    State(s): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    s.take_pixel(EventType::Viewed, peer, &req.into_parts().0)
        .await;
    gif()
}

async fn share_pixel(
    State(s): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    s.take_pixel(EventType::Shared, peer, &req.into_parts().0)
        .await;
    gif()
}

/// Body of `POST /v1/beacon`.
#[derive(Deserialize)]
struct BeaconBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    o: String,
    #[serde(default)]
    i: String,
    #[serde(default)]
    b: String,
    #[serde(default)]
    a: String,
    #[serde(default)]
    kid: String,
    #[serde(default)]
    sig: String,
    channel: Option<String>,
    src: Option<String>,
}

async fn send_beacon(
    State(s): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> StatusCode {
    let (parts, body) = req.into_parts();
    let parsed = read_body(body, MAX_BEACON_BODY, s.body_deadline())
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<BeaconBody>(&b).ok());
    let kind = match parsed.as_ref().map(|b| b.kind.as_str()) {
        Some("view") => EventType::Viewed,
        Some("share") => EventType::Shared,
        _ => {
            // Which kind it was meant to be is unknown; count it as a view.
            s.metrics
                .beacons
                .with_label_values(&["view", "invalid"])
                .inc();
            return StatusCode::NO_CONTENT;
        }
    };
    let b = parsed.expect("matched above");
    let params = BeaconParams {
        org_id: b.o,
        issuer_id: b.i,
        badge_class_id: b.b,
        assertion_id: b.a,
        kid: b.kid,
        sig: b.sig,
        src: b.src,
        channel: b.channel,
    };
    s.take_beacon(kind, params, peer.ip(), &parts.headers).await;
    StatusCode::NO_CONTENT
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl AppState {
    /// How long a request body may take to arrive.
    fn body_deadline(&self) -> Duration {
        Duration::from_secs(self.config.header_read_timeout_secs)
    }

    /// [`Self::take_beacon`] for a pixel: the parameters come from the
    /// query string, headers are read in place. Counts the request (always
    /// answered 200), as pixels bypass the counting middleware.
    async fn take_pixel(&self, kind: EventType, peer: SocketAddr, req: &Parts) {
        let params = BeaconParams::from_query(req.uri.query().unwrap_or(""));
        self.take_beacon(kind, params, peer.ip(), &req.headers)
            .await;
        let route = if kind == EventType::Shared {
            "/s.gif"
        } else {
            "/p.gif"
        };
        self.metrics.count_request(route, 200);
    }

    /// Validates a pixel or beacon and queues its event; the outcome goes
    /// to metrics only.
    async fn take_beacon(
        &self,
        kind: EventType,
        p: BeaconParams,
        peer: IpAddr,
        headers: &HeaderMap,
    ) {
        let outcome = self.beacon_outcome(kind, p, peer, headers).await;
        self.metrics.count_beacon(kind_label(kind), outcome);
    }

    async fn beacon_outcome(
        &self,
        kind: EventType,
        p: BeaconParams,
        peer: IpAddr,
        headers: &HeaderMap,
    ) -> &'static str {
        if p.check_ids().is_err() {
            return "invalid";
        }
        let ids = PixelIds {
            org_id: &p.org_id,
            issuer_id: &p.issuer_id,
            badge_class_id: &p.badge_class_id,
            assertion_id: &p.assertion_id,
        };
        match self.pixel_keys.get(&p.kid) {
            Some(key) if verify(key, &ids, &p.sig) => {}
            _ => return "bad_signature",
        }
        let channel = if kind == EventType::Shared {
            match beacon::share_channel(p.channel.as_deref()) {
                Ok(c) => Some(c),
                Err(_) => return "invalid",
            }
        } else {
            None
        };
        let user_agent = header_str(headers, header::USER_AGENT).unwrap_or("");
        if let Some(family) = beacon::bot_family(Some(user_agent)) {
            self.metrics
                .bots
                .with_label_values(&[family.as_str()])
                .inc();
            return "bot";
        }
        let ip = beacon::client_ip(
            peer,
            header_str(headers, "x-forwarded-for"),
            &self.config.trusted_proxies,
        );
        let now = Utc::now();
        let client = beacon::client_key(&self.limiter_key, ip, user_agent);
        if !self
            .limiter
            .lock()
            .expect("limiter lock")
            .allow(client, now.timestamp())
        {
            return "rate_limited";
        }
        let (source, country, viewer_key) = if kind == EventType::Viewed {
            let keyer = self.salts.keyer(now.date_naive()).await;
            let country = if self.config.country_header.is_empty() {
                None
            } else {
                header_str(headers, self.config.country_header.as_str())
                    .and_then(badgepulse_contract::event::parse_country)
                    .filter(|c| c != "XX")
            };
            (
                Some(beacon::view_source(
                    p.src.as_deref(),
                    header_str(headers, header::REFERER),
                    &self.config.platform_hosts,
                )),
                country,
                Some(keyer.key(ip, user_agent, &p.org_id)),
            )
        } else {
            (None, None, None)
        };
        let event = Event {
            event_id: uuid::Uuid::now_v7().to_string(),
            kind,
            occurred_at: now,
            received_at: now,
            org_id: p.org_id,
            issuer_id: p.issuer_id,
            badge_class_id: p.badge_class_id,
            assertion_id: p.assertion_id,
            award_method: None,
            channel,
            source,
            country,
            viewer_key,
            badge_class: None,
        };
        if self.queue.offer(&event) {
            "accepted"
        } else {
            "dropped"
        }
    }

    /// The token presented in `Authorization: Bearer …` (the scheme in any
    /// case, RFC 9110), compared by SHA-256 in constant time against every
    /// configured token.
    fn token(&self, headers: &HeaderMap) -> Option<&Token> {
        let (scheme, presented) = header_str(headers, header::AUTHORIZATION)?
            .trim()
            .split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let presented = presented.trim();
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for t in &self.tokens {
            if bool::from(t.sha256.ct_eq(&digest)) {
                found = Some(t);
            }
        }
        found
    }
}

/// Why a request body was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyError {
    /// Larger than the limit (the rest read and discarded, up to
    /// [`MAX_DISCARDED_BODY`], so the answer reaches the client).
    TooLarge,
    /// Not complete within the deadline: a slow client (issue 8).
    TooSlow,
    /// The client broke the body off.
    Broken,
}

/// The body if it is at most `limit` bytes and arrives completely within
/// `deadline` (the header read timeout: the server bounds how long headers
/// may take, this bounds the body).
async fn read_body(body: Body, limit: usize, deadline: Duration) -> Result<Bytes, BodyError> {
    let read = async {
        let mut stream = body.into_data_stream();
        let mut kept = Vec::new();
        let mut total = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| BodyError::Broken)?;
            total += chunk.len();
            if total <= limit {
                kept.extend_from_slice(&chunk);
            } else if total > limit + MAX_DISCARDED_BODY {
                return Err(BodyError::TooLarge);
            }
        }
        if total <= limit {
            Ok(Bytes::from(kept))
        } else {
            Err(BodyError::TooLarge)
        }
    };
    tokio::time::timeout(deadline, read)
        .await
        .unwrap_or(Err(BodyError::TooSlow))
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn platform_events(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(token) = s.token(&headers) else {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "Authorization: a valid Bearer token is required",
        );
    };
    let bytes: Bytes = match read_body(body, MAX_EVENTS_BODY, s.body_deadline()).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {MAX_EVENTS_BODY} bytes"),
            )
        }
        Err(BodyError::TooSlow) => {
            return json_error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "body not received within {} s (ingest.header_read_timeout_secs)",
                    s.body_deadline().as_secs()
                ),
            )
        }
        Err(BodyError::Broken) => {
            return json_error(StatusCode::BAD_REQUEST, "body broken off by the client")
        }
    };
    let doc: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!("body is not valid JSON: {e}"),
            )
        }
    };
    let Some(raw_events) = doc.get("events").and_then(Value::as_array) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "events: required, must be an array",
        );
    };
    if raw_events.len() > MAX_EVENTS {
        return json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("events: more than {MAX_EVENTS} events"),
        );
    }
    let now = Utc::now();
    let mut valid = Vec::with_capacity(raw_events.len());
    let mut rejected = Vec::new();
    for (index, raw) in raw_events.iter().enumerate() {
        let result = validate_platform_event(raw, now).and_then(|e| {
            if token.all_orgs || token.orgs.contains(&e.org_id) {
                Ok(e)
            } else {
                Err(badgepulse_contract::event::FieldError::new(
                    "org_id",
                    format!("this token may not write org {:?}", e.org_id),
                ))
            }
        });
        match result {
            Ok(e) => valid.push(e),
            Err(err) => rejected.push(json!({
                "index": index,
                "event_id": raw_event_id(raw),
                "error": err.to_string(),
            })),
        }
    }
    let timeout = Duration::from_millis(s.config.publish_timeout_ms);
    match publish_events(&s.jetstream, &valid, s.partitions, timeout, &s.metrics).await {
        Ok((accepted, duplicates)) => {
            s.metrics
                .events
                .with_label_values(&["accepted"])
                .inc_by(accepted as u64);
            s.metrics
                .events
                .with_label_values(&["duplicate"])
                .inc_by(duplicates as u64);
            s.metrics
                .events
                .with_label_values(&["rejected"])
                .inc_by(rejected.len() as u64);
            Json(json!({ "accepted": accepted, "duplicates": duplicates, "rejected": rejected }))
                .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, events = valid.len(), "platform events not stored; answering 503");
            let mut r = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{e}; nothing was accepted, retry later"),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
    }
}

async fn share_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SHARE_JS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gif_is_a_43_byte_gif89a() {
        assert_eq!(GIF.len(), 43);
        assert_eq!(&GIF[..6], b"GIF89a");
        assert_eq!(GIF[42], 0x3b);
    }
}
