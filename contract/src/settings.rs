//! The config sections every service reads (`[nats]`, `[clickhouse]`) and
//! the loader: an optional TOML file (`--config FILE`) overridden by
//! environment variables `BADGEPULSE__SECTION__KEY`.
//!
//! Each binary deserialises the whole file into its own root struct, which
//! names every section (its own typed, the others ignored), so a misspelt
//! section or key fails start-up with the key's name.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// `[nats]`: where JetStream is and how the event stream is laid out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL(s), comma separated for a cluster.
    pub url: String,
    /// Number of partitions (subjects) events are spread over by org.
    /// Changing it moves orgs between partitions: drain the stream first.
    pub partitions: u16,
    /// Stream replicas: 1 on a single server, 3 on a NATS cluster.
    pub replicas: usize,
    /// JetStream duplicate window in seconds (SPEC: at least 120).
    pub duplicate_window_secs: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            partitions: 1,
            replicas: 1,
            duplicate_window_secs: 600,
        }
    }
}

impl NatsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.partitions == 0 || self.partitions > 1024 {
            return Err("nats.partitions must be between 1 and 1024".into());
        }
        if !(1..=5).contains(&self.replicas) {
            return Err("nats.replicas must be between 1 and 5".into());
        }
        if self.duplicate_window_secs < 120 {
            return Err("nats.duplicate_window_secs must be at least 120".into());
        }
        Ok(())
    }
}

/// `[clickhouse]`: the analytics database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP interface URL.
    pub url: String,
    /// Database holding every badgepulse table.
    pub database: String,
    pub user: String,
    pub password: String,
    /// Cluster name from the server's `remote_servers`; empty for a single
    /// server. When set, DDL runs `ON CLUSTER` with `Replicated*` engines
    /// behind `Distributed` tables.
    pub cluster: String,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "badgepulse".into(),
            user: "default".into(),
            password: String::new(),
            cluster: String::new(),
        }
    }
}

impl ClickHouseConfig {
    pub fn validate(&self) -> Result<(), String> {
        let ident_ok = |s: &str| {
            !s.is_empty()
                && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
                && !s.as_bytes()[0].is_ascii_digit()
        };
        if !ident_ok(&self.database) {
            return Err(format!(
                "clickhouse.database {:?} must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*)",
                self.database
            ));
        }
        if !self.cluster.is_empty() && !ident_ok(&self.cluster) {
            return Err(format!(
                "clickhouse.cluster {:?} must be a plain identifier",
                self.cluster
            ));
        }
        if !self.url.starts_with("http://") && !self.url.starts_with("https://") {
            return Err(format!(
                "clickhouse.url {:?} must be an http(s) URL",
                self.url
            ));
        }
        Ok(())
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("config: {0}")]
    Read(#[from] config::ConfigError),
    #[error("config: {0}")]
    Invalid(String),
}

/// Loads the root config struct `T` from `file` (if given) and the
/// environment. `list_keys` names the keys (e.g. `ingest.platform_hosts`)
/// whose environment value is a comma-separated list.
pub fn load<T: DeserializeOwned>(file: Option<&Path>, list_keys: &[&str]) -> Result<T, LoadError> {
    let mut env = config::Environment::with_prefix("BADGEPULSE")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true);
    if !list_keys.is_empty() {
        env = env.list_separator(",");
        for key in list_keys {
            env = env.with_list_parse_key(key);
        }
    }
    let mut builder = config::Config::builder();
    if let Some(path) = file {
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    Ok(builder.add_source(env).build()?.try_deserialize()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Root {
        #[serde(default)]
        nats: NatsConfig,
        #[serde(default)]
        clickhouse: ClickHouseConfig,
    }

    #[test]
    fn file_then_env() {
        let dir = std::env::temp_dir().join(format!("bp-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[nats]\nurl = \"nats://n:1\"\npartitions = 4\n").unwrap();
        let root: Root = load(Some(&file), &[]).unwrap();
        assert_eq!(root.nats.url, "nats://n:1");
        assert_eq!(root.nats.partitions, 4);
        assert_eq!(root.clickhouse, ClickHouseConfig::default());

        std::fs::write(&file, "[nats]\nurll = \"x\"\n").unwrap();
        let err = load::<Root>(Some(&file), &[]).unwrap_err().to_string();
        assert!(err.contains("urll"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = ClickHouseConfig::default();
        c.database = "bad-name".into();
        assert!(c.validate().unwrap_err().contains("clickhouse.database"));
        let mut n = NatsConfig::default();
        n.partitions = 0;
        assert!(n.validate().unwrap_err().contains("nats.partitions"));
    }
}
