//! Lifecycle cohorts (SPEC §7.6) when events arrive out of order, through
//! the whole pipeline: `assertion_lifecycle` is sorted by the first award
//! day known when a row was written, so a cohort reads only its own days;
//! these are the cases where that day is not the true first award day.
//!
//! Events are sent in three rounds, each stored before the next (so each
//! is a batch of its own): an accept before its award, an earlier award
//! after a later one and its accept, a third even earlier award, an
//! assertion never awarded, and ordinary ones. Every lifecycle answer is
//! compared with the ground truth computed here from all events: the
//! assertions first awarded in the window and their first times.
//!
//! After each round, the all-time lifecycle of `/metrics` is compared
//! with the ground truth (exact whatever the aggregator has sealed), and
//! once the aggregator has sealed every changed award day, each day's
//! sealed stage counts in `lifecycle_days` are compared with that day's
//! cohort: rounds 2 and 3 change days sealed after round 1 (an accept of
//! an older award, awards that move an assertion to an earlier day and
//! leave the later one empty).

use std::collections::BTreeMap;
use std::time::Duration;

use badgepulse_tests::{
    eventually, metric_value, scrape, ClickHouse, Nats, Service, StackConfig, StackPorts,
};
use serde_json::{json, Value};

const DB: &str = "e2e_lifecycle";
const TOKEN: &str = "lifecycle-token";
const KEY: &str = "lifecycle-key";
const DAY: i64 = 86_400;

/// (assertion, type, days before now, hour of day)
type Ev = (&'static str, &'static str, i64, i64);

const ROUNDS: [&[Ev]; 3] = [
    &[
        ("a1", "badge.awarded", 20, 9),
        ("a1", "badge.accepted", 19, 10),
        ("a1", "badge.shared", 18, 11),
        ("a1", "badge.viewed", 17, 12),
        // Accepted before its award arrives (round 2).
        ("a2", "badge.accepted", 10, 8),
        // A later award and its accept; the earlier award comes in round 2.
        ("a3", "badge.awarded", 5, 9),
        ("a3", "badge.accepted", 4, 9),
        ("a3", "badge.shared", 4, 10),
        ("a4", "badge.awarded", 2, 9),
        ("a4", "badge.accepted", 1, 9),
    ],
    &[
        ("a2", "badge.awarded", 11, 7),
        ("a2", "badge.shared", 9, 7),
        ("a3", "badge.awarded", 25, 9),
        ("a3", "badge.viewed", 3, 9),
        ("a5", "badge.awarded", 15, 9),
        ("a5", "badge.shared", 14, 9),
    ],
    &[
        // Earlier still than round 2's.
        ("a3", "badge.awarded", 40, 9),
        // Never awarded.
        ("a6", "badge.accepted", 6, 9),
        ("a1", "badge.viewed", 2, 9),
        ("a5", "badge.accepted", 13, 9),
    ],
];

#[derive(Default, Debug)]
struct Life {
    aw: Option<i64>,
    ac: Option<i64>,
    sh: Option<i64>,
    vw: Option<i64>,
}

fn at(now: i64, days: i64, hour: i64) -> i64 {
    (now / DAY - days) * DAY + hour * 3_600
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn median_hours(mut v: Vec<i64>) -> Option<f64> {
    v.sort();
    let n = v.len();
    (n > 0).then(|| {
        let secs = if n % 2 == 1 {
            v[n / 2] as f64
        } else {
            (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
        };
        secs / 3_600.0
    })
}

fn close(got: &Value, want: Option<f64>, ctx: &str) {
    match want {
        None => assert!(got.is_null(), "{ctx}: {got} for none"),
        Some(w) => assert!(
            (got.as_f64().unwrap() - w).abs() < 1e-9,
            "{ctx}: {got} for {w}"
        ),
    }
}

/// Stage counts (awarded, accepted, shared, viewed; SPEC §7.6 nesting)
/// of `lives`.
fn stages<'a>(lives: impl Iterator<Item = &'a Life>) -> [u64; 4] {
    let mut n = [0u64; 4];
    for l in lives.filter(|l| l.aw.is_some()) {
        let reached = [
            true,
            l.ac.is_some(),
            l.ac.is_some() && l.sh.is_some(),
            l.ac.is_some() && l.sh.is_some() && l.vw.is_some(),
        ];
        for (count, r) in n.iter_mut().zip(reached) {
            *count += u64::from(r);
        }
    }
    n
}

/// The all-time lifecycle of `/metrics` (at `admin`), from a refresh at
/// or after `since` (epoch seconds), reaches the ground truth of every
/// event sent so far.
async fn check_metrics(admin: &str, lives: &BTreeMap<&str, Life>, round: usize, since: f64) {
    let want = stages(lives.values()).map(|n| n as f64);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(&format!("{admin}/metrics")).await;
        let got = ["awarded", "accepted", "shared", "viewed"].map(|stage| {
            metric_value(
                &text,
                "badgepulse_lifecycle_assertions",
                &[("org_id", "acme"), ("stage", stage)],
            )
        });
        let refreshed = metric_value(
            &text,
            "badgepulse_exporter_last_refresh_timestamp_seconds",
            &[],
        );
        if got == want && refreshed >= since {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/metrics lifecycle after round {round}: {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Once every award day changed so far is sealed, each day's sealed
/// stage counts are its cohort's (zeros for a day no assertion is first
/// awarded on any more).
async fn check_sealed_days(ch: &ClickHouse, lives: &BTreeMap<&str, Life>, round: usize) {
    let unsealed = format!(
        "SELECT count() FROM (SELECT day, maxMerge(max_seq) AS hi FROM {DB}.lifecycle_touches GROUP BY day) \
         ANY LEFT JOIN (SELECT day, max(sealed_seq) AS sealed FROM {DB}.lifecycle_days GROUP BY day) \
         USING day WHERE sealed < hi"
    );
    eventually(
        Duration::from_secs(30),
        &format!("every award day sealed after round {round}"),
        || async { (ch.query(&unsealed).await.ok()?.trim() == "0").then_some(()) },
    )
    .await;
    let sealed = ch
        .query(&format!(
            "SELECT toUInt32(day), argMax(awarded, sealed_seq), argMax(accepted, sealed_seq), \
             argMax(shared, sealed_seq), argMax(viewed, sealed_seq) FROM {DB}.lifecycle_days \
             WHERE org_id = 'acme' GROUP BY day ORDER BY day"
        ))
        .await
        .unwrap();
    let mut days: BTreeMap<i64, [u64; 4]> = BTreeMap::new();
    for line in sealed.lines() {
        let v: Vec<u64> = line.split('\t').map(|x| x.parse().unwrap()).collect();
        days.insert(v[0] as i64, [v[1], v[2], v[3], v[4]]);
    }
    let mut cohorts: BTreeMap<i64, Vec<&Life>> = BTreeMap::new();
    for l in lives.values() {
        if let Some(aw) = l.aw {
            cohorts.entry(aw.div_euclid(DAY)).or_default().push(l);
        }
    }
    for (day, cohort) in &cohorts {
        assert_eq!(
            days.get(day),
            Some(&stages(cohort.iter().copied())),
            "round {round}, award day {day}: sealed {days:?}"
        );
    }
    for (day, counts) in &days {
        if !cohorts.contains_key(day) {
            assert_eq!(counts, &[0; 4], "round {round}, day {day} has no cohort");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohorts_are_exact_when_awards_arrive_out_of_order() {
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let ports = StackPorts::free();
    let config = StackConfig::new(&nats.url(), &ch.url(), DB, ports)
        .token(TOKEN, &["*"])
        .aggregator("flush_interval_ms = 100")
        .exporter("refresh_interval_secs = 1")
        .api_key(KEY, "org:acme");
    let _services: Vec<Service> =
        badgepulse_tests::start_services(&config.toml(), &ports.all()).await;
    let http = reqwest::Client::new();
    let now = chrono::Utc::now().timestamp();

    let mut lives: BTreeMap<&str, Life> = BTreeMap::new();
    let mut sent = 0u64;
    for (round, events) in ROUNDS.iter().enumerate() {
        let body: Vec<Value> = events
            .iter()
            .enumerate()
            .map(|(n, (assertion, kind, days, hour))| {
                let mut e = json!({
                    "event_id": format!("r{round}-{n}"), "type": kind,
                    "occurred_at": rfc3339(at(now, *days, *hour)),
                    "org_id": "acme", "issuer_id": "i1", "badge_class_id": "b1",
                    "assertion_id": assertion,
                });
                match *kind {
                    "badge.awarded" => e["award_method"] = json!("api"),
                    "badge.shared" => e["channel"] = json!("linkedin"),
                    "badge.viewed" => e["source"] = json!("platform"),
                    _ => {}
                }
                e
            })
            .collect();
        let r = http
            .post(format!("http://127.0.0.1:{}/v1/events", ports.ingest))
            .bearer_auth(TOKEN)
            .json(&json!({ "events": body }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        sent += events.len() as u64;
        ch.wait_for_events(DB, sent, Duration::from_secs(60)).await;
        for (assertion, kind, days, hour) in events.iter() {
            let l = lives.entry(assertion).or_default();
            let slot = match *kind {
                "badge.awarded" => &mut l.aw,
                "badge.accepted" => &mut l.ac,
                "badge.shared" => &mut l.sh,
                _ => &mut l.vw,
            };
            let t = at(now, *days, *hour);
            *slot = Some(slot.map_or(t, |s| s.min(t)));
        }
        check_metrics(&ports.exporter_admin_url(), &lives, round, 0.0).await;
        check_sealed_days(&ch, &lives, round).await;
        // Again from a refresh after every day was sealed: the sealed rows
        // alone.
        let sealed_at = chrono::Utc::now().timestamp() as f64 + 1.0;
        check_metrics(&ports.exporter_admin_url(), &lives, round, sealed_at).await;
    }

    // Where the rows were filed: a2's accept before any award (day 0), a3
    // under each award day it was known by, and two awards that came
    // after a later one.
    let day = |days: i64| {
        chrono::DateTime::from_timestamp(at(now, days, 0), 0)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string()
    };
    let filed = ch
        .query(&format!(
            "SELECT assertion_id, groupArray(if(awarded_on = toDate('1970-01-01'), 'none', toString(awarded_on))) FROM \
             (SELECT DISTINCT assertion_id, awarded_on FROM {DB}.assertion_lifecycle ORDER BY awarded_on) \
             GROUP BY assertion_id ORDER BY assertion_id"
        ))
        .await
        .unwrap();
    let want_filed = format!(
        "a1\t['{}']\na2\t['none','{}']\na3\t['{}','{}','{}']\na4\t['{}']\na5\t['{}']\na6\t['none']\n",
        day(20),
        day(11),
        day(40),
        day(25),
        day(5),
        day(2),
        day(15)
    );
    assert_eq!(filed, want_filed);
    assert_eq!(
        ch.query(&format!(
            "SELECT assertion_id, toString(awarded_on), toString(refiled_from) FROM {DB}.lifecycle_refiled ORDER BY awarded_on"
        ))
        .await
        .unwrap(),
        format!("a3\t{}\t{}\na3\t{}\t{}\n", day(40), day(25), day(25), day(5))
    );

    // Every window that starts or ends between the awards above.
    let mut checked_nonempty = 0;
    for (from_days, to_days) in [
        (60, 0),
        (30, 0),
        (30, 20),
        (26, 24),
        (6, 3),
        (12, 9),
        (50, 30),
        (45, 35),
        (21, 0),
        (16, 10),
        (3, 0),
    ] {
        let (from, to) = (at(now, from_days, 0), at(now, to_days, 0).min(now));
        let cohort: Vec<&Life> = lives
            .values()
            .filter(|l| l.aw.is_some_and(|t| t >= from && t < to))
            .collect();
        let counts = [
            cohort.len(),
            cohort.iter().filter(|l| l.ac.is_some()).count(),
            cohort
                .iter()
                .filter(|l| l.ac.is_some() && l.sh.is_some())
                .count(),
            cohort
                .iter()
                .filter(|l| l.ac.is_some() && l.sh.is_some() && l.vw.is_some())
                .count(),
        ];
        checked_nonempty += usize::from(counts[0] > 0);
        let r = http
            .get(format!(
                "http://127.0.0.1:{}/api/v1/lifecycle?from={}&to={}",
                ports.exporter,
                rfc3339(from),
                rfc3339(to)
            ))
            .bearer_auth(KEY)
            .header("Cache-Control", "no-cache")
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        let ctx = format!("window [-{from_days} d, -{to_days} d)");
        let got: Vec<u64> = body["stages"]
            .as_array()
            .unwrap_or_else(|| panic!("{ctx}: {body}"))
            .iter()
            .map(|s| s["count"].as_u64().unwrap())
            .collect();
        assert_eq!(got, counts.map(|c| c as u64), "{ctx}: {body}\n{lives:?}");
        let mh = &body["median_hours"];
        close(
            &mh["award_to_accept"],
            median_hours(cohort.iter().filter_map(|l| Some(l.ac? - l.aw?)).collect()),
            &ctx,
        );
        close(
            &mh["accept_to_share"],
            median_hours(cohort.iter().filter_map(|l| Some(l.sh? - l.ac?)).collect()),
            &ctx,
        );
        close(
            &mh["share_to_view"],
            median_hours(
                cohort
                    .iter()
                    .filter(|l| l.ac.is_some())
                    .filter_map(|l| Some(l.vw? - l.sh?))
                    .collect(),
            ),
            &ctx,
        );
    }
    assert!(checked_nonempty >= 8);
}
