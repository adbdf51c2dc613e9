//! Benchmark of the analytics API of badgepulse-exporter (issues 5 and
//! 23), printing ratios against a baseline measured in the same run.
//!
//! 1. A ClickHouse 18.16 fixture gets the aggregator's schema, and N events
//!    (default 10,000,000) are generated server-side into `events_input`
//!    in chunks of 1,000,000, so the materialised views fill `events` and
//!    every derived table exactly as the aggregator's inserts do
//!    ([`generate_sql`] describes the data: 10 skewed orgs, 4,000 badge
//!    classes, 400 issuers per org, 400 days, awards first and every other
//!    event after its award, day-salted viewer keys). Then what the
//!    aggregator's maintenance would have done: retention at its defaults,
//!    every closed day's unique viewers and every award day's lifecycle
//!    sealed, `scope_total` compacted.
//!    The raw baseline is a copy of `events` in the layout before issue 23
//!    (`raw_events`, sorted by `(org_id, event_id)`, by month). Rows and
//!    bytes per event of every table are printed.
//! 2. A live dashboard: the real badgepulse-exporter answers every
//!    analytics endpoint for the busiest org over the default window (the
//!    last 30 days up to now), requests one after another for 5 s per
//!    endpoint, while that org commits every 500 ms (a change notice
//!    spanning the current minute). The same numbers are then computed from
//!    raw events under the same conditions.
//! 3. Fixed windows, 30 days and long (400 days; 200 days for hourly
//!    trends); each is requested REPS times (default 30) after one warm-up
//!    request, twice: *cold*, with `Cache-Control: no-cache`, and *cached*.
//!    The rows ClickHouse read for one cold answer and one raw query
//!    (`system.query_log`) show how the cost grows with N.
//! 4. The baseline computes the same numbers with plain SQL over
//!    `raw_events` (`uniqExact`, `countIf`, …), RAW_REPS times (default 10).
//! 5. The issuer phase: 1,000 issuer-scoped keys, each asking its overview
//!    once, cold.
//! 6. A dashboard poll: each 30-day answer (and a PNG chart and the
//!    report) asked REPS times again with the `ETag` of the previous
//!    answer (`If-None-Match`, answered `304` without a body) against the
//!    same number of plain requests (`200`, the whole body), interleaved.
//!
//! The insights (impact of an annotation 40 days old, timing in
//! Europe/Paris, weekly cohorts, the benchmark) are measured alike; their
//! live rows use each endpoint's default window (the cohorts': 365 days)
//! against the raw computation of the 30 days.
//!
//! In the live phase the other nine orgs are live as well: a change
//! notice for one of them, spanning the current minute, every 10 ms. The
//! other phases run on a quiet exporter: under those notices a kept answer
//! that reaches every org (the peer benchmark) is recomputed back to back
//! (at most `cache_refresh_concurrency` at a time), which would take a
//! core from the cold answers measured and add its rows to theirs. The
//! exporter's `/metrics` refresh runs once before the measurements (its
//! query times are printed) and is then held off.
//!
//! With `BENCH_HOLD=1` the run stops after loading and keeps ClickHouse
//! up (its URL is printed) for query experiments, until Ctrl-C.
//!
//! Targets (issue 23): cold p95 < 100 ms, never slower than raw, ≥ 10×
//! faster than raw wherever raw takes ≥ 100 ms; issuer-scoped cold overview
//! p95 < 50 ms; cached and live p95 < 5 ms. Run with
//! `bench/exporter.sh [N] [REPS] [RAW_REPS]` (release build).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use badgepulse_aggregator::config::AggregatorConfig;
use badgepulse_aggregator::schema::Schema;
use badgepulse_aggregator::store::Store;
use badgepulse_runtime::settings::ClickHouseConfig;
use badgepulse_tests::{
    eventually, free_port, metric_value, scrape, sha256_hex, wait_http, ClickHouse, Nats, Service,
};
use chrono::{TimeZone, Utc};

/// How long the exporter keeps an answer refreshed after its last request.
const KEEP_WARM_SECS: u64 = 10;
const DB: &str = "bench";
const API_KEY: &str = "bench-exporter-key";
const CHUNK: u64 = 1_000_000;
const DAYS: u64 = 400;
const ORGS: u64 = 10;
const ISSUERS_PER_ORG: u64 = 400;
const CLASSES: u64 = 4000;
/// The raw baseline: the same events in the layout before issue 23
/// (sorted by `(org_id, event_id)`, partitioned by month).
const RAW: &str = "raw_events";
/// The org every request is scoped to (the busiest, by construction).
const ORG: &str = "org0";

/// Generates events `[offset, offset + count)` of `total`, the
/// deterministic pseudo-random columns all from `intHash64` of the event
/// number. As a platform's history looks: the first 12 % of events are
/// the awards, one per assertion, at times increasing over the 400 days;
/// every other event belongs to an assertion awarded before it, mostly a
/// recent one (accepts and shares follow their award by hours to weeks,
/// views by weeks to months). Orgs, badge classes and (org, issuer) keys
/// are skewed (org0 is the busiest); 10 % of views carry no viewer key,
/// the others a key salted with their UTC day, as ingest keys them.
/// `awarded_on`/`award_known_on` are the assertion's award day, as the
/// aggregator's lookup files them (the awards are loaded first).
fn generate_sql(offset: u64, count: u64, total: u64, now: i64) -> String {
    let span = DAYS * 86_400;
    let start = now - span as i64;
    let awards = (total * 12 / 100).max(1);
    let viewers = (total * 74 / 100 / DAYS).max(1000);
    format!(
        "INSERT INTO {DB}.events_input (event_id, type, occurred_at, received_at, org_id, issuer_id, \
         badge_class_id, assertion_id, award_method, share_channel, view_source, country, viewer_key, \
         partition, seq, award_known_on, awarded_on) \
         SELECT concat('e', toString(n)) AS event_id, type, occurred_at, occurred_at AS received_at, \
         concat('org', toString(o)) AS org_id, \
         concat('org', toString(o), '-i', toString(intHash32(c * 11 + 1) % {ISSUERS_PER_ORG})) AS issuer_id, \
         concat('org', toString(o), '-b', toString(c)) AS badge_class_id, \
         concat('a', hex(intHash64(a))) AS assertion_id, \
         if(type = 'badge.awarded', ['api', 'lms', 'bulk', 'manual', 'integration', 'other'][1 + toUInt64(6 * pow(x1, 2))], '') AS award_method, \
         if(type = 'badge.shared', ['linkedin', 'x', 'facebook', 'email', 'link_copy', 'embed', 'download', 'wallet', 'other'][1 + toUInt64(9 * pow(x1, 2))], '') AS share_channel, \
         if(type = 'badge.viewed', ['direct', 'linkedin', 'platform', 'search', 'email', 'x', 'facebook', 'embed', 'other'][1 + toUInt64(9 * pow(x1, 2))], '') AS view_source, \
         if(type = 'badge.viewed', ['US', 'GB', 'DE', 'IN', 'CA', 'FR', 'BR', ''][1 + toUInt64(8 * pow(x2, 2))], '') AS country, \
         if(type = 'badge.viewed' AND x2 >= 0.1, intHash64(toUInt64(toUInt32(toDate(occurred_at))) * 1000003 + intHash64(n * 5 + 4) % {viewers}), 0) AS viewer_key, \
         toUInt16(o) AS partition, n + 1 AS seq, \
         toDate(toDateTime(least({last}, {start} + toUInt64(a * {span} / {awards}) + intHash64(a * 3 + 2) % 3600), 'UTC')) AS award_known_on, \
         award_known_on AS awarded_on \
         FROM (SELECT n, type, occurred_at, a, x1, x2, \
         toUInt64({CLASSES} * pow((intHash32(a) % 1000000) / 1000000, 2)) AS c, \
         toUInt64({ORGS} * pow((intHash32(c * 7 + 3) % 100000) / 100000, 1.5)) AS o \
         FROM (SELECT number + {offset} AS n, intHash64(n) % 88 AS r, n < {awards} AS is_award, \
         CAST(if(is_award, 1, multiIf(r < 8, 2, r < 13, 3, r < 87, 4, 5)) AS Enum8('badge.awarded' = 1, 'badge.accepted' = 2, 'badge.shared' = 3, 'badge.viewed' = 4, 'badge.revoked' = 5, 'badge_class.upserted' = 6)) AS type, \
         if(is_award, least({last}, {start} + toUInt64(n * {span} / {awards}) + intHash64(n * 3 + 2) % 3600), \
         {start} + intHash64(n * 3 + 1) % {span}) AS t, \
         toDateTime(t, 'UTC') AS occurred_at, \
         toUInt64(least({last_award}, intDiv({awards} * (t - {start}), {span}))) AS k, \
         (intHash64(n * 7 + 5) % 1000000) / 1000000 AS u, \
         if(is_award, n, toUInt64(k - toUInt64(k * pow(u, multiIf(r < 8, 10, r < 13, 6, r < 87, 3, 2))))) AS a, \
         (intHash64(n * 11 + 6) % 1000000) / 1000000 AS x1, \
         (intHash64(n * 13 + 7) % 1000000) / 1000000 AS x2 \
         FROM system.numbers LIMIT {count}))",
        last = now - 1,
        last_award = awards - 1,
    )
}

/// One `badge_class.upserted` per class, with driver attributes.
fn classes_sql(now: i64) -> String {
    let at = now - (DAYS * 86_400) as i64;
    format!(
        "INSERT INTO {DB}.events_input (event_id, type, occurred_at, received_at, org_id, issuer_id, \
         badge_class_id, badge_class_name, skills, pathways, catalogs, attribute_keys, attribute_values, \
         partition, seq) \
         SELECT concat('u', toString(c)), 'badge_class.upserted', toDateTime({at}, 'UTC'), toDateTime({at}, 'UTC'), \
         concat('org', toString(o)), concat('org', toString(o), '-i', toString(intHash32(c * 11 + 1) % {ISSUERS_PER_ORG})), \
         concat('org', toString(o), '-b', toString(c)), concat('Badge ', toString(c)), \
         if(c % 2 = 0, ['rust'], emptyArrayString()), if(c % 3 = 0, ['p1'], emptyArrayString()), \
         if(c % 5 < 2, ['main'], emptyArrayString()), ['stackable'], [toUInt8(c % 7 < 3)], \
         toUInt16(o), 0 \
         FROM (SELECT number AS c, toUInt64({ORGS} * pow((intHash32(c * 7 + 3) % 100000) / 100000, 1.5)) AS o \
         FROM system.numbers LIMIT {CLASSES})"
    )
}

/// `[from, to)` as epoch seconds and as RFC 3339 query parameters.
#[derive(Clone, Copy)]
struct Span {
    from: i64,
    to: i64,
}

impl Span {
    fn days(to: i64, days: i64) -> Span {
        Span {
            from: to - days * 86_400,
            to,
        }
    }

    fn params(&self) -> String {
        let f = |t: i64| {
            Utc.timestamp_opt(t, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        };
        format!("from={}&to={}", f(self.from), f(self.to))
    }

    /// `occurred_at` in the span, for raw SQL.
    fn cond(&self, column: &str) -> String {
        format!(
            "{column} >= toDateTime({}, 'UTC') AND {column} < toDateTime({}, 'UTC')",
            self.from, self.to
        )
    }
}

/// The SPEC §7 counts over raw `events` as SELECT expressions, each
/// restricted by `cond`.
fn raw_counts(cond: &str) -> String {
    format!(
        "uniqExactIf(assertion_id, type = 'badge.awarded' AND {cond}), \
         uniqExactIf(assertion_id, type = 'badge.accepted' AND {cond}), \
         uniqExactIf(assertion_id, type = 'badge.shared' AND {cond}), \
         countIf(type = 'badge.shared' AND {cond}), countIf(type = 'badge.viewed' AND {cond}), \
         uniqExactIf(viewer_key, type = 'badge.viewed' AND viewer_key != 0 AND {cond}), \
         uniqExactIf(assertion_id, type = 'badge.revoked' AND {cond}), \
         uniqExactIf(badge_class_id, {cond})"
    )
}

/// Per assertion of the org: first award, accept, share and view times
/// and counts, from raw `events` (the lifecycle's and the insights'
/// baseline).
fn raw_assertions(org: &str) -> String {
    format!(
        "SELECT minIf(occurred_at, type = 'badge.awarded') AS aw, \
         minIf(occurred_at, type = 'badge.accepted') AS ac, minIf(occurred_at, type = 'badge.shared') AS sh, \
         minIf(occurred_at, type = 'badge.viewed') AS vw, countIf(type = 'badge.awarded') AS aw_n, \
         countIf(type = 'badge.accepted') AS ac_n, countIf(type = 'badge.shared') AS sh_n, \
         countIf(type = 'badge.viewed') AS vw_n FROM {DB}.{RAW} \
         WHERE {org} AND type != 'badge_class.upserted' GROUP BY issuer_id, badge_class_id, assertion_id"
    )
}

/// The impact, timing, cohorts and benchmark requests and their raw SQL
/// (SPEC §7.7–§7.10): the impact of `annotation` (at `at`, 28 days each
/// side, horizon 7 days), timing in Europe/Paris, weekly cohorts, the
/// org among the orgs.
fn insight_cases(span: Span, annotation: &str, at: i64) -> Vec<(String, String, String)> {
    let org = format!("org_id = '{ORG}'");
    let p = span.params();
    let (day, horizon) = (86_400, 7 * 86_400);
    let (before, after) = (
        Span {
            from: at - 28 * day,
            to: at,
        },
        Span {
            from: at,
            to: at + 28 * day,
        },
    );
    let cohort = |s: Span| {
        format!(
            "aw_n > 0 AND aw >= toDateTime({}, 'UTC') AND aw < toDateTime({}, 'UTC') AND aw <= now() - {horizon}",
            s.from, s.to
        )
    };
    let within = |t: &str| format!("{t}_n > 0 AND toInt64({t}) - toInt64(aw) <= {horizon}");
    let (acc, shr) = (within("ac"), within("sh"));
    let window_counts = |s: Span| {
        let w = s.cond("occurred_at");
        format!(
            "uniqExactIf(assertion_id, type = 'badge.awarded' AND {w}), countIf(type = 'badge.shared' AND {w}), \
             countIf(type = 'badge.viewed' AND {w})"
        )
    };
    vec![
        (
            "impact".to_owned(),
            format!("/api/v1/impact?org={ORG}&annotation={annotation}"),
            format!(
                "SELECT * FROM (SELECT countIf({b}), countIf({b} AND {acc}), countIf({b} AND {acc} AND {shr}), \
                 countIf({a}), countIf({a} AND {acc}), countIf({a} AND {acc} AND {shr}) FROM ({assertions})) AS c \
                 CROSS JOIN (SELECT {wb}, {wa} FROM {DB}.{RAW} WHERE {org}) AS w",
                b = cohort(before),
                a = cohort(after),
                assertions = raw_assertions(&org),
                wb = window_counts(before),
                wa = window_counts(after),
            ),
        ),
        (
            "timing".to_owned(),
            format!("/api/v1/timing?org={ORG}&tz=Europe/Paris&{p}"),
            format!(
                "SELECT toDayOfWeek(aw, 'Europe/Paris') AS d, toHour(aw, 'Europe/Paris') AS h, count(), countIf(ac_n > 0), \
                 countIf(ac_n > 0 AND toInt64(ac) - toInt64(aw) <= 3600), countIf(ac_n > 0 AND toInt64(ac) - toInt64(aw) <= 7776000) \
                 FROM ({}) WHERE aw_n > 0 AND {} GROUP BY d, h ORDER BY d, h",
                raw_assertions(&org),
                span.cond("aw")
            ),
        ),
        (
            "cohorts".to_owned(),
            format!("/api/v1/cohorts?org={ORG}&granularity=week&{p}"),
            format!(
                "SELECT toMonday(aw) AS c, ac_n > 0 AS r, if(r, toMonday(ac), toDate(0)) AS m, count() \
                 FROM ({}) WHERE aw_n > 0 AND {} GROUP BY c, r, m ORDER BY c, m",
                raw_assertions(&org),
                span.cond("aw")
            ),
        ),
        (
            "benchmark".to_owned(),
            format!("/api/v1/benchmark?org={ORG}&{p}"),
            format!(
                "SELECT org_id, {} FROM {DB}.{RAW} WHERE {} GROUP BY org_id ORDER BY org_id",
                raw_counts("1"),
                span.cond("occurred_at")
            ),
        ),
    ]
}

/// The API request and the equivalent raw SQL of one endpoint and span.
fn cases(span: Span, hour_span: Span) -> Vec<(String, String, String)> {
    let org = format!("org_id = '{ORG}'");
    let w = span.cond("occurred_at");
    let p = span.params();
    let previous = Span {
        from: span.from - (span.to - span.from),
        to: span.from,
    };
    let mut out = vec![(
        "overview".to_owned(),
        format!("/api/v1/overview?org={ORG}&{p}"),
        format!(
            "SELECT {}, {}, {} FROM {DB}.{RAW} WHERE {org}",
            raw_counts("1"),
            raw_counts(&w),
            raw_counts(&previous.cond("occurred_at"))
        ),
    )];
    for (dimension, ty, expr, measure) in [
        (
            "award_method",
            "badge.awarded",
            "toString(award_method)",
            "uniqExact(assertion_id)",
        ),
        (
            "share_channel",
            "badge.shared",
            "toString(share_channel)",
            "count()",
        ),
        (
            "view_source",
            "badge.viewed",
            "toString(view_source)",
            "count()",
        ),
        ("view_country", "badge.viewed", "country", "count()"),
    ] {
        out.push((
            format!("distribution {dimension}"),
            format!("/api/v1/distribution?org={ORG}&dimension={dimension}&{p}"),
            format!(
                "SELECT {expr} AS value, {measure} AS n FROM {DB}.{RAW} WHERE {org} AND type = '{ty}' \
                 AND {w} GROUP BY value ORDER BY n DESC, value"
            ),
        ));
    }
    let per_class = format!(
        "SELECT badge_class_id, {}, argMaxIf(badge_class_name, occurred_at, type = 'badge_class.upserted') AS name, \
         argMaxIf(skills, occurred_at, type = 'badge_class.upserted') AS skills, \
         argMaxIf(attribute_keys, occurred_at, type = 'badge_class.upserted') AS attribute_keys \
         FROM {DB}.{RAW} WHERE {org} AND ({w} OR type = 'badge_class.upserted') \
         GROUP BY badge_class_id ORDER BY badge_class_id",
        raw_counts(&w)
    );
    out.push((
        "top-badges".to_owned(),
        format!("/api/v1/top-badges?org={ORG}&{p}"),
        per_class.clone(),
    ));
    for (granularity, bucket, s) in [
        ("day", "toStartOfDay", span),
        ("hour", "toStartOfHour", hour_span),
    ] {
        out.push((
            format!("trends {granularity}"),
            format!(
                "/api/v1/trends?org={ORG}&granularity={granularity}&metrics=awarded,accepted,shared,views,unique_viewers&{}",
                s.params()
            ),
            format!(
                "SELECT {bucket}(occurred_at) AS t, {} FROM {DB}.{RAW} WHERE {org} AND {} GROUP BY t ORDER BY t",
                raw_counts("1"),
                s.cond("occurred_at")
            ),
        ));
    }
    out.push((
        "drivers".to_owned(),
        format!("/api/v1/drivers?org={ORG}&{p}"),
        per_class,
    ));
    out.push((
        "lifecycle".to_owned(),
        format!("/api/v1/lifecycle?org={ORG}&{p}"),
        format!(
            "SELECT count(), countIf(ac_n > 0), countIf(ac_n > 0 AND sh_n > 0), \
             countIf(ac_n > 0 AND sh_n > 0 AND vw_n > 0), \
             quantileExactIf(0.5)(toInt64(ac) - toInt64(aw), ac_n > 0), \
             quantileExactIf(0.5)(toInt64(sh) - toInt64(ac), ac_n > 0 AND sh_n > 0), \
             quantileExactIf(0.5)(toInt64(vw) - toInt64(sh), ac_n > 0 AND sh_n > 0 AND vw_n > 0) \
             FROM (SELECT minIf(occurred_at, type = 'badge.awarded') AS aw, \
             minIf(occurred_at, type = 'badge.accepted') AS ac, minIf(occurred_at, type = 'badge.shared') AS sh, \
             minIf(occurred_at, type = 'badge.viewed') AS vw, countIf(type = 'badge.awarded') AS aw_n, \
             countIf(type = 'badge.accepted') AS ac_n, countIf(type = 'badge.shared') AS sh_n, \
             countIf(type = 'badge.viewed') AS vw_n FROM {DB}.{RAW} \
             WHERE {org} AND type != 'badge_class.upserted' GROUP BY issuer_id, badge_class_id, assertion_id) \
             WHERE aw_n > 0 AND {}",
            span.cond("aw")
        ),
    ));
    out
}

/// Waits (up to 15 minutes) until ClickHouse runs no merge, as under
/// steady traffic its background merges would have caught up.
async fn settle_merges(ch: &ClickHouse) {
    let settle = Instant::now();
    while ch.number("SELECT count() FROM system.merges").await > 0
        && settle.elapsed() < Duration::from_secs(900)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Rows ClickHouse read for the queries `run` sends (from
/// `system.query_log`, whose times have whole seconds: the call waits a
/// second before and after).
async fn rows_read<F, Fut>(ch: &ClickHouse, run: F) -> anyhow::Result<u64>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = ch.query("SELECT toUInt32(now())").await?;
    run().await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    Ok(ch
        .number(&format!(
            "SELECT sum(read_rows) FROM system.query_log WHERE type = 2 \
             AND event_time >= toDateTime({}) AND query NOT LIKE '%system.query_log%'",
            since.trim()
        ))
        .await)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).ceil() as usize]
}

/// p50 and p95 in milliseconds of `reps` runs of `run` (after one
/// warm-up run).
async fn measure<F, Fut>(reps: usize, mut run: F) -> anyhow::Result<(f64, f64)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    run().await?;
    let mut ms = Vec::with_capacity(reps);
    for _ in 0..reps {
        let started = Instant::now();
        run().await?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok((percentile(&ms, 0.5), percentile(&ms, 0.95)))
}

/// One endpoint's figures in the live phase.
struct LiveRow {
    name: String,
    requests: usize,
    p50: f64,
    p95: f64,
    max_age: u64,
    /// Raw events p50 measured right after, under the same conditions.
    raw50: f64,
}

/// Prints the live phase's table: speed-ups against the raw p50 measured
/// under the same conditions and against the idle one of `raw_idle`
/// (the 30-day rows); the target is judged on the idle one, the harder.
fn print_live(
    rows: &[LiveRow],
    raw_idle: &std::collections::HashMap<String, f64>,
    failed: &mut Vec<String>,
) {
    println!(
        "live dashboard, {ORG} committing every 500 ms, default window (30 days up to now): requests one after another for {LIVE_SECS} s per endpoint; raw p50 live: measured right after, same conditions; raw p50 idle: from the table above"
    );
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8}  targets (p95 < 5 ms, >= 10x idle raw)",
        "endpoint [now-30d, now)", "requests", "p50", "p95", "max Age", "raw live", "raw idle", "x live", "x idle"
    );
    for r in rows {
        let idle = raw_idle.get(&r.name).copied().unwrap_or(f64::NAN);
        let (x_live, x_idle) = (r.raw50 / r.p50, idle / r.p50);
        let mut missed = Vec::new();
        if r.p95 >= 5.0 {
            missed.push("live p95");
        }
        if x_idle.is_nan() || x_idle < 10.0 {
            missed.push("live 10x");
        }
        for m in &missed {
            failed.push(format!("{} [live] {m}", r.name));
        }
        println!(
            "{:<28} {:>8} {:>8.2} {:>8.2} {:>7}s {:>9.1} {:>9.1} {x_live:>7.1}x {x_idle:>7.1}x  {}",
            r.name,
            r.requests,
            r.p50,
            r.p95,
            r.max_age,
            r.raw50,
            idle,
            verdict(&missed)
        );
    }
}

/// GETs `url` with the API key (with `Cache-Control: no-cache` if
/// `fresh`), reads the whole body and returns the `Age` header (0 if
/// absent); an error unless the status is a success.
async fn api_get(http: &reqwest::Client, url: &str, fresh: bool) -> anyhow::Result<u64> {
    let mut r = http.get(url).bearer_auth(API_KEY);
    if fresh {
        r = r.header("Cache-Control", "no-cache");
    }
    let r = r.send().await?;
    let status = r.status();
    let age = r
        .headers()
        .get("age")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    let body = r.bytes().await?;
    anyhow::ensure!(
        status.is_success(),
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(age)
}

/// GETs `url` with the API key and, if given, `If-None-Match: tag`; the
/// status, the `ETag` and the body's length.
async fn poll(
    http: &reqwest::Client,
    url: &str,
    tag: Option<&str>,
) -> anyhow::Result<(u16, String, usize)> {
    let mut r = http.get(url).bearer_auth(API_KEY);
    if let Some(tag) = tag {
        r = r.header("If-None-Match", tag);
    }
    let r = r.send().await?;
    let status = r.status().as_u16();
    let etag = r
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = r.bytes().await?;
    anyhow::ensure!(
        status == 200 || status == 304,
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok((status, etag, body.len()))
}

/// Phase 5: per answer, p50 of `reps` full answers (`200`) and of `reps`
/// polls answered `304` by their `ETag`, interleaved, with the bytes of
/// each body.
async fn measure_polls(
    http: &reqwest::Client,
    base: &str,
    paths: &[(String, String)],
    reps: usize,
) -> anyhow::Result<()> {
    println!(
        "dashboard poll: each answer asked {reps} times in full (200) and {reps} times with the ETag of the answer before (If-None-Match: 304, no body), interleaved; p50 in ms"
    );
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>10} {:>8}",
        "answer [30d]", "200 p50", "304 p50", "x", "body 200", "body 304"
    );
    for (name, path) in paths {
        let url = format!("{base}{path}");
        let (_, tag, full_bytes) = poll(http, &url, None).await?;
        anyhow::ensure!(!tag.is_empty(), "{path}: no ETag");
        let (mut full, mut polled) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
        let mut polled_bytes = 0;
        for _ in 0..reps {
            let started = Instant::now();
            poll(http, &url, None).await?;
            full.push(started.elapsed().as_secs_f64() * 1000.0);
            let started = Instant::now();
            let (status, _, bytes) = poll(http, &url, Some(&tag)).await?;
            polled.push(started.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(
                status == 304,
                "{path}: a poll with the ETag answered {status}"
            );
            polled_bytes = bytes;
        }
        full.sort_by(|a, b| a.partial_cmp(b).unwrap());
        polled.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (f50, p50) = (percentile(&full, 0.5), percentile(&polled, 0.5));
        println!(
            "{name:<28} {f50:>8.2} {p50:>8.2} {:>7.1}x {full_bytes:>10} {polled_bytes:>8}",
            f50 / p50
        );
    }
    Ok(())
}

/// p50 and p95 in ms of `reps` runs of the raw-events `sql`.
async fn raw_timing(ch: &ClickHouse, sql: &str, reps: usize) -> anyhow::Result<(f64, f64)> {
    measure(reps, || {
        let q = ch.query(sql);
        async move { q.await.map(drop) }
    })
    .await
}

/// "ok", or what `missed`.
fn verdict(missed: &[&str]) -> String {
    if missed.is_empty() {
        "ok".to_owned()
    } else {
        format!("missed: {}", missed.join(", "))
    }
}

/// Issuer-scoped keys of the issuer phase.
const ISSUER_KEYS: usize = 1000;

/// Thousands of issuer admins, each opening the dashboard once: every key
/// asks its overview (default window) once, cold; against the same
/// numbers from raw events for a sample of those issuers.
async fn issuer_phase(
    ch: &ClickHouse,
    keys: &[(String, String, String)],
    base: &str,
    failed: &mut Vec<String>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut ms = Vec::with_capacity(keys.len());
    for (key, org, issuer) in keys {
        let started = Instant::now();
        let r = http
            .get(format!("{base}/api/v1/overview?org={org}&issuer={issuer}"))
            .bearer_auth(key)
            .send()
            .await?;
        let status = r.status();
        let body = r.bytes().await?;
        anyhow::ensure!(
            status.is_success(),
            "issuer overview {org}/{issuer}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let now = Utc::now().timestamp();
    let span = Span::days(now, 30);
    let previous = Span::days(span.from, 30);
    let mut raw = Vec::new();
    for (_, org, issuer) in keys.iter().take(30) {
        let sql = format!(
            "SELECT {}, {}, {} FROM {DB}.{RAW} WHERE org_id = '{org}' AND issuer_id = '{issuer}'",
            raw_counts("1"),
            raw_counts(&span.cond("occurred_at")),
            raw_counts(&previous.cond("occurred_at"))
        );
        let started = Instant::now();
        ch.query(&sql).await?;
        raw.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    raw.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (p50, p95) = (percentile(&ms, 0.5), percentile(&ms, 0.95));
    let missed = if p95 >= 50.0 {
        failed.push("issuer overview cold p95".to_owned());
        vec!["cold p95"]
    } else {
        Vec::new()
    };
    println!(
        "issuer scope: {} issuer keys, each its overview [now-30d, now) once, cold: p50 {p50:.1} ms, p95 {p95:.1} ms, max {:.1} ms; raw events for {} of them: p50 {:.1} ms, p95 {:.1} ms  target (p95 < 50 ms): {}",
        ms.len(),
        ms.last().copied().unwrap_or(f64::NAN),
        raw.len(),
        percentile(&raw, 0.5),
        percentile(&raw, 0.95),
        verdict(&missed)
    );
    Ok(())
}

/// Seconds of requests per endpoint in the live phase.
const LIVE_SECS: u64 = 5;

/// Latencies in ms (sorted) of GETs of `url` one after another for
/// `duration` (after one warm-up request), as the other phases measure,
/// and the largest `Age` answered.
async fn measure_live(
    http: &reqwest::Client,
    url: &str,
    duration: Duration,
) -> anyhow::Result<(Vec<f64>, u64)> {
    let get = || async {
        let started = Instant::now();
        let age = api_get(http, url, false).await?;
        Ok::<_, anyhow::Error>((started.elapsed().as_secs_f64() * 1000.0, age))
    };
    get().await?;
    let mut ms = Vec::new();
    let mut max_age = 0;
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let (elapsed, age) = get().await?;
        ms.push(elapsed);
        max_age = max_age.max(age);
    }
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok((ms, max_age))
}

/// A ClickHouse error as one line: its message without the `e.what()`
/// repetition 18.16 appends.
fn failure(e: &anyhow::Error) -> String {
    let text = e.to_string();
    text.split(", e.what()")
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The all-time lifecycle as `/metrics` computed it before the award-day
/// seals: every assertion's rows merged, per org (best of three, alone).
/// Printed against the refresh's own `lifecycle_totals` (which ran next to
/// the three other refresh queries), and the exporter's values checked
/// against it.
async fn lifecycle_baseline(ch: &ClickHouse, metrics: &str, sealed_ms: f64) -> anyhow::Result<()> {
    let sql = format!(
        "SELECT org_id, countIf(aw_n > 0), countIf(aw_n > 0 AND ac_n > 0), countIf(aw_n > 0 AND ac_n > 0 AND sh_n > 0), \
         countIf(aw_n > 0 AND ac_n > 0 AND sh_n > 0 AND vw_n > 0) FROM (SELECT org_id, countIfMerge(awarded) AS aw_n, \
         countIfMerge(accepted) AS ac_n, countIfMerge(shares) AS sh_n, countIfMerge(views) AS vw_n \
         FROM {DB}.assertion_lifecycle GROUP BY org_id, issuer_id, badge_class_id, assertion_id) GROUP BY org_id ORDER BY org_id \
         SETTINGS max_bytes_before_external_group_by = 1500000000"
    );
    let mut best = f64::MAX;
    let mut rows = String::new();
    for _ in 0..3 {
        let started = Instant::now();
        // Every assertion of 100 M events (40 M rows) exceeds the fixture's
        // memory in one hash table: the merge spills to disk beyond 1.5
        // GB. Should it still fail, the run goes on without the baseline.
        rows = match ch.query(&sql).await {
            Ok(rows) => rows,
            Err(e) => {
                let reason = failure(&e);
                println!(
                    "/metrics lifecycle_totals from sealed award days {sealed_ms:.0} ms; every assertion merged failed: {reason}"
                );
                return Ok(());
            }
        };
        best = best.min(started.elapsed().as_secs_f64() * 1000.0);
    }
    for line in rows.lines() {
        let v: Vec<&str> = line.split('\t').collect();
        for (stage, want) in ["awarded", "accepted", "shared", "viewed"]
            .iter()
            .zip(&v[1..])
        {
            let got = metric_value(
                metrics,
                "badgepulse_lifecycle_assertions",
                &[("org_id", v[0]), ("stage", stage)],
            );
            anyhow::ensure!(
                got == want.parse::<f64>()?,
                "/metrics lifecycle {} {stage}: {got}, every assertion says {want}",
                v[0]
            );
        }
    }
    println!(
        "/metrics lifecycle_totals from sealed award days {sealed_ms:.0} ms against every assertion merged {best:.0} ms \
         ({:.1}x); the values agree for all {} orgs",
        best / sealed_ms.max(0.001),
        rows.lines().count()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let n = arg(1, 10_000_000);
    let reps = arg(2, 30) as usize;
    let raw_reps = arg(3, 10) as usize;
    let now = Utc::now().timestamp();

    let ch = ClickHouse::start_configured(free_port(), free_port(), ClickHouse::QUERY_LOG).await;
    ch.log_queries();
    for statement in Schema::new(DB, "").all_statements() {
        ch.query(&statement).await?;
    }
    let started = Instant::now();
    ch.query(&classes_sql(now)).await?;
    let mut offset = 0;
    while offset < n {
        let count = CHUNK.min(n - offset);
        ch.query(&generate_sql(offset, count, n, now)).await?;
        offset += count;
    }
    let load_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    settle_merges(&ch).await;
    let merge_secs = started.elapsed().as_secs_f64();
    // What the aggregator's maintenance would have done by now: retention
    // at its defaults, every closed day's unique viewers and every award
    // day's lifecycle sealed, and scope_total compacted.
    let store = Store::new(&ClickHouseConfig {
        url: ch.url(),
        database: DB.into(),
        ..Default::default()
    });
    let started = Instant::now();
    store
        .enforce_retention(&AggregatorConfig::default(), Utc::now())
        .await?;
    let today = now - now.rem_euclid(86_400);
    let (mut sealed, mut lifecycle_sealed) = (0, 0);
    for partition in 0..ORGS as u16 {
        loop {
            let days = store.days_to_seal(partition, today as u32, 1000).await?;
            if days.is_empty() {
                break;
            }
            for day in &days {
                store.seal(day).await?;
            }
            sealed += days.len();
        }
        loop {
            let days = store.lifecycle_days_to_seal(partition, 1000).await?;
            if days.is_empty() {
                break;
            }
            store.seal_lifecycle_days(partition, &days).await?;
            lifecycle_sealed += days.len();
        }
    }
    store.compact_totals().await?;
    settle_merges(&ch).await;
    let maintenance_secs = started.elapsed().as_secs_f64();
    // The raw baseline's copy, in the layout before issue 23.
    ch.query(&format!(
        "CREATE TABLE {DB}.{RAW} AS {DB}.events ENGINE = MergeTree \
         PARTITION BY toYYYYMM(occurred_at) ORDER BY (org_id, event_id)"
    ))
    .await?;
    ch.query(&format!("INSERT INTO {DB}.{RAW} SELECT * FROM {DB}.events"))
        .await?;
    settle_merges(&ch).await;
    println!(
        "data: {n} events loaded through the views in {load_secs:.1} s (+{merge_secs:.1} s of merges); \
         maintenance: {sealed} org days' viewers and {lifecycle_sealed} org award days' lifecycle sealed, retention, \
         scope_total compacted in {maintenance_secs:.1} s; \
         org {ORG}: {} events",
        ch.number(&format!("SELECT count() FROM {DB}.events WHERE org_id = '{ORG}'"))
            .await,
    );

    // Rows and bytes per event of every table at default retention.
    let sizes = ch
        .query(&format!(
            "SELECT table, sum(rows), sum(bytes_on_disk) AS b FROM system.parts \
             WHERE database = '{DB}' AND active GROUP BY table ORDER BY b DESC"
        ))
        .await?;
    let mut derived = 0.0;
    let mut lines = Vec::new();
    for line in sizes.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [table, rows, bytes] = fields[..] else {
            continue;
        };
        let per_event = bytes.parse::<f64>().unwrap_or(0.0) / n as f64;
        if !["events", "event_ids", RAW].contains(&table) {
            derived += per_event;
        }
        lines.push(format!("{table} {rows} rows {per_event:.1} B/event"));
    }
    println!(
        "tables at default retention: {}; derived tables together {derived:.1} B/event (target <= 30)",
        lines.join(", ")
    );

    if std::env::var_os("BENCH_HOLD").is_some() {
        println!(
            "BENCH_HOLD: ClickHouse with the data stays up at {} (database {DB}) until Ctrl-C",
            ch.url()
        );
        tokio::signal::ctrl_c().await?;
        return Ok(());
    }
    // The /metrics refresh runs once at start-up (timed below) and then
    // not again during the measurements. Answers are kept warm for
    // KEEP_WARM_SECS after their last request (the live phase asks each
    // endpoint without a pause), so that the live phase's answers are no
    // longer refreshed when the next phase starts.
    let nats = Nats::start().await;
    let (port, admin_port) = (free_port(), free_port());
    let config = format!(
        "[nats]\nurl = \"{}\"\n[clickhouse]\nurl = \"{}\"\ndatabase = \"{DB}\"\n[exporter]\nbind = \"127.0.0.1:{port}\"\n\
         admin_bind = \"127.0.0.1:{admin_port}\"\n\
         refresh_interval_secs = 3600\ncache_keep_warm_secs = {KEEP_WARM_SECS}\n[[exporter.api_keys]]\nsha256 = \"{}\"\nscope = \"admin\"\n",
        nats.url(),
        ch.url(),
        sha256_hex(API_KEY)
    );
    // Issuer-scoped keys: one for each of up to ISSUER_KEYS (org, issuer)
    // pairs, picked pseudo-randomly among those with events.
    let issuer_keys: Vec<(String, String, String)> = ch
        .query(&format!(
            "SELECT org_id, issuer_id FROM {DB}.events GROUP BY org_id, issuer_id \
             ORDER BY cityHash64(org_id, issuer_id) LIMIT {ISSUER_KEYS}"
        ))
        .await?
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .enumerate()
        .map(|(i, (org, issuer))| (format!("issuer-key-{i}"), org.to_owned(), issuer.to_owned()))
        .collect();
    let mut config = config;
    for (key, org, issuer) in &issuer_keys {
        config.push_str(&format!(
            "[[exporter.api_keys]]\nsha256 = \"{}\"\nscope = \"issuer:{org}/{issuer}\"\n",
            sha256_hex(key)
        ));
    }
    let _exporter = Service::start("badgepulse-exporter", &config, &[]);
    let base = format!("http://127.0.0.1:{port}");
    // Probes and /metrics: the admin listener.
    let admin = format!("http://127.0.0.1:{admin_port}");
    wait_http(&format!("{admin}/readyz"), Duration::from_secs(60)).await?;
    let refreshed = eventually(
        Duration::from_secs(600),
        "the first /metrics refresh",
        || async {
            let text = scrape(&format!("{admin}/metrics")).await;
            (metric_value(
                &text,
                "badgepulse_exporter_last_refresh_timestamp_seconds",
                &[],
            ) > 0.0)
                .then_some(text)
        },
    )
    .await;
    let refresh_ms = |query: &str| {
        1000.0
            * metric_value(
                &refreshed,
                "badgepulse_exporter_query_duration_seconds_sum",
                &[("query", query)],
            )
    };
    println!(
        "/metrics refresh (background, all time): issuer_totals {:.0} ms, dimension_totals {:.0} ms, lifecycle_totals {:.0} ms",
        refresh_ms("issuer_totals"),
        refresh_ms("dimension_totals"),
        refresh_ms("lifecycle_totals")
    );
    lifecycle_baseline(&ch, &refreshed, refresh_ms("lifecycle_totals")).await?;

    let http = reqwest::Client::new();
    eventually(
        Duration::from_secs(30),
        "the result cache to follow change notices",
        || async {
            let text = scrape(&format!("{admin}/metrics")).await;
            (metric_value(&text, "badgepulse_exporter_cache_following", &[]) == 1.0).then_some(())
        },
    )
    .await;
    // A program update 40 days ago, whose impact the insight cases ask.
    let annotation_at = now - 40 * 86_400;
    let created: serde_json::Value = http
        .post(format!("{base}/api/v1/annotations?org={ORG}"))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({
            "at": Utc.timestamp_opt(annotation_at, 0).unwrap().to_rfc3339(),
            "title": "bench update",
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let annotation = created["id"].as_str().unwrap_or_default().to_owned();
    let all_cases = |span: Span, hour_span: Span| {
        let mut out = cases(span, hour_span);
        out.extend(insight_cases(span, &annotation, annotation_at));
        out
    };
    // In the live phase, the live traffic as change notices: the other
    // orgs' and the busiest org's own (one commit every 500 ms).
    let live = Arc::new(AtomicBool::new(true));
    let org_live = Arc::new(AtomicBool::new(false));
    let notices = tokio::spawn({
        let client = nats.client().await;
        let (live, org_live) = (live.clone(), org_live.clone());
        async move {
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while live.load(Ordering::Relaxed) {
                tick.tick().await;
                if !org_live.load(Ordering::Relaxed) {
                    continue;
                }
                let now = Utc::now().timestamp() as u32;
                let org = if sent.is_multiple_of(50) {
                    ORG.to_owned()
                } else {
                    format!("org{}", 1 + sent % (ORGS - 1))
                };
                let change = badgepulse_contract::changes::Change::of_events([
                    (org.as_str(), now - 60),
                    (org.as_str(), now),
                ]);
                if client
                    .publish(
                        badgepulse_contract::changes::SUBJECT,
                        change.encode().into(),
                    )
                    .await
                    .is_ok()
                {
                    sent += 1;
                }
            }
            sent
        }
    });
    // A live dashboard first: the default window (the last 30 days up to
    // now) of every endpoint while the org itself commits every 500 ms;
    // requests one after another for LIVE_SECS per endpoint, then the raw-events
    // queries under the same conditions (the dashboard's answers, all
    // requested within cache_keep_warm_secs, being refreshed).
    org_live.store(true, Ordering::Relaxed);
    let refreshes_before = metric_value(
        &scrape(&format!("{admin}/metrics")).await,
        "badgepulse_exporter_cache_refreshes_total",
        &[("outcome", "ok")],
    );
    let span30 = Span::days(now, 30);
    let mut live_rows = Vec::new();
    for (name, path, raw_sql) in all_cases(span30, span30) {
        let path = path.replace(&format!("&{}", span30.params()), "");
        let url = format!("{base}{path}");
        let (ms, max_age) = measure_live(&http, &url, Duration::from_secs(LIVE_SECS))
            .await
            .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        let (raw50, _) = raw_timing(&ch, &raw_sql, raw_reps)
            .await
            .map_err(|e| anyhow::anyhow!("raw {name}: {e}"))?;
        live_rows.push(LiveRow {
            name,
            requests: ms.len(),
            p50: percentile(&ms, 0.5),
            p95: percentile(&ms, 0.95),
            max_age,
            raw50,
        });
    }
    let refreshes = metric_value(
        &scrape(&format!("{admin}/metrics")).await,
        "badgepulse_exporter_cache_refreshes_total",
        &[("outcome", "ok")],
    ) - refreshes_before;
    org_live.store(false, Ordering::Relaxed);
    // Its kept answers go cold before the next phase.
    tokio::time::sleep(Duration::from_secs(KEEP_WARM_SECS + 1)).await;
    println!(
        "live phase: {} background refreshes of kept answers",
        refreshes
    );

    println!(
        "latency in ms, org scope ({ORG}); API: {reps} requests each cold (Cache-Control: no-cache) and cached, raw events ({RAW}, the layout before issue 23): {raw_reps} queries, each after one warm-up; rows: read by ClickHouse for one cold answer / one raw query"
    );
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>8} {:>8}  targets (cold p95 < 100 ms, not slower than raw, >= 10x raw where raw >= 100 ms; cached p95 < 5 ms)",
        "endpoint [window]",
        "cold p50",
        "p95",
        "cached50",
        "p95",
        "raw p50",
        "raw p95",
        "rows",
        "raw rows",
        "x cold",
        "x cached"
    );
    let mut failed = Vec::new();
    let mut raw_30d = std::collections::HashMap::new();
    let windows = [
        ("30d", Span::days(now, 30), Span::days(now, 30)),
        ("400d", Span::days(now, 400), Span::days(now, 200)),
    ];
    for (window_name, span, hour_span) in windows {
        for (name, path, raw_sql) in all_cases(span, hour_span) {
            let url = format!("{base}{path}");
            let (http, url) = (&http, &url);
            let request = |fresh: bool| async move { api_get(http, url, fresh).await.map(drop) };
            let (cold50, cold95) = measure(reps, || request(true))
                .await
                .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
            let rows = rows_read(&ch, || request(true)).await?;
            let (hot50, hot95) = measure(reps, || request(false))
                .await
                .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
            let label = if name == "trends hour" && window_name == "400d" {
                format!("{name} [200d]")
            } else {
                format!("{name} [{window_name}]")
            };
            // The raw baseline may not fit the fixture's memory limit (the
            // 400-day peer benchmark at 100 M events needs more than
            // 3.7 GiB): say so and go on with the other rows.
            let (raw50, raw95) = match raw_timing(&ch, &raw_sql, raw_reps).await {
                Ok(timing) => timing,
                Err(e) => {
                    let reason = failure(&e);
                    println!(
                        "{label:<28} {cold50:>8.1} {cold95:>8.1} {hot50:>8.2} {hot95:>8.2}  raw failed: {reason}"
                    );
                    failed.push(format!("{label} raw failed"));
                    continue;
                }
            };
            let raw_rows = rows_read(&ch, || async { ch.query(&raw_sql).await.map(drop) }).await?;
            let (cold_x, hot_x) = (raw50 / cold50, raw50 / hot50);
            if window_name == "30d" {
                raw_30d.insert(name.clone(), raw50);
            }
            let mut missed = Vec::new();
            if cold95 >= 100.0 {
                missed.push("cold p95");
            }
            if cold50 > raw50 {
                missed.push("slower than raw");
            }
            if raw50 >= 100.0 && cold_x < 10.0 {
                missed.push("cold 10x");
            }
            if hot95 >= 5.0 {
                missed.push("cached p95");
            }
            for m in &missed {
                failed.push(format!("{label} {m}"));
            }
            println!(
                "{label:<28} {cold50:>8.1} {cold95:>8.1} {hot50:>8.2} {hot95:>8.2} {raw50:>8.1} {raw95:>8.1} {rows:>10} {raw_rows:>10} {cold_x:>7.1}x {hot_x:>7.1}x  {}",
                verdict(&missed)
            );
        }
    }
    issuer_phase(&ch, &issuer_keys, &base, &mut failed).await?;
    print_live(&live_rows, &raw_30d, &mut failed);
    let mut polled: Vec<(String, String)> = cases(Span::days(now, 30), Span::days(now, 30))
        .into_iter()
        .map(|(name, path, _)| (name, path))
        .collect();
    let p = Span::days(now, 30).params();
    polled.push((
        "chart trends.png".to_owned(),
        format!("/api/v1/charts/trends.png?org={ORG}&{p}"),
    ));
    polled.push(("report".to_owned(), format!("/report?org={ORG}&{p}")));
    measure_polls(&http, &base, &polled, reps).await?;
    live.store(false, Ordering::Relaxed);
    let sent = notices.await?;
    let text = scrape(&format!("{admin}/metrics")).await;
    println!(
        "live commits during the run: {sent} change notices, {} applied by the exporter",
        metric_value(
            &text,
            "badgepulse_exporter_change_notices_total",
            &[("outcome", "applied")]
        ),
    );
    println!(
        "result cache: {} hits, {} stale hits, {} misses, {} bypassed, {} entries, {:.1} MB (estimate)",
        metric_value(
            &text,
            "badgepulse_exporter_cache_lookups_total",
            &[("result", "hit")]
        ),
        metric_value(
            &text,
            "badgepulse_exporter_cache_lookups_total",
            &[("result", "stale")]
        ),
        metric_value(
            &text,
            "badgepulse_exporter_cache_lookups_total",
            &[("result", "miss")]
        ),
        metric_value(
            &text,
            "badgepulse_exporter_cache_lookups_total",
            &[("result", "bypass")]
        ),
        metric_value(&text, "badgepulse_exporter_cache_entries", &[]),
        metric_value(&text, "badgepulse_exporter_cache_bytes", &[]) / 1e6,
    );
    // Where the API's time goes: the exporter's own ClickHouse query
    // latency histogram, as a mean per query over the whole run.
    let mut per_query = Vec::new();
    for line in text.lines() {
        let Some(rest) =
            line.strip_prefix("badgepulse_exporter_query_duration_seconds_count{query=\"")
        else {
            continue;
        };
        let Some((query, count)) = rest.split_once("\"} ") else {
            continue;
        };
        let count: f64 = count.parse().unwrap_or(0.0);
        let sum = metric_value(
            &text,
            "badgepulse_exporter_query_duration_seconds_sum",
            &[("query", query)],
        );
        per_query.push(format!(
            "{query} {:.1} ms x {count}",
            1000.0 * sum / count.max(1.0)
        ));
    }
    println!(
        "exporter ClickHouse queries, mean over the run: {}",
        per_query.join(", ")
    );
    println!(
        "targets (cold p95 < 100 ms, not slower than raw, >= 10x raw where raw >= 100 ms; issuer overview cold p95 < 50 ms; cached and live p95 < 5 ms, >= 10x raw): {}",
        if failed.is_empty() {
            "all met".to_owned()
        } else {
            format!("missed: {}", failed.join("; "))
        }
    );
    Ok(())
}
