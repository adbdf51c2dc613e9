//! The aggregator's all-or-nothing batch write on a real ClickHouse 18.16.
//!
//! ClickHouse commits the received prefix of an INSERT whose client
//! disconnects mid-upload (found by the SIGKILL fault test: one message
//! with 115 of its 200 events stored). `Store::write` therefore uploads to
//! a staging table and moves the batch with one server-side statement, and
//! tags its statements with a per-partition `query_id` so a restarted
//! aggregator cannot overlap a statement its predecessor left running.

use std::time::Duration;

use badgepulse_aggregator::rows::EventRow;
use badgepulse_aggregator::store::Store;
use badgepulse_contract::event::{validate_platform_event, Event};
use badgepulse_runtime::settings::ClickHouseConfig;
use badgepulse_tests::ClickHouse;
use chrono::Utc;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const DB: &str = "staging";
const ROWS: u64 = 2_000;

fn awarded(i: u64) -> Event {
    validate_platform_event(
        &json!({"event_id": format!("e-{i}"), "type": "badge.awarded",
                "occurred_at": "2026-11-01T10:00:00Z", "org_id": "acme",
                "issuer_id": "i1", "badge_class_id": "b1",
                "assertion_id": format!("a-{i}")}),
        Utc::now(),
    )
    .unwrap()
}

async fn started() -> (ClickHouse, Store) {
    let ch = ClickHouse::start().await;
    let store = Store::new(&ClickHouseConfig {
        url: ch.url(),
        database: DB.into(),
        ..Default::default()
    });
    store.migrate().await.unwrap();
    store.ensure_staging(0).await.unwrap();
    (ch, store)
}

/// What a client SIGKILLed mid-upload leaves: a chunked INSERT of `lines`
/// complete TSV rows whose body ends without its final chunk.
async fn cut_upload(ch: &ClickHouse, table: &str, lines: u64) {
    let query = format!(
        "INSERT INTO {table} (event_id, type, occurred_at, received_at, org_id, issuer_id, badge_class_id, assertion_id, partition, seq) FORMAT TabSeparated"
    );
    let mut body = String::new();
    for i in 0..lines {
        body.push_str(&format!(
            "e-{i}\tbadge.awarded\t2026-11-01 10:00:00\t2026-11-01 10:00:00\tacme\ti1\tb1\ta-{i}\t0\t1\n"
        ));
    }
    let addr = ch.url().trim_start_matches("http://").to_owned();
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /?query={} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        urlencode(&query),
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body.as_bytes()).await.unwrap();
    tcp.write_all(b"\r\n").await.unwrap();
    tcp.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Dropped without the terminating `0\r\n\r\n` chunk: the client died.
    drop(tcp);
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn an_upload_cut_short_never_leaves_part_of_a_batch() {
    let (ch, store) = started().await;
    let count = |table: &str| format!("SELECT count() FROM {DB}.{table}");

    // The hazard itself, on a scratch table: ClickHouse keeps the prefix
    // of an upload whose client vanished. If a future server stops doing
    // this, the staging table is merely unnecessary; the test says so.
    ch.query(&format!(
        "CREATE TABLE {DB}.scratch AS {DB}.events ENGINE = MergeTree ORDER BY event_id"
    ))
    .await
    .unwrap();
    cut_upload(&ch, &format!("{DB}.scratch"), ROWS / 2).await;
    let kept = ch.number(&count("scratch")).await;
    eprintln!("rows kept from the cut upload into a plain table: {kept}");
    assert_eq!(
        kept,
        ROWS / 2,
        "ClickHouse 18.16 commits what it received of a cut upload; that is why writes are staged"
    );

    // A killed aggregator leaves half a batch in its staging table only.
    cut_upload(&ch, &store.schema.staging_table(0), ROWS / 2).await;
    assert_eq!(
        ch.number(&format!(
            "SELECT count() FROM {}",
            store.schema.staging_table(0)
        ))
        .await,
        ROWS / 2
    );
    assert_eq!(ch.number(&count("events")).await, 0);
    assert_eq!(
        ch.number(&format!(
            "SELECT countMerge(events) FROM {DB}.rollup_minute"
        ))
        .await,
        0
    );

    // The next attempt writes the whole batch exactly once, in every table.
    let rows: Vec<EventRow> = (0..ROWS)
        .map(|i| EventRow::new(&awarded(i), 0, 1))
        .collect();
    store.write(0, "events_input", &rows).await.unwrap();
    assert_eq!(ch.number(&count("events")).await, ROWS);
    assert_eq!(
        ch.number(&format!("SELECT uniqExact(event_id) FROM {DB}.events"))
            .await,
        ROWS
    );
    for table in ["rollup_minute", "rollup_hour", "rollup_day"] {
        assert_eq!(
            ch.number(&format!("SELECT countMerge(events) FROM {DB}.{table}"))
                .await,
            ROWS,
            "{table}"
        );
    }
    assert_eq!(
        ch.number(&format!(
            "SELECT uniqExact(assertion_id) FROM {DB}.assertion_lifecycle"
        ))
        .await,
        ROWS
    );
}

#[tokio::test]
async fn a_write_never_overlaps_a_statement_left_running_by_a_killed_predecessor() {
    let (ch, store) = started().await;
    // A statement of partition 0 still running on the server, as after a
    // SIGKILL during the server-side move.
    let lingering = clickhouse::Client::default()
        .with_url(ch.url())
        .with_validation(false)
        .with_setting("query_id", store.schema.write_query_id(0));
    let running =
        tokio::spawn(async move { lingering.query("SELECT sleep(2)").fetch_one::<u8>().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!running.is_finished(), "{:?}", running.await);
    let rows: Vec<EventRow> = (0..10).map(|i| EventRow::new(&awarded(i), 0, 1)).collect();
    let err = store
        .write(0, "events_input", &rows)
        .await
        .expect_err("a write must not start while its partition's statement runs");
    assert!(
        err.to_string().contains("already running"),
        "unexpected error: {err}"
    );
    assert_eq!(
        ch.number(&format!("SELECT count() FROM {DB}.events")).await,
        0
    );
    // Nor may the marks be read, or a recovery run: the lingering
    // statement may be a recovery whose rows the marks do not show yet.
    let err = store
        .marks(0)
        .await
        .expect_err("the marks must not be read while a statement of the partition runs");
    assert!(err.to_string().contains("already running"), "{err}");
    let err = store
        .recover("rollup_minute", 0, 0, 1, 0)
        .await
        .expect_err("a recovery must not start while a statement of the partition runs");
    assert!(err.to_string().contains("already running"), "{err}");

    // Another partition is not held up.
    store.ensure_staging(1).await.unwrap();
    let other: Vec<EventRow> = (10..20).map(|i| EventRow::new(&awarded(i), 1, 1)).collect();
    store.write(1, "events_input", &other).await.unwrap();

    running.await.unwrap().unwrap();
    store.write(0, "events_input", &rows).await.unwrap();
    assert_eq!(
        ch.number(&format!("SELECT count() FROM {DB}.events")).await,
        20
    );
}
