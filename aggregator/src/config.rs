//! Configuration of the aggregator: `[aggregator]` plus the shared
//! `[nats]` and `[clickhouse]` sections. Defaults live in the `Default`
//! impls; `validate()` rejects bad combinations at start-up naming the key.

use std::net::SocketAddr;
use std::path::Path;

use badgepulse_contract::tables::Tier;
use badgepulse_runtime::logging::LogConfig;
use badgepulse_runtime::settings::{self, ClickHouseConfig, NatsConfig};
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::schema::tables::max_retention_days;

/// The whole config file as the aggregator sees it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub nats: NatsConfig,
    pub clickhouse: ClickHouseConfig,
    pub aggregator: AggregatorConfig,
    pub log: LogConfig,
    /// Other services' sections: accepted, not read.
    pub ingest: Option<IgnoredAny>,
    pub exporter: Option<IgnoredAny>,
}

/// `[aggregator]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregatorConfig {
    /// Admin HTTP (`/healthz`, `/readyz`, `/metrics`).
    pub admin_bind: SocketAddr,
    /// Partitions this instance consumes; empty: all of `nats.partitions`.
    /// Each partition must be owned by exactly one running instance.
    #[serde(deserialize_with = "settings::list")]
    pub partitions: Vec<u16>,
    /// In a ClickHouse cluster of several shards, one node (HTTP URL) of
    /// each shard that holds partitions of this instance, in any order:
    /// each partition is written through the node of its shard
    /// (`crate::shards`). Empty: `clickhouse.url` for every partition.
    #[serde(deserialize_with = "settings::list")]
    pub shard_urls: Vec<String>,
    /// Most messages per batch.
    pub batch_max_messages: usize,
    /// Most payload bytes per batch.
    pub batch_max_bytes: usize,
    /// A batch is written at the latest this long after its first message.
    pub flush_interval_ms: u64,
    /// Durable consumer name prefix; the consumer of partition p is
    /// `<prefix>-<p>`.
    pub consumer_prefix: String,
    /// How long JetStream waits for an ack before redelivering, seconds.
    pub ack_wait_secs: u64,
    /// How long one batch (its lookups, writes, recoveries and ack) or one
    /// maintenance step (a retention run, a day's seal, a compaction) may
    /// take, seconds. Past it the step is abandoned (its requests dropped,
    /// as if the connection had died), counted as an error and retried:
    /// a request whose answer never comes (a connection lost without a
    /// reset) would otherwise stall the partition for good. Set it above
    /// the longest recovery the deployment can need.
    pub write_timeout_secs: u64,
    /// Retention of `rollup_minute`, days (whole daily partitions dropped).
    pub retention_minute_days: u32,
    /// Retention of `rollup_hour`, days (whole monthly partitions dropped).
    pub retention_hour_days: u32,
    /// Retention of `rollup_day`, days; 0 keeps it forever.
    pub retention_day_days: u32,
    /// How often this instance merges the parts of `scope_total` on its
    /// ClickHouse node, seconds; 0: never (see `Store::compact_totals`).
    pub compact_interval_secs: u64,
    /// How often this instance seals the unique viewers of closed days of
    /// its partitions (counts them exactly from `events` into
    /// `viewer_days` and `viewer_hours`), seconds. Readers count unsealed
    /// days from `events`, so sealing only ever makes answers faster.
    pub seal_interval_secs: u64,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            admin_bind: "127.0.0.1:8082".parse().expect("valid default"),
            partitions: Vec::new(),
            shard_urls: Vec::new(),
            batch_max_messages: 5_000,
            batch_max_bytes: 32 << 20,
            flush_interval_ms: 500,
            consumer_prefix: "badgepulse-aggregator".into(),
            ack_wait_secs: 60,
            write_timeout_secs: 600,
            retention_minute_days: 7,
            retention_hour_days: 400,
            retention_day_days: 0,
            compact_interval_secs: 600,
            seal_interval_secs: 60,
        }
    }
}

impl AggregatorConfig {
    /// `write_timeout_secs` as a duration.
    pub fn write_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.write_timeout_secs)
    }

    /// Retention in days of the rollup at `g` (0: forever).
    pub fn retention_days(&self, g: Tier) -> u32 {
        match g {
            Tier::Minute => self.retention_minute_days,
            Tier::Hour => self.retention_hour_days,
            Tier::Day => self.retention_day_days,
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
        let a = &self.aggregator;
        if let Some(p) = a.partitions.iter().find(|p| **p >= self.nats.partitions) {
            return Err(format!(
                "aggregator.partitions: partition {p} does not exist (nats.partitions = {})",
                self.nats.partitions
            ));
        }
        if !a.shard_urls.is_empty() && self.clickhouse.cluster.is_empty() {
            return Err("aggregator.shard_urls needs clickhouse.cluster".into());
        }
        if let Some(url) = a
            .shard_urls
            .iter()
            .find(|u| !u.starts_with("http://") && !u.starts_with("https://"))
        {
            return Err(format!(
                "aggregator.shard_urls: {url:?} must be an http(s) URL"
            ));
        }
        if a.batch_max_messages == 0 || a.batch_max_messages > 100_000 {
            return Err("aggregator.batch_max_messages must be between 1 and 100000".into());
        }
        if a.batch_max_bytes < 1 << 20 || a.batch_max_bytes > 256 << 20 {
            return Err("aggregator.batch_max_bytes must be between 1 MiB and 256 MiB".into());
        }
        if a.flush_interval_ms == 0 || a.flush_interval_ms > 60_000 {
            return Err("aggregator.flush_interval_ms must be between 1 and 60000".into());
        }
        if a.ack_wait_secs < 5 {
            return Err("aggregator.ack_wait_secs must be at least 5".into());
        }
        if a.write_timeout_secs == 0 {
            return Err("aggregator.write_timeout_secs must be at least 1".into());
        }
        if a.consumer_prefix.is_empty()
            || !a
                .consumer_prefix
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(
                "aggregator.consumer_prefix may contain only A-Z, a-z, 0-9, - and _".into(),
            );
        }
        if a.retention_minute_days == 0 || a.retention_hour_days == 0 {
            return Err(
                "aggregator.retention_minute_days and retention_hour_days must be at least 1"
                    .into(),
            );
        }
        for tier in [Tier::Minute, Tier::Hour] {
            let days = a.retention_days(tier);
            if let Some(max) = max_retention_days(tier).filter(|max| days > *max) {
                let key = match tier {
                    Tier::Minute => "retention_minute_days",
                    _ => "retention_hour_days",
                };
                return Err(format!(
                    "aggregator.{key} = {days}: at most {max} (the {} tables hold events received within {} days of occurring; see docs/clickhouse.md)",
                    tier.rollup_table().trim_start_matches("rollup_"),
                    max + 1
                ));
            }
        }
        if a.seal_interval_secs == 0 {
            return Err("aggregator.seal_interval_secs must be at least 1".into());
        }
        Ok(())
    }

    /// The partitions this instance consumes.
    pub fn owned_partitions(&self) -> Vec<u16> {
        if self.aggregator.partitions.is_empty() {
            (0..self.nats.partitions).collect()
        } else {
            let mut p = self.aggregator.partitions.clone();
            p.sort_unstable();
            p.dedup();
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_partition_outside_the_stream() {
        let mut c = Config::default();
        c.aggregator.partitions = vec![1];
        assert!(c.validate().unwrap_err().contains("aggregator.partitions"));
        c.nats.partitions = 2;
        assert!(c.validate().is_ok());
        assert_eq!(c.owned_partitions(), vec![1]);
        c.aggregator.partitions.clear();
        assert_eq!(c.owned_partitions(), vec![0, 1]);
    }

    #[test]
    fn shard_urls_need_a_cluster_and_http() {
        let mut c = Config::default();
        c.aggregator.shard_urls = vec!["http://ch-s1:8123".into()];
        assert!(c.validate().unwrap_err().contains("clickhouse.cluster"));
        c.clickhouse.cluster = "prod".into();
        assert!(c.validate().is_ok());
        c.aggregator.shard_urls.push("ch-s2:8123".into());
        assert!(c
            .validate()
            .unwrap_err()
            .starts_with("aggregator.shard_urls"));
    }
}
