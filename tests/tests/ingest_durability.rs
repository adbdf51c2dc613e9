//! Ingest's durability promises where they are hardest, against a real
//! NATS: JetStream refusing writes while NATS is up (stream gone), a NATS
//! server frozen mid-publish (SIGSTOP: PubAcks never come, the
//! connection stays), SIGTERM while a `/v1/events` request waits for its
//! PubAcks, and the SPEC's limits accepted exactly at the boundary.
//!
//! In every case an event answered 200 is in the stream exactly once, a
//! 503 comes with `Retry-After`, and retrying a batch answered 503 stores
//! each event once.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use badgepulse_contract::subject::{self, STREAM};
use badgepulse_tests::{
    eventually, free_port, metric_value, scrape, sha256_hex, start_ingest, stream_events,
    stream_messages, Nats, Service,
};
use serde_json::{json, Value};

const KEY: &str = "durability-test-pixel-key";
const TOKEN: &str = "durability-test-token";
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

/// Ingest: the service, its public URL and its admin URL.
async fn start(nats: &Nats, publish_timeout_ms: u64) -> (Service, String, String) {
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        r#"[nats]
url = "{}"
[ingest]
bind = "127.0.0.1:{port}"
admin_bind = "127.0.0.1:{admin}"
publish_timeout_ms = {publish_timeout_ms}
batch_max_delay_ms = 10
[ingest.pixel_keys]
k1 = "{KEY}"
[[ingest.tokens]]
sha256 = "{}"
orgs = ["*"]
"#,
        nats.url(),
        sha256_hex(TOKEN)
    );
    let ingest = start_ingest(&config, port, admin).await;
    (ingest.svc, ingest.url, ingest.admin)
}

fn events(prefix: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"event_id": format!("{prefix}-{i}"), "type": "badge.awarded",
                   "occurred_at": "2026-11-01T10:00:00Z", "org_id": "acme", "issuer_id": "i1",
                   "badge_class_id": "b1", "assertion_id": format!("{prefix}-a{i}"),
                   "award_method": "api"})
        })
        .collect()
}

async fn post(url: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/v1/events"))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn batch(events: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "events": events })).unwrap()
}

/// Event id → how many times it is in the stream.
async fn stored(nats: &Nats) -> BTreeMap<String, usize> {
    let client = nats.client().await;
    let mut ids = BTreeMap::new();
    for e in stream_events(&stream_messages(&client, STREAM).await) {
        *ids.entry(e.event_id).or_insert(0) += 1;
    }
    ids
}

/// Sends `signal` (`STOP`, `CONT`, `TERM`) to `pid`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// A metric on the admin listener at `admin`.
async fn metric(admin: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(&scrape(&format!("{admin}/metrics")).await, name, labels)
}

#[tokio::test]
async fn a_stream_that_takes_no_writes_is_503_and_the_retry_stores_once() {
    let nats = Nats::start().await;
    let (_svc, url, admin) = start(&nats, 2_000).await;
    let js = async_nats::jetstream::new(nats.client().await);
    js.delete_stream(STREAM).await.unwrap();

    let body = batch(&events("gone", 5));
    let r = post(&url, body.clone()).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    let text = r.text().await.unwrap();
    assert!(text.contains("nothing was accepted"), "{text}");
    let ready = reqwest::get(format!("{admin}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503, "not ready without the stream");

    js.create_stream(subject::stream_config(Default::default()))
        .await
        .unwrap();
    let r = post(&url, body).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["accepted"], 5, "{answer}");
    let ids = stored(&nats).await;
    assert_eq!(ids.len(), 5);
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_nats_is_503_then_every_retry_counts_once() {
    let nats = Nats::start().await;
    let (_svc, url, admin) = start(&nats, 1_500).await;
    let pid = nats.pid().unwrap();
    let http = reqwest::Client::new();
    let ids = badgepulse_contract::signing::PixelIds {
        org_id: "acme",
        issuer_id: "i1",
        badge_class_id: "b1",
        assertion_id: "a1",
    };
    let sig = badgepulse_contract::signing::sign(KEY.as_bytes(), &ids);
    let pixel = format!("{url}/p.gif?o=acme&i=i1&b=b1&a=a1&kid=k1&sig={sig}");

    signal(pid, "STOP");
    // Published into a server that takes the bytes but answers nothing.
    let body = batch(&events("frozen", 20));
    let r = post(&url, body.clone()).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    // A pixel beacon: its batch's PubAck times out (5 s) and is retried
    // with the same message id.
    let r = http
        .get(&pixel)
        .header("User-Agent", BROWSER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(Duration::from_secs(30), "a beacon batch retry", || async {
        (metric(
            &admin,
            "badgepulse_ingest_publish_failures_total",
            &[("kind", "beacon_batch")],
        )
        .await
            >= 1.0)
            .then_some(())
    })
    .await;
    signal(pid, "CONT");

    // The first publishes went through after all: the retry is answered
    // as duplicates, and each event is stored once.
    let r = post(&url, body).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        answer["accepted"].as_u64().unwrap() + answer["duplicates"].as_u64().unwrap(),
        20,
        "{answer}"
    );
    eventually(
        Duration::from_secs(30),
        "the beacon batch's duplicate",
        || async {
            (metric(
                &admin,
                "badgepulse_ingest_beacons_total",
                &[("kind", "view"), ("outcome", "duplicate")],
            )
            .await
                == 1.0)
                .then_some(())
        },
    )
    .await;
    let ids = stored(&nats).await;
    assert_eq!(ids.len(), 21, "20 events and one view: {ids:?}");
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
    assert_eq!(
        metric(
            &admin,
            "badgepulse_ingest_beacons_total",
            &[("kind", "view"), ("outcome", "accepted")]
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_an_events_request_awaiting_its_pubacks() {
    let nats = Nats::start().await;
    let (mut svc, url, admin) = start(&nats, 20_000).await;
    let pid = nats.pid().unwrap();
    signal(pid, "STOP");
    let request = tokio::spawn({
        let url = url.clone();
        async move { post(&url, batch(&events("draining", 10))).await }
    });
    // The request is in, waiting for PubAcks that cannot come yet.
    eventually(
        Duration::from_secs(10),
        "the request to be in flight",
        || async {
            let text = scrape(&format!("{admin}/metrics")).await;
            (metric_value(&text, "badgepulse_ingest_events_in_flight", &[]) == 10.0).then_some(())
        },
    )
    .await;
    signal(svc.pid().unwrap(), "TERM");
    eventually(
        Duration::from_secs(10),
        "ingest to take the SIGTERM",
        || async { svc.log_text().contains("shutdown requested").then_some(()) },
    )
    .await;
    // Still waiting for NATS, still running.
    assert!(svc
        .wait_for_exit(Duration::from_millis(500))
        .await
        .is_none());
    signal(pid, "CONT");
    let r = request.await.unwrap();
    assert_eq!(r.status(), 200, "answered before exiting");
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["accepted"], 10);
    let status = svc.wait_for_exit(Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "ingest exits 0 after the drain: {status:?}"
    );
    let ids = stored(&nats).await;
    assert_eq!(ids.len(), 10);
    assert!(ids.values().all(|n| *n == 1));
}

#[tokio::test]
async fn limits_accept_exactly_their_maximum() {
    let nats = Nats::start().await;
    let (_svc, url, _admin) = start(&nats, 5_000).await;

    // 1,000 events: accepted; 1,001: 413.
    let r = post(&url, batch(&events("max", 1_000))).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["accepted"], 1_000, "{answer}");
    let r = post(&url, batch(&events("over", 1_001))).await;
    assert_eq!(r.status(), 413);

    // A body of exactly 1 MiB (padded with JSON whitespace): accepted;
    // one byte more: 413.
    let mut body = batch(&events("mib", 3));
    let pad = 1024 * 1024 - body.len();
    body.splice(1..1, std::iter::repeat_n(b' ', pad));
    assert_eq!(body.len(), 1024 * 1024);
    let r = post(&url, body.clone()).await;
    assert_eq!(r.status(), 200);
    body.insert(1, b' ');
    let r = post(&url, body).await;
    assert_eq!(r.status(), 413);

    // The auth scheme in any case (RFC 9110).
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/events"))
        .header("Authorization", format!("bearer {TOKEN}"))
        .body(batch(&events("lower", 1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let ids = stored(&nats).await;
    assert_eq!(ids.len(), 1_004);
}
