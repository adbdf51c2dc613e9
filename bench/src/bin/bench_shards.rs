//! ClickHouse shards (issue 24), run by hand (`bench/shards.sh`):
//!
//! - `throughput [EVENTS]`: one aggregator instance writes the same
//!   pre-filled stream (2 partitions, default 1,000,000 events) into a
//!   single server (the baseline), a cluster of 1 shard × 1 replica
//!   (replicated tables, ZooKeeper) and a cluster of 2 shards × 1 replica
//!   (each partition on its shard). Prints events/s from the first rows
//!   written (the migration, slow ON CLUSTER, left out), the ratio to the
//!   baseline, and the CPU time the servers and the aggregator spent per
//!   million events: on this machine every server shares the same cores,
//!   so the CPU cost, not the two shards' sum, says what a shard on its
//!   own machine would take.
//! - `replica-kill [ASSERTIONS]`: 2 shards × 2 replicas; the fault tests'
//!   ledger (`badgepulse_tests::workload`, default 30,000 assertions,
//!   about 280,000 events on 4 partitions) is published in 10 waves while
//!   one aggregator instance writes through replica 0 of each shard. While
//!   it writes a wave, replica 1 of shard 2 (not written through) is
//!   SIGKILLed and two waves later restarted; then replica 0 of shard 1
//!   (written through) is SIGKILLed and restarted two waves later (its
//!   partitions' writes fail meanwhile, and at least one must have). Afterwards every table, through the `Distributed`
//!   tables, must equal the ledger, both replicas of each shard must hold
//!   the same rows, and nothing may be pending.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use badgepulse_contract::event::{encode_payload, Event, EventType, ViewSource};
use badgepulse_contract::subject::{event_subject, partition_of, BEACON_HEADER};
use badgepulse_tests::workload::{
    check_tables, dead_letters, drained, ensure_streams, publish, workload,
};
use badgepulse_tests::{
    clickhouse_shards, eventually, free_port, wait_http, ClickHouse, Nats, Service, ZooKeeper,
    SHORT_LIVED_PARTS,
};
use chrono::{TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CLUSTER: &str = "bench";

/// CPU time (user + system, seconds) of process `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// An aggregator of database `db` with its admin port; consumers named
/// as `badgepulse_tests::workload::drained` expects.
fn aggregator_config(
    nats: &Nats,
    url: &str,
    db: &str,
    cluster: &str,
    shard_urls: &[String],
    partitions: u16,
    admin: u16,
) -> String {
    let urls: Vec<String> = shard_urls.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "[nats]\nurl = \"{}\"\npartitions = {partitions}\n[clickhouse]\nurl = \"{url}\"\ndatabase = \"{db}\"\ncluster = \"{cluster}\"\n\
         [aggregator]\nadmin_bind = \"127.0.0.1:{admin}\"\nconsumer_prefix = \"agg-{db}\"\nshard_urls = [{}]\nack_wait_secs = 30\n",
        nats.url(),
        urls.join(", ")
    )
}

/// The value of counter `name` (summed over its labels) on an
/// aggregator's `/metrics`.
async fn counter(admin: u16, name: &str) -> u64 {
    let text = reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .and_then(|r| r.error_for_status())
        .map(|r| r.text());
    let Ok(text) = text else { return 0 };
    text.await
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

/// `n` events of 8 orgs, spread over 2 partitions, published as beacon
/// batches of 250 events.
async fn fill_stream(nats: &Nats, n: usize) -> anyhow::Result<[usize; 2]> {
    let mut rng = StdRng::seed_from_u64(1);
    let start = Utc::now().timestamp() - 86_400;
    let js = jetstream::new(nats.client().await);
    js.get_or_create_stream(badgepulse_contract::subject::stream_config(
        Default::default(),
    ))
    .await?;
    let mut per_partition = [Vec::new(), Vec::new()];
    for i in 0..n {
        let org = format!("org{}", i % 8);
        let when = Utc
            .timestamp_opt(start + rng.gen_range(0..86_400), 0)
            .unwrap();
        let p = partition_of(&org, 2);
        per_partition[usize::from(p)].push(Event {
            event_id: format!("e{i}"),
            kind: EventType::Viewed,
            occurred_at: when,
            received_at: when,
            issuer_id: format!("{org}-i{}", i % 3),
            badge_class_id: format!("{org}-b{}", i % 40),
            org_id: org,
            assertion_id: format!("a{}", i / 10),
            award_method: None,
            channel: None,
            source: Some(ViewSource::ALL[i % 9]),
            country: Some("DE".to_owned()),
            viewer_key: Some(rng.gen_range(1..100_000)),
            badge_class: None,
        });
    }
    let sizes = [per_partition[0].len(), per_partition[1].len()];
    for (p, events) in per_partition.iter().enumerate() {
        for (m, chunk) in events.chunks(2_500).enumerate() {
            let mut acks = Vec::new();
            for (k, batch) in chunk.chunks(250).enumerate() {
                let msg = PublishMessage::build()
                    .payload(encode_payload(batch).into())
                    .message_id(format!("b{p}-{m}-{k}"))
                    .header(BEACON_HEADER, "1");
                acks.push(
                    js.send_publish(event_subject(p as u16, EventType::Viewed), msg)
                        .await?,
                );
            }
            for a in acks {
                a.await?;
            }
        }
    }
    Ok(sizes)
}

/// Peak resident memory (`VmHWM`, MiB) of process `pid`.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// What one throughput run measured.
struct Run {
    /// Events per second from the first rows seen in `events` (the
    /// migration done) to the last.
    rate: f64,
    /// Seconds from the aggregator's start to the last row, migration
    /// included.
    total_secs: f64,
    servers_cpu: f64,
    aggregator_cpu: f64,
    aggregator_rss_mib: f64,
}

/// One throughput run until `db.events` (read on `reader`) holds `n`
/// rows, and the CPU seconds `servers` and the aggregator spent.
async fn write_all(
    config: &str,
    reader: &ClickHouse,
    db: &str,
    n: u64,
    servers: &[&ClickHouse],
) -> Run {
    let pids: Vec<u32> = servers.iter().filter_map(|s| s.pid()).collect();
    let before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let started = Instant::now();
    let agg = Service::start("badgepulse-aggregator", config, &[]);
    let count = format!("SELECT count() FROM {db}.events");
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let rows = reader
            .query(&count)
            .await
            .ok()
            .and_then(|r| r.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if rows > 0 && first.is_none() {
            first = Some((Instant::now(), rows));
        }
        if rows >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (t0, c0) = first.expect("rows seen");
    let servers_cpu = pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - before;
    Run {
        rate: (n - c0) as f64 / t0.elapsed().as_secs_f64().max(1e-3),
        total_secs: started.elapsed().as_secs_f64(),
        servers_cpu,
        aggregator_cpu: agg.pid().map_or(0.0, cpu_seconds),
        aggregator_rss_mib: agg.pid().map_or(0.0, peak_rss_mib),
    }
}

async fn throughput(n: usize) -> anyhow::Result<()> {
    let nats = Nats::start().await;
    let zk = ZooKeeper::start().await;
    let single = ClickHouse::start_configured(free_port(), free_port(), SHORT_LIVED_PARTS).await;
    let one = clickhouse_shards(&zk, "one", 1, 1).await;
    let two = clickhouse_shards(&zk, CLUSTER, 2, 1).await;
    let sizes = fill_stream(&nats, n).await?;
    println!(
        "throughput: {n} view events in 2 partitions ({} and {}), one aggregator instance, {} cores shared by everything",
        sizes[0],
        sizes[1],
        std::thread::available_parallelism().map_or(0, |c| c.get())
    );
    let n = n as u64;
    let runs = [
        (
            "single server",
            aggregator_config(&nats, &single.url(), "single", "", &[], 2, free_port()),
            &single,
            "single",
            vec![&single],
        ),
        (
            "1 shard x 1 replica",
            aggregator_config(&nats, &one[0][0].url(), "one", "one", &[], 2, free_port()),
            &one[0][0],
            "one",
            vec![&one[0][0]],
        ),
        (
            "2 shards x 1 replica",
            aggregator_config(
                &nats,
                &two[0][0].url(),
                "two",
                CLUSTER,
                &[two[0][0].url(), two[1][0].url()],
                2,
                free_port(),
            ),
            &two[0][0],
            "two",
            vec![&two[0][0], &two[1][0]],
        ),
    ];
    let mut baseline = None;
    for (name, config, reader, db, servers) in runs {
        let run = write_all(&config, reader, db, n, &servers).await;
        let rate = run.rate;
        let base = *baseline.get_or_insert(rate);
        let million = n as f64 / 1e6;
        println!(
            "  {name:<22} {rate:>8.0} events/s once migrated ({:.1} s in all), {:.2} of the single server; CPU per million events: servers {:.1} s, aggregator {:.1} s; aggregator peak RSS {:.0} MiB",
            run.total_secs,
            rate / base,
            run.servers_cpu / million,
            run.aggregator_cpu / million,
            run.aggregator_rss_mib
        );
        if servers.len() == 2 {
            for (s, node) in servers.iter().enumerate() {
                println!(
                    "    shard {}: {} events",
                    s + 1,
                    node.number(&format!("SELECT count() FROM {db}.events_local"))
                        .await
                );
            }
        }
    }
    Ok(())
}

async fn replica_kill(assertions: usize) -> anyhow::Result<()> {
    let zk = ZooKeeper::start().await;
    let mut shards = clickhouse_shards(&zk, CLUSTER, 2, 2).await;
    let nats = Nats::start().await;
    let partitions = 4;
    let w = workload(20260524, assertions, partitions);
    let js = jetstream::new(nats.client().await);
    ensure_streams(&js).await;
    println!(
        "replica-kill: 2 shards x 2 replicas, {} distinct events ({} messages) on {partitions} partitions",
        w.distinct_events,
        w.messages.len()
    );
    let writers = [shards[0][0].url(), shards[1][0].url()];
    let admin = free_port();
    let config = aggregator_config(
        &nats,
        &writers[0],
        "bp",
        CLUSTER,
        &writers,
        partitions,
        admin,
    );
    let agg = Service::start("badgepulse-aggregator", &config, &[]);
    // Migrated (ON CLUSTER: every node must answer) and consuming.
    wait_http(
        &format!("http://127.0.0.1:{admin}/readyz"),
        Duration::from_secs(120),
    )
    .await?;
    let started = Instant::now();
    let waves = 10;
    let per_wave = w.messages.len().div_ceil(waves);
    for (wave, msgs) in w.messages.chunks(per_wave).enumerate() {
        publish(&js, msgs).await;
        // The aggregator is writing the wave just published.
        tokio::time::sleep(Duration::from_millis(200)).await;
        match wave {
            2 => {
                let pid = shards[1][1].pid();
                shards[1][1].kill();
                println!(
                    "  {:>5.1} s: SIGKILL shard 2 replica 1 (pid {pid:?}, not written through)",
                    started.elapsed().as_secs_f64()
                );
            }
            4 => {
                shards[1][1].restart().await;
                println!(
                    "  {:>5.1} s: shard 2 replica 1 restarted",
                    started.elapsed().as_secs_f64()
                );
            }
            5 => {
                let pid = shards[0][0].pid();
                shards[0][0].kill();
                println!(
                    "  {:>5.1} s: SIGKILL shard 1 replica 0 (pid {pid:?}, written through)",
                    started.elapsed().as_secs_f64()
                );
            }
            7 => {
                shards[0][0].restart().await;
                println!(
                    "  {:>5.1} s: shard 1 replica 0 restarted",
                    started.elapsed().as_secs_f64()
                );
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let count = "SELECT count() FROM bp.events";
    eventually(Duration::from_secs(600), "every event written", || async {
        (shards[0][1].number(count).await >= w.distinct_events).then_some(())
    })
    .await;
    drained(&nats, "bp", partitions).await;
    let errors = counter(admin, "badgepulse_aggregator_clickhouse_errors_total").await;
    let log = agg.log_text();
    println!(
        "  {:>5.1} s: every partition drained; the aggregator counted {errors} ClickHouse errors, logged {} failed batches and recovered {} tables from events",
        started.elapsed().as_secs_f64(),
        log.matches("batch failed; retrying").count(),
        counter(admin, "badgepulse_aggregator_recoveries_total").await
    );
    anyhow::ensure!(errors > 0, "the kills missed every write:\n{log}");
    // Both replicas of each shard converge on the same rows.
    let tables: Vec<String> = shards[0][0]
        .query("SELECT name FROM system.tables WHERE database = 'bp' AND name LIKE '%\\_local' ORDER BY name")
        .await?
        .lines()
        .map(str::to_owned)
        .collect();
    for (s, shard) in shards.iter().enumerate() {
        for table in &tables {
            let sql = format!("SELECT count() FROM bp.{table}");
            eventually(
                Duration::from_secs(300),
                &format!("shard {} {table} replicated", s + 1),
                || async {
                    let a = shard[0].number(&sql).await;
                    let b = shard[1].number(&sql).await;
                    (a == b).then_some(())
                },
            )
            .await;
        }
        for (r, node) in shard.iter().enumerate() {
            let pending = node.distributed_queue("bp").await;
            anyhow::ensure!(
                pending.is_empty(),
                "shard {} replica {r}: {pending:?}",
                s + 1
            );
            let queue = node
                .number("SELECT count() FROM system.replication_queue WHERE database = 'bp' AND type != 'MERGE_PARTS'")
                .await;
            anyhow::ensure!(queue == 0, "shard {} replica {r}: {queue} queued", s + 1);
        }
    }
    println!(
        "  {:>5.1} s: both replicas of each shard hold the same rows in all {} tables; no Distributed insert or fetch pending",
        started.elapsed().as_secs_f64(),
        tables.len()
    );
    // Every table equals the ledger, read through replica 1 of shard 1
    // (the Distributed tables then read either replica of each shard).
    check_tables(&shards[0][1], "bp", &w).await;
    anyhow::ensure!(dead_letters(&nats).await == w.garbage, "dead letters");
    println!(
        "  every table equals the ledger ({} events, count() - uniqExact(org_id, event_id) = 0); {} undecodable messages dead-lettered once",
        w.distinct_events, w.garbage
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let number = |default: usize| args.get(2).and_then(|a| a.parse().ok()).unwrap_or(default);
    match args.get(1).map(String::as_str) {
        Some("throughput") => throughput(number(1_000_000)).await,
        Some("replica-kill") => replica_kill(number(30_000)).await,
        _ => anyhow::bail!("usage: bench_shards throughput [EVENTS] | replica-kill [ASSERTIONS]"),
    }
}
