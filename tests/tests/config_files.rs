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
        badgepulse_contract::settings::NatsConfig::default()
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
        badgepulse_contract::settings::ClickHouseConfig::default()
    );
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
