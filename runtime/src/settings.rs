//! The config sections every service reads (`[nats]`, `[clickhouse]`) and
//! the loader: an optional TOML file (`--config FILE`, else the file named
//! by `BADGEPULSE_CONFIG`) overridden by environment variables
//! `BADGEPULSE__SECTION__KEY`.
//!
//! Each binary deserialises the whole file into its own root struct, which
//! names every section (its own typed, the others ignored), so a misspelt
//! section or key fails start-up with the key's name.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The variable that names the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "BADGEPULSE_CONFIG";

/// The `--config` option of every service binary, flattened into its
/// command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigFile {
    /// TOML config file; `BADGEPULSE__SECTION__KEY` variables override its
    /// keys.
    #[arg(long = "config", global = true, env = CONFIG_ENV, value_name = "FILE")]
    pub path: Option<PathBuf>,
}

impl ConfigFile {
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

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
    /// The servers of `url` (comma separated), for `ConnectOptions::connect`.
    pub fn server_addrs(&self) -> Result<Vec<async_nats::ServerAddr>, String> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| {
                u.parse::<async_nats::ServerAddr>()
                    .map_err(|e| format!("nats.url: {u:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(|addrs| {
                if addrs.is_empty() {
                    Err("nats.url is empty".into())
                } else {
                    Ok(addrs)
                }
            })
    }

    pub fn validate(&self) -> Result<(), String> {
        self.server_addrs()?;
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
/// environment. List fields use `#[serde(deserialize_with = "list")]` so
/// that an environment variable can give them as `a,b,c`.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, LoadError> {
    // Environment values stay strings: each field's own type parses them
    // (`"3"` into a `u16`, `"true"` into a `bool`), and a string field keeps
    // the text as given. Guessing a type first (`try_parsing`) would turn a
    // password `007` into the number 7 and back into `"7"`. List fields
    // split a comma-separated string through [`list`].
    let env = config::Environment::with_prefix("BADGEPULSE")
        .prefix_separator("__")
        .separator("__");
    let mut builder = config::Config::builder();
    if let Some(path) = file {
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    Ok(builder.add_source(env).build()?.try_deserialize()?)
}

/// Deserialises a list from a TOML array, or from one scalar or a
/// comma-separated string (how environment variables give lists):
/// `PARTITIONS=3` is `[3]`, `PLATFORM_HOSTS=a.example,b.example` two hosts.
pub fn list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + std::str::FromStr,
    T::Err: std::fmt::Display,
{
    use serde::de::{Error, SeqAccess, Visitor};
    use std::marker::PhantomData;

    struct ListVisitor<T>(PhantomData<T>);

    impl<T> ListVisitor<T>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        fn split<E: Error>(s: &str) -> Result<Vec<T>, E> {
            s.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| {
                    item.parse::<T>()
                        .map_err(|e| E::custom(format!("{item:?}: {e}")))
                })
                .collect()
        }
    }

    impl<'de, T> Visitor<'de> for ListVisitor<T>
    where
        T: serde::Deserialize<'de> + std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list, or comma-separated values")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }

        fn visit_str<E: Error>(self, s: &str) -> Result<Vec<T>, E> {
            Self::split(s)
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<Vec<T>, E> {
            Self::split(&v.to_string())
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<Vec<T>, E> {
            Self::split(&v.to_string())
        }

        fn visit_f64<E: Error>(self, v: f64) -> Result<Vec<T>, E> {
            Self::split(&v.to_string())
        }

        fn visit_bool<E: Error>(self, v: bool) -> Result<Vec<T>, E> {
            Self::split(&v.to_string())
        }
    }

    deserializer.deserialize_any(ListVisitor(PhantomData))
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
        let _env = ENV_LOCK.lock().unwrap();
        let root: Root = load(Some(&file)).unwrap();
        assert_eq!(root.nats.url, "nats://n:1");
        assert_eq!(root.nats.partitions, 4);
        assert_eq!(root.clickhouse, ClickHouseConfig::default());

        std::fs::write(&file, "[nats]\nurll = \"x\"\n").unwrap();
        let err = load::<Root>(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("urll"), "{err}");
    }

    /// Tests that touch the process environment run one at a time.
    static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[derive(Debug, Deserialize)]
    struct Lists {
        #[serde(default)]
        agg: AggLists,
    }

    #[derive(Debug, Default, Deserialize)]
    struct AggLists {
        #[serde(default, deserialize_with = "list")]
        partitions: Vec<u16>,
        #[serde(default, deserialize_with = "list")]
        hosts: Vec<String>,
        #[serde(default)]
        flag: bool,
        #[serde(default)]
        size: u32,
    }

    #[test]
    fn env_values_take_the_field_type_and_lists_split_on_commas() {
        let _env = ENV_LOCK.lock().unwrap();
        std::env::set_var("BADGEPULSE__AGG__PARTITIONS", "3");
        std::env::set_var("BADGEPULSE__AGG__HOSTS", "a.example, b.example");
        std::env::set_var("BADGEPULSE__AGG__FLAG", "true");
        std::env::set_var("BADGEPULSE__AGG__SIZE", "42");
        let one: Lists = load(None).unwrap();
        assert_eq!(one.agg.hosts, vec!["a.example", "b.example"]);
        assert_eq!(one.agg.partitions, vec![3]);
        assert!(one.agg.flag);
        assert_eq!(one.agg.size, 42);
        std::env::set_var("BADGEPULSE__AGG__PARTITIONS", "0,2,5");
        let many: Lists = load(None).unwrap();
        assert_eq!(many.agg.partitions, vec![0, 2, 5]);
        std::env::set_var("BADGEPULSE__AGG__PARTITIONS", "0,x");
        let err = load::<Lists>(None).unwrap_err().to_string();
        assert!(
            err.contains("\"x\"") && err.contains("agg.partitions"),
            "{err}"
        );
        for k in ["PARTITIONS", "FLAG", "SIZE", "HOSTS"] {
            std::env::remove_var(format!("BADGEPULSE__AGG__{k}"));
        }
    }

    #[test]
    fn env_strings_are_kept_as_given() {
        let _env = ENV_LOCK.lock().unwrap();
        for secret in ["007", "1e5", "true", "0x10", " 42", "-0", "3.10"] {
            std::env::set_var("BADGEPULSE__CLICKHOUSE__PASSWORD", secret);
            std::env::set_var("BADGEPULSE__CLICKHOUSE__USER", secret);
            let root: Root = load(None).unwrap();
            assert_eq!(root.clickhouse.password, secret);
            assert_eq!(root.clickhouse.user, secret);
        }
        // Numbers and booleans still parse where the field is one, and a
        // value that is not one names the key.
        std::env::set_var("BADGEPULSE__NATS__PARTITIONS", "007");
        let root: Root = load(None).unwrap();
        assert_eq!(root.nats.partitions, 7);
        std::env::set_var("BADGEPULSE__NATS__PARTITIONS", "seven");
        let err = load::<Root>(None).unwrap_err().to_string();
        assert!(err.contains("nats.partitions"), "{err}");
        for k in [
            "CLICKHOUSE__PASSWORD",
            "CLICKHOUSE__USER",
            "NATS__PARTITIONS",
        ] {
            std::env::remove_var(format!("BADGEPULSE__{k}"));
        }
    }

    #[test]
    fn config_option_falls_back_to_the_environment() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            config: ConfigFile,
        }
        let parse = |args: &[&str]| {
            <Cli as clap::Parser>::try_parse_from(
                std::iter::once("bin").chain(args.iter().copied()),
            )
            .unwrap()
            .config
            .path
        };
        let _env = ENV_LOCK.lock().unwrap();
        std::env::remove_var(CONFIG_ENV);
        assert_eq!(parse(&[]), None);
        std::env::set_var(CONFIG_ENV, "/etc/from-env.toml");
        assert_eq!(parse(&[]), Some(PathBuf::from("/etc/from-env.toml")));
        assert_eq!(
            parse(&["--config", "/etc/given.toml"]),
            Some(PathBuf::from("/etc/given.toml")),
            "--config wins over the variable"
        );
        std::env::remove_var(CONFIG_ENV);
    }

    #[test]
    fn nats_url_takes_a_server_list() {
        let mut n = NatsConfig {
            url: "nats://127.0.0.1:4222, nats://127.0.0.1:4223".into(),
            ..Default::default()
        };
        assert_eq!(n.server_addrs().unwrap().len(), 2);
        n.url = "nats://127.0.0.1:notaport".into();
        assert!(n.validate().unwrap_err().starts_with("nats.url"));
    }

    #[test]
    fn validation_names_the_key() {
        let c = ClickHouseConfig {
            database: "bad-name".into(),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("clickhouse.database"));
        let n = NatsConfig {
            partitions: 0,
            ..Default::default()
        };
        assert!(n.validate().unwrap_err().contains("nats.partitions"));
    }
}
