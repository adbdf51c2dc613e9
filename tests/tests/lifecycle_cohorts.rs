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

use std::collections::BTreeMap;
use std::time::Duration;

use badgepulse_tests::{ClickHouse, Nats, Service, StackConfig, StackPorts};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohorts_are_exact_when_awards_arrive_out_of_order() {
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let ports = StackPorts::free();
    let config = StackConfig::new(&nats.url(), &ch.url(), DB, ports)
        .token(TOKEN, &["*"])
        .aggregator("flush_interval_ms = 100")
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
