//! The insights end to end (SPEC §7.7–§7.10): a seeded workload of
//! platform events goes through the real ingest → NATS → aggregator →
//! ClickHouse pipeline, program updates are created through the API, and
//! every number of `/api/v1/impact`, `/api/v1/timing`, `/api/v1/cohorts`
//! and `/api/v1/benchmark` must equal a ground truth computed here from
//! the same events, for every scope kind, JSON and CSV, with charts and the
//! report's sections.
//!
//! The workload is built for the cases the SPEC spells out: an impact
//! whose windows are complete and one whose after window reaches now (and
//! one in the future), timing cells across the daylight-saving change of
//! Europe/Paris (2025-03-30) and in a zone with a half-hour offset, a tie
//! for the best timing cell, cohorts across month boundaries (a week from
//! Monday 31 March into April, accepts a month after the award; awards
//! sent in a second round, after their assertion's accept or a later
//! award, which move it into or out of a cohort), fewer
//! qualifying peers than `benchmark_min_peers` for one measure, a key
//! scoped to one issuer asking for the benchmark and one scoped to a badge
//! class refused.
//!
//! p-values are checked against reference values from SciPy 1.17, each
//! written next to the assertion with the expression that produced it; the
//! one test whose inputs depend on the time of the run (per-day rates of a
//! window cut at now) is checked against an exact binomial test written
//! here. Local times are placed with offsets written here by hand (CET is
//! UTC+1 until 2025-03-30T01:00Z, CEST UTC+2 after; IST is UTC+5:30), not
//! with a time zone library.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use badgepulse_tests::{eventually, parse_csv, scrape, OpenApi, Stack};
use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use serde_json::{json, Value};

const DB: &str = "e2e_exporter_insights";
const TOKEN: &str = "insights-platform-token";
const MIN_AWARDED: u64 = 3;
const MIN_PEERS: usize = 5;
const KEYS: [(&str, &str); 6] = [
    ("key-admin", "admin"),
    ("key-acme", "org:acme"),
    ("key-i1", "issuer:acme/i1"),
    ("key-i2", "issuer:acme/i2"),
    ("key-b1", "badge:acme/b1"),
    ("key-p1", "org:p1"),
];
const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

// ------------------------------------------------------------------ events

/// One event as the ground truth knows it.
#[derive(Debug, Clone)]
struct Ev {
    kind: &'static str,
    at: i64,
    org: &'static str,
    issuer: &'static str,
    class: &'static str,
    assertion: String,
}

type Class = (&'static str, &'static str, &'static str);

const B1: Class = ("acme", "i1", "b1");
const B2: Class = ("acme", "i1", "b2");
const B3: Class = ("acme", "i2", "b3");

fn t(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp()
}

fn rfc(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Builds the event list.
#[derive(Default)]
struct Events {
    list: Vec<Ev>,
    next: usize,
}

impl Events {
    fn push(&mut self, kind: &'static str, at: i64, class: Class, assertion: &str) {
        self.list.push(Ev {
            kind,
            at,
            org: class.0,
            issuer: class.1,
            class: class.2,
            assertion: assertion.to_owned(),
        });
    }

    /// A new assertion awarded at `at`, with its later events at the given
    /// offsets from the award (`None`: never).
    fn badge(
        &mut self,
        class: Class,
        at: i64,
        accept: Option<i64>,
        share: Option<i64>,
        views: &[i64],
    ) -> String {
        self.next += 1;
        let a = format!("{}-{}-{}", class.0, class.2, self.next);
        self.push("badge.awarded", at, class, &a);
        if let Some(d) = accept {
            self.push("badge.accepted", at + d, class, &a);
        }
        if let Some(d) = share {
            self.push("badge.shared", at + d, class, &a);
        }
        for d in views {
            self.push("badge.viewed", at + d, class, &a);
        }
        a
    }

    fn json(&self) -> Vec<Value> {
        self.list
            .iter()
            .enumerate()
            .map(|(i, e)| {
                json!({
                    "event_id": format!("ins-{i}"), "type": e.kind, "occurred_at": rfc(e.at),
                    "org_id": e.org, "issuer_id": e.issuer, "badge_class_id": e.class,
                    "assertion_id": e.assertion,
                })
            })
            .collect()
    }
}

/// Accept delays cycled through by the timing workload: within 1 h (30
/// min, exactly 1 h), before the award, within a day, a week, 30 and 90
/// days, and beyond.
const DELAYS: [i64; 8] = [
    1_800,
    HOUR,
    -HOUR,
    5 * HOUR,
    2 * DAY,
    10 * DAY,
    40 * DAY,
    100 * DAY,
];

/// The timing and cohort workload, March 24 to April 6, 2025, Paris time:
/// Monday 09:xx (12 awards, 3 accepted; half in CET, half in CEST: UTC
/// 08:xx then 07:xx), Tuesday 10:xx (12, all accepted) and Wednesday
/// 14:xx (12, all accepted; the tie), Sunday 30 March 01:xx CET (2, both
/// accepted: too few to qualify) and 03:xx CEST (6, 1 accepted), minutes
/// spread so that a half-hour zone splits UTC hours. Wednesday's are
/// issuer i2's.
fn timing_workload(ev: &mut Events) {
    let mut n = 0usize;
    let mut cell =
        |ev: &mut Events, class: Class, starts: &[&str], count: usize, accepted: usize| {
            for k in 0..count {
                let at = t(starts[k % starts.len()]) + (k / starts.len()) as i64 * 600;
                let accept = (k < accepted).then(|| DELAYS[n % DELAYS.len()]);
                n += 1;
                // Half the quickly accepted ones are shared a day later and
                // seen (all within the timing window's fortnight).
                let share = accept
                    .filter(|d| k % 2 == 0 && *d <= 5 * HOUR)
                    .map(|d| d.max(0) + DAY);
                let views: Vec<i64> = share
                    .map(|s| vec![s + HOUR, s + 2 * HOUR])
                    .unwrap_or_default();
                ev.badge(class, at, accept, share, &views);
            }
        };
    cell(
        ev,
        B1,
        &["2025-03-24T08:05:00Z", "2025-03-31T07:05:00Z"],
        12,
        3,
    );
    cell(
        ev,
        B1,
        &["2025-03-25T09:05:00Z", "2025-04-01T08:05:00Z"],
        12,
        12,
    );
    cell(
        ev,
        B3,
        &["2025-03-26T13:05:00Z", "2025-04-02T12:05:00Z"],
        12,
        12,
    );
    cell(ev, B1, &["2025-03-30T00:15:00Z"], 2, 2);
    cell(ev, B1, &["2025-03-30T01:05:00Z"], 6, 1);
    // Just outside the window [2025-03-24, 2025-04-07).
    ev.badge(B1, t("2025-03-23T23:59:59Z"), Some(60), None, &[]);
    ev.badge(B1, t("2025-04-07T00:00:00Z"), Some(60), None, &[]);
}

/// An award sent in a second round, after the other events of its
/// assertion were stored: (badge class, assertion, time).
type LateAward = (Class, String, i64);

/// Cohorts across month boundaries, January and February 2025, and three
/// assertions whose first award arrives late (the awards to send in a
/// second round): one refiled from February into January, one from
/// January to December 2024 (out of a window from January), one accepted
/// before any award was known.
fn cohort_workload(ev: &mut Events) -> Vec<LateAward> {
    let jan29 = t("2025-01-29T10:00:00Z");
    // Accepted the next month, shared and seen in March.
    ev.badge(B1, jan29, Some(5 * DAY), Some(35 * DAY), &[36 * DAY]);
    // Everything in January but the view (February).
    ev.badge(B1, jan29 + DAY, Some(2 * HOUR), Some(DAY), &[12 * DAY]);
    // Shared and seen but never accepted: never reaches `shared`.
    ev.badge(B2, t("2025-02-14T10:00:00Z"), None, Some(DAY), &[2 * DAY]);
    // Accepted before the award, shared in April.
    ev.badge(
        B2,
        t("2025-02-20T10:00:00Z"),
        Some(-DAY),
        Some(41 * DAY),
        &[],
    );
    let into_january = ev.badge(B2, t("2025-02-10T10:00:00Z"), Some(DAY), None, &[]);
    let out_of_january = ev.badge(
        B1,
        t("2025-01-10T10:00:00Z"),
        Some(HOUR),
        Some(2 * DAY),
        &[],
    );
    let accepted_first = "acme-b1-accepted-first".to_owned();
    ev.push(
        "badge.accepted",
        t("2025-02-03T10:00:00Z"),
        B1,
        &accepted_first,
    );
    vec![
        (B2, into_january, t("2025-01-20T10:00:00Z")),
        (B1, out_of_january, t("2024-12-28T10:00:00Z")),
        (B1, accepted_first, t("2025-02-01T10:00:00Z")),
    ]
}

/// Annotation A ("New reminder email", org-wide, 2025-06-01): 40 awards
/// in each window of 28 days. Before: 16 accepted within a day (4 of them
/// shared within 2 days, each seen twice), 4 after 10 days, 20 never.
/// After: 30 accepted within 2 hours (15 shared within a day, each seen 3
/// times), 2 after 9 days, 8 never.
fn impact_a_workload(ev: &mut Events) -> i64 {
    let at = t("2025-06-01T00:00:00Z");
    for k in 0..40 {
        let aw = t("2025-05-05T00:00:00Z") + k * 12 * HOUR;
        let (accept, share, views): (Option<i64>, Option<i64>, &[i64]) = match k {
            0..=3 => (Some(DAY), Some(2 * DAY), &[3 * DAY, 3 * DAY + 60]),
            4..=15 => (Some(DAY), None, &[]),
            16..=19 => (Some(10 * DAY), None, &[]),
            _ => (None, None, &[]),
        };
        ev.badge(B1, aw, accept, share, views);
    }
    for k in 0..40 {
        let aw = t("2025-06-02T00:00:00Z") + k * 12 * HOUR;
        let (accept, share, views): (Option<i64>, Option<i64>, &[i64]) = match k {
            0..=14 => (Some(2 * HOUR), Some(DAY), &[DAY + 60, DAY + 120, DAY + 180]),
            15..=29 => (Some(2 * HOUR), None, &[]),
            30..=31 => (Some(9 * DAY), None, &[]),
            _ => (None, None, &[]),
        };
        ev.badge(B1, aw, accept, share, views);
    }
    at
}

/// Annotation B ("Onboarding webinar", issuer i1, ten days ago): 10
/// awards before it (5 accepted within 6 hours, 2 of those shared, each
/// seen twice); after it, 6 awards in its first days (5 accepted within
/// an hour, 3 shared, each seen twice) and 2 four days ago (too recent
/// for the cohort); and issuer i2's awards, which B's scope leaves out.
fn impact_b_workload(ev: &mut Events, now: i64) -> i64 {
    let at = now - 10 * DAY;
    for k in 0..10 {
        let (accept, share, views): (Option<i64>, Option<i64>, &[i64]) = match k {
            0..=1 => (Some(6 * HOUR), Some(DAY), &[DAY + 60, DAY + 120]),
            2..=4 => (Some(6 * HOUR), None, &[]),
            _ => (None, None, &[]),
        };
        ev.badge(B2, at - 20 * DAY + k * DAY, accept, share, views);
    }
    for k in 0..6 {
        let (accept, share, views): (Option<i64>, Option<i64>, &[i64]) = match k {
            0..=2 => (Some(HOUR), Some(2 * HOUR), &[3 * HOUR, 4 * HOUR]),
            3..=4 => (Some(HOUR), None, &[]),
            _ => (None, None, &[]),
        };
        ev.badge(B2, at + DAY + k * 6 * HOUR, accept, share, views);
    }
    for _ in 0..2 {
        ev.badge(B2, now - 4 * DAY, Some(HOUR), None, &[]);
    }
    for k in 0..5 {
        ev.badge(
            B3,
            at + DAY + k * HOUR,
            Some(HOUR),
            Some(2 * HOUR),
            &[3 * HOUR],
        );
    }
    at
}

/// The benchmark's peers in August 2025: (org, issuer, awards, accepted,
/// shared, views per share). Seven orgs qualify with ≥ 3 awards, four of
/// them have shares (fewer than `MIN_PEERS` for the impact score); eight
/// (org, issuer) pairs qualify.
const PEERS: [(&str, &str, usize, usize, usize, usize); 9] = [
    ("acme", "i1", 10, 6, 2, 2),
    ("acme", "i2", 4, 1, 0, 0),
    ("p1", "x1", 8, 8, 4, 3),
    ("p2", "x2", 6, 3, 1, 1),
    ("p3", "x3", 5, 1, 0, 0),
    ("p4", "x4", 12, 6, 0, 0),
    ("p5", "x5", 3, 3, 0, 0),
    ("p6", "x6", 20, 5, 1, 0),
    ("tiny", "t1", 2, 2, 0, 0),
];

fn benchmark_workload(ev: &mut Events) {
    let start = t("2025-08-03T00:00:00Z");
    for (i, (org, issuer, awards, accepted, shared, views)) in PEERS.into_iter().enumerate() {
        let class: Class = (org, issuer, if org == "acme" { "b1" } else { "pb" });
        for k in 0..awards {
            let at = start + i as i64 * DAY + k as i64 * HOUR;
            let share = (k < shared).then_some(2 * HOUR);
            let seen: Vec<i64> = (0..views as i64).map(|v| 3 * HOUR + v * 60).collect();
            ev.badge(
                class,
                at,
                (k < accepted).then_some(HOUR),
                share,
                if share.is_some() { &seen } else { &[] },
            );
        }
    }
}

// ------------------------------------------------------------ ground truth

/// A scope of the ground truth.
#[derive(Debug, Clone, Copy, Default)]
struct Scope {
    org: Option<&'static str>,
    issuer: Option<&'static str>,
    class: Option<&'static str>,
}

impl Scope {
    fn of(e: &Ev) -> impl Fn(&Scope) -> bool + '_ {
        move |s| {
            s.org.is_none_or(|o| o == e.org)
                && s.issuer.is_none_or(|i| i == e.issuer)
                && s.class.is_none_or(|c| c == e.class)
        }
    }
}

const ACME: Scope = Scope {
    org: Some("acme"),
    issuer: None,
    class: None,
};
/// Every org (an admin key asking without `org`).
const ALL: Scope = Scope {
    org: None,
    issuer: None,
    class: None,
};
const I1: Scope = Scope {
    org: Some("acme"),
    issuer: Some("i1"),
    class: None,
};

/// One assertion's first events.
#[derive(Debug, Clone, Default)]
struct Life {
    aw: Option<i64>,
    ac: Option<i64>,
    sh: Option<i64>,
    vw: Option<i64>,
}

/// The assertions of `scope`, their first event of each kind.
fn lives(events: &[Ev], scope: Scope) -> Vec<Life> {
    // An assertion is its (org, assertion id).
    let mut by: BTreeMap<(&str, &str), Life> = BTreeMap::new();
    for e in events.iter().filter(|e| Scope::of(e)(&scope)) {
        let l = by.entry((e.org, e.assertion.as_str())).or_default();
        let slot = match e.kind {
            "badge.awarded" => &mut l.aw,
            "badge.accepted" => &mut l.ac,
            "badge.shared" => &mut l.sh,
            _ => &mut l.vw,
        };
        *slot = Some(slot.map_or(e.at, |v| v.min(e.at)));
    }
    by.into_values().collect()
}

/// §7 window counts: awarded, accepted, shared (distinct assertions),
/// shares, views (events).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    awarded: u64,
    accepted: u64,
    shared: u64,
    shares: u64,
    views: u64,
}

fn counts(events: &[Ev], scope: Scope, from: i64, to: i64) -> Counts {
    let sel: Vec<&Ev> = events
        .iter()
        .filter(|e| e.at >= from && e.at < to && Scope::of(e)(&scope))
        .collect();
    let distinct = |kind: &str| {
        sel.iter()
            .filter(|e| e.kind == kind)
            .map(|e| &e.assertion)
            .collect::<BTreeSet<_>>()
            .len() as u64
    };
    Counts {
        awarded: distinct("badge.awarded"),
        accepted: distinct("badge.accepted"),
        shared: distinct("badge.shared"),
        shares: sel.iter().filter(|e| e.kind == "badge.shared").count() as u64,
        views: sel.iter().filter(|e| e.kind == "badge.viewed").count() as u64,
    }
}

/// §7 counts of every org (issuers: of every (org, issuer)) with events in
/// `[from, to)`.
fn peers_in(
    events: &[Ev],
    from: i64,
    to: i64,
    issuers: bool,
) -> BTreeMap<(String, String), Counts> {
    let keys: BTreeSet<(&str, &str)> = events
        .iter()
        .filter(|e| (from..to).contains(&e.at))
        .map(|e| (e.org, if issuers { e.issuer } else { "" }))
        .collect();
    keys.into_iter()
        .map(|(org, issuer)| {
            let scope = Scope {
                org: Some(org),
                issuer: (!issuer.is_empty()).then_some(issuer),
                class: None,
            };
            (
                (org.to_owned(), issuer.to_owned()),
                counts(events, scope, from, to),
            )
        })
        .collect()
}

fn peer_counts_in(events: &[Ev], from: i64, to: i64) -> BTreeMap<(String, String), Counts> {
    peers_in(events, from, to, false)
}

fn issuer_counts_in(events: &[Ev], from: i64, to: i64) -> BTreeMap<(String, String), Counts> {
    peers_in(events, from, to, true)
}

fn ratio(x: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| x as f64 / n as f64)
}

fn close(got: &Value, want: Option<f64>, ctx: &str) {
    match want {
        None => assert!(got.is_null(), "{ctx}: expected null, got {got}"),
        Some(w) => {
            let g = got
                .as_f64()
                .unwrap_or_else(|| panic!("{ctx}: expected {w}, got {got}"));
            assert!(
                (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                "{ctx}: expected {w}, got {g}"
            );
        }
    }
}

/// `got` is within relative `tol` of SciPy's `want`.
fn scipy(got: &Value, want: f64, tol: f64, ctx: &str) {
    let g = got
        .as_f64()
        .unwrap_or_else(|| panic!("{ctx}: expected {want}, got {got}"));
    assert!(
        (g - want).abs() <= tol * want.abs().max(1e-300),
        "{ctx}: {g} vs SciPy {want}"
    );
}

/// The exact conditional test of two Poisson rates, written here from
/// its definition: `k1 ~ Binomial(k1 + k2, t1 / (t1 + t2))`, twice the
/// smaller tail, at most 1.
fn poisson_reference(k1: u64, t1: f64, k2: u64, t2: f64) -> Option<f64> {
    if k1 + k2 == 0 || t1 <= 0.0 || t2 <= 0.0 {
        return None;
    }
    let n = k1 + k2;
    let p = t1 / (t1 + t2);
    let ln_fact = |m: u64| (1..=m).map(|i| (i as f64).ln()).sum::<f64>();
    let pmf = |i: u64| {
        (ln_fact(n) - ln_fact(i) - ln_fact(n - i)
            + i as f64 * p.ln()
            + (n - i) as f64 * (1.0 - p).ln())
        .exp()
    };
    let lower: f64 = (0..=k1).map(pmf).sum();
    let upper: f64 = (k1..=n).map(pmf).sum();
    Some((2.0 * lower.min(upper)).min(1.0))
}

// --------------------------------------------------------- local time, by hand

/// A zone's offset from UTC at a time, seconds.
type Offset = fn(i64) -> i64;

/// Europe/Paris in March and April 2025: CET (UTC+1) until 2025-03-30
/// 01:00 UTC, CEST (UTC+2) after.
fn paris(t: i64) -> i64 {
    assert!((self::t("2025-03-01T00:00:00Z")..self::t("2025-10-26T01:00:00Z")).contains(&t));
    if t < self::t("2025-03-30T01:00:00Z") {
        HOUR
    } else {
        2 * HOUR
    }
}

fn kolkata(_: i64) -> i64 {
    5 * HOUR + 30 * 60
}

fn utc(_: i64) -> i64 {
    0
}

/// ISO weekday (1 = Monday) and hour of local seconds (1970-01-01 was a
/// Thursday).
fn weekday_hour(local: i64) -> (u64, u64) {
    let days = local.div_euclid(DAY);
    (
        (days + 3).rem_euclid(7) as u64 + 1,
        (local.rem_euclid(DAY) / HOUR) as u64,
    )
}

/// The timing of `scope` in `[from, to)` with `offset`: per cell (awards,
/// accepts), and the accepts within each delay.
struct TimingTruth {
    cells: BTreeMap<(u64, u64), (u64, u64)>,
    within: [u64; 5],
    awarded: u64,
    accepted: u64,
}

fn timing_truth(events: &[Ev], scope: Scope, from: i64, to: i64, offset: Offset) -> TimingTruth {
    let mut truth = TimingTruth {
        cells: BTreeMap::new(),
        within: [0; 5],
        awarded: 0,
        accepted: 0,
    };
    for l in lives(events, scope) {
        let Some(aw) = l.aw.filter(|aw| (from..to).contains(aw)) else {
            continue;
        };
        let cell = truth
            .cells
            .entry(weekday_hour(aw + offset(aw)))
            .or_default();
        cell.0 += 1;
        truth.awarded += 1;
        if let Some(ac) = l.ac {
            cell.1 += 1;
            truth.accepted += 1;
            for (w, limit) in truth
                .within
                .iter_mut()
                .zip([HOUR, DAY, 7 * DAY, 30 * DAY, 90 * DAY])
            {
                if ac - aw <= limit {
                    *w += 1;
                }
            }
        }
    }
    truth
}

fn check_timing(body: &Value, truth: &TimingTruth, ctx: &str) {
    let rate = |aw: u64, ac: u64| ratio(ac, aw);
    let mut weekdays = [(0u64, 0u64); 7];
    let mut hours = [(0u64, 0u64); 24];
    for (&(d, h), &(aw, ac)) in &truth.cells {
        weekdays[d as usize - 1].0 += aw;
        weekdays[d as usize - 1].1 += ac;
        hours[h as usize].0 += aw;
        hours[h as usize].1 += ac;
    }
    let rows = body["by_weekday"].as_array().unwrap();
    assert_eq!(rows.len(), 7, "{ctx}");
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["weekday"], i + 1, "{ctx}");
        assert_eq!(r["awarded"], weekdays[i].0, "{ctx} weekday {}", i + 1);
        close(
            &r["acceptance_rate"],
            rate(weekdays[i].0, weekdays[i].1),
            ctx,
        );
    }
    let rows = body["by_hour"].as_array().unwrap();
    assert_eq!(rows.len(), 24, "{ctx}");
    for (h, r) in rows.iter().enumerate() {
        assert_eq!(r["hour"], h, "{ctx}");
        assert_eq!(r["awarded"], hours[h].0, "{ctx} hour {h}");
        close(&r["acceptance_rate"], rate(hours[h].0, hours[h].1), ctx);
    }
    let cells: Vec<(u64, u64, u64)> = body["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let (d, h, aw) = (
                c["weekday"].as_u64().unwrap(),
                c["hour"].as_u64().unwrap(),
                c["awarded"].as_u64().unwrap(),
            );
            let (_, ac) = truth.cells[&(d, h)];
            close(&c["acceptance_rate"], rate(aw, ac), ctx);
            (d, h, aw)
        })
        .collect();
    let want: Vec<(u64, u64, u64)> = truth
        .cells
        .iter()
        .map(|(&(d, h), &(aw, _))| (d, h, aw))
        .collect();
    assert_eq!(cells, want, "{ctx} cells");
    for ((name, _), n) in [("1h", 0), ("1d", 0), ("7d", 0), ("30d", 0), ("90d", 0)]
        .iter()
        .zip(truth.within)
    {
        close(
            &body["accepted_within"][name],
            ratio(n, truth.awarded),
            &format!("{ctx} accepted_within {name}"),
        );
    }
    // The best cell: highest rate among cells with MIN_AWARDED awards,
    // then more awards, then the lowest weekday and hour.
    let best = truth
        .cells
        .iter()
        .filter(|(_, (aw, _))| *aw >= MIN_AWARDED)
        .max_by(|(ka, (awa, aca)), (kb, (awb, acb))| {
            (aca * awb)
                .cmp(&(acb * awa))
                .then(awa.cmp(awb))
                .then(kb.cmp(ka))
        });
    match best {
        None => assert!(body["best"].is_null(), "{ctx}: {}", body["best"]),
        Some((&(d, h), &(aw, ac))) => {
            let b = &body["best"];
            assert_eq!(
                (b["weekday"].as_u64(), b["hour"].as_u64()),
                (Some(d), Some(h)),
                "{ctx}: {b}"
            );
            assert_eq!(b["awarded"], aw, "{ctx}");
            close(&b["acceptance_rate"], ratio(ac, aw), ctx);
        }
    }
}

/// Week (ISO, Monday) or month start of `t`, UTC.
fn period_floor(granularity: &str, t: i64) -> i64 {
    let day = t.div_euclid(DAY);
    if granularity == "week" {
        return (day - (day + 3).rem_euclid(7)) * DAY;
    }
    let d = DateTime::<Utc>::from_timestamp(t, 0).unwrap().date_naive();
    NaiveDate::from_ymd_opt(d.year(), d.month(), 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp()
}

/// Periods from the period starting at `start` to the one holding `t`.
fn periods(granularity: &str, start: i64, t: i64) -> i64 {
    let f = period_floor(granularity, t);
    if granularity == "week" {
        return (f - start) / (7 * DAY);
    }
    let ym = |s: i64| {
        let d = DateTime::<Utc>::from_timestamp(s, 0).unwrap().date_naive();
        i64::from(d.year()) * 12 + i64::from(d.month0())
    };
    ym(f) - ym(start)
}

/// The triangle of `scope` in `[from, to)` at `now`: (cohort start, size,
/// values).
fn cohorts_truth(
    events: &[Ev],
    scope: Scope,
    (from, to): (i64, i64),
    granularity: &str,
    stage: &str,
    now: i64,
) -> Vec<(i64, u64, Vec<Option<f64>>)> {
    let mut by: BTreeMap<i64, (u64, Vec<u64>)> = BTreeMap::new();
    for l in lives(events, scope) {
        let Some(aw) = l.aw.filter(|aw| (from..to).contains(aw)) else {
            continue;
        };
        let cohort = period_floor(granularity, aw);
        let entry = by
            .entry(cohort)
            .or_insert_with(|| (0, vec![0; periods(granularity, cohort, now) as usize + 1]));
        entry.0 += 1;
        let needed = match stage {
            "accepted" => vec![l.ac],
            "shared" => vec![l.ac, l.sh],
            _ => vec![l.ac, l.sh, l.vw],
        };
        if let Some(times) = needed.into_iter().collect::<Option<Vec<i64>>>() {
            let reached = *times.iter().max().unwrap();
            let age = periods(granularity, cohort, reached).max(0) as usize;
            entry.1[age] += 1;
        }
    }
    by.into_iter()
        .map(|(cohort, (size, ages))| {
            let last = ages.len() - 1;
            let mut cum = 0;
            let values = ages
                .iter()
                .enumerate()
                .map(|(k, n)| {
                    cum += n;
                    (k < last).then(|| cum as f64 / size as f64)
                })
                .collect();
            (cohort, size, values)
        })
        .collect()
}

/// `/api/v1/cohorts` of `key` for the days `[from, to)` against
/// [`cohorts_truth`].
async fn check_cohorts(
    api: &Api<'_>,
    events: &[Ev],
    key: &str,
    scope: Scope,
    (from, to, granularity, stage): (&str, &str, &str, &str),
) {
    let ctx = format!("cohorts {from} {to} {granularity} {stage} {key}");
    let query =
        format!("/api/v1/cohorts?from={from}&to={to}&granularity={granularity}&stage={stage}");
    let before = Utc::now().timestamp();
    let body = api.get(key, &query).await;
    let after = Utc::now().timestamp();
    // The running period may not turn during the request.
    assert_eq!(periods(granularity, before, after), 0, "{ctx}: retry");
    assert_eq!(
        (body["granularity"].as_str(), body["stage"].as_str()),
        (Some(granularity), Some(stage))
    );
    let instant = |s: &str| {
        if s.contains('T') {
            t(s)
        } else {
            t(&format!("{s}T00:00:00Z"))
        }
    };
    let range = (instant(from), instant(to));
    let truth = cohorts_truth(events, scope, range, granularity, stage, before);
    let got = body["cohorts"].as_array().unwrap();
    assert_eq!(got.len(), truth.len(), "{ctx}: {body}");
    for (g, (cohort, size, values)) in got.iter().zip(&truth) {
        assert_eq!(g["cohort"], rfc(*cohort), "{ctx}");
        assert_eq!(g["size"], *size, "{ctx} {cohort}");
        let gv = g["values"].as_array().unwrap();
        assert_eq!(gv.len(), values.len(), "{ctx} {cohort}");
        for (k, (x, w)) in gv.iter().zip(values).enumerate() {
            close(x, *w, &format!("{ctx} {} age {k}", rfc(*cohort)));
        }
    }
}

/// Type-7 quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// The SPEC §7 rates of window counts, written here.
fn rate_of(c: &Counts, measure: &str) -> Option<f64> {
    let (aw, ac, sh, shs, vw) = (
        c.awarded as f64,
        c.accepted as f64,
        c.shared as f64,
        c.shares as f64,
        c.views as f64,
    );
    match measure {
        "acceptance_rate" => (c.awarded > 0).then(|| (ac / aw).min(1.0)),
        "share_rate" => (c.accepted > 0).then(|| (sh / ac).min(1.0)),
        "engagement_score" => {
            (c.awarded > 0).then(|| 100.0 * (ac.min(aw) + sh.min(aw)) / (2.0 * aw))
        }
        "external_impact_score" => (c.shares > 0).then(|| vw / shs),
        _ => (c.awarded > 0).then(|| {
            let v = vw / aw;
            100.0 * v / (v + 1.0)
        }),
    }
}

const BENCHMARK_MEASURES: [&str; 5] = [
    "acceptance_rate",
    "share_rate",
    "engagement_score",
    "external_impact_score",
    "reach_score",
];

/// Checks a benchmark body against the peers' counts in the window.
fn check_benchmark(
    body: &Value,
    peers: &BTreeMap<(String, String), Counts>,
    own: (&str, &str),
    ctx: &str,
) {
    let own_counts = peers
        .get(&(own.0.to_owned(), own.1.to_owned()))
        .copied()
        .unwrap_or_default();
    let measures = body["measures"].as_array().unwrap();
    assert_eq!(measures.len(), 5, "{ctx}");
    for (m, name) in measures.iter().zip(BENCHMARK_MEASURES) {
        let ctx = format!("{ctx} {name}");
        assert_eq!(m["measure"], name, "{ctx}");
        let keys: BTreeSet<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
        let mut allowed = BTreeSet::from([
            "measure",
            "value",
            "peers",
            "percentile",
            "p25",
            "median",
            "p75",
        ]);
        if m["percentile"].is_null() {
            allowed.insert("reason");
        }
        assert_eq!(
            keys, allowed,
            "{ctx}: only the scope's value and figures over all peers"
        );
        let value = rate_of(&own_counts, name);
        close(&m["value"], value, &ctx);
        let mut values: Vec<f64> = peers
            .values()
            .filter(|c| c.awarded >= MIN_AWARDED)
            .filter_map(|c| rate_of(c, name))
            .collect();
        values.sort_by(f64::total_cmp);
        assert_eq!(m["peers"], values.len(), "{ctx}");
        let ranked =
            own_counts.awarded >= MIN_AWARDED && value.is_some() && values.len() >= MIN_PEERS;
        if !ranked {
            for f in ["percentile", "p25", "median", "p75"] {
                assert!(m[f].is_null(), "{ctx}: {f}");
            }
            assert!(m["reason"].as_str().is_some_and(|r| !r.is_empty()), "{ctx}");
            continue;
        }
        let v = value.unwrap();
        let below = values.iter().filter(|x| **x < v).count() as f64;
        let equal = values.iter().filter(|x| **x == v).count() as f64;
        close(
            &m["percentile"],
            Some(100.0 * (below + 0.5 * equal) / values.len() as f64),
            &ctx,
        );
        close(&m["p25"], Some(quantile(&values, 0.25)), &ctx);
        close(&m["median"], Some(quantile(&values, 0.5)), &ctx);
        close(&m["p75"], Some(quantile(&values, 0.75)), &ctx);
    }
}

// ------------------------------------------------------------------- stack

async fn start_stack() -> Stack {
    Stack::start(DB, |config| {
        config
            .token(TOKEN, &["*"])
            // No seal while the answers are checked from the cohorts' rows;
            // the test seals every award day itself, then checks again.
            .aggregator("flush_interval_ms = 100\nseal_interval_secs = 3600")
            .exporter(&format!(
                "min_awarded = {MIN_AWARDED}\nbenchmark_min_peers = {MIN_PEERS}\nrefresh_interval_secs = 1"
            ))
            .api_keys(&KEYS)
    })
    .await
}

struct Api<'a> {
    http: reqwest::Client,
    stack: &'a Stack,
    /// Every answer, refusals included, is checked against it.
    openapi: OpenApi,
    /// Ask with `Cache-Control: no-cache`.
    fresh: bool,
}

impl Api<'_> {
    async fn call(&self, key: &str, path_query: &str) -> (u16, String, Vec<u8>) {
        let mut request = self
            .http
            .get(format!("{}{path_query}", self.stack.ports.exporter_url()))
            .bearer_auth(key);
        if self.fresh {
            request = request.header("cache-control", "no-cache");
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let ct = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = r.bytes().await.unwrap().to_vec();
        self.openapi
            .assert_answer("GET", path_query, status, &headers, &body);
        (status, ct, body)
    }

    async fn get(&self, key: &str, path_query: &str) -> Value {
        let (status, ct, body) = self.call(key, path_query).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "{path_query}: {text}");
        assert!(ct.starts_with("application/json"), "{path_query}: {ct}");
        serde_json::from_slice(&body).unwrap()
    }

    /// The CSV answer as maps from header to cell.
    async fn csv(&self, key: &str, path_query: &str) -> Vec<BTreeMap<String, String>> {
        let (status, ct, body) = self.call(key, path_query).await;
        assert_eq!(status, 200, "{path_query}");
        assert_eq!(ct, "text/csv; charset=utf-8", "{path_query}");
        let rows = parse_csv(&String::from_utf8(body).unwrap());
        let header = &rows[0];
        rows[1..]
            .iter()
            .map(|r| {
                assert_eq!(r.len(), header.len(), "{path_query}: {r:?}");
                header.iter().cloned().zip(r.iter().cloned()).collect()
            })
            .collect()
    }

    async fn error(&self, key: &str, path_query: &str, status: u16, param: &str) {
        let (got, _, body) = self.call(key, path_query).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(got, status, "{path_query}: {text}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            v["error"].as_str().unwrap().starts_with(param),
            "{path_query}: {v}"
        );
    }

    /// Creates an annotation; its id.
    async fn annotate(&self, key: &str, body: Value) -> String {
        let r = self
            .http
            .post(format!(
                "{}/api/v1/annotations",
                self.stack.ports.exporter_url()
            ))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    /// Both chart formats draw: an SVG document and a PNG.
    async fn charts(&self, key: &str, chart: &str, params: &str) {
        for (ext, ct) in [("svg", "image/svg+xml"), ("png", "image/png")] {
            let path = format!("/api/v1/charts/{chart}.{ext}?{params}");
            let (status, got, body) = self.call(key, &path).await;
            assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
            assert_eq!(got, ct, "{path}");
            if ext == "svg" {
                let svg = String::from_utf8(body).unwrap();
                assert!(
                    svg.starts_with("<svg ") && svg.ends_with("</svg>"),
                    "{path}"
                );
                assert!(!svg.contains(">no data<"), "{path}: {svg}");
            } else {
                assert_eq!(&body[..8], b"\x89PNG\r\n\x1a\n", "{path}");
            }
        }
    }
}

fn csv_num(cell: &str, json: &Value, ctx: &str) {
    if json.is_null() {
        assert_eq!(cell, "", "{ctx}");
    } else {
        let v: f64 = cell.parse().unwrap_or_else(|_| panic!("{ctx}: {cell:?}"));
        let w = json.as_f64().unwrap();
        assert!(
            (v - w).abs() <= 1e-12 * w.abs().max(1.0),
            "{ctx}: {v} vs {w}"
        );
    }
}

// -------------------------------------------------------------------- test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_match_the_ground_truth() {
    let stack = start_stack().await;
    let http = reqwest::Client::new();
    let now = Utc::now().timestamp();
    let mut ev = Events::default();
    timing_workload(&mut ev);
    let late = cohort_workload(&mut ev);
    let at_a = impact_a_workload(&mut ev);
    let at_b = impact_b_workload(&mut ev, now);
    benchmark_workload(&mut ev);
    let first_round = ev.list.len();
    for (class, assertion, at) in &late {
        ev.push("badge.awarded", *at, *class, assertion);
    }
    let events = ev.list.clone();
    assert!(events.iter().all(|e| e.at < now), "no event in the future");
    let json_events = ev.json();
    // Two rounds, the second stored in batches of its own.
    let mut sent = 0;
    for round in [&json_events[..first_round], &json_events[first_round..]] {
        stack.send_events(TOKEN, round).await;
        sent += round.len() as u64;
        stack
            .ch
            .wait_for_events(DB, sent, Duration::from_secs(90))
            .await;
    }
    // The two earlier awards were refiled (the third had no award before).
    assert_eq!(
        stack
            .ch
            .query(&format!(
                "SELECT assertion_id FROM {DB}.lifecycle_refiled ORDER BY assertion_id"
            ))
            .await
            .unwrap(),
        format!("{}\n{}\n", late[1].1, late[0].1)
    );
    let api = Api {
        http: http.clone(),
        stack: &stack,
        openapi: OpenApi::exporter(),
        fresh: false,
    };

    // ------------------------------------------------------------ impact
    let id_a = api
        .annotate(
            "key-acme",
            json!({"at": rfc(at_a), "title": "New reminder email"}),
        )
        .await;
    let id_b = api
        .annotate(
            "key-i1",
            json!({"at": rfc(at_b), "title": "Onboarding webinar"}),
        )
        .await;
    let id_c = api
        .annotate(
            "key-acme",
            json!({"at": rfc(now + 2 * DAY), "title": "Next term"}),
        )
        .await;
    let id_d = api
        .annotate(
            "key-admin",
            json!({"org": "p1", "at": rfc(at_a), "title": "P1 secret plan"}),
        )
        .await;

    // A: complete windows, deterministic counts, SciPy's p-values.
    let a = api
        .get("key-acme", &format!("/api/v1/impact?annotation={id_a}"))
        .await;
    assert_eq!(
        a["scope"],
        json!({"org": "acme", "issuer": null, "badge_class": null})
    );
    assert_eq!(a["annotation"]["title"], "New reminder email");
    assert_eq!(
        (a["days"].as_u64(), a["horizon"].as_u64()),
        (Some(28), Some(7))
    );
    assert_eq!(
        a["before"],
        json!({"from": "2025-05-04T00:00:00Z", "to": "2025-06-01T00:00:00Z"})
    );
    assert_eq!(
        a["after"],
        json!({"from": "2025-06-01T00:00:00Z", "to": "2025-06-29T00:00:00Z", "complete": true})
    );
    let m = |body: &Value, name: &str| -> Value {
        body["measures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["measure"] == name)
            .unwrap_or_else(|| panic!("no {name} in {body}"))
            .clone()
    };
    let names: Vec<&str> = a["measures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["measure"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "acceptance_rate",
            "share_rate",
            "external_impact_score",
            "awards_per_day",
            "views_per_day"
        ]
    );
    // Cohorts: 16/40 → 30/40 accepted within 7 days; 4/16 → 15/30 shared.
    let acc = m(&a, "acceptance_rate");
    close(&acc["before"], Some(0.4), "A acceptance before");
    close(&acc["after"], Some(0.75), "A acceptance after");
    close(&acc["change"], Some(0.875), "A acceptance change");
    // 2 * scipy.stats.norm.sf(abs(16/40 - 30/40) / sqrt(p * (1 - p) * (1/40 + 1/40))),
    // p = 46/80: 0.0015438143671225619.
    scipy(
        &acc["p_value"],
        0.001_543_814_367_122_561_9,
        1e-9,
        "A acceptance p",
    );
    assert_eq!(acc["significant"], true);
    let share = m(&a, "share_rate");
    close(&share["before"], Some(0.25), "A share before");
    close(&share["after"], Some(0.5), "A share after");
    // The same z-test of 4/16 against 15/30: 0.10097610808189281.
    scipy(
        &share["p_value"],
        0.100_976_108_081_892_81,
        1e-9,
        "A share p",
    );
    assert_eq!(share["significant"], false);
    // Views per share, 8/4 → 45/15. Poisson rates: n = 53,
    // min(1, 2 * min(binom.cdf(8, 53, 4/19), binom.sf(7, 53, 4/19))) = 0.3738067084405039.
    let eis = m(&a, "external_impact_score");
    close(&eis["before"], Some(2.0), "A eis before");
    close(&eis["after"], Some(3.0), "A eis after");
    scipy(&eis["p_value"], 0.373_806_708_440_503_9, 1e-9, "A eis p");
    // Awards per day: 40 in 28 days each: the doubled tail is capped at 1.
    let awards = m(&a, "awards_per_day");
    close(&awards["before"], Some(40.0 / 28.0), "A awards before");
    close(&awards["change"], Some(0.0), "A awards change");
    close(&awards["p_value"], Some(1.0), "A awards p");
    // Views per day 8/28 → 45/28: the same test with equal exposures,
    // min(1, 2 * min(binom.cdf(8, 53, 0.5), binom.sf(7, 53, 0.5))) = 2.3683513772354559e-07.
    let views = m(&a, "views_per_day");
    close(&views["after"], Some(45.0 / 28.0), "A views after");
    scipy(
        &views["p_value"],
        2.368_351_377_235_455_9e-7,
        1e-6,
        "A views p",
    );
    assert_eq!(
        a["insights"],
        json!([
            "Acceptance within 7 days rose from 40.0 % to 75.0 % after “New reminder email” (p = 0.002).",
            "Views per day rose from 0.3 to 1.6 after “New reminder email” (p < 0.001)."
        ])
    );
    // The same update seen with other windows: 7 days, a horizon of 1.
    let a7 = api
        .get(
            "key-acme",
            &format!("/api/v1/impact?annotation={id_a}&days=7&horizon=1"),
        )
        .await;
    let cohort = |from: i64, to: i64, horizon: i64| {
        let mut n = (0u64, 0u64, 0u64);
        for l in lives(&events, ACME) {
            let Some(aw) = l.aw.filter(|aw| (from..to).contains(aw)) else {
                continue;
            };
            n.0 += 1;
            if l.ac.is_some_and(|ac| ac - aw <= horizon * DAY) {
                n.1 += 1;
                if l.sh.is_some_and(|sh| sh - aw <= horizon * DAY) {
                    n.2 += 1;
                }
            }
        }
        n
    };
    let (b7, f7) = (
        cohort(at_a - 7 * DAY, at_a, 1),
        cohort(at_a, at_a + 7 * DAY, 1),
    );
    close(
        &m(&a7, "acceptance_rate")["before"],
        ratio(b7.1, b7.0),
        "A7 acceptance before",
    );
    close(
        &m(&a7, "acceptance_rate")["after"],
        ratio(f7.1, f7.0),
        "A7 acceptance after",
    );
    close(
        &m(&a7, "share_rate")["after"],
        ratio(f7.2, f7.1),
        "A7 share after",
    );
    let c7 = counts(&events, ACME, at_a - 7 * DAY, at_a);
    close(
        &m(&a7, "views_per_day")["before"],
        Some(c7.views as f64 / 7.0),
        "A7 views before",
    );

    // CSV: one row per measure, as JSON.
    let rows = api
        .csv(
            "key-acme",
            &format!("/api/v1/impact?annotation={id_a}&format=csv"),
        )
        .await;
    assert_eq!(rows.len(), 5);
    for (row, j) in rows.iter().zip(a["measures"].as_array().unwrap()) {
        assert_eq!(row["measure"], j["measure"].as_str().unwrap());
        for f in ["before", "after", "change", "p_value"] {
            csv_num(&row[f], &j[f], &format!("impact csv {f}"));
        }
        assert_eq!(row["significant"], j["significant"].to_string());
    }
    api.charts("key-acme", "impact", &format!("annotation={id_a}"))
        .await;

    // B: issuer i1's update ten days ago; the after window is cut at now,
    // the cohorts end a horizon before now; the org key's scope narrows
    // to issuer i1, whose counts leave issuer i2's out.
    let b = api
        .get("key-acme", &format!("/api/v1/impact?annotation={id_b}"))
        .await;
    assert_eq!(
        b["scope"],
        json!({"org": "acme", "issuer": "i1", "badge_class": null})
    );
    assert_eq!(b["after"]["complete"], false);
    let after_to = t(b["after"]["to"].as_str().unwrap());
    assert!(
        (now..now + 120).contains(&after_to),
        "after ends at now: {b}"
    );
    assert_eq!(b["after"]["from"], rfc(at_b));
    let acc = m(&b, "acceptance_rate");
    close(&acc["before"], Some(0.5), "B acceptance before");
    close(&acc["after"], Some(5.0 / 6.0), "B acceptance after");
    // 2 * norm.sf of the pooled z of 5/10 against 5/6: 0.18242243945173564.
    scipy(
        &acc["p_value"],
        0.182_422_439_451_735_64,
        1e-9,
        "B acceptance p",
    );
    let share = m(&b, "share_rate");
    close(&share["before"], Some(0.4), "B share before");
    close(&share["after"], Some(0.6), "B share after");
    // The same of 2/5 against 3/5: 0.5270892568655383.
    scipy(
        &share["p_value"],
        0.527_089_256_865_538_3,
        1e-9,
        "B share p",
    );
    let (cb, ca) = (
        counts(&events, I1, at_b - 28 * DAY, at_b),
        counts(&events, I1, at_b, after_to),
    );
    assert_eq!((cb.awarded, ca.awarded), (10, 8));
    let eis = m(&b, "external_impact_score");
    close(&eis["before"], ratio(cb.views, cb.shares), "B eis before");
    close(&eis["after"], ratio(ca.views, ca.shares), "B eis after");
    // 4 views on 2 shares against 6 on 3: equal rates, p = 1.
    close(&eis["p_value"], Some(1.0), "B eis p");
    let days_after = (after_to - at_b) as f64 / DAY as f64;
    let awards = m(&b, "awards_per_day");
    close(&awards["before"], Some(10.0 / 28.0), "B awards before");
    close(
        &awards["after"],
        Some(8.0 / days_after),
        "B awards after (a fractional window)",
    );
    let p = poisson_reference(cb.awarded, 28.0, ca.awarded, days_after).unwrap();
    scipy(&awards["p_value"], p, 1e-9, "B awards p");
    let views = m(&b, "views_per_day");
    close(
        &views["after"],
        Some(ca.views as f64 / days_after),
        "B views after",
    );
    let p = poisson_reference(cb.views, 28.0, ca.views, days_after).unwrap();
    scipy(&views["p_value"], p, 1e-9, "B views p");
    for measure in b["measures"].as_array().unwrap() {
        let p = measure["p_value"].as_f64().unwrap();
        assert_eq!(measure["significant"], p < 0.05, "{measure}");
    }
    let significant = b["measures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["significant"] == true)
        .count();
    assert_eq!(b["insights"].as_array().unwrap().len(), significant, "{b}");
    // Seen by issuer i1's key alike; issuer i2's and badge b1's keys cannot see it.
    let b_i1 = api
        .get("key-i1", &format!("/api/v1/impact?annotation={id_b}"))
        .await;
    assert_eq!(b_i1["measures"][0], b["measures"][0]);
    for key in ["key-i2", "key-b1", "key-p1"] {
        api.error(
            key,
            &format!("/api/v1/impact?annotation={id_b}"),
            404,
            "annotation:",
        )
        .await;
    }
    // C: in the future: every measure null.
    let c = api
        .get("key-acme", &format!("/api/v1/impact?annotation={id_c}"))
        .await;
    assert_eq!(c["after"]["complete"], false);
    for measure in c["measures"].as_array().unwrap() {
        for f in ["before", "after", "change", "p_value"] {
            assert!(measure[f].is_null(), "{measure}");
        }
        assert_eq!(measure["significant"], false);
    }
    assert_eq!(c["insights"], json!([]));
    // D: another org's: 404 for acme, visible to the admin and p1.
    api.error(
        "key-acme",
        &format!("/api/v1/impact?annotation={id_d}"),
        404,
        "annotation:",
    )
    .await;
    let d = api
        .get("key-p1", &format!("/api/v1/impact?annotation={id_d}"))
        .await;
    assert_eq!(d["scope"]["org"], "p1");
    let d = api
        .get("key-admin", &format!("/api/v1/impact?annotation={id_d}"))
        .await;
    assert_eq!(d["scope"]["org"], "p1");
    // Parameters.
    api.error("key-acme", "/api/v1/impact", 400, "annotation:")
        .await;
    api.error(
        "key-acme",
        "/api/v1/impact?annotation=a%20b",
        400,
        "annotation:",
    )
    .await;
    api.error(
        "key-acme",
        &format!("/api/v1/impact?annotation={id_a}&days=366"),
        400,
        "days:",
    )
    .await;
    api.error(
        "key-acme",
        &format!("/api/v1/impact?annotation={id_a}&horizon=0"),
        400,
        "horizon:",
    )
    .await;
    api.error(
        "key-acme",
        &format!("/api/v1/impact?annotation={id_a}&from=2025-01-01"),
        400,
        "from:",
    )
    .await;

    // ------------------------------------------------------------ timing
    let (tf, tt) = (t("2025-03-24T00:00:00Z"), t("2025-04-07T00:00:00Z"));
    let window = "from=2025-03-24&to=2025-04-07";
    let zones: [(&str, Offset); 3] = [
        ("Europe/Paris", paris),
        ("Asia/Kolkata", kolkata),
        ("UTC", utc),
    ];
    for (tz, offset) in zones {
        for (key, scope) in [("key-acme", ACME), ("key-i1", I1)] {
            let body = api
                .get(key, &format!("/api/v1/timing?{window}&tz={tz}"))
                .await;
            assert_eq!(body["tz"], tz);
            let truth = timing_truth(&events, scope, tf, tt, offset);
            check_timing(&body, &truth, &format!("timing {tz} {key}"));
        }
    }
    // Paris: Monday 09:xx holds the awards of both weeks (08:xx UTC in
    // CET, 07:xx in CEST); no award fell in the hour skipped on Sunday
    // 30 March (02:xx).
    let paris_body = api
        .get(
            "key-acme",
            &format!("/api/v1/timing?{window}&tz=Europe/Paris"),
        )
        .await;
    let cell = |body: &Value, d: u64, h: u64| {
        body["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["weekday"] == d && c["hour"] == h)
            .map(|c| c["awarded"].as_u64().unwrap())
    };
    assert_eq!(cell(&paris_body, 1, 9), Some(12));
    assert_eq!(cell(&paris_body, 7, 1), Some(2));
    assert_eq!(cell(&paris_body, 7, 2), None);
    assert_eq!(cell(&paris_body, 7, 3), Some(6));
    let utc_body = api
        .get("key-acme", &format!("/api/v1/timing?{window}"))
        .await;
    assert_eq!(utc_body["tz"], "UTC", "the default");
    assert_eq!(
        (cell(&utc_body, 1, 8), cell(&utc_body, 1, 7)),
        (Some(6), Some(6))
    );
    // Kolkata (+5:30) splits UTC hours: 08:05 and 08:45 UTC are 13:35 and 14:15.
    let ist = api
        .get(
            "key-acme",
            &format!("/api/v1/timing?{window}&tz=Asia/Kolkata"),
        )
        .await;
    assert!(
        cell(&ist, 2, 14).is_some() && cell(&ist, 2, 15).is_some(),
        "{}",
        ist["cells"]
    );
    // The best Paris cell: Tuesday 10:xx and Wednesday 14:xx both accept
    // 12 of 12; the tie goes to the lower weekday. Against the other 32
    // awards (18 accepted), Bonferroni over 4 qualifying cells:
    // min(1, 4 * 2 * norm.sf(|12/12 - 18/32| / sqrt(p (1 - p) (1/12 + 1/32)))),
    // p = 30/44: 0.0220883301864025.
    let best = &paris_body["best"];
    assert_eq!(
        (best["weekday"].as_u64(), best["hour"].as_u64()),
        (Some(2), Some(10)),
        "{best}"
    );
    scipy(
        &best["p_value"],
        0.022_088_330_186_402_5,
        1e-9,
        "timing best p",
    );
    assert_eq!(
        paris_body["insights"],
        json!(["Badges awarded on Tuesdays between 10:00 and 11:00 (Europe/Paris) were accepted at 100.0 %, against 56.2 % for the other awards of the period (p = 0.02, adjusted for 4 time slots)."])
    );
    // Issuer i1 alone: no Wednesday (issuer i2's), so Tuesday without a tie.
    let i1_body = api
        .get(
            "key-i1",
            &format!("/api/v1/timing?{window}&tz=Europe/Paris"),
        )
        .await;
    assert_eq!(cell(&i1_body, 3, 14), None);
    // CSV: weekdays, hours, cells.
    let rows = api
        .csv(
            "key-acme",
            &format!("/api/v1/timing?{window}&tz=Europe/Paris&format=csv"),
        )
        .await;
    assert_eq!(
        rows.len(),
        7 + 24 + paris_body["cells"].as_array().unwrap().len()
    );
    for (row, j) in rows[31..]
        .iter()
        .zip(paris_body["cells"].as_array().unwrap())
    {
        assert_eq!(row["group"], "cell");
        assert_eq!(row["weekday"], j["weekday"].to_string());
        assert_eq!(row["hour"], j["hour"].to_string());
        assert_eq!(row["awarded"], j["awarded"].to_string());
        csv_num(&row["acceptance_rate"], &j["acceptance_rate"], "timing csv");
    }
    api.charts("key-acme", "timing", &format!("{window}&tz=Europe/Paris"))
        .await;
    api.error("key-acme", "/api/v1/timing?tz=Mars/Olympus", 400, "tz:")
        .await;
    // An empty window: every row there, all null.
    let empty = api
        .get("key-acme", "/api/v1/timing?from=2001-01-01&to=2001-02-01")
        .await;
    assert!(empty["best"].is_null() && empty["cells"] == json!([]));
    assert!(empty["accepted_within"]["7d"].is_null());
    assert_eq!(empty["by_weekday"].as_array().unwrap().len(), 7);

    // ----------------------------------------------------------- cohorts
    // January alone: one assertion refiled into it, one out of it.
    for (from, to) in [("2025-01-01", "2025-05-01"), ("2025-01-01", "2025-02-01")] {
        for granularity in ["week", "month"] {
            for stage in ["accepted", "shared", "viewed"] {
                for (key, scope) in [("key-acme", ACME), ("key-i1", I1)] {
                    let range = (from, to, granularity, stage);
                    check_cohorts(&api, &events, key, scope, range).await;
                }
            }
        }
    }
    // The week of Monday 31 March runs into April; February's awards
    // reach `accepted` in their first month (one accepted the day before
    // its award); January's 29th was accepted in February.
    let weeks = api
        .get(
            "key-acme",
            "/api/v1/cohorts?from=2025-01-01&to=2025-05-01&granularity=week",
        )
        .await;
    let w31 = weeks["cohorts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cohort"] == "2025-03-31T00:00:00Z")
        .expect("the week of 31 March");
    assert_eq!(w31["size"], 18, "{w31}");
    let months = api
        .get("key-acme", "/api/v1/cohorts?from=2025-01-01&to=2025-05-01")
        .await;
    assert_eq!(months["granularity"], "month", "the default");
    assert_eq!(months["stage"], "accepted", "the default");
    // January: the 29th's and 30th's awards and the one refiled from
    // February (accepted there), not the one refiled to December.
    let jan = &months["cohorts"][0];
    assert_eq!(jan["cohort"], "2025-01-01T00:00:00Z");
    assert_eq!(jan["size"], 3, "{jan}");
    assert_eq!(
        (jan["values"][0].as_f64(), jan["values"][1].as_f64()),
        (Some(1.0 / 3.0), Some(1.0))
    );
    // The default window is the last 365 days.
    let default = api.get("key-acme", "/api/v1/cohorts").await;
    let (from, to) = (
        t(default["period"]["from"].as_str().unwrap()),
        t(default["period"]["to"].as_str().unwrap()),
    );
    assert_eq!(to - from, 365 * DAY);
    let truth = cohorts_truth(
        &events,
        ACME,
        (from, to),
        "month",
        "accepted",
        Utc::now().timestamp(),
    );
    assert_eq!(
        default["cohorts"].as_array().unwrap().len(),
        truth.len(),
        "{default}"
    );
    // CSV: one row per cohort, a column per age.
    let rows = api
        .csv(
            "key-acme",
            "/api/v1/cohorts?from=2025-01-01&to=2025-05-01&format=csv",
        )
        .await;
    assert_eq!(rows.len(), months["cohorts"].as_array().unwrap().len());
    for (row, j) in rows.iter().zip(months["cohorts"].as_array().unwrap()) {
        assert_eq!(row["cohort"], j["cohort"].as_str().unwrap());
        assert_eq!(row["size"], j["size"].to_string());
        for (k, v) in j["values"].as_array().unwrap().iter().enumerate() {
            csv_num(&row[&format!("age_{k}")], v, "cohorts csv");
        }
    }
    api.charts(
        "key-acme",
        "cohorts",
        "from=2025-01-01&to=2025-05-01&granularity=week",
    )
    .await;
    api.error(
        "key-acme",
        "/api/v1/cohorts?granularity=day",
        400,
        "granularity:",
    )
    .await;
    api.error("key-acme", "/api/v1/cohorts?stage=viewed2", 400, "stage:")
        .await;
    api.error(
        "key-acme",
        "/api/v1/cohorts?from=2010-01-01&granularity=week",
        400,
        "from:",
    )
    .await;

    // ---------------------------------------- the same from sealed days
    // Every award day sealed as the aggregator's seal job seals it (its
    // interval is an hour here, so every answer above counted the
    // cohorts from their rows). The org-wide timing, cohorts and impact
    // now add up the sealed days and count only the pieces of a day at a
    // window's ends from rows; asked afresh, they must not change.
    let sealed = stack.ch.seal_every_award_day(DB).await;
    assert!(sealed > 50, "{sealed} award days sealed");
    let fresh = Api {
        http: http.clone(),
        stack: &stack,
        openapi: OpenApi::exporter(),
        fresh: true,
    };
    let (pf, pt) = (t("2025-03-24T10:30:00Z"), t("2025-04-06T15:45:00Z"));
    let pieces = "from=2025-03-24T10:30:00Z&to=2025-04-06T15:45:00Z";
    for (tz, offset) in zones {
        for (key, scope) in [("key-acme", ACME), ("key-admin", ALL)] {
            for (query, (from, to)) in [(window, (tf, tt)), (pieces, (pf, pt))] {
                let body = fresh
                    .get(key, &format!("/api/v1/timing?{query}&tz={tz}"))
                    .await;
                let truth = timing_truth(&events, scope, from, to, offset);
                check_timing(&body, &truth, &format!("sealed timing {tz} {key} {query}"));
            }
        }
    }
    for (from, to) in [
        ("2025-01-01", "2025-05-01"),
        ("2025-01-01T13:00:00Z", "2025-04-30T09:00:00Z"),
    ] {
        for granularity in ["week", "month"] {
            for stage in ["accepted", "shared", "viewed"] {
                for (key, scope) in [("key-acme", ACME), ("key-admin", ALL)] {
                    let range = (from, to, granularity, stage);
                    check_cohorts(&fresh, &events, key, scope, range).await;
                }
            }
        }
    }
    for (query, want) in [
        (format!("annotation={id_a}"), &a),
        (format!("annotation={id_a}&days=7&horizon=1"), &a7),
    ] {
        let got = fresh
            .get("key-acme", &format!("/api/v1/impact?{query}"))
            .await;
        assert_eq!(&got, want, "sealed impact {query}");
    }
    // An update at 06:00: the windows start and end mid-day, and the
    // annotation's day holds awards of both cohorts.
    let at_e = t("2025-05-20T06:00:00Z");
    let id_e = fresh
        .annotate(
            "key-acme",
            json!({"at": rfc(at_e), "title": "Early reminder"}),
        )
        .await;
    let e = fresh
        .get(
            "key-acme",
            &format!("/api/v1/impact?annotation={id_e}&days=7&horizon=10"),
        )
        .await;
    let (be, fe) = (
        cohort(at_e - 7 * DAY, at_e, 10),
        cohort(at_e, at_e + 7 * DAY, 10),
    );
    assert!(be.0 >= 10 && fe.0 >= 5 && be.1 > 0, "{be:?} {fe:?}");
    for (measure, side, want) in [
        ("acceptance_rate", "before", ratio(be.1, be.0)),
        ("acceptance_rate", "after", ratio(fe.1, fe.0)),
        ("share_rate", "before", ratio(be.2, be.1)),
    ] {
        close(&m(&e, measure)[side], want, &format!("E {measure} {side}"));
    }

    // --------------------------------------------------------- benchmark
    let (bf, bt) = (t("2025-08-01T00:00:00Z"), t("2025-09-01T00:00:00Z"));
    let bwindow = "from=2025-08-01&to=2025-09-01";
    let orgs = peer_counts_in(&events, bf, bt);
    let issuers = issuer_counts_in(&events, bf, bt);
    let body = api
        .get("key-acme", &format!("/api/v1/benchmark?{bwindow}"))
        .await;
    assert_eq!(body["level"], "org");
    check_benchmark(&body, &orgs, ("acme", ""), "benchmark acme");
    // Seven orgs qualify; four have shares: the impact score is not ranked.
    assert_eq!(body["measures"][0]["peers"], 7);
    assert!(body["measures"][0]["percentile"].is_number());
    assert_eq!(body["measures"][3]["peers"], 4);
    assert!(
        body["measures"][3]["reason"]
            .as_str()
            .unwrap()
            .contains("4 peers qualify"),
        "{body}"
    );
    let text = body.to_string();
    for secret in ["p1", "p2", "p6", "tiny", "x1"] {
        assert!(
            !text.contains(&format!("\"{secret}\"")),
            "{secret} in {text}"
        );
    }
    // Issuer i1's key: among the issuers of every org.
    let body = api
        .get("key-i1", &format!("/api/v1/benchmark?{bwindow}"))
        .await;
    assert_eq!(body["level"], "issuer");
    check_benchmark(&body, &issuers, ("acme", "i1"), "benchmark i1");
    assert_eq!(body["measures"][0]["peers"], 8);
    let body = api
        .get("key-i2", &format!("/api/v1/benchmark?{bwindow}"))
        .await;
    check_benchmark(&body, &issuers, ("acme", "i2"), "benchmark i2");
    // Another org, by the admin; an org without events.
    let body = api
        .get("key-admin", &format!("/api/v1/benchmark?{bwindow}&org=p4"))
        .await;
    check_benchmark(&body, &orgs, ("p4", ""), "benchmark p4");
    let body = api
        .get(
            "key-admin",
            &format!("/api/v1/benchmark?{bwindow}&org=nobody"),
        )
        .await;
    check_benchmark(&body, &orgs, ("nobody", ""), "benchmark nobody");
    assert!(body["measures"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("fewer than min_awarded"));
    let rows = api
        .csv(
            "key-acme",
            &format!("/api/v1/benchmark?{bwindow}&format=csv"),
        )
        .await;
    let json_body = api
        .get("key-acme", &format!("/api/v1/benchmark?{bwindow}"))
        .await;
    for (row, j) in rows.iter().zip(json_body["measures"].as_array().unwrap()) {
        assert_eq!(row["measure"], j["measure"].as_str().unwrap());
        for f in ["value", "percentile", "p25", "median", "p75"] {
            csv_num(&row[f], &j[f], "benchmark csv");
        }
        assert_eq!(row["peers"], j["peers"].to_string());
    }
    api.charts("key-acme", "benchmark", bwindow).await;
    // A badge class has no peers; the admin must name an org.
    api.error("key-b1", "/api/v1/benchmark", 400, "badge_class:")
        .await;
    api.error(
        "key-acme",
        "/api/v1/benchmark?badge_class=b1",
        400,
        "badge_class:",
    )
    .await;
    api.error(
        "key-b1",
        "/api/v1/charts/benchmark.svg",
        400,
        "badge_class:",
    )
    .await;
    api.error("key-admin", "/api/v1/benchmark", 400, "org:")
        .await;

    // The all-time percentile of each org on /metrics, among every org
    // with MIN_AWARDED awards of all time.
    let all_time = peer_counts_in(&events, i64::MIN, i64::MAX);
    let url = format!("{}/metrics", stack.ports.exporter_admin_url());
    let text = eventually(Duration::from_secs(30), "benchmark gauges", || {
        let url = url.clone();
        async move {
            let text = scrape(&url).await;
            text.contains("badgepulse_benchmark_percentile{")
                .then_some(text)
        }
    })
    .await;
    for org in ["acme", "p4", "p6"] {
        let c = all_time[&(org.to_owned(), String::new())];
        for name in BENCHMARK_MEASURES {
            let series =
                format!("badgepulse_benchmark_percentile{{measure=\"{name}\",org_id=\"{org}\"}} ");
            let got = text
                .lines()
                .find_map(|l| l.strip_prefix(series.as_str()))
                .map_or(Value::Null, |v| json!(v.parse::<f64>().unwrap()));
            let mut values: Vec<f64> = all_time
                .values()
                .filter(|c| c.awarded >= MIN_AWARDED)
                .filter_map(|c| rate_of(c, name))
                .collect();
            values.sort_by(f64::total_cmp);
            let want = rate_of(&c, name)
                .filter(|_| values.len() >= MIN_PEERS)
                .map(|v| {
                    let below = values.iter().filter(|x| **x < v).count() as f64;
                    let equal = values.iter().filter(|x| **x == v).count() as f64;
                    100.0 * (below + 0.5 * equal) / values.len() as f64
                });
            close(&got, want, &format!("/metrics {org} {name}"));
        }
    }
    assert!(
        !text.contains("measure=\"external_impact_score\""),
        "four orgs have shares: too few peers"
    );

    // ------------------------------------------------------------ report
    let (status, _, html) = api
        .call(
            "key-acme",
            "/report?from=2025-05-01&to=2025-07-01&tz=Europe/Paris",
        )
        .await;
    assert_eq!(status, 200);
    let html = String::from_utf8(html).unwrap();
    for id in ["impact", "timing", "cohorts", "benchmark"] {
        assert!(html.contains(&format!(r#"<section id="{id}""#)), "{id}");
    }
    assert!(
        html.contains("<h3>New reminder email (2025-06-01T00:00:00Z)</h3>"),
        "{html}"
    );
    assert!(html.contains(a["insights"][0].as_str().unwrap()), "{html}");
    assert!(html.contains("(Europe/Paris)"));
    let (_, _, html) = api
        .call("key-b1", "/report?from=2025-05-01&to=2025-07-01")
        .await;
    let html = String::from_utf8(html).unwrap();
    assert!(
        html.contains("Not available for this scope: badge_class:"),
        "{html}"
    );
}
