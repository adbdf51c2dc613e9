//! Soak test (issue 8): the whole pipeline under a steady rate for a long
//! time, with every service's memory sampled, then the ledger checked.
//!
//! 1. NATS, ClickHouse 18.16, ingest, aggregator and exporter start as in
//!    the end-to-end tests.
//! 2. `badgepulse-loadgen`'s plan is sized so that RATE requests/s last
//!    about MINUTES, and sent at that steady rate (`Target::rate`). Any
//!    status ingest should not give fails the run.
//! 3. Every 10 s the resident memory (VmRSS) of each process is sampled.
//! 4. When the aggregator has drained the stream, ClickHouse must hold
//!    exactly the ledger's events, none twice, and the exporter's all-time
//!    overview of every org must equal the ledger.
//!
//! Memory is "flat" when the largest sample of the last tenth of the run is
//! at most 1.25 × the largest of the second tenth (after warm-up) plus
//! 8 MiB, for ingest, aggregator and exporter. NATS and ClickHouse are
//! reported, not judged: their caches grow with the data by design.
//!
//! Run with `bench/soak.sh [MINUTES=30] [RATE=100]`; exits non-zero on any
//! loss, double count, error log line or memory growth.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use badgepulse_loadgen::{plan, send, Target, MAX_SCALE};
use badgepulse_tests::{
    eventually, metric_value, scrape, start_services, ClickHouse, Nats, StackConfig, StackPorts,
    INGEST_BEHIND_PROXY,
};
use chrono::Utc;

const TOKEN: &str = "soak-platform-token";
const API_KEY: &str = "soak-api-key";
const PIXEL_KEY: &str = "soak-pixel-key-0123456789";
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

fn config(nats: &Nats, ch: &ClickHouse, ports: StackPorts) -> String {
    StackConfig::new(&nats.url(), &ch.url(), "soak", ports)
        .ingest(INGEST_BEHIND_PROXY)
        .ingest("rate_limit_per_minute = 1000000000")
        .pixel_key("k1", PIXEL_KEY)
        .token(TOKEN, &["*"])
        .exporter("refresh_interval_secs = 15")
        .api_key(API_KEY, "admin")
        .toml()
}

/// Resident memory of `pid` in MiB, from `/proc`.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// The plan's requests: event posts plus beacons.
fn requests(p: &badgepulse_loadgen::Plan) -> usize {
    let posts = |n: usize| n.div_ceil(badgepulse_loadgen::send::EVENTS_PER_REQUEST);
    posts(p.events.len())
        + posts(p.late_events.len())
        + p.share_beacons.len()
        + p.view_beacons.len()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let minutes: f64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(30.0);
    let rate: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100.0);
    let now = Utc::now();
    let per_scale = requests(&plan(7, 1, now, 14)) as f64;
    let wanted = minutes * 60.0 * rate;
    let mut scale = ((wanted / per_scale).ceil() as u32).clamp(1, MAX_SCALE);
    let mut plan = plan(7, scale, now, 14);
    // Traffic does not grow exactly linearly with the scale: correct once
    // so the run is not shorter than asked (MAX_SCALE still caps it).
    let short = wanted / requests(&plan) as f64;
    if short > 1.0 && scale < MAX_SCALE {
        scale = ((f64::from(scale) * short).ceil() as u32).min(MAX_SCALE);
        plan = badgepulse_loadgen::plan(7, scale, now, 14);
    }
    let total_requests = requests(&plan);
    println!(
        "soak: {total_requests} requests at {rate}/s (plan scale {scale}), about {:.1} min",
        total_requests as f64 / rate / 60.0
    );

    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let ports = StackPorts::free();
    let cfg = config(&nats, &ch, ports);
    let services = start_services(&cfg, &ports.all()).await;
    let mut pids: Vec<(String, u32)> = services
        .iter()
        .map(|s| (s.name.clone(), s.pid().expect("running")))
        .collect();
    pids.push(("nats-server".into(), nats.pid().expect("running")));
    pids.push(("clickhouse-server".into(), ch.pid().expect("running")));

    // Memory sampler.
    // (seconds since start, RSS of each process in MiB).
    type Samples = Vec<(f64, Vec<Option<f64>>)>;
    let samples: std::sync::Arc<std::sync::Mutex<Samples>> = Default::default();
    let started = Instant::now();
    let sampler = {
        let (samples, pids) = (samples.clone(), pids.clone());
        tokio::spawn(async move {
            loop {
                let row = pids.iter().map(|(_, pid)| rss_mib(*pid)).collect();
                samples
                    .lock()
                    .unwrap()
                    .push((started.elapsed().as_secs_f64(), row));
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        })
    };

    send(
        &plan,
        &Target {
            ingest: ports.ingest_url(),
            token: TOKEN.into(),
            kid: "k1".into(),
            key: PIXEL_KEY.into(),
            concurrency: 32,
            metrics: Some(ports.ingest_admin_url()),
            rate: Some(rate),
        },
    )
    .await
    .context("sending the plan")?;
    let sending_secs = started.elapsed().as_secs_f64();
    println!(
        "sent in {sending_secs:.0} s ({:.1} requests/s); ingest counters match the ledger",
        total_requests as f64 / sending_secs
    );

    // Drained: the aggregator has nothing pending and ClickHouse holds the ledger.
    let expected: u64 = plan.ledger.traffic.events_by_type.values().sum();
    eventually(
        Duration::from_secs(300),
        "every event in ClickHouse",
        || async { (ch.number("SELECT count() FROM soak.events").await >= expected).then_some(()) },
    )
    .await;
    // The aggregator refreshes its pending gauges on every pull.
    let metrics_url = format!("http://127.0.0.1:{}/metrics", ports.aggregator);
    let pending_now = || async {
        let m = scrape(&metrics_url).await;
        metric_value(&m, "badgepulse_aggregator_consumer_pending", &[])
            + metric_value(&m, "badgepulse_aggregator_consumer_ack_pending", &[])
    };
    let drain = Instant::now();
    let mut pending = pending_now().await;
    while pending > 0.0 && drain.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        pending = pending_now().await;
    }
    sampler.abort();
    let stored = ch.number("SELECT count() FROM soak.events").await;
    let twice = ch
        .number("SELECT count() - uniqExact(org_id, event_id) FROM soak.events")
        .await;
    println!(
        "ClickHouse: {stored} events stored, {expected} expected, {twice} twice; {pending} pending"
    );

    // The exporter's all-time KPIs per org and ClickHouse's rows by type
    // equal the ledger.
    let mismatches = badgepulse_loadgen::check(
        &plan.ledger,
        &badgepulse_loadgen::Pipeline {
            exporter: format!("http://127.0.0.1:{}", ports.exporter),
            api_key: API_KEY.into(),
            clickhouse: Some((ch.url(), "soak".into())),
        },
    )
    .await?;

    // Memory table.
    let samples = samples.lock().unwrap().clone();
    let n = samples.len();
    let tenth = |k: usize| {
        &samples
            [(n * k / 10).min(n.saturating_sub(1))..(n * (k + 1) / 10).max(n * k / 10 + 1).min(n)]
    };
    let max_of = |rows: &[(f64, Vec<Option<f64>>)], i: usize| {
        rows.iter().filter_map(|(_, r)| r[i]).fold(0.0f64, f64::max)
    };
    println!("\n| process | RSS after warm-up (2nd tenth, max) | RSS in the last tenth (max) | peak | verdict |");
    println!("|---|---|---|---|---|");
    let mut grew = Vec::new();
    for (i, (name, _)) in pids.iter().enumerate() {
        let warm = max_of(tenth(1), i);
        let late = max_of(tenth(9), i);
        let peak = max_of(&samples, i);
        let judged = name.starts_with("badgepulse-");
        let flat = late <= warm * 1.25 + 8.0;
        let verdict = match (judged, flat) {
            (true, true) => "flat",
            (true, false) => "GREW",
            (false, _) => "reported only",
        };
        if judged && !flat {
            grew.push(name.clone());
        }
        println!("| {name} | {warm:.1} MiB | {late:.1} MiB | {peak:.1} MiB | {verdict} |");
    }
    let errors: Vec<String> = services
        .iter()
        .flat_map(|s| {
            s.log_text()
                .lines()
                .filter(|l| l.contains(" ERROR "))
                .map(|l| format!("{}: {l}", s.name))
                .collect::<Vec<_>>()
        })
        .collect();
    let warnings: usize = services
        .iter()
        .map(|s| {
            s.log_text()
                .lines()
                .filter(|l| l.contains(" WARN "))
                .count()
        })
        .sum();
    println!(
        "\nsamples: {n} over {:.0} s; error log lines: {}; warnings: {warnings}",
        started.elapsed().as_secs_f64(),
        errors.len()
    );
    ensure!(
        stored == expected && twice == 0,
        "events lost or stored twice"
    );
    ensure!(pending == 0.0, "{pending} messages still pending");
    ensure!(
        mismatches.is_empty(),
        "overview differs from the ledger:\n{}",
        mismatches.join("\n")
    );
    ensure!(errors.is_empty(), "error log lines:\n{}", errors.join("\n"));
    ensure!(grew.is_empty(), "memory grew: {grew:?}");
    println!(
        "soak passed: {} events, 0 lost, 0 counted twice, every org's overview equals the ledger",
        expected
    );
    Ok(())
}
