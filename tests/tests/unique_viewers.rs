//! Unique viewers (SPEC §7) through both of their paths: counted from
//! `events` while a day is not sealed, and read as the aggregator's
//! sealed numbers (`viewer_days`, `viewer_hours`) once it is; and a view
//! that arrives after its day was sealed, counted at once and sealed again.
//!
//! Viewer keys are salted per UTC day, which only ingest's beacons can
//! produce at the time of receipt; a history of ten days of beacon views is
//! therefore inserted into `events_input` (the aggregator's insert target,
//! whose materialised views fill every table), and the seal job's store
//! calls run from the test. Every answer of the exporter is compared with
//! the ground truth counted here from the generated rows: for each UTC
//! day, the distinct keys among the scope's views in the window.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use badgepulse_aggregator::store::Store;
use badgepulse_runtime::settings::ClickHouseConfig;
use badgepulse_tests::{free_port, sha256_hex, wait_http, ClickHouse, Service};
use serde_json::Value;

const DB: &str = "e2e_unique_viewers";
const KEY: &str = "viewers-admin-key";
const DAY: i64 = 86_400;

/// (badge class, its issuer).
const CLASSES: [(&str, &str); 3] = [("b1", "i1"), ("b2", "i1"), ("b3", "i2")];

/// Which views a scope sees.
type Keep = Box<dyn Fn(&View) -> bool>;

#[derive(Debug, Clone)]
struct View {
    at: i64,
    class: usize,
    /// 0: a platform view without a viewer key.
    key: u64,
    seq: u64,
}

/// A day-salted key: never equal across days, as ingest's.
fn key(day: i64, viewer: u64) -> u64 {
    (day as u64 / DAY as u64) * 1_000_003 + viewer + 1
}

/// Ten closed days of views and today's, deterministic.
fn history(now: i64) -> Vec<View> {
    let today = now / DAY * DAY;
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut views = Vec::new();
    for d in (0..=10).rev() {
        let day = today - d * DAY;
        let span = if d == 0 {
            (now - 120 - day).max(1)
        } else {
            DAY
        };
        for _ in 0..60 {
            let at = day + next(span as u64) as i64;
            let class = next(3) as usize;
            // A few viewers per day, each seeing several badges.
            let key = if next(10) == 0 { 0 } else { key(day, next(7)) };
            views.push(View {
                at,
                class,
                key,
                seq: 0,
            });
        }
    }
    views.sort_by_key(|v| v.at);
    for (n, v) in views.iter_mut().enumerate() {
        v.seq = n as u64 + 1;
    }
    views
}

async fn insert(ch: &ClickHouse, views: &[View]) {
    let values: Vec<String> = views
        .iter()
        .map(|v| {
            let (class, issuer) = CLASSES[v.class];
            format!(
                "('v{}', 'badge.viewed', toDateTime({}, 'UTC'), toDateTime({}, 'UTC'), 'acme', '{issuer}', '{class}', \
                 'a-{class}', '', '', 'direct', 'NL', {}, 0, {})",
                v.seq, v.at, v.at, v.key, v.seq
            )
        })
        .collect();
    ch.query(&format!(
        "INSERT INTO {DB}.events_input (event_id, type, occurred_at, received_at, org_id, \
         issuer_id, badge_class_id, assertion_id, award_method, share_channel, view_source, \
         country, viewer_key, partition, seq) VALUES {}",
        values.join(", ")
    ))
    .await
    .unwrap();
}

/// The ground truth: distinct keys per UTC day among the views in
/// `[from, to)` that `keep` selects, summed.
fn truth(views: &[View], from: i64, to: i64, keep: impl Fn(&View) -> bool) -> u64 {
    let mut per_day: BTreeMap<i64, BTreeSet<u64>> = BTreeMap::new();
    for v in views {
        if v.key != 0 && v.at >= from && v.at < to && keep(v) {
            per_day.entry(v.at / DAY).or_default().insert(v.key);
        }
    }
    per_day.values().map(|keys| keys.len() as u64).sum()
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Every answer that carries unique viewers, against the truth.
async fn check_answers(api: &Api, views: &[View], now: i64, stage: &str) {
    let today = now / DAY * DAY;
    // A window from mid-morning ten days ago to a fixed end today.
    let (from, to) = (today - 10 * DAY + 5 * 3600 + 17, now - 60);
    let window = format!("from={}&to={}", rfc3339(from), rfc3339(to));
    let scopes: [(&str, Keep); 4] = [
        ("org=acme", Box::new(|_| true)),
        (
            "org=acme&issuer=i1",
            Box::new(|v| CLASSES[v.class].1 == "i1"),
        ),
        (
            "org=acme&issuer=i2",
            Box::new(|v| CLASSES[v.class].1 == "i2"),
        ),
        ("org=acme&badge_class=b2", Box::new(|v| v.class == 1)),
    ];
    for (scope, keep) in &scopes {
        let body = api.get(&format!("/api/v1/overview?{scope}&{window}")).await;
        assert_eq!(
            body["period_values"]["unique_viewers"],
            truth(views, from, to, keep),
            "{stage}: window {scope}"
        );
        assert_eq!(
            body["kpis"]["unique_viewers"],
            truth(views, 0, i64::MAX, keep),
            "{stage}: all time {scope}"
        );
        // The previous window is cut mid-day at both ends.
        let prev = body["trends"]["unique_viewers"]["previous"].clone();
        assert_eq!(
            prev,
            truth(views, from - (to - from), from, keep),
            "{stage}: previous window {scope}"
        );
    }
    // Per day and per ISO week, org and issuer.
    for (granularity, step) in [("day", DAY), ("week", 7 * DAY)] {
        for (scope, keep) in &scopes[..2] {
            let body = api
                .get(&format!(
                    "/api/v1/trends?{scope}&{window}&granularity={granularity}&metrics=unique_viewers"
                ))
                .await;
            for point in body["series"]["unique_viewers"].as_array().unwrap() {
                let t = chrono::DateTime::parse_from_rfc3339(point["t"].as_str().unwrap())
                    .unwrap()
                    .timestamp();
                let (lo, hi) = (t.max(from), (t + step).min(to));
                assert_eq!(
                    point["value"],
                    truth(views, lo, hi, keep),
                    "{stage}: {granularity} {scope} at {}",
                    point["t"]
                );
            }
        }
    }
    // Per hour over two closed days, cut mid-hour, org and badge class.
    let (hfrom, hto) = (
        today - 3 * DAY + 3 * 3600 + 600,
        today - DAY + 5 * 3600 + 30,
    );
    for (scope, keep) in [&scopes[0], &scopes[3]] {
        let body = api
            .get(&format!(
                "/api/v1/trends?{scope}&from={}&to={}&granularity=hour&metrics=unique_viewers",
                rfc3339(hfrom),
                rfc3339(hto)
            ))
            .await;
        let series = body["series"]["unique_viewers"].as_array().unwrap();
        assert!(series.len() >= 48, "{stage}: {body}");
        for point in series {
            let t = chrono::DateTime::parse_from_rfc3339(point["t"].as_str().unwrap())
                .unwrap()
                .timestamp();
            assert_eq!(
                point["value"],
                truth(views, t.max(hfrom), (t + 3600).min(hto), keep),
                "{stage}: hour {scope} at {}",
                point["t"]
            );
        }
    }
    // Per badge class.
    let body = api
        .get(&format!("/api/v1/top-badges?org=acme&{window}&limit=10"))
        .await;
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{stage}: {body}");
    for row in rows {
        let class = CLASSES
            .iter()
            .position(|(c, _)| *c == row["badge_class_id"])
            .unwrap();
        assert_eq!(
            row["unique_viewers"],
            truth(views, from, to, |v| v.class == class),
            "{stage}: badge class {}",
            row["badge_class_id"]
        );
    }
}

/// Seals every closed day the store lists; returns how many it sealed.
async fn seal_all(store: &Store, now: i64) -> usize {
    let today = (now / DAY * DAY) as u32;
    let days = store.days_to_seal(0, today, 1_000).await.unwrap();
    for day in &days {
        store.seal(day).await.unwrap();
    }
    days.len()
}

#[tokio::test]
async fn unique_viewers_are_exact_sealed_or_not() {
    let ch = ClickHouse::start().await;
    let store = Store::new(&ClickHouseConfig {
        url: ch.url(),
        database: DB.into(),
        ..Default::default()
    });
    store.migrate().await.unwrap();
    let now = chrono::Utc::now().timestamp();
    let mut views = history(now);
    insert(&ch, &views).await;

    let (port, admin) = (free_port(), free_port());
    let config = format!(
        "[clickhouse]\nurl = \"{}\"\ndatabase = \"{DB}\"\n[exporter]\nbind = \"127.0.0.1:{port}\"\n\
         admin_bind = \"127.0.0.1:{admin}\"\ncache_max_bytes = 0\n\
         [[exporter.api_keys]]\nsha256 = \"{}\"\nscope = \"admin\"\n",
        ch.url(),
        sha256_hex(KEY)
    );
    let exporter = Service::start("badgepulse-exporter", &config, &[]);
    wait_http(
        &format!("http://127.0.0.1:{admin}/readyz"),
        Duration::from_secs(60),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", exporter.log_text()));
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{port}"),
    };

    // Nothing sealed: every day counted from events.
    check_answers(&api, &views, now, "unsealed").await;

    // The ten closed days sealed (today is not), once.
    assert_eq!(seal_all(&store, now).await, 10);
    assert_eq!(seal_all(&store, now).await, 0, "sealing is idempotent");
    let sealed = ch
        .number(&format!(
            "SELECT count() FROM {DB}.viewer_days WHERE scope_issuer_id = '' AND scope_badge_class_id = ''"
        ))
        .await;
    assert_eq!(sealed, 10);
    let day_rows = ch
        .query(&format!(
            "SELECT toDate(bucket), argMax(unique_viewers, sealed_seq) FROM {DB}.viewer_days \
             WHERE scope_issuer_id = '' AND scope_badge_class_id = '' GROUP BY bucket ORDER BY bucket"
        ))
        .await
        .unwrap();
    let today = now / DAY * DAY;
    let expected: String = (1..=10)
        .rev()
        .map(|d| {
            let day = today - d * DAY;
            let date = chrono::DateTime::from_timestamp(day, 0)
                .unwrap()
                .format("%Y-%m-%d");
            format!("{date}\t{}\n", truth(&views, day, day + DAY, |_| true))
        })
        .collect();
    assert_eq!(day_rows, expected, "the sealed numbers are the day's truth");
    check_answers(&api, &views, now, "sealed").await;

    // A view of a new viewer three days ago, after that day was sealed:
    // counted at once, and sealed again on the next pass.
    let late = View {
        at: today - 3 * DAY + 12 * 3600,
        class: 2,
        key: key(today - 3 * DAY, 99),
        seq: views.len() as u64 + 1,
    };
    insert(&ch, std::slice::from_ref(&late)).await;
    views.push(late);
    check_answers(&api, &views, now, "late view").await;
    let resealed = store.days_to_seal(0, today as u32, 1_000).await.unwrap();
    assert_eq!(resealed.len(), 1, "{resealed:?}");
    assert_eq!(i64::from(resealed[0].day), today - 3 * DAY);
    assert_eq!(seal_all(&store, now).await, 1);
    assert_eq!(seal_all(&store, now).await, 0);
    check_answers(&api, &views, now, "resealed").await;

    // The answers read the sealed numbers: with the closed days' views
    // gone from `events`, whole days still count the views that were
    // sealed (parts of days are counted from `events`).
    ch.query(&format!(
        "ALTER TABLE {DB}.events DELETE WHERE type = 'badge.viewed' AND occurred_at < toDateTime({today}, 'UTC')"
    ))
    .await
    .unwrap();
    badgepulse_tests::eventually(Duration::from_secs(30), "the deletion", || async {
        let left = ch
            .number(&format!(
                "SELECT count() FROM {DB}.events WHERE occurred_at < toDateTime({today}, 'UTC')"
            ))
            .await;
        (left == 0).then_some(())
    })
    .await;
    let to = now - 60;
    for (scope, keep) in [
        (
            "org=acme",
            Box::new(|_: &View| true) as Box<dyn Fn(&View) -> bool>,
        ),
        (
            "org=acme&issuer=i2",
            Box::new(|v: &View| CLASSES[v.class].1 == "i2"),
        ),
    ] {
        let body = api
            .get(&format!(
                "/api/v1/overview?{scope}&from={}&to={}",
                rfc3339(today - 10 * DAY),
                rfc3339(to)
            ))
            .await;
        assert_eq!(
            body["period_values"]["unique_viewers"],
            truth(&views, today - 10 * DAY, to, &keep),
            "sealed only: {scope}"
        );
        assert_eq!(
            body["kpis"]["unique_viewers"],
            truth(&views, 0, i64::MAX, &keep),
            "sealed only: all time {scope}"
        );
    }
}
