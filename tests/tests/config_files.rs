//! The shipped config files stay true: every binary accepts the example
//! config (which lists every key) and the local demo config, and each
//! section's values are the documented defaults.

use std::path::Path;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[test]
fn every_binary_accepts_the_shipped_configs() {
    for file in [
        "config/badgepulse.example.toml",
        "deploy/local/badgepulse.toml",
    ] {
        let path = repo(file);
        badgepulse_ingest::config::Config::load(Some(&path))
            .unwrap_or_else(|e| panic!("ingest rejects {file}: {e}"));
        badgepulse_aggregator::config::Config::load(Some(&path))
            .unwrap_or_else(|e| panic!("aggregator rejects {file}: {e}"));
        badgepulse_exporter::config::Config::load(Some(&path))
            .unwrap_or_else(|e| panic!("exporter rejects {file}: {e}"));
    }
}

#[test]
fn the_example_documents_the_defaults() {
    let path = repo("config/badgepulse.example.toml");
    let ingest = badgepulse_ingest::config::Config::load(Some(&path)).unwrap();
    let defaults = badgepulse_ingest::config::IngestConfig::default();
    assert_eq!(
        ingest.nats,
        badgepulse_runtime::settings::NatsConfig::default()
    );
    assert_eq!(ingest.ingest.bind, defaults.bind);
    assert_eq!(
        ingest.ingest.rate_limit_per_minute,
        defaults.rate_limit_per_minute
    );
    assert_eq!(ingest.ingest.buffer_capacity, defaults.buffer_capacity);
    assert_eq!(ingest.ingest.batch_max_beacons, defaults.batch_max_beacons);
    assert_eq!(
        ingest.ingest.batch_max_delay_ms,
        defaults.batch_max_delay_ms
    );
    assert_eq!(
        ingest.ingest.publish_timeout_ms,
        defaults.publish_timeout_ms
    );
    assert_eq!(
        ingest.ingest.header_read_timeout_secs,
        defaults.header_read_timeout_secs
    );
    assert_eq!(ingest.ingest.http_threads, defaults.http_threads);
    let aggregator = badgepulse_aggregator::config::Config::load(Some(&path)).unwrap();
    let expected = badgepulse_aggregator::config::AggregatorConfig {
        partitions: Vec::new(),
        ..Default::default()
    };
    assert_eq!(aggregator.aggregator, expected);
    assert_eq!(
        aggregator.clickhouse,
        badgepulse_runtime::settings::ClickHouseConfig::default()
    );
    let log = badgepulse_runtime::logging::LogConfig::default();
    assert_eq!(ingest.log, log);
    assert_eq!(aggregator.log, log);
    let exporter = badgepulse_exporter::config::Config::load(Some(&path)).unwrap();
    assert_eq!(exporter.log, log);
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[ingest]\nbind = \"127.0.0.1:1\"\nrate_limit = 5\n").unwrap();
    let err = badgepulse_ingest::config::Config::load(Some(&file))
        .unwrap_err()
        .to_string();
    assert!(err.contains("rate_limit"), "{err}");
    std::fs::write(&file, "[aggregatr]\n").unwrap();
    let err = badgepulse_aggregator::config::Config::load(Some(&file))
        .unwrap_err()
        .to_string();
    assert!(err.contains("aggregatr"), "{err}");
}

/// A secret that reads as a number reaches ClickHouse as written: the
/// aggregator, given user and password `007` only through the
/// environment, logs in and creates its schema.
#[tokio::test]
async fn a_numeric_looking_password_reaches_clickhouse_unchanged() {
    use badgepulse_tests::{
        free_port, wait_http, ClickHouse, Nats, Service, NUMERIC_PASSWORD, NUMERIC_USER,
    };
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let admin = free_port();
    let config = format!(
        "[nats]\nurl = \"{}\"\n[clickhouse]\nurl = \"{}\"\ndatabase = \"numeric_secret\"\n\
         [aggregator]\nadmin_bind = \"127.0.0.1:{admin}\"\n",
        nats.url(),
        ch.url()
    );
    let aggregator = Service::start_with_env(
        "badgepulse-aggregator",
        &config,
        &[],
        &[
            ("BADGEPULSE__CLICKHOUSE__USER", NUMERIC_USER),
            ("BADGEPULSE__CLICKHOUSE__PASSWORD", NUMERIC_PASSWORD),
        ],
    );
    wait_http(
        &format!("http://127.0.0.1:{admin}/readyz"),
        std::time::Duration::from_secs(60),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", aggregator.log_text()));
    let tables = ch
        .query("SELECT count() FROM system.tables WHERE database = 'numeric_secret' AND name = 'events'")
        .await
        .unwrap();
    assert_eq!(tables.trim(), "1");
}
