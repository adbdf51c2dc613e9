//! The exporter's result cache end to end (ingest → NATS → aggregator →
//! ClickHouse → exporter, all real): answers are served from memory until
//! the aggregator's change notice for their org and time span arrives,
//! then recomputed; windows and orgs a commit did not touch stay cached,
//! while a cohort's lifecycle follows its later events; `Cache-Control:
//! no-cache` bypasses it; a new annotation shows at once;
//! a notice sent by hand covers writes made directly to ClickHouse; and
//! without NATS the cache steps aside. That first test runs the cache
//! strict: no stale answer served (`cache_max_staleness_ms = 0`) and no
//! background refresh (`cache_keep_warm_secs = 0`).
//!
//! The second test covers whole answers kept up to date (`views.rs`), as
//! configured by default: a commit's notice refreshes a requested answer
//! in the background, so the next request is served from memory with the
//! new numbers; a window up to now follows the clock; concurrent requests
//! for a new question share one query; a new annotation is in every read
//! that starts after its `201` (trends, charts, report, lists); and a stale answer
//! is never served longer than `cache_max_staleness_ms` after the notice
//! (ClickHouse frozen, the refresh cannot finish: the request waits and
//! fails instead).
//!
//! The cache's maximum age is an hour, so every "the new value shows"
//! below can only pass through a change notice.

use std::time::Duration;

use badgepulse_tests::{
    eventually, metric_value, scrape, start_services, ClickHouse, Nats, Service, StackConfig,
    StackPorts,
};
use serde_json::{json, Value};

const DB: &str = "e2e_exporter_cache";
const TOKEN: &str = "cache-test-platform-token";
const KEY: &str = "cache-test-admin-key";

/// The window most queries ask for: 1 October 2026.
const OCT_1: &str = "2026-10-01";
const OCT_2: &str = "2026-10-02";

struct Stack {
    http: reqwest::Client,
    ingest: String,
    exporter: String,
    /// The exporter's admin listener (`/metrics`).
    exporter_admin: String,
    posted: u64,
    next_id: u64,
}

impl Stack {
    /// Posts one `badge.awarded` per (org, time) and returns after the
    /// 200 (every event durable in JetStream).
    async fn award(&mut self, awards: &[(&str, &str)]) {
        let events: Vec<Value> = awards
            .iter()
            .map(|(org, at)| {
                self.next_id += 1;
                json!({
                    "event_id": format!("cache-{}", self.next_id),
                    "type": "badge.awarded",
                    "occurred_at": at,
                    "org_id": org,
                    "issuer_id": "i1",
                    "badge_class_id": "b1",
                    "assertion_id": format!("a{}", self.next_id),
                    "award_method": "lms",
                })
            })
            .collect();
        let r = self
            .http
            .post(format!("{}/v1/events", self.ingest))
            .bearer_auth(TOKEN)
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        self.posted += awards.len() as u64;
    }

    async fn get(&self, path_and_query: &str, fresh: bool) -> Value {
        let mut r = self
            .http
            .get(format!("{}{path_and_query}", self.exporter))
            .bearer_auth(KEY);
        if fresh {
            r = r.header("Cache-Control", "no-cache");
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 200, "{path_and_query}");
        r.json().await.unwrap()
    }

    /// Returns once every event posted so far is in ClickHouse.
    async fn stored(&self, ch: &ClickHouse) {
        ch.wait_for_events(DB, self.posted, Duration::from_secs(60))
            .await;
    }

    /// Posts a `badge.accepted` of `org`'s `assertion` at `at`.
    async fn accept(&mut self, org: &str, assertion: &str, at: &str) {
        self.next_id += 1;
        let r = self
            .http
            .post(format!("{}/v1/events", self.ingest))
            .bearer_auth(TOKEN)
            .json(&json!({ "events": [{
                "event_id": format!("cache-{}", self.next_id),
                "type": "badge.accepted",
                "occurred_at": at,
                "org_id": org,
                "issuer_id": "i1",
                "badge_class_id": "b1",
                "assertion_id": assertion,
            }]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        self.posted += 1;
    }

    /// Accepted assertions of `org`'s 1 October cohort (lifecycle).
    async fn october_1_cohort_accepted(&self, org: &str) -> u64 {
        let v = self
            .get(
                &format!("/api/v1/lifecycle?org={org}&from={OCT_1}&to={OCT_2}"),
                false,
            )
            .await;
        v["stages"][1]["count"].as_u64().unwrap()
    }

    /// Daily awarded of `org` from 1 to 7 October (trends).
    async fn first_week_awarded(&self, org: &str) -> Vec<u64> {
        let v = self
            .get(
                &format!("/api/v1/trends?org={org}&metrics=awarded&granularity=day&from={OCT_1}&to=2026-10-08"),
                false,
            )
            .await;
        v["series"]["awarded"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["value"].as_u64().unwrap())
            .collect()
    }

    /// All-time awarded of `org` (the overview's KPI tile).
    async fn all_time_awarded(&self, org: &str) -> u64 {
        let v = self
            .get(
                &format!("/api/v1/overview?org={org}&from={OCT_1}&to={OCT_2}"),
                false,
            )
            .await;
        v["kpis"]["awarded"].as_u64().unwrap()
    }

    /// Awarded of `org` on 1 October (the distribution's total).
    async fn october_1_awarded(&self, org: &str) -> u64 {
        let v = self
            .get(
                &format!(
                    "/api/v1/distribution?org={org}&dimension=award_method&from={OCT_1}&to={OCT_2}"
                ),
                false,
            )
            .await;
        total(&v)
    }

    async fn lookups(&self, result: &str) -> f64 {
        self.metric("badgepulse_exporter_cache_lookups_total", "result", result)
            .await
    }

    async fn refreshes(&self) -> f64 {
        self.metric("badgepulse_exporter_cache_refreshes_total", "outcome", "ok")
            .await
    }

    async fn metric(&self, name: &str, label: &str, value: &str) -> f64 {
        let text = scrape(&format!("{}/metrics", self.exporter_admin)).await;
        metric_value(&text, name, &[(label, value)])
    }

    /// The status, `Age` header and body of a request.
    async fn get_with_age(&self, path_and_query: &str) -> (u16, Option<u64>, Value) {
        let r = self
            .http
            .get(format!("{}{path_and_query}", self.exporter))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let age = r
            .headers()
            .get("age")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        (status, age, r.json().await.unwrap_or(Value::Null))
    }

    /// The body of a `200` answer as text (JSON, SVG or HTML).
    async fn read_text(&self, path_and_query: &str) -> String {
        let r = self
            .http
            .get(format!("{}{path_and_query}", self.exporter))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path_and_query}");
        r.text().await.unwrap()
    }

    async fn following(&self) -> bool {
        let text = scrape(&format!("{}/metrics", self.exporter_admin)).await;
        metric_value(&text, "badgepulse_exporter_cache_following", &[]) == 1.0
    }
}

/// Starts ingest, the aggregator (a commit every 100 ms) and the exporter
/// with `exporter` lines added to its section, and waits until the
/// exporter follows the change notices.
async fn start_stack(nats: &Nats, ch: &ClickHouse, exporter: &[&str]) -> (Vec<Service>, Stack) {
    let ports = StackPorts::free();
    let config = exporter.iter().fold(
        StackConfig::new(&nats.url(), &ch.url(), DB, ports)
            .token(TOKEN, &["*"])
            .aggregator("flush_interval_ms = 100")
            .api_key(KEY, "admin"),
        |config, line| config.exporter(line),
    );
    let services = start_services(&config.toml(), &ports.all()).await;
    let s = Stack {
        http: reqwest::Client::new(),
        ingest: ports.ingest_url(),
        exporter: ports.exporter_url(),
        exporter_admin: ports.exporter_admin_url(),
        posted: 0,
        next_id: 0,
    };
    eventually(
        Duration::from_secs(30),
        "the cache to follow notices",
        || async { s.following().await.then_some(()) },
    )
    .await;
    (services, s)
}

/// The sum of a distribution's counts.
fn total(distribution: &Value) -> u64 {
    distribution["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_u64().unwrap())
        .sum()
}

/// Writes a globex annotation straight into ClickHouse, bypassing the
/// exporter (and so announcing nothing).
async fn annotate_by_hand(ch: &ClickHouse, id: &str, at: &str, title: &str) {
    ch.query(&format!(
        "INSERT INTO {DB}.annotations (id, org_id, issuer_id, badge_class_id, at, title, text, created_at) \
         VALUES ('{id}', 'globex', '', '', toDateTime('{at}', 'UTC'), '{title}', '', now())"
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn cached_answers_follow_every_commit_they_depend_on() {
    let mut nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let (_services, mut s) = start_stack(
        &nats,
        &ch,
        &[
            "cache_max_age_secs = 3600",
            "cache_max_staleness_ms = 0",
            "cache_keep_warm_secs = 0",
        ],
    )
    .await;

    s.award(&[
        ("acme", "2026-10-01T10:00:00Z"),
        ("acme", "2026-10-01T11:00:00Z"),
        ("globex", "2026-10-01T12:00:00Z"),
    ])
    .await;
    s.stored(&ch).await;
    // The notice for a commit goes out before its ack, so a query started
    // now may still race it; wait until a cached answer is the right one.
    eventually(
        Duration::from_secs(30),
        "the first commit's notice",
        || async { (s.all_time_awarded("acme").await == 2).then_some(()) },
    )
    .await;
    assert_eq!(s.october_1_awarded("acme").await, 2);
    assert_eq!(s.october_1_awarded("globex").await, 1);
    assert_eq!(s.october_1_cohort_accepted("acme").await, 0);
    assert_eq!(s.first_week_awarded("acme").await, [2, 0, 0, 0, 0, 0, 0]);

    // Asked again: from memory, the same numbers.
    let (hits, misses) = (s.lookups("hit").await, s.lookups("miss").await);
    assert_eq!(s.all_time_awarded("acme").await, 2);
    assert_eq!(s.october_1_awarded("acme").await, 2);
    assert_eq!(s.october_1_awarded("globex").await, 1);
    assert_eq!(s.lookups("miss").await, misses, "every query was cached");
    assert!(s.lookups("hit").await > hits);

    // acme, on 5 October: acme's all-time tile changes at once; acme's
    // 1 October and globex stay cached.
    s.award(&[("acme", "2026-10-05T09:00:00Z")]).await;
    s.stored(&ch).await;
    eventually(
        Duration::from_secs(30),
        "acme's all-time awarded to be 3",
        || async { (s.all_time_awarded("acme").await == 3).then_some(()) },
    )
    .await;
    let misses = s.lookups("miss").await;
    assert_eq!(s.october_1_awarded("acme").await, 2);
    assert_eq!(s.october_1_awarded("globex").await, 1);
    assert_eq!(
        s.lookups("miss").await,
        misses,
        "a commit outside their span or org left them cached"
    );
    assert_eq!(s.first_week_awarded("acme").await, [2, 0, 0, 0, 1, 0, 0]);

    // An accept on 6 October of an assertion awarded on 1 October: the
    // lifecycle of the 1 October cohort changes, its window does not.
    s.accept("acme", "a1", "2026-10-06T08:00:00Z").await;
    s.stored(&ch).await;
    eventually(Duration::from_secs(30), "the cohort's accept", || async {
        (s.october_1_cohort_accepted("acme").await == 1).then_some(())
    })
    .await;

    // acme, on 1 October: that window changes; globex's does not.
    s.award(&[("acme", "2026-10-01T23:59:59Z")]).await;
    s.stored(&ch).await;
    eventually(
        Duration::from_secs(30),
        "acme's 1 October to be 3",
        || async { (s.october_1_awarded("acme").await == 3).then_some(()) },
    )
    .await;
    let misses = s.lookups("miss").await;
    assert_eq!(s.october_1_awarded("globex").await, 1);
    assert_eq!(s.lookups("miss").await, misses);

    // A new annotation is listed at once: its exporter drops what it
    // changes before answering the POST.
    let annotations = "/api/v1/annotations?org=acme&from=2026-10-01&to=2026-10-08";
    assert_eq!(s.get(annotations, false).await["annotations"], json!([]));
    let r = s
        .http
        .post(format!("{}/api/v1/annotations", s.exporter))
        .bearer_auth(KEY)
        .json(&json!({"org": "acme", "at": "2026-10-03T00:00:00Z", "title": "New course"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let listed = s.get(annotations, false).await;
    assert_eq!(listed["annotations"][0]["title"], "New course", "{listed}");

    // Written to ClickHouse by hand: cached until a notice says so.
    let globex_annotations = "/api/v1/annotations?org=globex&from=2026-10-01&to=2026-10-08";
    assert_eq!(
        s.get(globex_annotations, false).await["annotations"],
        json!([])
    );
    annotate_by_hand(&ch, "by-hand", "2026-10-04 00:00:00", "By hand").await;
    assert_eq!(
        s.get(globex_annotations, false).await["annotations"],
        json!([])
    );
    // Cache-Control: no-cache goes to ClickHouse, and refreshes the entry.
    let bypassed = s.lookups("bypass").await;
    let fresh = s.get(globex_annotations, true).await;
    assert_eq!(fresh["annotations"][0]["title"], "By hand", "{fresh}");
    assert!(s.lookups("bypass").await > bypassed);
    assert_eq!(s.get(globex_annotations, false).await, fresh);
    annotate_by_hand(&ch, "by-hand-2", "2026-10-05 00:00:00", "By hand 2").await;
    assert_eq!(
        s.get(globex_annotations, false).await,
        fresh,
        "still cached"
    );
    let client = nats.client().await;
    client
        .publish("badgepulse.changes", r#"{"all":true}"#.into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    eventually(
        Duration::from_secs(30),
        "the second hand-written annotation",
        || async {
            let v = s.get(globex_annotations, false).await;
            (v["annotations"][1]["title"] == "By hand 2").then_some(())
        },
    )
    .await;

    // Without NATS, notices could be missed: the cache empties and steps
    // aside, and answers still come, from ClickHouse.
    nats.stop();
    eventually(
        Duration::from_secs(30),
        "the cache to stop following",
        || async { (!s.following().await).then_some(()) },
    )
    .await;
    let off = s.lookups("off").await;
    assert_eq!(s.all_time_awarded("acme").await, 4);
    assert!(s.lookups("off").await > off);
    // Written by hand while no notice could arrive: shown once back.
    annotate_by_hand(&ch, "by-hand-3", "2026-10-06 00:00:00", "By hand 3").await;
    nats.restart().await;
    eventually(
        Duration::from_secs(60),
        "the cache to follow again",
        || async { s.following().await.then_some(()) },
    )
    .await;
    let listed = s.get(globex_annotations, false).await;
    assert_eq!(listed["annotations"][2]["title"], "By hand 3", "{listed}");
    s.award(&[("globex", "2026-10-01T13:00:00Z")]).await;
    s.stored(&ch).await;
    eventually(
        Duration::from_secs(30),
        "globex's 1 October to be 2",
        || async { (s.october_1_awarded("globex").await == 2).then_some(()) },
    )
    .await;
}

/// Unix seconds of an RFC 3339 time.
fn unix(rfc3339: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap())
        .unwrap()
        .timestamp()
}

/// Sends SIGSTOP or SIGCONT to `pid`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn kept_answers_are_refreshed_in_the_background_within_their_bounds() {
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let (_services, mut s) = start_stack(
        &nats,
        &ch,
        &[
            "cache_max_age_secs = 3600",
            "cache_live_window_secs = 4",
            "query_timeout_secs = 2",
        ],
    )
    .await;
    let hours_ago = |h: i64| (chrono::Utc::now() - chrono::Duration::hours(h)).to_rfc3339();
    let awarded = total;
    // A report's question: a fixed window (holding "now").
    let fixed =
        "/api/v1/distribution?org=acme&dimension=award_method&from=2026-01-01&to=2027-01-01";
    // A dashboard's: the default window, up to now.
    let live = "/api/v1/distribution?org=acme&dimension=award_method";

    s.award(&[("acme", &hours_ago(2))]).await;
    s.stored(&ch).await;
    eventually(Duration::from_secs(30), "the first award", || async {
        (awarded(&s.get(fixed, false).await) == 1).then_some(())
    })
    .await;

    // A commit of acme: the answer is recomputed without being asked, and
    // the next request is served from memory with the new numbers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refreshed = s.refreshes().await;
    s.award(&[("acme", &hours_ago(1))]).await;
    s.stored(&ch).await;
    eventually(Duration::from_secs(30), "a background refresh", || async {
        (s.refreshes().await > refreshed).then_some(())
    })
    .await;
    let misses = s.lookups("miss").await;
    let hits = s.lookups("hit").await;
    let (status, _, v) = s.get_with_age(fixed).await;
    assert_eq!((status, awarded(&v)), (200, 2), "{v}");
    assert_eq!(s.lookups("miss").await, misses, "served from memory");
    assert_eq!(s.lookups("hit").await, hits + 1.0);

    // The window up to now follows the clock: an answer whose window end
    // is past half of cache_live_window_secs (4 s) is refreshed, and none
    // is served with a window ending more than 4 s before the request.
    let (_, _, v) = s.get_with_age(live).await;
    assert_eq!(awarded(&v), 2, "{v}");
    let first_to = unix(&v["period"]["to"]);
    eventually(Duration::from_secs(20), "the window to move on", || async {
        let asked = chrono::Utc::now().timestamp();
        let (status, age, v) = s.get_with_age(live).await;
        assert_eq!((status, awarded(&v)), (200, 2), "{v}");
        let to = unix(&v["period"]["to"]);
        assert!(asked - to <= 4 + 1, "window ends {to}, asked at {asked}");
        assert!(age.unwrap() < 4, "{age:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        (to > first_to).then_some(())
    })
    .await;

    // Concurrent requests for a question not asked before share one
    // query per piece.
    let queries = |text: &str| {
        metric_value(
            text,
            "badgepulse_exporter_query_duration_seconds_count",
            &[("query", "distribution")],
        )
    };
    let before = queries(&scrape(&format!("{}/metrics", s.exporter_admin)).await);
    let new_question =
        "/api/v1/distribution?org=acme&dimension=award_method&from=2026-02-01&to=2027-01-01";
    let answers = futures::future::join_all((0..8).map(|_| s.get(new_question, false))).await;
    for v in &answers {
        assert_eq!(awarded(v), 2, "{v}");
    }
    let after = queries(&scrape(&format!("{}/metrics", s.exporter_admin)).await);
    assert_eq!(after - before, 1.0, "8 concurrent requests, one query");

    // Read your writes: after the 201 of a new annotation, every read
    // includes it, although each of these answers is kept (and would be
    // served up to a second stale after an ordinary notice), and although
    // a commit of the same org has just started their background
    // refreshes. The scope goes in the query string, as on every GET.
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let reads = [
        format!("/api/v1/annotations?org=acme&from={day}"),
        "/api/v1/annotations?org=acme".to_owned(),
        "/api/v1/trends?org=acme&metrics=awarded&granularity=day".to_owned(),
        "/api/v1/trends?org=acme&metrics=awarded&granularity=hour&from=2026-11-01&to=2027-01-01"
            .to_owned(),
        "/api/v1/charts/trends.svg?org=acme&metrics=awarded".to_owned(),
        "/report?org=acme".to_owned(),
    ];
    for round in 0..3 {
        for path in &reads {
            s.read_text(path).await;
        }
        s.award(&[("acme", &hours_ago(3))]).await;
        let title = format!("Reminder email {round}");
        let r = s
            .http
            .post(format!("{}/api/v1/annotations?org=acme", s.exporter))
            .bearer_auth(KEY)
            .json(&json!({"at": hours_ago(1), "title": title}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        for path in &reads {
            let text = s.read_text(path).await;
            assert!(text.contains(&title), "{path} lacks {title:?}: {text}");
        }
    }
    s.stored(&ch).await;
    eventually(Duration::from_secs(30), "the three awards", || async {
        (awarded(&s.get(fixed, false).await) == 5).then_some(())
    })
    .await;

    // ClickHouse frozen: a notice marks the answer stale and its refresh
    // hangs. Within cache_max_staleness_ms (1 s) of the notice the stale
    // answer is served; after it, the request goes to ClickHouse (503
    // once query_timeout_secs passes), never to the stale answer.
    assert_eq!(awarded(&s.get(fixed, false).await), 5);
    let stale = s.lookups("stale").await;
    let pid = ch.pid().unwrap();
    signal(pid, "STOP");
    let client = nats.client().await;
    client
        .publish("badgepulse.changes", r#"{"all":true}"#.into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let noticed = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _, v) = s.get_with_age(fixed).await;
    let served_stale = s.lookups("stale").await;
    tokio::time::sleep(Duration::from_millis(1_200).saturating_sub(noticed.elapsed())).await;
    let (late_status, _, late) = s.get_with_age(fixed).await;
    signal(pid, "CONT");
    assert_eq!((status, awarded(&v)), (200, 5), "within the bound: {v}");
    assert_eq!(served_stale, stale + 1.0);
    assert_eq!(late_status, 503, "past the bound: {late}");
    eventually(Duration::from_secs(30), "ClickHouse back", || async {
        let (status, _, v) = s.get_with_age(fixed).await;
        (status == 200 && awarded(&v) == 5).then_some(())
    })
    .await;
}
