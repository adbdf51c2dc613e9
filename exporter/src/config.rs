//! Configuration of the exporter: `[exporter]` plus the shared `[nats]` and
//! `[clickhouse]` sections. Defaults live in the `Default` impls;
//! `validate()` rejects bad values at start-up naming the key.
//!
//! This file only describes and checks settings; API keys are turned into
//! a lookup table by `auth.rs`.

use std::net::SocketAddr;
use std::path::Path;

use badgepulse_runtime::logging::LogConfig;
use badgepulse_runtime::server;
use badgepulse_runtime::settings::{self, ClickHouseConfig, NatsConfig};
use serde::de::IgnoredAny;
use serde::Deserialize;

use badgepulse_runtime::keys::parse_sha256;

use crate::model::benchmark::MIN_PEERS_FLOOR;
use crate::model::scope::Scope;

/// The whole config file as the exporter sees it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub nats: NatsConfig,
    pub clickhouse: ClickHouseConfig,
    pub exporter: ExporterConfig,
    pub log: LogConfig,
    /// Other services' sections: accepted, not read.
    pub ingest: Option<IgnoredAny>,
    pub aggregator: Option<IgnoredAny>,
}

/// One `[[exporter.api_keys]]` entry: an API key stored as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Hex SHA-256 of the API key (64 hex characters).
    pub sha256: String,
    /// What the key may read: `admin`, `org:ORG`, `issuer:ORG/ISSUER` or
    /// `badge:ORG/BADGE_CLASS`.
    pub scope: String,
}

/// `[exporter]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExporterConfig {
    /// API listen address: `/api/v1/*` and `/report`, reached by tenants.
    pub bind: SocketAddr,
    /// Admin listen address: `/healthz`, `/readyz` and `/metrics`, which
    /// holds every tenant's figures (never on `bind`).
    pub admin_bind: SocketAddr,
    /// API keys of `/api/v1/*`.
    pub api_keys: Vec<ApiKeyConfig>,
    /// How often the business metrics behind `/metrics` are recomputed, seconds.
    pub refresh_interval_secs: u64,
    /// Most distinct `org_id` label values in `/metrics`; the rest are
    /// folded into `org_id="__other__"`.
    pub max_label_orgs: usize,
    /// Most distinct (`org_id`, `issuer_id`) label pairs in `/metrics`; the
    /// rest are folded into `issuer_id="__other__"`.
    pub max_label_issuers: usize,
    /// Badge classes with fewer awards in the window are flagged
    /// `low_sample` in top-badges rankings; an impact needs as many in
    /// each cohort (or window) to be `significant`, a timing cell to be
    /// the `best`, an org or issuer to count as a benchmark peer.
    pub min_awarded: u64,
    /// The peer benchmark (SPEC §7.10) ranks a measure only when at least
    /// this many peers (orgs, or the issuers of every org) qualify;
    /// otherwise its percentile and quartiles are null. At least 5: fewer
    /// peers' quartiles come too close to each peer's own value.
    pub benchmark_min_peers: u64,
    /// Longest a single ClickHouse query may take, seconds.
    pub query_timeout_secs: u64,
    /// Days of `rollup_minute` buckets the aggregator keeps: must equal
    /// `aggregator.retention_minute_days`. Older minute pieces of a window
    /// are answered from raw `events`.
    pub rollup_minute_days: u32,
    /// Days of `rollup_hour` buckets the aggregator keeps: must equal
    /// `aggregator.retention_hour_days`. Older hour pieces of a window are
    /// answered from raw `events`.
    pub rollup_hour_days: u32,
    /// How long a connection may go without a request, seconds: a new
    /// connection whose headers have not arrived (slowloris) is closed
    /// after it, a kept-alive one after one to two times it without a new
    /// request (see `badgepulse_runtime::server`).
    pub header_read_timeout_secs: u64,
    /// Memory for cached query results, bytes (an estimate); 0 turns the
    /// result cache off. Results are dropped when the aggregator's change
    /// notices on NATS say their data changed.
    pub cache_max_bytes: usize,
    /// Longest a cached result is served, seconds: the bound on staleness
    /// should a change notice be lost (e.g. a read replica behind).
    pub cache_max_age_secs: u64,
    /// With a ClickHouse cluster (`clickhouse.cluster`), each change
    /// notice is applied again this many seconds later, so that a result
    /// read from a replica that had not yet caught up is dropped too;
    /// 0: once only. Ignored on a single server.
    pub cache_replica_grace_secs: u64,
    /// An endpoint's whole answer is kept and, when a change notice touches
    /// its org, recomputed in the background; meanwhile it is served for
    /// at most this long after the notice, milliseconds (0: never stale).
    pub cache_max_staleness_ms: u64,
    /// An answer for a window up to now (no `to`) is served while its
    /// window ends at most this long before the request, seconds (and
    /// refreshed in the background past half of it).
    pub cache_live_window_secs: u64,
    /// Answers requested within this many seconds are the ones refreshed
    /// in the background (0: none; each is recomputed when next asked).
    pub cache_keep_warm_secs: u64,
    /// Most background refreshes of answers running at once.
    pub cache_refresh_concurrency: usize,
}

impl Default for ExporterConfig {
    fn default() -> Self {
        ExporterConfig {
            bind: "127.0.0.1:8081".parse().expect("valid default"),
            admin_bind: "127.0.0.1:8084".parse().expect("valid default"),
            api_keys: Vec::new(),
            refresh_interval_secs: 15,
            max_label_orgs: 100,
            max_label_issuers: 500,
            min_awarded: 10,
            benchmark_min_peers: 10,
            query_timeout_secs: 30,
            rollup_minute_days: 7,
            rollup_hour_days: 400,
            header_read_timeout_secs: server::DEFAULT_HEADER_READ_TIMEOUT_SECS,
            cache_max_bytes: 64 * 1024 * 1024,
            cache_max_age_secs: 300,
            cache_replica_grace_secs: 5,
            cache_max_staleness_ms: 1_000,
            cache_live_window_secs: 60,
            cache_keep_warm_secs: 120,
            cache_refresh_concurrency: 2,
        }
    }
}

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Self, settings::LoadError> {
        let config: Config = settings::load(file)?;
        config.validate().map_err(settings::LoadError::Invalid)?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.nats.validate()?;
        self.log.validate()?;
        self.clickhouse.validate()?;
        let e = &self.exporter;
        if e.admin_bind == e.bind {
            return Err(format!(
                "exporter.admin_bind {} must differ from exporter.bind: /metrics holds every tenant's figures",
                e.admin_bind
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (n, key) in e.api_keys.iter().enumerate() {
            let hash = parse_sha256(&key.sha256).ok_or_else(|| {
                format!("exporter.api_keys[{n}].sha256 must be 64 hex characters (the SHA-256 of the API key)")
            })?;
            if !seen.insert(hash) {
                return Err(format!(
                    "exporter.api_keys[{n}].sha256 repeats an earlier key"
                ));
            }
            key.scope
                .parse::<Scope>()
                .map_err(|msg| format!("exporter.api_keys[{n}].scope {:?}: {msg}", key.scope))?;
        }
        if e.refresh_interval_secs == 0 || e.refresh_interval_secs > 3_600 {
            return Err("exporter.refresh_interval_secs must be between 1 and 3600".into());
        }
        if e.max_label_orgs == 0 || e.max_label_orgs > 10_000 {
            return Err("exporter.max_label_orgs must be between 1 and 10000".into());
        }
        if e.max_label_issuers == 0 || e.max_label_issuers > 100_000 {
            return Err("exporter.max_label_issuers must be between 1 and 100000".into());
        }
        if e.benchmark_min_peers < MIN_PEERS_FLOOR || e.benchmark_min_peers > 1_000_000 {
            return Err(format!(
                "exporter.benchmark_min_peers must be between {MIN_PEERS_FLOOR} and 1000000"
            ));
        }
        if e.query_timeout_secs == 0 || e.query_timeout_secs > 3_600 {
            return Err("exporter.query_timeout_secs must be between 1 and 3600".into());
        }
        if e.rollup_minute_days == 0 {
            return Err("exporter.rollup_minute_days must be at least 1 (as aggregator.retention_minute_days)".into());
        }
        if e.rollup_hour_days == 0 {
            return Err(
                "exporter.rollup_hour_days must be at least 1 (as aggregator.retention_hour_days)"
                    .into(),
            );
        }
        if e.cache_max_bytes > 64 * 1024 * 1024 * 1024 {
            return Err("exporter.cache_max_bytes must be at most 68719476736 (64 GiB)".into());
        }
        if e.cache_max_age_secs == 0 || e.cache_max_age_secs > 86_400 {
            return Err("exporter.cache_max_age_secs must be between 1 and 86400".into());
        }
        if e.cache_replica_grace_secs >= e.cache_max_age_secs {
            return Err(
                "exporter.cache_replica_grace_secs must be less than exporter.cache_max_age_secs"
                    .into(),
            );
        }
        if e.cache_max_staleness_ms > 60_000 {
            return Err("exporter.cache_max_staleness_ms must be at most 60000".into());
        }
        if e.cache_live_window_secs == 0 || e.cache_live_window_secs > e.cache_max_age_secs {
            return Err(
                "exporter.cache_live_window_secs must be between 1 and exporter.cache_max_age_secs"
                    .into(),
            );
        }
        if e.cache_keep_warm_secs > 86_400 {
            return Err("exporter.cache_keep_warm_secs must be at most 86400".into());
        }
        if e.cache_refresh_concurrency == 0 || e.cache_refresh_concurrency > 64 {
            return Err("exporter.cache_refresh_concurrency must be between 1 and 64".into());
        }
        server::validate_header_read_timeout(
            "exporter.header_read_timeout_secs",
            e.header_read_timeout_secs,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sha256: &str, scope: &str) -> ApiKeyConfig {
        ApiKeyConfig {
            sha256: sha256.into(),
            scope: scope.into(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.exporter.bind.to_string(), "127.0.0.1:8081");
        assert_eq!(c.exporter.refresh_interval_secs, 15);
        assert_eq!(c.exporter.max_label_orgs, 100);
        assert_eq!(c.exporter.max_label_issuers, 500);
        assert_eq!(c.exporter.min_awarded, 10);
        assert_eq!(c.exporter.benchmark_min_peers, 10);
        assert_eq!(c.exporter.rollup_minute_days, 7);
        assert_eq!(c.exporter.rollup_hour_days, 400);
        assert_eq!(c.exporter.header_read_timeout_secs, 10);
        assert_eq!(c.exporter.cache_max_bytes, 64 << 20);
        assert_eq!(c.exporter.cache_max_age_secs, 300);
        assert_eq!(c.exporter.cache_max_staleness_ms, 1_000);
        for (key, set) in [
            (
                "exporter.cache_max_staleness_ms",
                (|e: &mut ExporterConfig| e.cache_max_staleness_ms = 60_001)
                    as fn(&mut ExporterConfig),
            ),
            ("exporter.cache_live_window_secs", |e| {
                e.cache_live_window_secs = 0
            }),
            ("exporter.cache_live_window_secs", |e| {
                e.cache_live_window_secs = 301
            }),
            ("exporter.cache_keep_warm_secs", |e| {
                e.cache_keep_warm_secs = 86_401
            }),
            ("exporter.cache_refresh_concurrency", |e| {
                e.cache_refresh_concurrency = 0
            }),
            ("exporter.benchmark_min_peers", |e| {
                e.benchmark_min_peers = 4
            }),
        ] {
            let mut bad = Config::default();
            set(&mut bad.exporter);
            let err = bad.validate().unwrap_err();
            assert!(err.starts_with(key), "{err}");
        }
        let mut bad = Config::default();
        bad.exporter.cache_max_age_secs = 0;
        let err = bad.validate().unwrap_err();
        assert!(err.starts_with("exporter.cache_max_age_secs"), "{err}");
        let mut bad = Config::default();
        bad.exporter.rollup_hour_days = 0;
        let err = bad.validate().unwrap_err();
        assert!(err.starts_with("exporter.rollup_hour_days"), "{err}");
        let mut bad = Config::default();
        bad.exporter.header_read_timeout_secs = 301;
        let err = bad.validate().unwrap_err();
        assert!(
            err.starts_with("exporter.header_read_timeout_secs"),
            "{err}"
        );
    }

    #[test]
    fn bad_keys_name_the_key() {
        let good = "a".repeat(64);
        let mut c = Config::default();
        c.exporter.api_keys = vec![key(&good, "admin"), key("abc", "admin")];
        let err = c.validate().unwrap_err();
        assert!(err.contains("exporter.api_keys[1].sha256"), "{err}");

        c.exporter.api_keys = vec![key(&good, "org:acme"), key(&"b".repeat(64), "issuer:acme")];
        let err = c.validate().unwrap_err();
        assert!(err.contains("exporter.api_keys[1].scope"), "{err}");

        c.exporter.api_keys = vec![key(&good, "org:acme"), key(&good.to_uppercase(), "admin")];
        let err = c.validate().unwrap_err();
        assert!(err.contains("exporter.api_keys[1].sha256 repeats"), "{err}");

        c.exporter.api_keys = vec![
            key(&good, "badge:acme/b-1"),
            key(&"b".repeat(64), "issuer:acme/i.1"),
        ];
        c.validate().unwrap();
    }

    #[test]
    fn loads_from_toml() {
        let dir = std::env::temp_dir().join(format!("bp-exporter-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            format!(
                "[clickhouse]\ndatabase = \"bp\"\n[ingest]\nbind = \"127.0.0.1:1\"\n\
                 [exporter]\nbind = \"127.0.0.1:9999\"\nmax_label_orgs = 7\n\
                 [[exporter.api_keys]]\nsha256 = \"{}\"\nscope = \"org:acme\"\n",
                "c".repeat(64)
            ),
        )
        .unwrap();
        let c = Config::load(Some(&file)).unwrap();
        assert_eq!(c.clickhouse.database, "bp");
        assert_eq!(c.exporter.bind.port(), 9999);
        assert_eq!(c.exporter.max_label_orgs, 7);
        assert_eq!(c.exporter.api_keys[0].scope, "org:acme");

        std::fs::write(&file, "[exporter]\nbindd = \"x\"\n").unwrap();
        let err = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("bindd"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_example_config_documents_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/badgepulse.example.toml");
        let mut example = Config::load(Some(&path)).unwrap().exporter;
        example.api_keys.clear();
        assert_eq!(example, ExporterConfig::default());
    }
}
