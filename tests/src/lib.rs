//! Test fixtures: the real NATS, ClickHouse, ZooKeeper and Prometheus
//! binaries and the badgepulse services, each started on free loopback
//! ports with its own temporary data directory and stopped in `Drop`; one
//! module per service, everything re-exported here.
//!
//! Binaries of the workspace are looked up next to the test executable
//! (`target/<profile>/`); `scripts/test.sh` builds them before `cargo test`.
//!
//! Beside the fixtures, [`openapi`] checks real API answers against the
//! exporter's OpenAPI document.

pub mod browser;
pub mod clickhouse;
pub mod nats;
pub mod openapi;
pub mod process;
pub mod prometheus;
pub mod services;
pub mod workload;
pub mod zookeeper;

pub use browser::*;
pub use clickhouse::*;
pub use nats::*;
pub use openapi::OpenApi;
pub use process::system_binary;
pub use prometheus::*;
pub use services::*;
pub use zookeeper::*;

use std::fs;
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A port that was free a moment ago, below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`) and never handed out before by this
/// process.
///
/// Outside the ephemeral range, because the services connect out (to NATS,
/// ClickHouse) before they bind their own ports: an ephemeral port the
/// kernel just handed back as "free" could be taken as the source port of
/// such a connection in between, and the bind then fails (seen in CI).
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, RandomState};
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (low, high) = (10_000u16, ephemeral_low.max(11_000));
    let random = RandomState::new();
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    for attempt in 0u64..10_000 {
        let port = low + (random.hash_one(attempt) % u64::from(high - low)) as u16;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// Polls `url` until it answers 2xx or `timeout` passes.
pub async fn wait_http(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("{url} not ready after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lowercase hex SHA-256, as configured for tokens and API keys.
pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// Parses RFC 4180 CSV (quoted fields, doubled quotes, CRLF line ends),
/// written independently of the exporter's writer; panics on a CR without
/// LF or a last line without CRLF.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF");
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(field.is_empty() && row.is_empty(), "CSV must end with CRLF");
    rows
}
