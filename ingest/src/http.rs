//! The public HTTP interface of ingest (SPEC §4): the route table, and
//! for each route what the request says, handed to the beacon decision
//! (`beacons`) or the platform events logic (`platform`). Bodies are
//! bounded in size and in time. The admin listener is `main.rs`'s.
//!
//! Must not: answer a pixel with anything but the GIF, or decide anything
//! about a beacon or an event itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use badgepulse_contract::event::EventType;
use badgepulse_contract::pixel::PixelQuery;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::beacons::{BeaconRequest, Beacons, Outcome};
use crate::config::IngestConfig;
use crate::metrics::{Metrics, OTHER_ROUTE, ROUTES};
use crate::platform::Platform;

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

/// What every handler needs.
pub struct AppState {
    pub beacons: Beacons,
    pub platform: Platform,
    pub metrics: Metrics,
    /// `ingest.country_header`, if configured.
    country_header: Option<HeaderName>,
    /// How long a request body may take to arrive
    /// (`ingest.header_read_timeout_secs`).
    body_deadline: Duration,
}

impl AppState {
    pub fn new(
        config: &IngestConfig,
        beacons: Beacons,
        platform: Platform,
        metrics: Metrics,
    ) -> Self {
        AppState {
            beacons,
            platform,
            metrics,
            country_header: (!config.country_header.is_empty()).then(|| {
                HeaderName::from_bytes(config.country_header.as_bytes())
                    .expect("validated at start-up")
            }),
            body_deadline: Duration::from_secs(config.header_read_timeout_secs),
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    // The pixels count and time their own requests: the request-counting
    // middleware (boxed futures, a state clone) cost them 8 % of their
    // throughput.
    let pixel_methods = || {
        any(|State(s): State<Arc<AppState>>, req: Request| async move {
            let started = Instant::now();
            // Only the pixel routes get here, so the path is their template.
            s.metrics.count_request(req.uri().path(), 405, started);
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

/// Counts and times every request by route (`other` for unknown paths)
/// and status.
async fn count_requests(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = ROUTES
        .into_iter()
        .find(|r| *r == req.uri().path())
        .unwrap_or(OTHER_ROUTE);
    let response = next.run(req).await;
    s.metrics
        .count_request(route, response.status().as_u16(), started);
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
    let started = Instant::now();
    s.take_pixel(EventType::Viewed, peer, &req.into_parts().0, started)
        .await;
    gif()
}

async fn share_pixel(
    State(s): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let started = Instant::now();
    s.take_pixel(EventType::Shared, peer, &req.into_parts().0, started)
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
    let parsed = read_body(body, MAX_BEACON_BODY, s.body_deadline)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<BeaconBody>(&b).ok());
    let kind = match parsed.as_ref().map(|b| b.kind.as_str()) {
        Some("view") => EventType::Viewed,
        Some("share") => EventType::Shared,
        _ => {
            // Which kind it was meant to be is unknown; count it as a view.
            s.metrics.count_beacon("view", Outcome::Invalid.as_str());
            return StatusCode::NO_CONTENT;
        }
    };
    let b = parsed.expect("matched above");
    let query = PixelQuery {
        org_id: b.o,
        issuer_id: b.i,
        badge_class_id: b.b,
        assertion_id: b.a,
        kid: b.kid,
        sig: b.sig,
        src: b.src,
        channel: b.channel,
    };
    s.beacons
        .take(s.beacon_request(kind, query, peer, &parts.headers))
        .await;
    StatusCode::NO_CONTENT
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl AppState {
    /// What a beacon request said, borrowed from its headers.
    fn beacon_request<'a>(
        &self,
        kind: EventType,
        query: PixelQuery,
        peer: SocketAddr,
        headers: &'a HeaderMap,
    ) -> BeaconRequest<'a> {
        BeaconRequest {
            kind,
            query,
            peer: peer.ip(),
            user_agent: header_str(headers, header::USER_AGENT),
            forwarded_for: header_str(headers, "x-forwarded-for"),
            referer: header_str(headers, header::REFERER),
            country: self
                .country_header
                .as_ref()
                .and_then(|name| header_str(headers, name)),
        }
    }

    /// A pixel: the parameters come from the query string, headers are
    /// read in place. Counts and times the request (always answered 200),
    /// as pixels bypass the counting middleware.
    async fn take_pixel(&self, kind: EventType, peer: SocketAddr, req: &Parts, started: Instant) {
        let query = PixelQuery::parse(req.uri.query().unwrap_or(""));
        self.beacons
            .take(self.beacon_request(kind, query, peer, &req.headers))
            .await;
        let route = if kind == EventType::Shared {
            "/s.gif"
        } else {
            "/p.gif"
        };
        self.metrics.count_request(route, 200, started);
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
    let Some(grant) = s
        .platform
        .grant(header_str(&headers, header::AUTHORIZATION))
    else {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "Authorization: a valid Bearer token is required",
        );
    };
    let bytes: Bytes = match read_body(body, MAX_EVENTS_BODY, s.body_deadline).await {
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
                    s.body_deadline.as_secs()
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
    match s.platform.accept(grant, raw_events).await {
        Ok(a) => Json(json!({
            "accepted": a.accepted,
            "duplicates": a.duplicates,
            "rejected": a.rejected,
        }))
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, events = raw_events.len(), "platform events not stored; answering 503");
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
