//! More than one ClickHouse shard, exactly once: a cluster of 2 shards × 1
//! replica (18.16, ZooKeeper) and the fault tests' seeded ledger
//! (`badgepulse_tests::workload`) on 4 stream partitions, whose orgs the
//! sharding key `partition` spreads over both shards. One aggregator
//! instance owns every partition and writes each through the node of its
//! shard (`aggregator.shard_urls`); it is SIGKILLed at random moments
//! (every third run exactly between a write and its ack) while the
//! ledger is published in waves, and the second shard is restarted under
//! it. An undisturbed aggregator writes the same stream into a single
//! server for reference.
//!
//! Then: every table, read through the `Distributed` tables, equals the
//! ledger; each partition's rows are on its shard only; every org's
//! overview equals the ledger and every API endpoint (every scope kind,
//! two windows) and every business metric answers exactly as the single
//! server; nothing is pending (consumers, `Distributed` queues,
//! replication).

use std::collections::BTreeMap;
use std::time::Duration;

use badgepulse_aggregator::shards::Layout;
use badgepulse_tests::workload::{
    check_tables, crash_env, dead_letters, drained, end_run, ensure_streams, publish, workload,
    Workload,
};
use badgepulse_tests::{
    clickhouse_shards, eventually, free_port, sha256_hex, wait_http, ClickHouse, Nats, Service,
    ZooKeeper, SHORT_LIVED_PARTS,
};
use chrono::{Duration as Days, Utc};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

const CLUSTER: &str = "badgepulse";
const PARTITIONS: u16 = 4;
const API_KEY: &str = "shards-api-key";

/// The tables with a `partition` column, sharded by it.
const PARTITIONED: [&str; 16] = [
    "events",
    "event_ids",
    "assertion_awards",
    "lifecycle_refiled",
    "rollup_minute",
    "rollup_hour",
    "rollup_day",
    "rollup_total",
    "assertion_lifecycle",
    "scope_hour",
    "scope_day",
    "scope_month",
    "scope_total",
    "view_days",
    "viewer_days",
    "viewer_hours",
];

/// The config of an aggregator and an exporter of database `db` on
/// ClickHouse at `url`, in cluster mode when `shard_urls` is not empty,
/// with the exporter's ports.
struct Deployment {
    toml: String,
    api: u16,
    admin: u16,
}

impl Deployment {
    fn new(nats: &Nats, url: &str, db: &str, shard_urls: &[String], aggregator: u16) -> Deployment {
        let cluster = if shard_urls.is_empty() { "" } else { CLUSTER };
        let shard_urls: Vec<String> = shard_urls.iter().map(|u| format!("\"{u}\"")).collect();
        let (api, admin) = (free_port(), free_port());
        let toml = format!(
            "[nats]\nurl = \"{}\"\npartitions = {PARTITIONS}\n\
             [clickhouse]\nurl = \"{url}\"\ndatabase = \"{db}\"\ncluster = \"{cluster}\"\n\
             [aggregator]\nadmin_bind = \"127.0.0.1:{aggregator}\"\nflush_interval_ms = 100\nbatch_max_messages = 2000\n\
             consumer_prefix = \"agg-{db}\"\nack_wait_secs = 10\nwrite_timeout_secs = 30\nseal_interval_secs = 1\ncompact_interval_secs = 2\n\
             shard_urls = [{}]\n\
             [exporter]\nbind = \"127.0.0.1:{api}\"\nadmin_bind = \"127.0.0.1:{admin}\"\nrefresh_interval_secs = 1\n[[exporter.api_keys]]\nsha256 = \"{}\"\nscope = \"admin\"\n",
            nats.url(),
            shard_urls.join(", "),
            sha256_hex(API_KEY)
        );
        Deployment { toml, api, admin }
    }
}

async fn get(url: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(url)
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The shard layout as ClickHouse's `Distributed` tables apply it, checked
/// against inserts through a scratch `Distributed` table sharded the same
/// way: partition p's row must land on the node `Layout` names.
async fn checked_layout(shards: &[Vec<ClickHouse>]) -> Layout {
    let node = &shards[0][0];
    let weights: Vec<(u32, u32)> = node
        .query(&format!(
            "SELECT shard_num, any(shard_weight) FROM system.clusters WHERE cluster = '{CLUSTER}' \
             GROUP BY shard_num ORDER BY shard_num"
        ))
        .await
        .unwrap()
        .lines()
        .map(|l| {
            let (s, w) = l.split_once('\t').unwrap();
            (s.parse().unwrap(), w.parse().unwrap())
        })
        .collect();
    assert_eq!(weights, [(1, 1), (2, 1)]);
    let layout = Layout::new(&weights).unwrap();
    // The scratch tables, each statement sent again if the connection
    // drops before its answer (seen once in 15 runs, right after the
    // cluster's start): they are idempotent, and the test is about the
    // rows, not this set-up.
    for ddl in [
        format!("CREATE DATABASE IF NOT EXISTS scratch ON CLUSTER {CLUSTER}"),
        format!(
            "CREATE TABLE IF NOT EXISTS scratch.p_local ON CLUSTER {CLUSTER} (partition UInt16) \
             ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/scratch/p', '{{replica}}') ORDER BY partition"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS scratch.p ON CLUSTER {CLUSTER} (partition UInt16) \
             ENGINE = Distributed({CLUSTER}, scratch, p_local, partition)"
        ),
    ] {
        let mut attempt = 1;
        while let Err(e) = node.query(&ddl).await {
            let dropped = e.downcast_ref::<reqwest::Error>().is_some();
            assert!(dropped && attempt < 3, "{ddl}: {e:#}");
            eprintln!("{ddl}: {e:#}; sending it again");
            attempt += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    // Delivered to the other shard in the background (18.16 takes no
    // SETTINGS clause in an INSERT).
    node.query("INSERT INTO scratch.p VALUES (0), (1), (2), (3), (4), (5), (6), (7)")
        .await
        .unwrap();
    for (s, shard) in shards.iter().enumerate() {
        let want: Vec<String> = (0..8u16)
            .filter(|p| layout.owner(*p) == s as u32 + 1)
            .map(|p| p.to_string())
            .collect();
        let want = format!("[{}]", want.join(","));
        let held = || async {
            shard[0]
                .query("SELECT groupArray(partition) FROM (SELECT partition FROM scratch.p_local ORDER BY partition)")
                .await
                .unwrap()
        };
        eventually(
            Duration::from_secs(10),
            "the scratch rows delivered",
            || async { (held().await.trim().len() >= want.len()).then_some(()) },
        )
        .await;
        assert_eq!(held().await.trim(), want, "shard {}", s + 1);
    }
    layout
}

/// Every partition's rows of every partitioned table are on its shard
/// only, and both shards hold events.
async fn check_placement(shards: &[Vec<ClickHouse>], layout: &Layout, db: &str) {
    for (s, shard) in shards.iter().enumerate() {
        let shard_num = s as u32 + 1;
        for table in PARTITIONED {
            let held = shard[0]
                .query(&format!(
                    "SELECT DISTINCT partition FROM {db}.{table}_local ORDER BY partition"
                ))
                .await
                .unwrap();
            for p in held.lines() {
                let p: u16 = p.parse().unwrap();
                assert_eq!(
                    layout.owner(p),
                    shard_num,
                    "{table}: partition {p} on shard {shard_num}"
                );
            }
        }
        let events = shard[0]
            .number(&format!("SELECT count() FROM {db}.events_local"))
            .await;
        assert!(events > 0, "shard {shard_num} holds no events");
    }
}

/// Every org day with keyed views sealed (its org row's `sealed_seq` at
/// least the day's last keyed view), and the sealed unique viewers of
/// each org, summed over days, equal the ledger's.
async fn check_seals(ch: &ClickHouse, db: &str, w: &Workload) {
    let unsealed = format!(
        "SELECT count() FROM (SELECT org_id, bucket, maxMerge(max_seq) AS hi FROM {db}.view_days GROUP BY org_id, bucket) AS v \
         ANY LEFT JOIN (SELECT org_id, bucket, max(sealed_seq) AS sealed FROM {db}.viewer_days \
         WHERE scope_issuer_id = '' AND scope_badge_class_id = '' GROUP BY org_id, bucket) AS s \
         USING org_id, bucket WHERE sealed < hi"
    );
    eventually(Duration::from_secs(60), "every view day sealed", || async {
        (ch.number(&unsealed).await == 0).then_some(())
    })
    .await;
    let sealed = ch
        .query(&format!(
            "SELECT org_id, sum(u) FROM (SELECT org_id, bucket, argMax(unique_viewers, sealed_seq) AS u FROM {db}.viewer_days \
             WHERE scope_issuer_id = '' AND scope_badge_class_id = '' GROUP BY org_id, bucket) GROUP BY org_id ORDER BY org_id"
        ))
        .await
        .unwrap();
    let want: Vec<String> = w
        .per_org
        .iter()
        .filter(|(_, t)| t.unique_viewers > 0)
        .map(|(org, t)| format!("{org}\t{}", t.unique_viewers))
        .collect();
    assert_eq!(
        sealed.trim(),
        want.join("\n"),
        "{db}: sealed unique viewers"
    );
}

/// Row counts of the tables `check_tables` does not compare with the
/// ledger, which must equal the reference's.
async fn other_tables(ch: &ClickHouse, db: &str) -> BTreeMap<&'static str, u64> {
    let mut counts = BTreeMap::new();
    for table in ["assertion_awards", "lifecycle_refiled", "badge_classes"] {
        counts.insert(
            table,
            ch.number(&format!("SELECT count() FROM {db}.{table}"))
                .await,
        );
    }
    counts
}

/// The business metrics of an exporter's `/metrics` (its own pipeline
/// metrics left out).
async fn business_metrics(admin: u16) -> Vec<String> {
    let text = reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("badgepulse_") && !l.starts_with("badgepulse_exporter_"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_through_sigkills_and_a_shard_restart_count_exactly_once() {
    let started = std::time::Instant::now();
    let zk = ZooKeeper::start().await;
    let mut shards = clickhouse_shards(&zk, CLUSTER, 2, 1).await;
    let single = ClickHouse::start_configured(free_port(), free_port(), SHORT_LIVED_PARTS).await;
    let nats = Nats::start().await;
    let layout = checked_layout(&shards).await;
    eprintln!("{:?}: cluster up", started.elapsed());

    let w = workload(20260524, 4_000, PARTITIONS);
    assert!(w.distinct_events >= 30_000, "{} events", w.distinct_events);
    let js = async_nats::jetstream::new(nats.client().await);
    ensure_streams(&js).await;

    let shard_urls: Vec<String> = shards.iter().map(|s| s[0].url()).collect();
    // A database whose Distributed tables spread rows at random (as every
    // table did before sharding by partition) gets the new key from the
    // first aggregator's migration.
    let mut migrate = Service::start(
        "badgepulse-aggregator",
        &Deployment::new(&nats, &shard_urls[0], "sharded", &shard_urls, free_port()).toml,
        &["migrate"],
    );
    let status = migrate.wait_for_exit(Duration::from_secs(60)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{}",
        migrate.log_text()
    );
    for table in ["events", "scope_total"] {
        shards[0][0]
            .query(&format!("DROP TABLE sharded.{table} ON CLUSTER {CLUSTER}"))
            .await
            .unwrap();
        shards[0][0]
            .query(&format!(
                "CREATE TABLE sharded.{table} ON CLUSTER {CLUSTER} AS sharded.{table}_local \
                 ENGINE = Distributed({CLUSTER}, sharded, {table}_local, rand())"
            ))
            .await
            .unwrap();
    }
    // The reference: a single server, written undisturbed.
    let reference = Deployment::new(&nats, &single.url(), "single", &[], free_port());
    let _reference = Service::start("badgepulse-aggregator", &reference.toml, &[]);

    let mut rng = StdRng::seed_from_u64(11);
    let waves = 9;
    let per_wave = w.messages.len().div_ceil(waves);
    let mut crashes_between_write_and_ack = 0;
    for (wave, msgs) in w.messages.chunks(per_wave).enumerate() {
        publish(&js, msgs).await;
        let cluster = Deployment::new(&nats, &shard_urls[0], "sharded", &shard_urls, free_port());
        let crash_env = crash_env(wave, "3");
        let mut agg =
            Service::start_with_env("badgepulse-aggregator", &cluster.toml, &[], &crash_env);
        if wave == 5 {
            // The second shard restarts while the aggregator writes to it.
            tokio::time::sleep(Duration::from_millis(500)).await;
            shards[1][0].restart().await;
        }
        if end_run(&mut agg, wave, &mut rng, 300..1_500).await {
            crashes_between_write_and_ack += 1;
        }
        eprintln!("{:?}: wave {wave} done", started.elapsed());
    }
    assert!(
        crashes_between_write_and_ack >= 2,
        "only {crashes_between_write_and_ack} crashes between write and ack"
    );

    // A final, undisturbed run finishes the stream.
    let admin = free_port();
    let cluster = Deployment::new(&nats, &shard_urls[0], "sharded", &shard_urls, admin);
    let _agg = Service::start("badgepulse-aggregator", &cluster.toml, &[]);
    wait_http(
        &format!("http://127.0.0.1:{admin}/readyz"),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let count = "SELECT count() FROM sharded.events";
    eventually(
        Duration::from_secs(120),
        "every ledger event in the cluster",
        || async { (shards[0][0].number(count).await >= w.distinct_events).then_some(()) },
    )
    .await;
    eprintln!("{:?}: all events in", started.elapsed());
    drained(&nats, "sharded", PARTITIONS).await;
    drained(&nats, "single", PARTITIONS).await;
    eprintln!("{:?}: the stream written", started.elapsed());

    // Every table, through the Distributed tables, equals the ledger, and
    // each partition is on its shard only.
    check_tables(&shards[0][0], "sharded", &w).await;
    check_tables(&single, "single", &w).await;
    check_placement(&shards, &layout, "sharded").await;
    check_seals(&shards[1][0], "sharded", &w).await;
    check_seals(&single, "single", &w).await;
    eprintln!("{:?}: tables checked", started.elapsed());
    assert_eq!(
        other_tables(&shards[0][0], "sharded").await,
        other_tables(&single, "single").await
    );
    assert_eq!(dead_letters(&nats).await, w.garbage);
    // Nothing pending: the aggregator wrote only local tables, and the
    // migration's record went through synchronously.
    for (s, shard) in shards.iter().enumerate() {
        let node = &shard[0];
        assert_eq!(
            node.distributed_queue("sharded").await,
            Vec::<std::path::PathBuf>::new(),
            "shard {}: Distributed inserts queued",
            s + 1
        );
        // Merges (OPTIMIZE every 2 s) pass through the queue too.
        assert_eq!(
            node.number(
                "SELECT count() FROM system.replication_queue \
                 WHERE database = 'sharded' AND type != 'MERGE_PARTS'"
            )
            .await,
            0,
            "shard {}: replication queue",
            s + 1
        );
    }

    // The API, read through a node of the second shard.
    let exporter = Deployment::new(&nats, &shard_urls[1], "sharded", &shard_urls, free_port());
    let (cluster_api, cluster_admin) = (exporter.api, exporter.admin);
    let (single_api, single_admin) = (reference.api, reference.admin);
    let _exporters = [
        Service::start("badgepulse-exporter", &exporter.toml, &[]),
        Service::start("badgepulse-exporter", &reference.toml, &[]),
    ];
    for admin in [cluster_admin, single_admin] {
        wait_http(
            &format!("http://127.0.0.1:{admin}/readyz"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    }
    let now = Utc::now();
    let all = format!(
        "from={}&to={}",
        (now - Days::days(5)).format("%Y-%m-%d"),
        now.format("%Y-%m-%dT%H:%M:00Z")
    );
    for (org, want) in &w.per_org {
        let (status, body) = get(&format!(
            "http://127.0.0.1:{cluster_api}/api/v1/overview?org={org}&{all}"
        ))
        .await;
        assert_eq!(status, 200, "{body}");
        let kpis = &body["kpis"];
        for (name, want) in [
            ("awarded", want.awarded),
            ("accepted", want.accepted),
            ("shared", want.shared),
            ("revoked", want.revoked),
            ("shares", want.shares),
            ("views", want.views),
            ("unique_viewers", want.unique_viewers),
            ("badge_classes", want.badge_classes),
        ] {
            assert_eq!(kpis[name].as_u64(), Some(want), "{org} {name}: {kpis}");
        }
    }
    let cut = format!(
        "from={}&to={}",
        (now - Days::days(3)).format("%Y-%m-%dT05:17:00Z"),
        (now - Days::days(1)).format("%Y-%m-%dT19:43:00Z")
    );
    let scopes = [
        String::new(),
        "org=acme&".into(),
        "org=globex&".into(),
        "org=acme&issuer=acme-iss1&".into(),
        "org=initech&badge_class=initech-b4&".into(),
    ];
    let paths = [
        "overview?",
        "distribution?dimension=award_method&",
        "distribution?dimension=share_channel&",
        "distribution?dimension=view_source&",
        "distribution?dimension=view_country&",
        "top-badges?sort=performance&limit=50&",
        "trends?metrics=awarded,accepted,shared,views,unique_viewers&granularity=day&",
        "trends?metrics=views,unique_viewers&granularity=hour&",
        "lifecycle?",
        "drivers?",
        "top-badges?sort=performance&limit=50&format=csv&",
        "timing?tz=Europe/Paris&",
        "cohorts?granularity=week&stage=accepted&",
        "benchmark?",
    ];
    let mut compared = 0;
    for window in [&all, &cut] {
        for scope in &scopes {
            for path in paths {
                let q = format!("{path}{scope}{window}");
                let c = get(&format!("http://127.0.0.1:{cluster_api}/api/v1/{q}")).await;
                let s = get(&format!("http://127.0.0.1:{single_api}/api/v1/{q}")).await;
                assert_eq!(
                    c, s,
                    "/api/v1/{q}: the cluster differs from a single server"
                );
                // The peer benchmark is of an org or an issuer.
                let answerable = !path.starts_with("benchmark")
                    || (scope.starts_with("org=") && !scope.contains("badge_class"));
                if answerable {
                    assert_eq!(c.0, 200, "/api/v1/{q}: {}", c.1);
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 2 * scopes.len() * paths.len() - 2 * 2);
    // The scopes a key may choose from (no window).
    for scope in &scopes {
        for format in ["", "format=csv"] {
            let q = format!("scopes?{scope}{format}");
            let c = get(&format!("http://127.0.0.1:{cluster_api}/api/v1/{q}")).await;
            let s = get(&format!("http://127.0.0.1:{single_api}/api/v1/{q}")).await;
            assert_eq!(c.0, 200, "/api/v1/{q}: {}", c.1);
            assert_eq!(
                c, s,
                "/api/v1/{q}: the cluster differs from a single server"
            );
            compared += 1;
        }
    }
    eprintln!("{:?}: {compared} API answers compared", started.elapsed());
    eventually(
        Duration::from_secs(60),
        "the same business metrics",
        || async {
            let c = business_metrics(cluster_admin).await;
            (c.len() > 20 && c == business_metrics(single_admin).await).then_some(())
        },
    )
    .await;

    eprintln!("{:?}: business metrics compared", started.elapsed());

    // The impact of a program update, the same annotation on both.
    let at = (now - Days::days(2))
        .format("%Y-%m-%dT%H:00:00Z")
        .to_string();
    let mut impacts = Vec::new();
    for api in [cluster_api, single_api] {
        let r = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{api}/api/v1/annotations?org=acme"
            ))
            .bearer_auth(API_KEY)
            .json(&serde_json::json!({"at": at, "title": "Launch"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, mut body) = get(&format!(
            "http://127.0.0.1:{api}/api/v1/impact?org=acme&annotation={id}&days=1&horizon=1"
        ))
        .await;
        assert_eq!(status, 200, "{body}");
        body["annotation"] = Value::Null;
        impacts.push(body);
    }
    assert_eq!(impacts[0], impacts[1], "impact");

    // An annotation goes through its Distributed table (sharded at
    // random) synchronously: listed as soon as it is answered.
    for n in 0..4 {
        let title = format!("Program update {n}");
        let r = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{cluster_api}/api/v1/annotations?org=acme"
            ))
            .bearer_auth(API_KEY)
            .json(&serde_json::json!({"at": "2026-01-01T00:00:00Z", "title": title}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let (_, listed) = get(&format!(
            "http://127.0.0.1:{cluster_api}/api/v1/annotations?org=acme&from=2025-01-01"
        ))
        .await;
        assert!(listed.to_string().contains(&title), "{title}: {listed}");
    }
    eprintln!("{:?}: annotations listed", started.elapsed());

    // Every Distributed table has the current sharding key on every node.
    for shard in &shards {
        let keys = shard[0]
            .query(
                "SELECT name, engine_full FROM system.tables \
                 WHERE database = 'sharded' AND engine = 'Distributed' ORDER BY name",
            )
            .await
            .unwrap();
        assert_eq!(keys.lines().count(), 21, "{keys}");
        for line in keys.lines() {
            let (name, engine) = line.split_once('\t').unwrap();
            let want = match name {
                "badge_classes" => format!("Distributed({CLUSTER}, sharded, {name}_local)"),
                "annotations" | "schema_migrations" => {
                    format!("Distributed({CLUSTER}, sharded, {name}_local, rand())")
                }
                _ => format!("Distributed({CLUSTER}, sharded, {name}_local, partition)"),
            };
            assert_eq!(engine, want);
        }
    }

    // An instance that cannot reach a partition's shard, or that finds a
    // partition's rows on another shard, stops and says why.
    drop(_agg);
    let first = shard_urls[0].clone();
    let refusals = [
        (
            vec![first.clone()],
            "partition 1 lives on shard 2 of cluster badgepulse, and no node of that shard is configured",
        ),
        (vec![first.clone(), first.clone()], "are both nodes of shard 1"),
        (vec![single.url()], "is not a node of cluster badgepulse"),
        (
            shard_urls.clone(),
            "holds rows of partition 3, which cluster badgepulse places on shard 2",
        ),
    ];
    for (nodes, reason) in refusals {
        if reason.contains("partition 3") {
            // A stray row of partition 3 (shard 2's) on shard 1.
            shards[0][0]
                .query(
                    "INSERT INTO sharded.scope_total_local \
                     (org_id, scope_issuer_id, scope_badge_class_id, partition) VALUES ('stray', '', '', 3)",
                )
                .await
                .unwrap();
        }
        let stack = Deployment::new(&nats, &first, "sharded", &nodes, free_port());
        let mut agg = Service::start("badgepulse-aggregator", &stack.toml, &[]);
        let status = agg.wait_for_exit(Duration::from_secs(60)).await;
        let log = agg.log_text();
        assert!(status.is_some_and(|s| !s.success()), "{log}");
        assert!(log.contains(reason), "{reason}: {log}");
    }
}
