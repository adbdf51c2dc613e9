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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server answering each request with the next of `answers`
    /// (status, extra header lines, body), one request per connection;
    /// returns its URL and when each request arrived.
    async fn scripted(
        answers: Vec<(u16, &'static str, &'static str)>,
    ) -> (String, Arc<Mutex<Vec<Instant>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for (status, headers, body) in answers {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then the body by Content-Length.
                let body_len = loop {
                    let n = conn.read(&mut buf).await.unwrap();
                    req.extend_from_slice(&buf[..n]);
                    if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&req[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        break end + 4 + len;
                    }
                };
                while req.len() < body_len {
                    let n = conn.read(&mut buf).await.unwrap();
                    req.extend_from_slice(&buf[..n]);
                }
                log.lock().unwrap().push(Instant::now());
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
                    body.len()
                );
                conn.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        (url, seen)
    }

    fn sender(url: &str) -> Sender {
        let backoff = Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(5),
        };
        Sender::new(url, "t", Duration::from_secs(10), backoff).unwrap()
    }

    #[tokio::test]
    async fn busy_answers_are_retried_after_retry_after() {
        let ok = r#"{"accepted":1,"duplicates":0,"rejected":[{"index":1,"event_id":"e2","error":"channel: unknown value"}]}"#;
        let (url, seen) = scripted(vec![
            (429, "Retry-After: 1\r\n", "{\"error\":\"slow down\"}"),
            (503, "", "{\"error\":\"nats\"}"),
            (502, "", "bad gateway"),
            (200, "Content-Type: application/json\r\n", ok),
        ])
        .await;
        let answer = sender(&url)
            .send(0, Bytes::from_static(b"{\"events\":[]}"))
            .await
            .unwrap();
        assert_eq!(answer.accepted, 1);
        assert_eq!(answer.rejected[0].index, 1);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 4);
        assert!(
            seen[1] - seen[0] >= Duration::from_secs(1),
            "Retry-After: 1 was not honoured: {:?}",
            seen[1] - seen[0]
        );
    }

    #[tokio::test]
    async fn unauthorized_and_too_large_are_fatal() {
        let (url, _) = scripted(vec![(401, "", "{\"error\":\"token\"}")]).await;
        let err = sender(&url).send(0, Bytes::new()).await.unwrap_err();
        assert!(err.0.starts_with("401"), "{err}");
        let (url, _) = scripted(vec![(413, "", "{\"error\":\"big\"}")]).await;
        let err = sender(&url).send(3, Bytes::new()).await.unwrap_err();
        assert!(err.0.contains("--batch-size"), "{err}");
    }

    #[test]
    fn retry_after_in_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "5".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(5)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
