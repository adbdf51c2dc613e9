//! Cluster mode on a real replicated ClickHouse: two 18.16 replicas of one
//! shard coordinated by ZooKeeper, `[clickhouse] cluster = "badgepulse"`
//! (`ON CLUSTER` DDL, `Replicated*` tables behind `Distributed` ones). The
//! same demo traffic goes through one ingest to two aggregators, one
//! writing to the cluster and one to a single server. The exporter reading
//! the cluster through the *other* replica must answer exactly as the
//! exporter of the single server.

use std::time::Duration;

use badgepulse_aggregator::schema::{DERIVED_TABLES, LIFECYCLE_REFILED};
use badgepulse_tests::{
    clickhouse_replicas, eventually, free_port, metric_value, scrape, sha256_hex, wait_http,
    ClickHouse, Nats, Service, StackPorts, ZooKeeper,
};
use chrono::Utc;
use serde_json::Value;

const TOKEN: &str = "cluster-ch-token";
const KEY: &str = "cluster-ch-pixel-key-0123";
const API_KEY: &str = "cluster-ch-api-key";

fn config(nats: &Nats, ch_url: &str, cluster: &str, prefix: &str, ports: StackPorts) -> String {
    format!(
        "[nats]\nurl = \"{}\"\n[clickhouse]\nurl = \"{ch_url}\"\ndatabase = \"bp\"\ncluster = \"{cluster}\"\n\
         [ingest]\nbind = \"127.0.0.1:{}\"\nadmin_bind = \"127.0.0.1:{}\"\ntrusted_proxies = [\"127.0.0.1/32\"]\nplatform_hosts = [\"badges.example.org\"]\ncountry_header = \"CF-IPCountry\"\n\
         [ingest.pixel_keys]\nk1 = \"{KEY}\"\n[[ingest.tokens]]\nsha256 = \"{}\"\norgs = [\"*\"]\n\
         [aggregator]\nadmin_bind = \"127.0.0.1:{}\"\nconsumer_prefix = \"{prefix}\"\nflush_interval_ms = 100\ncompact_interval_secs = 1\n\
         [exporter]\nbind = \"127.0.0.1:{}\"\nadmin_bind = \"127.0.0.1:{}\"\n[[exporter.api_keys]]\nsha256 = \"{}\"\nscope = \"admin\"\n",
        nats.url(),
        ports.ingest,
        ports.ingest_admin,
        sha256_hex(TOKEN),
        ports.aggregator,
        ports.exporter,
        ports.exporter_admin,
        sha256_hex(API_KEY)
    )
}

async fn get(url: &str) -> Value {
    let r = reqwest::Client::new()
        .get(url)
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_cluster_answers_like_a_single_server() {
    let zk = ZooKeeper::start().await;
    let replicas = clickhouse_replicas(&zk, "badgepulse", 2).await;
    let single = ClickHouse::start().await;
    let nats = Nats::start().await;

    // One ingest; an aggregator and an exporter each for the cluster and
    // the single server.
    let cluster_ports = StackPorts::free();
    let single_ports = StackPorts {
        ingest: cluster_ports.ingest,
        ingest_admin: cluster_ports.ingest_admin,
        ..StackPorts::free()
    };
    let (ingest, cluster_admin, cluster_exporter) = (
        cluster_ports.ingest,
        cluster_ports.aggregator,
        cluster_ports.exporter,
    );
    let single_exporter = single_ports.exporter;
    // Aggregator writes through replica 0; the cluster's exporter reads replica 1.
    let cluster_write = config(
        &nats,
        &replicas[0].url(),
        "badgepulse",
        "agg-cluster",
        cluster_ports,
    );
    let cluster_read = config(
        &nats,
        &replicas[1].url(),
        "badgepulse",
        "agg-cluster",
        cluster_ports,
    );
    let single_cfg = config(&nats, &single.url(), "", "agg-single", single_ports);
    let _ingest = Service::start("badgepulse-ingest", &single_cfg, &[]);
    let _agg_cluster = Service::start("badgepulse-aggregator", &cluster_write, &[]);
    let _agg_single = Service::start("badgepulse-aggregator", &single_cfg, &[]);
    for port in [
        cluster_ports.ingest_admin,
        cluster_admin,
        single_ports.aggregator,
    ] {
        wait_http(
            &format!("http://127.0.0.1:{port}/readyz"),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    }
    // The schema exists on both replicas, replicated and distributed.
    for node in &replicas {
        let engines = node
            .query("SELECT name, engine FROM system.tables WHERE database = 'bp' ORDER BY name")
            .await
            .unwrap();
        assert!(engines.contains("events\tDistributed"), "{engines}");
        assert!(
            engines.contains("events_local\tReplicatedMergeTree"),
            "{engines}"
        );
        assert!(
            engines.contains("rollup_day_local\tReplicatedAggregatingMergeTree"),
            "{engines}"
        );
    }
    let _exp_cluster = Service::start("badgepulse-exporter", &cluster_read, &[]);
    let _exp_single = Service::start("badgepulse-exporter", &single_cfg, &[]);
    for port in [cluster_ports.exporter_admin, single_ports.exporter_admin] {
        wait_http(
            &format!("http://127.0.0.1:{port}/readyz"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    }

    let plan = badgepulse_loadgen::plan(11, 1, Utc::now(), 5);
    let expected: u64 = plan.ledger.traffic.events_by_type.values().sum();
    badgepulse_loadgen::send(
        &plan,
        &badgepulse_loadgen::Target {
            ingest: format!("http://127.0.0.1:{ingest}"),
            token: TOKEN.into(),
            kid: "k1".into(),
            key: KEY.into(),
            concurrency: 16,
            metrics: None,
            rate: None,
        },
    )
    .await
    .unwrap();

    // One INSERT fills `events` first and the tables its materialised views
    // feed after it, `scope_total` last: a node is complete once
    // `scope_total` counts every event (on a replica, the aggregator's
    // inserts through replica 0 or the parts fetched from it).
    single
        .wait_for_events("bp", expected, Duration::from_secs(120))
        .await;
    for (name, node) in [("replica 0", &replicas[0]), ("replica 1", &replicas[1])] {
        eventually(
            Duration::from_secs(120),
            &format!("{expected} events in events_local and scope_total_local on {name}"),
            || async {
                let events = node.number("SELECT count() FROM bp.events_local").await;
                let totals = node
                    .number(
                        "SELECT countMerge(events) FROM bp.scope_total_local \
                         WHERE scope_issuer_id = ''",
                    )
                    .await;
                (events == expected && totals == expected).then_some(())
            },
        )
        .await;
    }
    // An award that arrives after a later award and an accept of its
    // assertion, each round stored everywhere before the next is sent:
    // lifecycle_refiled gets a row to replicate, and the lifecycle below
    // leaves the assertion out of the window its later award is in.
    let now = Utc::now().timestamp();
    let late = |n: usize, kind: &str, days_ago: i64| {
        let mut e = serde_json::json!({
            "event_id": format!("late-{n}"), "type": kind,
            "occurred_at": chrono::DateTime::from_timestamp(now - days_ago * 86_400, 0).unwrap().to_rfc3339(),
            "org_id": "late-org", "issuer_id": "i1", "badge_class_id": "b1",
            "assertion_id": "late-assertion",
        });
        if kind == "badge.awarded" {
            e["award_method"] = "api".into();
        }
        e
    };
    let mut expected = expected;
    for round in [
        vec![late(1, "badge.awarded", 2), late(2, "badge.accepted", 1)],
        vec![late(3, "badge.awarded", 5)],
    ] {
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{ingest}/v1/events"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({ "events": round }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["accepted"], round.len(), "{answer}");
        expected += round.len() as u64;
        single
            .wait_for_events("bp", expected, Duration::from_secs(60))
            .await;
        for node in &replicas {
            eventually(Duration::from_secs(60), "the late events", || async {
                (node.number("SELECT count() FROM bp.events_local").await == expected).then_some(())
            })
            .await;
        }
    }
    // Replica 0 is complete; let every replicated derived table catch up
    // on replica 1 before comparing. Every one has rows but
    // `lifecycle_refiled`, which has only when an assertion's award reached
    // the aggregator after another of its events: that depends on the
    // order the traffic arrived in.
    for (table, may_be_empty) in DERIVED_TABLES
        .into_iter()
        .chain(["badge_classes"])
        .map(|t| (format!("{t}_local"), t == LIFECYCLE_REFILED))
    {
        eventually(
            Duration::from_secs(60),
            &format!("{table} replicated"),
            || async {
                let a = replicas[0]
                    .number(&format!("SELECT count() FROM bp.{table}"))
                    .await;
                let b = replicas[1]
                    .number(&format!("SELECT count() FROM bp.{table}"))
                    .await;
                (a == b && (a > 0 || may_be_empty)).then_some(())
            },
        )
        .await;
    }

    // The aggregators compact scope_total every second, the cluster's with
    // OPTIMIZE … ON CLUSTER: no run fails, and once traffic has stopped
    // each replica holds one part. The comparisons below read the
    // compacted tables.
    eventually(
        Duration::from_secs(60),
        "scope_total compacted on both replicas",
        || async {
            let text = scrape(&format!("http://127.0.0.1:{cluster_admin}/metrics")).await;
            let runs = |outcome| {
                metric_value(
                    &text,
                    "badgepulse_aggregator_compactions_total",
                    &[("outcome", outcome)],
                )
            };
            assert_eq!(runs("failed"), 0.0, "a compaction failed");
            let mut parts = Vec::new();
            for node in &replicas {
                parts.push(
                    node.number(
                        "SELECT count() FROM system.parts \
                         WHERE database = 'bp' AND table = 'scope_total_local' AND active",
                    )
                    .await,
                );
            }
            (runs("ok") > 0.0 && parts == [1, 1]).then_some(())
        },
    )
    .await;

    let from = (Utc::now() - chrono::Duration::days(3))
        .format("%Y-%m-%dT%H:00:00Z")
        .to_string();
    let to = Utc::now().format("%Y-%m-%dT%H:%M:00Z").to_string();
    let window = format!("from={from}&to={to}");
    let paths = [
        format!("overview?{window}"),
        format!("distribution?dimension=award_method&{window}"),
        format!("distribution?dimension=share_channel&{window}"),
        format!("distribution?dimension=view_source&{window}"),
        format!("distribution?dimension=view_country&{window}"),
        format!("top-badges?sort=performance&limit=50&{window}"),
        format!(
            "trends?metrics=awarded,accepted,shared,views,unique_viewers&granularity=day&{window}"
        ),
        format!("lifecycle?{window}"),
        format!("drivers?{window}"),
    ];
    for path in &paths {
        let c = get(&format!(
            "http://127.0.0.1:{cluster_exporter}/api/v1/{path}"
        ))
        .await;
        let s = get(&format!("http://127.0.0.1:{single_exporter}/api/v1/{path}")).await;
        assert_eq!(
            c, s,
            "/api/v1/{path} differs between the cluster and a single server"
        );
    }
    // Read your writes on a cluster: an annotation created through an
    // exporter is listed at once by that exporter (its node's replica took
    // the insert before the 201, and reads prefer the local replica), and
    // by an exporter of the other replica once replicated.
    let other_ports = StackPorts {
        exporter: free_port(),
        exporter_admin: free_port(),
        ..cluster_ports
    };
    let other_exporter = other_ports.exporter;
    let other_read = config(
        &nats,
        &replicas[0].url(),
        "badgepulse",
        "agg-cluster",
        other_ports,
    );
    let _exp_other = Service::start("badgepulse-exporter", &other_read, &[]);
    wait_http(
        &format!("{}/readyz", other_ports.exporter_admin_url()),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let org = &plan.ledger.orgs[0].org_id;
    let mut slowest = Duration::ZERO;
    for (n, (writer, reader)) in [
        (cluster_exporter, other_exporter),
        (other_exporter, cluster_exporter),
    ]
    .into_iter()
    .cycle()
    .take(6)
    .enumerate()
    {
        let list = |port: u16| {
            format!("http://127.0.0.1:{port}/api/v1/annotations?org={org}&from=2020-01-01")
        };
        // Both exporters have the list cached before the write.
        get(&list(writer)).await;
        get(&list(reader)).await;
        let title = format!("Program update {n}");
        let r = http
            .post(format!(
                "http://127.0.0.1:{writer}/api/v1/annotations?org={org}"
            ))
            .bearer_auth(API_KEY)
            .json(&serde_json::json!({"at": "2026-01-01T00:00:00Z", "title": title}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let written = std::time::Instant::now();
        let listed = get(&list(writer)).await;
        assert!(
            listed.to_string().contains(&title),
            "{title} missing on its own exporter: {listed}"
        );
        eventually(Duration::from_secs(10), "the other replica", || async {
            get(&list(reader))
                .await
                .to_string()
                .contains(&title)
                .then_some(())
        })
        .await;
        slowest = slowest.max(written.elapsed());
    }
    eprintln!("an annotation reached the other replica's exporter within {slowest:?}");

    let overview = get(&format!(
        "http://127.0.0.1:{cluster_exporter}/api/v1/overview?{window}"
    ))
    .await;
    assert_eq!(
        overview["kpis"]["awarded"],
        plan.ledger.totals.awarded + 1,
        "the demo's and the late assertion: {overview}"
    );
    assert_eq!(
        overview["kpis"]["views"], plan.ledger.totals.views,
        "{overview}"
    );
}
