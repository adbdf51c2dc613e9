//! Sends one batch to `POST /v1/events` until it is answered `200`.
//!
//! `503` and `429` wait as long as `Retry-After` says (seconds; the
//! backoff when it is missing); connection errors, timeouts, `408` and
//! other `5xx` retry with exponential backoff and jitter. Retrying is safe
//! because ingest stores nothing of a batch it answers with an error, and
//! an event it stored is a duplicate by `event_id`. `400`, `401`, `403`,
//! `413` and any other answer are fatal: retrying cannot change them.

use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Deserialize;

/// The answer to a batch (SPEC §4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Answer {
    pub accepted: u64,
    pub duplicates: u64,
    #[serde(default)]
    pub rejected: Vec<Rejected>,
}

/// One event the server refused.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Rejected {
    pub index: usize,
    #[serde(default)]
    pub event_id: Option<String>,
    pub error: String,
}

/// An answer that retrying cannot change.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

/// Retry timing.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// Longest wait a `Retry-After` may ask for.
    pub max_retry_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(200),
            max: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

/// A client of one ingest's `/v1/events`.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    url: String,
    token: String,
    backoff: Backoff,
}

impl Sender {
    /// `base` is ingest's URL (`http://127.0.0.1:8080`) or the full
    /// `…/v1/events`.
    pub fn new(
        base: &str,
        token: &str,
        timeout: Duration,
        backoff: Backoff,
    ) -> Result<Sender, Fatal> {
        let base = base.trim_end_matches('/');
        let url = if base.ends_with("/v1/events") {
            base.to_owned()
        } else {
            format!("{base}/v1/events")
        };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Fatal(format!("--url: {e}")))?;
        Ok(Sender {
            client,
            url,
            token: token.to_owned(),
            backoff,
        })
    }

    /// Sends `body` until it is answered `200`; `batch` names it in logs.
    /// `body` is cloned for each attempt, which copies no bytes.
    pub async fn send(&self, batch: u64, body: Bytes) -> Result<Answer, Fatal> {
        let mut delay = self.backoff.first;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = self
                .client
                .post(&self.url)
                .header(AUTHORIZATION, format!("Bearer {}", self.token))
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let wait = match result {
                Ok(r) if r.status() == StatusCode::OK => {
                    let text = r
                        .bytes()
                        .await
                        .map_err(|e| Fatal(format!("batch {batch}: reading the answer: {e}")));
                    match text {
                        Ok(text) => {
                            return serde_json::from_slice(&text).map_err(|e| {
                                Fatal(format!(
                                    "batch {batch}: the answer is not SPEC §4's {{\"accepted\",\"duplicates\",\"rejected\"}}: {e}"
                                ))
                            })
                        }
                        // The body broke off: the outcome is unknown, and
                        // sending again is safe.
                        Err(e) => {
                            tracing::warn!(batch, attempt, error = %e, "answer broke off; sending again");
                            jitter(delay)
                        }
                    }
                }
                Ok(r) => {
                    let status = r.status();
                    let retry_after = retry_after(r.headers());
                    let text = r.text().await.unwrap_or_default();
                    let text = text.trim();
                    match status {
                        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                            let wait = retry_after
                                .map(|w| w.min(self.backoff.max_retry_after))
                                .unwrap_or_else(|| jitter(delay));
                            tracing::warn!(batch, attempt, %status, wait_ms = wait.as_millis() as u64, answer = text, "server busy; waiting as told");
                            wait
                        }
                        s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                            tracing::warn!(batch, attempt, %status, answer = text, "server error; retrying");
                            jitter(delay)
                        }
                        StatusCode::UNAUTHORIZED => {
                            return Err(Fatal(format!(
                                "401 from {}: the token is missing or unknown (--token or BADGEPULSE_IMPORT_TOKEN): {text}",
                                self.url
                            )))
                        }
                        StatusCode::PAYLOAD_TOO_LARGE => {
                            return Err(Fatal(format!(
                                "413 from {} for batch {batch}: the server takes smaller requests than SPEC §4's 1,000 events and 1 MiB; lower --batch-size: {text}",
                                self.url
                            )))
                        }
                        s => {
                            return Err(Fatal(format!(
                                "{s} from {} for batch {batch}: {text}",
                                self.url
                            )))
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(batch, attempt, error = %error_chain(&e), "request failed; retrying");
                    jitter(delay)
                }
            };
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(self.backoff.max);
        }
    }
}

/// `Retry-After` in seconds (an HTTP date is not used by ingest and is
/// treated as absent).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(Duration::from_secs)
}

/// `d` scaled by a random factor in [0.5, 1.5).
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
