//! Configuration of ingest: `[ingest]` plus the shared `[nats]` section.
//! Defaults live in the `Default` impls; `validate()` rejects bad values at
//! start-up naming the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use badgepulse_contract::event::is_valid_id;
use badgepulse_runtime::logging::LogConfig;
use badgepulse_runtime::server;
use badgepulse_runtime::settings::{self, NatsConfig};
use ipnet::IpNet;
use serde::de::IgnoredAny;
use serde::Deserialize;

/// The whole config file as ingest sees it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub nats: NatsConfig,
    pub ingest: IngestConfig,
    pub log: LogConfig,
    /// Other services' sections: accepted, not read.
    pub clickhouse: Option<IgnoredAny>,
    pub aggregator: Option<IgnoredAny>,
    pub exporter: Option<IgnoredAny>,
}

/// A bearer token of the platform events API, stored as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Lowercase hex SHA-256 of the bearer token.
    pub sha256: String,
    /// Orgs the token may write; `["*"]` for all.
    pub orgs: Vec<String>,
}

/// `[ingest]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Public HTTP listen address: pixels, beacons, platform events.
    pub bind: SocketAddr,
    /// Admin listen address: `/healthz`, `/readyz`, `/metrics` (never on
    /// `bind`, which badge pages on the internet reach).
    pub admin_bind: SocketAddr,
    /// Public base URL of ingest, used by `sign-url` to build pixel URLs.
    pub public_url: String,
    /// Hosts of the badge platform itself: a Referer there is view source `platform`.
    #[serde(deserialize_with = "settings::list")]
    pub platform_hosts: Vec<String>,
    /// CIDRs of proxies whose `X-Forwarded-For` is believed.
    #[serde(deserialize_with = "settings::list")]
    pub trusted_proxies: Vec<IpNet>,
    /// Header carrying the viewer's country (e.g. `CF-IPCountry`); empty: none.
    pub country_header: String,
    /// Pixel signing keys by key id; several at once for rotation.
    pub pixel_keys: BTreeMap<String, String>,
    /// Bearer tokens of `POST /v1/events`.
    pub tokens: Vec<TokenConfig>,
    /// Beacons accepted per client (keyed hash of IP and User-Agent) per minute.
    pub rate_limit_per_minute: u32,
    /// Beacons accepted and not yet acked (queued, batched or retrying, e.g. during a NATS
    /// outage), about 350 bytes each; beyond it they are dropped and counted.
    pub buffer_capacity: usize,
    /// Most beacons per JetStream message.
    pub batch_max_beacons: usize,
    /// A beacon waits at most this long for its batch to fill, milliseconds.
    pub batch_max_delay_ms: u64,
    /// Beacon batches being published at once.
    pub max_inflight_batches: usize,
    /// Time to wait for a JetStream PubAck before answering 503, milliseconds.
    pub publish_timeout_ms: u64,
    /// On SIGTERM, how long to keep trying to publish buffered beacons, seconds.
    pub drain_timeout_secs: u64,
    /// How long a connection may go without a request, seconds: a new
    /// connection whose headers have not arrived (slowloris) is closed
    /// after it, a kept-alive one after one to two times it without a new
    /// request (see `badgepulse_runtime::server`).
    pub header_read_timeout_secs: u64,
    /// Threads serving HTTP, each keeping its connections; 0: two per core
    /// the process may use.
    pub http_threads: usize,
}

impl IngestConfig {
    /// The threads that serve HTTP: `http_threads`, or two per core.
    /// Two per core, not one: when the kernel pauses a thread, only its
    /// share of the connections waits (measured on 2 cores shared with the
    /// load generator, 4 threads served 5 to 25 % more pixels per second
    /// than 2, and 8 fewer than 4; see `bench/ingest.sh`).
    pub fn http_threads(&self) -> usize {
        match self.http_threads {
            0 => 2 * server::cores(),
            n => n,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            bind: "127.0.0.1:8080".parse().expect("valid default"),
            admin_bind: "127.0.0.1:8083".parse().expect("valid default"),
            public_url: "http://127.0.0.1:8080".into(),
            platform_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            country_header: String::new(),
            pixel_keys: BTreeMap::new(),
            tokens: Vec::new(),
            rate_limit_per_minute: 120,
            buffer_capacity: 100_000,
            batch_max_beacons: 256,
            batch_max_delay_ms: 5,
            max_inflight_batches: 32,
            publish_timeout_ms: 5_000,
            drain_timeout_secs: 30,
            header_read_timeout_secs: server::DEFAULT_HEADER_READ_TIMEOUT_SECS,
            http_threads: 0,
        }
    }
}

/// Most `ingest.http_threads` accepted.
pub const MAX_HTTP_THREADS: usize = 1024;

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Self, settings::LoadError> {
        let config: Config = settings::load(file)?;
        config.validate().map_err(settings::LoadError::Invalid)?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.nats.validate()?;
        self.log.validate()?;
        let i = &self.ingest;
        if i.admin_bind == i.bind {
            return Err(format!(
                "ingest.admin_bind {} must differ from ingest.bind: /metrics and the probes never share the public listener",
                i.admin_bind
            ));
        }
        for (kid, key) in &i.pixel_keys {
            if !is_valid_id(kid) {
                return Err(format!(
                    "ingest.pixel_keys: key id {kid:?} may contain only A-Z, a-z, 0-9 and . _ : -"
                ));
            }
            if key.len() < 16 {
                return Err(format!(
                    "ingest.pixel_keys.{kid}: secret must be at least 16 characters"
                ));
            }
        }
        for (n, t) in i.tokens.iter().enumerate() {
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("ingest.tokens[{n}].sha256 must be 64 hex characters (the SHA-256 of the token)"));
            }
            if t.orgs.is_empty() {
                return Err(format!(
                    "ingest.tokens[{n}].orgs must name at least one org, or \"*\""
                ));
            }
            if let Some(o) = t.orgs.iter().find(|o| o.as_str() != "*" && !is_valid_id(o)) {
                return Err(format!(
                    "ingest.tokens[{n}].orgs: {o:?} is not a valid org id"
                ));
            }
        }
        if !i.country_header.is_empty()
            && axum::http::HeaderName::from_bytes(i.country_header.as_bytes()).is_err()
        {
            return Err(format!(
                "ingest.country_header {:?} is not a valid header name",
                i.country_header
            ));
        }
        if i.rate_limit_per_minute == 0 {
            return Err("ingest.rate_limit_per_minute must be at least 1".into());
        }
        if i.buffer_capacity == 0 || i.batch_max_beacons == 0 || i.max_inflight_batches == 0 {
            return Err("ingest.buffer_capacity, batch_max_beacons and max_inflight_batches must be at least 1".into());
        }
        if i.batch_max_beacons > 4096 {
            return Err("ingest.batch_max_beacons must be at most 4096 (NATS max payload)".into());
        }
        if i.publish_timeout_ms == 0 {
            return Err("ingest.publish_timeout_ms must be at least 1".into());
        }
        server::validate_header_read_timeout(
            "ingest.header_read_timeout_secs",
            i.header_read_timeout_secs,
        )?;
        if i.http_threads > MAX_HTTP_THREADS {
            return Err(format!(
                "ingest.http_threads must be at most {MAX_HTTP_THREADS} (0: two per core)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key() {
        let mut c = Config::default();
        assert!(c.validate().is_ok());
        c.ingest.pixel_keys.insert("k1".into(), "short".into());
        assert!(c.validate().unwrap_err().contains("ingest.pixel_keys.k1"));
        c.ingest.pixel_keys.clear();
        c.ingest.tokens.push(TokenConfig {
            sha256: "abc".into(),
            orgs: vec!["*".into()],
        });
        assert!(c
            .validate()
            .unwrap_err()
            .contains("ingest.tokens[0].sha256"));
        c.ingest.tokens.clear();
        c.ingest.header_read_timeout_secs = 0;
        let err = c.validate().unwrap_err();
        assert!(err.starts_with("ingest.header_read_timeout_secs"), "{err}");
        c.ingest.header_read_timeout_secs = 10;
        c.ingest.http_threads = MAX_HTTP_THREADS + 1;
        let err = c.validate().unwrap_err();
        assert!(err.starts_with("ingest.http_threads"), "{err}");
    }

    #[test]
    fn http_threads_default_to_two_per_core() {
        let mut c = IngestConfig::default();
        assert_eq!(c.http_threads(), 2 * server::cores());
        c.http_threads = 3;
        assert_eq!(c.http_threads(), 3);
    }
}
