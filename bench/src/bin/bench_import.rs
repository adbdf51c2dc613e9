//! Benchmark of badgepulse-import (issue 20), printing ratios against a
//! baseline measured in the same run:
//!
//! 1. Overhead: N events (default 1,000,000) of NDJSON history sent to a
//!    real ingest (NATS JetStream behind it, no aggregator) by the importer
//!    and by a minimal sender that reads the same kind of file and posts the
//!    same batches (1,000 lines, 4 in flight) without checking, counting or
//!    recording anything; ROUNDS (default 5) interleaved rounds, each run
//!    on a fresh NATS and ingest with its own file (different ids, same
//!    sizes), which goes first alternating; the median of the rounds'
//!    ratios.
//! 2. End to end: a fresh NATS and ClickHouse with ingest and the
//!    aggregator; the importer sends another N events, and the time until
//!    ClickHouse holds them all gives the end-to-end rate.
//!
//! Run with `bench/import.sh` (release build).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use badgepulse_tests::{
    wait_http, workspace_bin, ClickHouse, Nats, Service, StackConfig, StackPorts,
};
use chrono::{SecondsFormat, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const TOKEN: &str = "bench-import-token";
const BATCH: usize = 1_000;
const CONCURRENCY: usize = 4;

/// `n` valid events over the last year, in time order, ids `{prefix}` +
/// eight digits (so every file has the same sizes).
fn write_history(path: &Path, prefix: char, n: usize) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(11);
    let end = Utc::now().timestamp() - 86_400;
    let span = 365 * 86_400;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..n {
        let at = Utc
            .timestamp_opt(end - span + (i as i64 * span) / n as i64, 0)
            .unwrap();
        let org = format!("org{}", i % 5);
        let mut e = json!({
            "event_id": format!("{prefix}{i:08}"),
            "occurred_at": at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "issuer_id": format!("{org}-iss{}", i % 3),
            "badge_class_id": format!("{org}-b{}", i % 40),
            "assertion_id": format!("a{:07}", rng.gen_range(0..1_000_000)),
            "org_id": org,
        });
        match i % 10 {
            0..=2 => {
                e["type"] = json!("badge.awarded");
                e["award_method"] = json!("lms");
            }
            3..=4 => e["type"] = json!("badge.accepted"),
            5..=6 => {
                e["type"] = json!("badge.shared");
                e["channel"] = json!("linkedin");
            }
            _ => {
                e["type"] = json!("badge.viewed");
                e["source"] = json!("direct");
            }
        }
        writeln!(out, "{e}")?;
    }
    out.flush()?;
    Ok(())
}

/// The minimal sender: reads `path`, posts its lines in batches of
/// [`BATCH`], [`CONCURRENCY`] at a time, and only checks for `200`.
async fn minimal_sender(url: &str, path: &Path) -> anyhow::Result<(usize, Duration)> {
    let started = Instant::now();
    let text = std::fs::read(path)?;
    let client = reqwest::Client::new();
    let url = format!("{url}/v1/events");
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = JoinSet::new();
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    for chunk in lines.chunks(BATCH) {
        let mut body = Vec::with_capacity(chunk.iter().map(|l| l.len() + 1).sum::<usize>() + 16);
        body.extend_from_slice(b"{\"events\":[");
        for (i, l) in chunk.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(l);
        }
        body.extend_from_slice(b"]}");
        let permit = permits.clone().acquire_owned().await?;
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            let r = client
                .post(&url)
                .bearer_auth(TOKEN)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await?;
            anyhow::ensure!(r.status() == 200, "minimal sender: {}", r.status());
            r.bytes().await?;
            drop(permit);
            Ok(())
        });
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok((lines.len(), started.elapsed()))
}

/// Runs the importer on `path` to its end: its wall time and summary line.
fn importer(url: &str, path: &Path, work: &Path) -> anyhow::Result<(Duration, String)> {
    let started = Instant::now();
    let out = std::process::Command::new(workspace_bin("badgepulse-import"))
        .arg(path)
        .args(["--url", url, "--concurrency", &CONCURRENCY.to_string()])
        .arg("--batch-size")
        .arg(BATCH.to_string())
        .arg("--checkpoint")
        .arg(work.join(format!("{}.checkpoint", path.display())))
        .arg("--rejects")
        .arg(work.join(format!("{}.rejects.csv", path.display())))
        .env("BADGEPULSE_IMPORT_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .output()?;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    anyhow::ensure!(
        out.status.success(),
        "importer: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((elapsed, stdout))
}

/// CPU time (user + system) of this process (`who` = `RUSAGE_SELF`) or of
/// its waited-for children (`RUSAGE_CHILDREN`) so far.
fn cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn config(nats: &Nats, ch_url: &str, ports: StackPorts) -> String {
    StackConfig::new(&nats.url(), ch_url, "bench_import", ports)
        .token(TOKEN, &["*"])
        .toml()
}

async fn start(bin: &str, config: &str, ready_port: u16) -> anyhow::Result<Service> {
    let svc = Service::start(bin, config, &[]);
    wait_http(
        &format!("http://127.0.0.1:{ready_port}/readyz"),
        Duration::from_secs(60),
    )
    .await?;
    Ok(svc)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let work = tempfile::tempdir()?;
    let file = |c: char| -> PathBuf { work.path().join(format!("history-{c}.ndjson")) };
    // Same sizes, distinct ids: the sender's and the importer's files of
    // each round, and the end-to-end run's.
    let ids: Vec<char> = "abcdefghijklmnopqrstuvwxy".chars().collect();
    anyhow::ensure!((1..=12).contains(&rounds), "rounds: 1 to 12");
    for &c in ids.iter().take(2 * rounds).chain(std::iter::once(&'z')) {
        write_history(&file(c), c, n)?;
    }
    let size = std::fs::metadata(file('z'))?.len();
    println!(
        "import benchmark: {n} events per run ({:.0} MB of NDJSON), batches of {BATCH}, {CONCURRENCY} in flight, {rounds} interleaved rounds",
        size as f64 / 1e6
    );

    // 1. Overhead, against ingest alone (no aggregator competing), in
    //    interleaved rounds (the machine's speed drifts; the other
    //    engineers' builds share its two cores).
    let (mut senders, mut importers, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    // Each client's own CPU time per event (µs), which the other
    // engineers' load on the machine does not change much.
    let (mut sender_cpu, mut importer_cpu) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (s_file, i_file) = (file(ids[2 * round]), file(ids[2 * round + 1]));
        let mut sender = 0.0;
        let mut importer_rate = 0.0;
        for sender_turn in [round % 2 == 0, round % 2 == 1] {
            // A fresh NATS and ingest for each run: JetStream's duplicate
            // window holds every id of the last two minutes, and a stream
            // that already took millions of messages is slower to write.
            let nats = Nats::start().await;
            let ports = StackPorts::free();
            let cfg = config(&nats, "http://127.0.0.1:1", ports);
            let _ingest = start("badgepulse-ingest", &cfg, ports.ingest_admin).await?;
            let url = format!("http://127.0.0.1:{}", ports.ingest);
            if sender_turn {
                let before = cpu(libc::RUSAGE_SELF);
                let (sent, took) = minimal_sender(&url, &s_file).await?;
                sender_cpu.push((cpu(libc::RUSAGE_SELF) - before).as_secs_f64() * 1e6 / n as f64);
                anyhow::ensure!(sent == n, "the sender sent {sent} of {n}");
                sender = rate(n, took);
            } else {
                let before = cpu(libc::RUSAGE_CHILDREN);
                let (took, summary) = importer(&url, &i_file, work.path())?;
                importer_cpu
                    .push((cpu(libc::RUSAGE_CHILDREN) - before).as_secs_f64() * 1e6 / n as f64);
                anyhow::ensure!(
                    summary.contains(&format!("accepted {n},")),
                    "importer: {summary}"
                );
                importer_rate = rate(n, took);
            }
        }
        println!(
            "round {}: minimal sender {sender:.0} events/s, importer {importer_rate:.0} events/s: {:.2}x",
            round + 1,
            importer_rate / sender
        );
        senders.push(sender);
        importers.push(importer_rate);
        ratios.push(importer_rate / sender);
    }
    println!(
        "overhead: median importer {:.0} events/s against the minimal sender's {:.0}; median round ratio {:.2}x (rounds {}; target >= 0.9x)",
        median(importers),
        median(senders),
        median(ratios.clone()),
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    println!(
        "client CPU per event: minimal sender {:.2} µs, importer {:.2} µs (medians; the importer also checks JSON, maps rejects to lines, checkpoints)",
        median(sender_cpu),
        median(importer_cpu)
    );

    // 2. End to end: importer → ingest → JetStream → aggregator → ClickHouse.
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let ports = StackPorts::free();
    let cfg = config(&nats, &ch.url(), ports);
    let _aggregator = start("badgepulse-aggregator", &cfg, ports.aggregator).await?;
    let _ingest = start("badgepulse-ingest", &cfg, ports.ingest_admin).await?;
    let url = format!("http://127.0.0.1:{}", ports.ingest);
    let started = Instant::now();
    let (imp, summary) = importer(&url, &file('z'), work.path())?;
    println!(
        "end to end: import {:.1} s ({:.0} events/s, aggregator running)\n  {summary}",
        imp.as_secs_f64(),
        rate(n, imp)
    );
    loop {
        let stored = ch.number("SELECT count() FROM bench_import.events").await;
        if stored as usize >= n {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "ClickHouse holds {stored} of {n} events after 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e2e = started.elapsed();
    println!(
        "end to end: ClickHouse holds all {n} events {:.1} s after the import started: {:.0} events/s ({:.1} s after the importer finished)",
        e2e.as_secs_f64(),
        rate(n, e2e),
        (e2e - imp).as_secs_f64()
    );
    Ok(())
}
