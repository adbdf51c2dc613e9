//! Benchmark of badgepulse-aggregator (issue 4), printing ratios against
//! baselines measured in the same run:
//!
//! 1. Throughput: the stream is filled with N events (default 1,000,000),
//!    then the aggregator writes them all. The physical baseline is
//!    `clickhouse-client` inserting the same rows from a file into the same
//!    table (`events_input`, so the same materialised views run).
//! 2. Freshness: ingest takes pixel hits at a steady rate (default 5,000/s)
//!    and the time from each sampled hit to its row in `rollup_minute` is
//!    measured (p50, p99).
//!
//! Run with `bench/aggregator.sh` (release build).

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use badgepulse_aggregator::rows::EventRow;
use badgepulse_aggregator::schema::Schema;
use badgepulse_contract::event::{
    encode_payload, AwardMethod, Event, EventType, ShareChannel, ViewSource,
};
use badgepulse_contract::signing::{sign, PixelIds};
use badgepulse_contract::subject::{event_subject, BEACON_HEADER};
use badgepulse_tests::{
    free_port, metric_value, scrape, sha256_hex, wait_http, ClickHouse, Nats, Service,
};
use chrono::{TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn events(n: usize) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(1);
    let start = Utc::now().timestamp() - 86_400;
    (0..n)
        .map(|i| {
            let kind = match i % 10 {
                0 => EventType::Awarded,
                1 => EventType::Accepted,
                2 => EventType::Shared,
                _ => EventType::Viewed,
            };
            let when = Utc
                .timestamp_opt(start + rng.gen_range(0..86_400), 0)
                .unwrap();
            let org = format!("org{}", i % 7);
            Event {
                event_id: format!("e{i}"),
                kind,
                occurred_at: when,
                received_at: when,
                issuer_id: format!("{org}-i{}", i % 3),
                badge_class_id: format!("{org}-b{}", i % 40),
                org_id: org,
                assertion_id: format!("a{}", i / 10),
                award_method: (kind == EventType::Awarded).then(|| AwardMethod::ALL[i % 6]),
                channel: (kind == EventType::Shared).then(|| ShareChannel::ALL[i % 9]),
                source: (kind == EventType::Viewed).then(|| ViewSource::ALL[i % 9]),
                country: (kind == EventType::Viewed).then(|| "DE".to_owned()),
                viewer_key: (kind == EventType::Viewed).then(|| rng.gen_range(1..100_000)),
                badge_class: None,
            }
        })
        .collect()
}

/// A TabSeparated value (strings escaped as ClickHouse expects).
fn tsv(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
}

fn tsv_array(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|s| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")))
            .collect::<Vec<_>>()
            .join(",")
    )
}

fn enum_name<T: Copy>(all: &[T], name: fn(T) -> &'static str, v: i8) -> String {
    if v == 0 {
        String::new()
    } else {
        name(all[(v - 1) as usize]).to_owned()
    }
}

fn datetime(t: u32) -> String {
    Utc.timestamp_opt(i64::from(t), 0)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn tsv_row(r: &EventRow) -> String {
    [
        tsv(&r.event_id),
        enum_name(EventType::ALL, EventType::as_str, r.kind),
        datetime(r.occurred_at),
        datetime(r.received_at),
        tsv(&r.org_id),
        tsv(&r.issuer_id),
        tsv(&r.badge_class_id),
        tsv(&r.assertion_id),
        enum_name(AwardMethod::ALL, AwardMethod::as_str, r.award_method),
        enum_name(ShareChannel::ALL, ShareChannel::as_str, r.share_channel),
        enum_name(ViewSource::ALL, ViewSource::as_str, r.view_source),
        tsv(&r.country),
        r.viewer_key.to_string(),
        tsv(&r.badge_class_name),
        tsv_array(&r.skills),
        tsv_array(&r.pathways),
        tsv_array(&r.courses),
        tsv_array(&r.catalogs),
        tsv_array(&r.collections),
        tsv_array(&r.attribute_keys),
        format!(
            "[{}]",
            r.attribute_values
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
        r.partition.to_string(),
        r.seq.to_string(),
    ]
    .join("\t")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rate: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let seconds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(20);
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let evs = events(n);

    // Baseline: clickhouse-client inserting the same rows from a file.
    for stmt in Schema::new("baseline", "").all_statements() {
        ch.query(&stmt).await?;
    }
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("rows.tsv");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for (i, e) in evs.iter().enumerate() {
            writeln!(out, "{}", tsv_row(&EventRow::new(e, 0, i as u64 + 1)))?;
        }
    }
    let started = Instant::now();
    let status = std::process::Command::new("clickhouse-client")
        .args([
            "--port",
            &ch.tcp_port.to_string(),
            "--query",
            "INSERT INTO baseline.events_input FORMAT TabSeparated",
        ])
        .stdin(std::fs::File::open(&file)?)
        .status()?;
    let baseline_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(status.success(), "clickhouse-client insert failed");
    anyhow::ensure!(
        ch.number("SELECT count() FROM baseline.events").await == n as u64,
        "baseline rows"
    );

    // Fill the stream: beacon-style batches of 250 events per message.
    let js = jetstream::new(nats.client().await);
    js.get_or_create_stream(badgepulse_contract::subject::stream_config(
        Default::default(),
    ))
    .await?;
    for (m, chunk) in evs.chunks(2_500).enumerate() {
        let mut acks = Vec::new();
        for (k, batch) in chunk.chunks(250).enumerate() {
            let msg = PublishMessage::build()
                .payload(encode_payload(batch).into())
                .message_id(format!("b{m}-{k}"))
                .header(BEACON_HEADER, "1");
            acks.push(
                js.send_publish(event_subject(0, EventType::Viewed), msg)
                    .await?,
            );
        }
        for a in acks {
            a.await?;
        }
    }
    let config = |db: &str, admin: u16, ingest: u16, ingest_admin: u16, extra: &str| {
        format!(
            "[nats]\nurl = \"{}\"\n[clickhouse]\nurl = \"{}\"\ndatabase = \"{db}\"\n[aggregator]\nadmin_bind = \"127.0.0.1:{admin}\"\nconsumer_prefix = \"bench-{db}\"\n{extra}\n\
             [ingest]\nbind = \"127.0.0.1:{ingest}\"\nadmin_bind = \"127.0.0.1:{ingest_admin}\"\nrate_limit_per_minute = 1000000000\ntrusted_proxies = [\"127.0.0.1/32\"]\n[ingest.pixel_keys]\nk1 = \"bench-pixel-key-0123456789\"\n\
             [[ingest.tokens]]\nsha256 = \"{}\"\norgs = [\"*\"]\n",
            nats.url(),
            ch.url(),
            sha256_hex("unused")
        )
    };
    let admin = free_port();
    let started = Instant::now();
    let agg = Service::start(
        "badgepulse-aggregator",
        &config("bench", admin, free_port(), free_port(), ""),
        &[],
    );
    loop {
        let rows = ch
            .query("SELECT count() FROM bench.events")
            .await
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if rows >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let aggregator_secs = started.elapsed().as_secs_f64();
    drop(agg);
    println!("throughput: {n} events");
    println!(
        "  clickhouse-client from a file (baseline): {:>10.0} events/s ({baseline_secs:.2} s)",
        n as f64 / baseline_secs
    );
    println!("  badgepulse-aggregator from JetStream:     {:>10.0} events/s ({aggregator_secs:.2} s, incl. start-up)", n as f64 / aggregator_secs);
    println!(
        "  ratio: {:.2} (target >= 0.50)",
        baseline_secs / aggregator_secs
    );

    // Freshness: steady pixel traffic through ingest, sampled markers, on an
    // empty stream (the throughput phase's million events are purged) and a
    // quiet server: the throughput phase's databases are dropped so their
    // background merges do not run during the measurement.
    js.get_stream(badgepulse_contract::subject::STREAM)
        .await?
        .purge()
        .await?;
    for db in ["bench", "baseline"] {
        ch.query(&format!("DROP DATABASE {db}")).await?;
    }
    let (admin, ingest_port, ingest_admin) = (free_port(), free_port(), free_port());
    let cfg = config(
        "fresh",
        admin,
        ingest_port,
        ingest_admin,
        "flush_interval_ms = 200",
    );
    let agg_log = std::env::var("BENCH_AGGREGATOR_LOG").ok();
    let agg = Service::start_with_env(
        "badgepulse-aggregator",
        &cfg,
        &[],
        &[(
            "RUST_LOG",
            if agg_log.is_some() {
                "badgepulse_aggregator=debug"
            } else {
                "info"
            },
        )],
    );
    let _ingest = Service::start("badgepulse-ingest", &cfg, &[]);
    wait_http(
        &format!("http://127.0.0.1:{ingest_admin}/readyz"),
        Duration::from_secs(30),
    )
    .await?;
    wait_http(
        &format!("http://127.0.0.1:{admin}/readyz"),
        Duration::from_secs(30),
    )
    .await?;
    // When each marker reaches NATS: splits ingest's share of the latency
    // from the aggregator's and ClickHouse's.
    let in_nats: std::sync::Arc<std::sync::Mutex<HashMap<String, Instant>>> = Default::default();
    let nats_watch = {
        let in_nats = in_nats.clone();
        let mut sub = nats
            .client()
            .await
            .subscribe(format!(
                "{}.>",
                badgepulse_contract::subject::SUBJECT_PREFIX
            ))
            .await?;
        tokio::spawn(async move {
            use futures::StreamExt;
            while let Some(m) = sub.next().await {
                let now = Instant::now();
                if let Ok(events) = badgepulse_contract::event::decode_payload(&m.payload) {
                    let mut in_nats = in_nats.lock().unwrap();
                    for e in events {
                        if e.badge_class_id.starts_with('m') {
                            in_nats.entry(e.badge_class_id).or_insert(now);
                        }
                    }
                }
            }
        })
    };
    let http = reqwest::Client::new();
    let sent: std::sync::Arc<std::sync::Mutex<HashMap<String, Instant>>> = Default::default();
    let seen: std::sync::Arc<std::sync::Mutex<HashMap<String, Instant>>> = Default::default();
    let slowest_poll: std::sync::Arc<std::sync::Mutex<f64>> = Default::default();
    let poller = {
        let (ch_url, seen, slowest_poll) = (ch.url(), seen.clone(), slowest_poll.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let poll_started = Instant::now();
                let body = http
                    .post(&ch_url)
                    .body("SELECT DISTINCT badge_class_id FROM fresh.rollup_minute WHERE badge_class_id LIKE 'm%'")
                    .send()
                    .await
                    .ok();
                if let Some(r) = body {
                    if let Ok(text) = r.text().await {
                        let now = Instant::now();
                        let took = now.duration_since(poll_started).as_secs_f64();
                        let mut slowest = slowest_poll.lock().unwrap();
                        *slowest = slowest.max(took);
                        let mut seen = seen.lock().unwrap();
                        for line in text.lines() {
                            seen.entry(line.to_owned()).or_insert(now);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    let total = rate * seconds as usize;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let badge = if i % 50 == 0 {
            format!("m{i}")
        } else {
            "b1".to_owned()
        };
        let ids = PixelIds {
            org_id: "fresh",
            issuer_id: "i1",
            badge_class_id: &badge,
            assertion_id: "a1",
        };
        let url = format!(
            "http://127.0.0.1:{ingest_port}/p.gif?o=fresh&i=i1&b={badge}&a=a1&kid=k1&sig={}",
            sign(b"bench-pixel-key-0123456789", &ids)
        );
        let (http, sent) = (http.clone(), sent.clone());
        let ip = format!("198.51.{}.{}", (i / 250) % 250, i % 250);
        while tasks.len() > 256 {
            tasks.join_next().await;
        }
        tasks.spawn(async move {
            let at = Instant::now();
            let ok = http
                .get(&url)
                .header("User-Agent", ua)
                .header("X-Forwarded-For", ip)
                .send()
                .await
                .is_ok();
            if ok && badge.starts_with('m') {
                sent.lock().unwrap().insert(badge, at);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    poller.abort();
    nats_watch.abort();
    if let Some(path) = agg_log {
        std::fs::write(&path, agg.log_text())?;
    }
    let in_nats = in_nats.lock().unwrap().clone();
    // Where the time goes: the aggregator's own write latency per batch.
    let metrics = scrape(&format!("http://127.0.0.1:{admin}/metrics")).await;
    let flushes = metric_value(
        &metrics,
        "badgepulse_aggregator_flush_duration_seconds_count",
        &[],
    );
    let flush_sum = metric_value(
        &metrics,
        "badgepulse_aggregator_flush_duration_seconds_sum",
        &[],
    );
    let over_1s = flushes
        - metric_value(
            &metrics,
            "badgepulse_aggregator_flush_duration_seconds_bucket",
            &[("le", "1.024")],
        );
    let sent = sent.lock().unwrap().clone();
    let seen = seen.lock().unwrap().clone();
    let mut latencies: Vec<f64> = sent
        .iter()
        .filter_map(|(k, t)| seen.get(k).map(|s| s.duration_since(*t).as_secs_f64()))
        .collect();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let missing = sent.len() - latencies.len();
    println!(
        "freshness: {total} pixel hits at {achieved:.0}/s (asked {rate}/s), {} sampled",
        sent.len()
    );
    println!(
        "  pixel hit -> visible in rollup_minute: p50 {:.3} s, p99 {:.3} s, max {:.3} s (target p99 < 2 s); not seen: {missing}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    let mut to_nats: Vec<f64> = sent
        .iter()
        .filter_map(|(k, t)| in_nats.get(k).map(|s| s.duration_since(*t).as_secs_f64()))
        .collect();
    to_nats.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "  slowest visibility poll of rollup_minute: {:.3} s",
        *slowest_poll.lock().unwrap()
    );
    println!(
        "  of which pixel hit -> in NATS: p50 {:.3} s, p99 {:.3} s",
        percentile(&to_nats, 0.5),
        percentile(&to_nats, 0.99)
    );
    let slow: Vec<f64> = sent
        .iter()
        .filter_map(|(k, t)| {
            let l = seen.get(k)?.duration_since(*t).as_secs_f64();
            (l > 2.0).then(|| t.duration_since(started).as_secs_f64())
        })
        .collect();
    if slow.is_empty() {
        println!("  over 2 s: none of {}", latencies.len());
    } else {
        let (first, last) = slow
            .iter()
            .fold((f64::MAX, 0f64), |(a, b), t| (a.min(*t), b.max(*t)));
        println!(
            "  over 2 s: {} of {}, sent between {first:.1} s and {last:.1} s into the run",
            slow.len(),
            latencies.len()
        );
    }
    let fetches = metric_value(
        &metrics,
        "badgepulse_aggregator_fetch_duration_seconds_count",
        &[],
    );
    let fetch_sum = metric_value(
        &metrics,
        "badgepulse_aggregator_fetch_duration_seconds_sum",
        &[],
    );
    println!(
        "  aggregator: {flushes:.0} batches, mean write {:.0} ms, {over_1s:.0} over 1.024 s; {fetches:.0} pulls, mean {:.0} ms",
        1000.0 * flush_sum / flushes.max(1.0),
        1000.0 * fetch_sum / fetches.max(1.0)
    );
    Ok(())
}
