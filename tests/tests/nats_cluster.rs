//! Scale-out on a real NATS cluster: three nodes, the event stream with
//! three replicas, ingest and aggregator connected to all nodes. The stream
//! leader is SIGKILLed in the middle of traffic; every event answered 200
//! must be in the stream and in ClickHouse exactly once.

use std::collections::HashMap;
use std::time::Duration;

use badgepulse_contract::event::EventType;
use badgepulse_contract::signing::{sign, PixelIds};
use badgepulse_contract::subject::{SALT_BUCKET, STREAM};
use badgepulse_tests::{
    eventually, free_port, metric_value, scrape, sha256_hex, stream_events, try_stream_messages,
    wait_http, ClickHouse, NatsCluster, Service,
};
use chrono::{SecondsFormat, Utc};
use serde_json::json;

const TOKEN: &str = "cluster-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_leader_killed_mid_traffic_loses_nothing_acknowledged() {
    let mut cluster = NatsCluster::start(3).await;
    let ch = ClickHouse::start().await;
    let (ingest_port, ingest_admin_port, admin_port) = (free_port(), free_port(), free_port());
    let config = format!(
        "[nats]\nurl = \"{}\"\nreplicas = 3\n[clickhouse]\nurl = \"{}\"\ndatabase = \"cluster_e2e\"\n\
         [ingest]\nbind = \"127.0.0.1:{ingest_port}\"\nadmin_bind = \"127.0.0.1:{ingest_admin_port}\"\npublish_timeout_ms = 3000\n[ingest.pixel_keys]\nk1 = \"cluster-pixel-key-0123456789\"\n\
         [[ingest.tokens]]\nsha256 = \"{}\"\norgs = [\"*\"]\n[aggregator]\nadmin_bind = \"127.0.0.1:{admin_port}\"\nflush_interval_ms = 100\n",
        cluster.url(),
        ch.url(),
        sha256_hex(TOKEN)
    );
    let _ingest = Service::start("badgepulse-ingest", &config, &[]);
    let _aggregator = Service::start("badgepulse-aggregator", &config, &[]);
    let ingest = format!("http://127.0.0.1:{ingest_port}");
    let ingest_admin = format!("http://127.0.0.1:{ingest_admin_port}");
    wait_http(&format!("{ingest_admin}/readyz"), Duration::from_secs(90))
        .await
        .unwrap();

    let client = cluster.client().await;
    let js = async_nats::jetstream::new(client.clone());
    let info = eventually(
        Duration::from_secs(30),
        "the stream's leader elected",
        || async {
            let mut stream = js.get_stream(STREAM).await.ok()?;
            let info = stream.info().await.ok()?.clone();
            info.cluster
                .as_ref()
                .and_then(|c| c.leader.clone())
                .is_some()
                .then_some(info)
        },
    )
    .await;
    assert_eq!(
        info.config.num_replicas, 3,
        "the stream is replicated on every node"
    );
    // The first pixel creates the daily-salt bucket, replicated like the
    // stream, and uses it (no local stand-in salt).
    let ids = PixelIds {
        org_id: "acme",
        issuer_id: "i1",
        badge_class_id: "b1",
        assertion_id: "salted",
    };
    let pixel = format!(
        "{ingest}/p.gif?o=acme&i=i1&b=b1&a=salted&kid=k1&sig={}",
        sign(b"cluster-pixel-key-0123456789", &ids)
    );
    reqwest::Client::new()
        .get(&pixel)
        .header(
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0",
        )
        .send()
        .await
        .unwrap();
    let salts = js
        .get_stream(format!("KV_{SALT_BUCKET}"))
        .await
        .expect("the salt bucket exists")
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(
        salts.config.num_replicas, 3,
        "the salt bucket is replicated"
    );
    assert_eq!(salts.state.messages, 1, "today's salt");
    assert_eq!(
        metric_value(
            &scrape(&format!("{ingest_admin}/metrics")).await,
            "badgepulse_ingest_salt_fallbacks_total",
            &[]
        ),
        0.0
    );
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("stream has a leader");
    let leader_node: usize = leader.trim_start_matches('n').parse().unwrap();

    let http = reqwest::Client::new();
    let mut answered_200: Vec<String> = Vec::new();
    let mut answered_503 = 0;
    let occurred =
        (Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    for request in 0..30 {
        if request == 10 {
            cluster.kill(leader_node);
        }
        let ids: Vec<String> = (0..20).map(|i| format!("c-{request}-{i}")).collect();
        let events: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                json!({"event_id": id, "type": "badge.awarded", "occurred_at": occurred, "org_id": format!("org{}", i % 3),
                       "issuer_id": "i1", "badge_class_id": "b1", "assertion_id": format!("as-{id}")})
            })
            .collect();
        // A platform client: on 503 it retries the same events (safe: event_id).
        for attempt in 0.. {
            let r = http
                .post(format!("{ingest}/v1/events"))
                .bearer_auth(TOKEN)
                .json(&json!({ "events": events }))
                .send()
                .await
                .unwrap();
            match r.status().as_u16() {
                200 => {
                    let body: serde_json::Value = r.json().await.unwrap();
                    assert_eq!(body["rejected"], json!([]));
                    answered_200.extend(ids.iter().cloned());
                    break;
                }
                503 => {
                    answered_503 += 1;
                    assert!(attempt < 60, "JetStream did not recover from losing a node");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                s => panic!("unexpected status {s}"),
            }
        }
    }
    assert_eq!(
        answered_200.len(),
        30 * 20,
        "every request eventually succeeded ({answered_503} answers were 503)"
    );

    // The killed node comes back (it catches up from its peers); then the
    // stream must hold every acknowledged event exactly once.
    cluster.restart(leader_node);
    let events = eventually(
        Duration::from_secs(60),
        "stream readable after the leader change",
        || async {
            let c = cluster.client().await;
            let msgs =
                tokio::time::timeout(Duration::from_secs(20), try_stream_messages(&c, STREAM))
                    .await
                    .ok()?
                    .ok()?;
            Some(stream_events(&msgs))
        },
    )
    .await;
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for e in events.iter().filter(|e| e.kind == EventType::Awarded) {
        *per_id.entry(e.event_id.as_str()).or_default() += 1;
    }
    for id in &answered_200 {
        assert_eq!(
            per_id.get(id.as_str()),
            Some(&1),
            "{id} answered 200 must be in the stream exactly once"
        );
    }

    // And in ClickHouse, through the aggregator.
    let want = answered_200.len() as u64;
    let ids_sql = answered_200
        .iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(",");
    let acknowledged =
        format!("SELECT count() FROM cluster_e2e.events WHERE event_id IN ({ids_sql})");
    eventually(
        Duration::from_secs(120),
        "acknowledged events in ClickHouse",
        || async { (ch.number(&acknowledged).await >= want).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        ch.number(&acknowledged).await,
        want,
        "every acknowledged event stored once"
    );
    assert_eq!(
        ch.number("SELECT count() - uniqExact(org_id, event_id) FROM cluster_e2e.events")
            .await,
        0
    );
}
