//! The analytics API end to end (SPEC §7–8): a seeded dataset of platform
//! events (historical, several days, orgs, issuers and badge classes)
//! plus pixel views and a share beacon goes through the real ingest →
//! NATS → aggregator → ClickHouse pipeline; every endpoint's numbers must
//! equal those of a small ground-truth model of SPEC §7 computed here from
//! the same event list, for windows cutting through day, hour and minute
//! buckets, an empty window, every scope kind, CSV and JSON.
//!
//! Rollup retention is simulated by deleting old `rollup_minute` and
//! `rollup_hour` rows: the exporter (configured with matching retention)
//! must answer those pieces from raw `events` and stay exact.
//!
//! One stack serves every assertion, to keep the runtime small.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use badgepulse_contract::signing::{sign, PixelIds};
use badgepulse_tests::{eventually, parse_csv, OpenApi, Stack, INGEST_BEHIND_PROXY};
use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use serde_json::{json, Value};

const DB: &str = "e2e_exporter_api";
const TOKEN: &str = "api-test-platform-token";
const PIXEL_KEY: &str = "api-test-pixel-key-0123456789";
const BROWSER_A: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const BROWSER_B: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15";
const MIN_AWARDED: u64 = 3;

/// API keys and their scopes.
const KEYS: [(&str, &str); 5] = [
    ("key-admin", "admin"),
    ("key-acme", "org:acme"),
    ("key-globex", "org:globex"),
    ("key-i1", "issuer:acme/i1"),
    ("key-b1", "badge:acme/b1"),
];

// ------------------------------------------------------------------ model

/// One event as the ground truth knows it.
#[derive(Debug, Clone)]
struct Ev {
    kind: &'static str,
    at: i64,
    org: String,
    issuer: String,
    class: String,
    assertion: String,
    method: String,
    channel: String,
    source: String,
    country: String,
    /// 0: no viewer key (platform views).
    viewer: u8,
}

impl Ev {
    fn new(kind: &'static str, at: i64, class: &ClassDef, assertion: &str) -> Ev {
        Ev {
            kind,
            at,
            org: class.org.into(),
            issuer: class.issuer.into(),
            class: class.id.into(),
            assertion: assertion.into(),
            method: String::new(),
            channel: String::new(),
            source: String::new(),
            country: String::new(),
            viewer: 0,
        }
    }
}

/// A scope as a filter of the model.
#[derive(Debug, Clone, Copy, Default)]
struct Scope<'a> {
    org: Option<&'a str>,
    issuer: Option<&'a str>,
    class: Option<&'a str>,
}

impl Scope<'_> {
    fn matches(&self, org: &str, issuer: &str, class: &str) -> bool {
        self.org.is_none_or(|o| o == org)
            && self.issuer.is_none_or(|i| i == issuer)
            && self.class.is_none_or(|c| c == class)
    }
}

fn scope<'a>(org: Option<&'a str>, issuer: Option<&'a str>, class: Option<&'a str>) -> Scope<'a> {
    Scope { org, issuer, class }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    awarded: u64,
    accepted: u64,
    shared: u64,
    shares: u64,
    views: u64,
    unique_viewers: u64,
    revoked: u64,
    badge_classes: u64,
}

struct Model {
    events: Vec<Ev>,
    classes: Vec<ClassDef>,
}

impl Model {
    fn select(&self, s: Scope, from: i64, to: i64) -> Vec<&Ev> {
        self.events
            .iter()
            .filter(|e| e.at >= from && e.at < to && s.matches(&e.org, &e.issuer, &e.class))
            .collect()
    }

    fn counts(&self, s: Scope, from: i64, to: i64) -> Counts {
        counts_of(&self.select(s, from, to))
    }
}

fn counts_of(evs: &[&Ev]) -> Counts {
    let distinct = |kind: &str| {
        evs.iter()
            .filter(|e| e.kind == kind)
            .map(|e| (&e.org, &e.assertion))
            .collect::<BTreeSet<_>>()
            .len() as u64
    };
    let count = |kind: &str| evs.iter().filter(|e| e.kind == kind).count() as u64;
    Counts {
        awarded: distinct("badge.awarded"),
        accepted: distinct("badge.accepted"),
        shared: distinct("badge.shared"),
        shares: count("badge.shared"),
        views: count("badge.viewed"),
        unique_viewers: evs
            .iter()
            .filter(|e| e.kind == "badge.viewed" && e.viewer != 0)
            .map(|e| (&e.org, e.viewer))
            .collect::<BTreeSet<_>>()
            .len() as u64,
        revoked: distinct("badge.revoked"),
        badge_classes: evs
            .iter()
            .map(|e| (&e.org, &e.class))
            .collect::<BTreeSet<_>>()
            .len() as u64,
    }
}

/// The SPEC §7 derived measures, written independently of the exporter.
fn derived(c: &Counts) -> BTreeMap<&'static str, Option<f64>> {
    let (aw, ac, sh, shs, vw) = (
        c.awarded as f64,
        c.accepted as f64,
        c.shared as f64,
        c.shares as f64,
        c.views as f64,
    );
    let engagement = (c.awarded > 0).then(|| 100.0 * (ac.min(aw) + sh.min(aw)) / (2.0 * aw));
    let reach = (c.awarded > 0).then(|| {
        let v = vw / aw;
        100.0 * v / (v + 1.0)
    });
    BTreeMap::from([
        (
            "acceptance_rate",
            (c.awarded > 0).then(|| (ac / aw).min(1.0)),
        ),
        ("share_rate", (c.accepted > 0).then(|| (sh / ac).min(1.0))),
        ("engagement_score", engagement),
        ("external_impact_score", (c.shares > 0).then(|| vw / shs)),
        ("reach_score", reach),
        (
            "performance",
            engagement.zip(reach).map(|(e, r)| (e + r) / 2.0),
        ),
    ])
}

fn count_fields(c: &Counts) -> [(&'static str, u64); 8] {
    [
        ("awarded", c.awarded),
        ("accepted", c.accepted),
        ("shared", c.shared),
        ("shares", c.shares),
        ("views", c.views),
        ("unique_viewers", c.unique_viewers),
        ("revoked", c.revoked),
        ("badge_classes", c.badge_classes),
    ]
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

/// `json` holds every measure of `c`, exactly.
fn assert_measures(json: &Value, c: &Counts, ctx: &str) {
    for (name, v) in count_fields(c) {
        assert_eq!(json[name], v, "{ctx}: {name} in {json}");
    }
    for (name, v) in derived(c) {
        close(&json[name], v, &format!("{ctx}: {name}"));
    }
}

// ---------------------------------------------------------------- dataset

#[derive(Debug, Clone, Copy)]
struct ClassDef {
    org: &'static str,
    issuer: &'static str,
    id: &'static str,
    assertions: usize,
    /// `badge_class.upserted` metadata, if any.
    meta: Option<(&'static str, Meta)>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Meta {
    skills: bool,
    pathway: bool,
    catalog: bool,
    featured: Option<bool>,
}

const CLASSES: [ClassDef; 5] = [
    ClassDef {
        org: "acme",
        issuer: "i1",
        id: "b1",
        assertions: 12,
        meta: Some((
            "Rust 101",
            Meta {
                skills: true,
                pathway: true,
                catalog: false,
                featured: Some(true),
            },
        )),
    },
    ClassDef {
        org: "acme",
        issuer: "i1",
        id: "b2",
        assertions: 8,
        meta: Some((
            "=Excel Pro",
            Meta {
                skills: false,
                pathway: false,
                catalog: true,
                featured: Some(false),
            },
        )),
    },
    ClassDef {
        org: "acme",
        issuer: "i2",
        id: "b3",
        assertions: 6,
        meta: Some((
            "Go, \"Basics\"",
            Meta {
                skills: true,
                pathway: false,
                catalog: false,
                featured: None,
            },
        )),
    },
    ClassDef {
        org: "acme",
        issuer: "i2",
        id: "b4",
        assertions: 2,
        meta: None,
    },
    ClassDef {
        org: "globex",
        issuer: "g1",
        id: "g1",
        assertions: 6,
        meta: Some((
            "Globex Safety",
            Meta {
                skills: false,
                pathway: true,
                catalog: true,
                featured: None,
            },
        )),
    },
];

const METHODS: [&str; 6] = ["manual", "lms", "api", "bulk", "integration", "other"];
const CHANNELS: [&str; 5] = ["linkedin", "x", "email", "link_copy", "wallet"];
const SOURCES: [&str; 4] = ["linkedin", "search", "email", "platform"];
const COUNTRIES: [&str; 4] = ["NL", "DE", "US", ""];

/// xorshift64: deterministic data.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn rfc(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The platform events (JSON) and the model's view of them. Awards fall
/// on days 0–5 after `d0`, every later event within 47 hours of its
/// award, so everything lies at least a day before now.
fn dataset(d0: i64) -> (Vec<Value>, Vec<Ev>) {
    let mut rng = Rng(0x5EED_BADC_0FFE_E123);
    let mut json_events = Vec::new();
    let mut model = Vec::new();
    let mut id = 0;
    let mut push = |json_events: &mut Vec<Value>, e: Ev, extra: Value| {
        id += 1;
        let mut j = json!({
            "event_id": format!("ev-{id}"), "type": e.kind, "occurred_at": rfc(e.at),
            "org_id": e.org, "issuer_id": e.issuer, "badge_class_id": e.class,
        });
        if e.kind != "badge_class.upserted" {
            j["assertion_id"] = json!(e.assertion);
        }
        for (k, v) in extra.as_object().unwrap() {
            j[k] = v.clone();
        }
        json_events.push(j);
        model.push(e);
    };
    for c in &CLASSES {
        if let Some((name, m)) = c.meta {
            let mut extra = json!({"name": name});
            if m.skills {
                extra["skills"] = json!(["s"]);
            }
            if m.pathway {
                extra["courses"] = json!(["c"]);
            }
            if m.catalog {
                extra["catalogs"] = json!(["k"]);
            }
            if let Some(f) = m.featured {
                extra["attributes"] = json!({ "featured": f });
            }
            // The day before the data.
            let e = Ev::new("badge_class.upserted", d0 - 86_400 + 3_600, c, "");
            push(&mut json_events, e, extra);
        }
        for j in 0..c.assertions {
            let a = format!("{}-a{j}", c.id);
            let t_aw = d0 + rng.below(6) as i64 * 86_400 + rng.below(86_400) as i64;
            let mut e = Ev::new("badge.awarded", t_aw, c, &a);
            let m = rng.below(7) as usize;
            let extra = if m < METHODS.len() {
                e.method = METHODS[m].into();
                json!({"award_method": METHODS[m]})
            } else {
                e.method = "other".into();
                json!({})
            };
            push(&mut json_events, e, extra);
            if rng.below(10) < 1 {
                let t = t_aw + 50 * 3_600 + rng.below(3_600) as i64;
                push(
                    &mut json_events,
                    Ev::new("badge.revoked", t, c, &a),
                    json!({}),
                );
            }
            if rng.below(10) >= 7 {
                if rng.below(10) < 2 {
                    // Seen without being accepted or shared.
                    let t = t_aw + rng.below(10 * 3_600) as i64;
                    let mut v = Ev::new("badge.viewed", t, c, &a);
                    v.source = "platform".into();
                    push(&mut json_events, v, json!({"source": "platform"}));
                }
                continue;
            }
            let t_ac = t_aw + 60 + rng.below(20 * 3_600) as i64;
            push(
                &mut json_events,
                Ev::new("badge.accepted", t_ac, c, &a),
                json!({}),
            );
            if rng.below(10) >= 6 {
                continue;
            }
            let t_sh = t_ac + 60 + rng.below(12 * 3_600) as i64;
            let shares = 1 + rng.below(2);
            for k in 0..shares {
                let t = t_sh + k as i64 * rng.below(3 * 3_600) as i64;
                let ch = CHANNELS[rng.below(CHANNELS.len() as u64) as usize];
                let mut s = Ev::new("badge.shared", t, c, &a);
                s.channel = ch.into();
                push(&mut json_events, s, json!({"channel": ch}));
            }
            if rng.below(10) >= 7 {
                continue;
            }
            for _ in 0..1 + rng.below(3) {
                let t = t_sh + 30 + rng.below(12 * 3_600) as i64;
                let src = SOURCES[rng.below(SOURCES.len() as u64) as usize];
                let country = COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize];
                let mut v = Ev::new("badge.viewed", t, c, &a);
                v.source = src.into();
                v.country = country.into();
                let mut extra = json!({"source": src});
                if !country.is_empty() {
                    extra["country"] = json!(country);
                }
                push(&mut json_events, v, extra);
            }
        }
    }
    (json_events, model)
}

// ------------------------------------------------------------------ stack

async fn start_stack() -> Stack {
    Stack::start(DB, |config| {
        config
            .ingest(INGEST_BEHIND_PROXY)
            .pixel_key("k1", PIXEL_KEY)
            .token(TOKEN, &["*"])
            .aggregator(
                "flush_interval_ms = 100\nretention_minute_days = 3\nretention_hour_days = 6",
            )
            .exporter(&format!(
                "min_awarded = {MIN_AWARDED}\nrollup_minute_days = 3\nrollup_hour_days = 6"
            ))
            .api_keys(&KEYS)
    })
    .await
}

struct Api<'a> {
    http: reqwest::Client,
    stack: &'a Stack,
    /// Every answer is checked against the OpenAPI document.
    openapi: OpenApi,
}

/// An answer: status, headers and body.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Api<'_> {
    /// `GET path_query` with `key` and `headers`; the answer must be what
    /// the OpenAPI document says for it.
    async fn send(&self, key: Option<&str>, path_query: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = self
            .http
            .get(format!("{}{path_query}", self.stack.ports.exporter_url()));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let r = req.send().await.unwrap();
        let answer = Answer {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.bytes().await.unwrap().to_vec(),
        };
        self.openapi.assert_answer(
            "GET",
            path_query,
            answer.status,
            &answer.headers,
            &answer.body,
        );
        answer
    }

    async fn call(&self, key: Option<&str>, path_query: &str) -> (u16, String, String) {
        let a = self.send(key, path_query, &[]).await;
        (a.status, a.header("content-type"), a.text())
    }

    /// A 200 JSON answer.
    async fn get(&self, key: &str, path_query: &str) -> Value {
        let (status, ct, body) = self.call(Some(key), path_query).await;
        assert_eq!(status, 200, "{path_query}: {body}");
        assert!(ct.starts_with("application/json"), "{path_query}: {ct}");
        serde_json::from_str(&body).unwrap()
    }

    /// A 200 CSV answer, parsed.
    async fn csv(&self, key: &str, path_query: &str) -> Vec<Vec<String>> {
        let (status, ct, body) = self.call(Some(key), path_query).await;
        assert_eq!(status, 200, "{path_query}: {body}");
        assert_eq!(ct, "text/csv; charset=utf-8", "{path_query}");
        parse_csv(&body)
    }

    /// A JSON error with `status` naming `param`.
    async fn error(&self, key: Option<&str>, path_query: &str, status: u16, param: &str) {
        let (got, ct, body) = self.call(key, path_query).await;
        assert_eq!(got, status, "{path_query}: {body}");
        assert!(ct.starts_with("application/json"), "{path_query}: {ct}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let msg = v["error"].as_str().unwrap();
        assert!(msg.starts_with(param), "{path_query}: {msg}");
    }

    async fn post(&self, key: &str, body: Value) -> (u16, Value) {
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
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        let bytes = r.bytes().await.unwrap();
        self.openapi
            .assert_answer("POST", "/api/v1/annotations", status, &headers, &bytes);
        (status, serde_json::from_slice(&bytes).unwrap())
    }
}

/// The CSV rows as maps from header to cell.
fn csv_maps(rows: &[Vec<String>]) -> Vec<HashMap<String, String>> {
    let header = &rows[0];
    rows[1..]
        .iter()
        .map(|r| {
            assert_eq!(r.len(), header.len());
            header.iter().cloned().zip(r.iter().cloned()).collect()
        })
        .collect()
}

/// A CSV cell equals a JSON number or null (within an ulp or so: the
/// default serde_json float parser is not always correctly rounded).
fn csv_num(cell: &str, json: &Value, ctx: &str) {
    if json.is_null() {
        assert_eq!(cell, "", "{ctx}");
    } else {
        let v: f64 = cell
            .parse()
            .unwrap_or_else(|_| panic!("{ctx}: {cell:?} is not a number"));
        let w = json.as_f64().unwrap();
        assert!(
            (v - w).abs() <= 1e-12 * w.abs().max(1.0),
            "{ctx}: {v} vs {w}"
        );
    }
}

fn q(window: (i64, i64)) -> String {
    format!("from={}&to={}", rfc(window.0), rfc(window.1))
}

// ------------------------------------------------------------------- test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_api_matches_the_ground_truth() {
    let stack = start_stack().await;
    let http = reqwest::Client::new();
    let now = Utc::now().timestamp();
    let today = now / 86_400 * 86_400;
    let d0 = today - 9 * 86_400;
    let (platform, mut events) = dataset(d0);
    assert!(events.iter().all(|e| e.at < today - 86_400 / 2));

    // Platform events in one request, then a resend of some (duplicates).
    let send = |events: Vec<Value>| {
        let http = http.clone();
        let url = format!("{}/v1/events", stack.ports.ingest_url());
        async move {
            let r = http
                .post(url)
                .bearer_auth(TOKEN)
                .json(&json!({ "events": events }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let answer = send(platform.clone()).await;
    assert_eq!(answer["accepted"], platform.len(), "{answer}");
    let answer = send(platform[..20].to_vec()).await;
    assert_eq!(answer["duplicates"], 20, "{answer}");

    // Pixel views "now" of acme/b1's first two assertions by two browsers,
    // only on assertions that already have a platform view (so first view
    // times stay historical), and a share beacon on an already shared one.
    let viewed: Vec<String> = events
        .iter()
        .filter(|e| e.class == "b1" && e.kind == "badge.viewed" && !e.source.is_empty())
        .map(|e| e.assertion.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(2)
        .collect();
    assert_eq!(viewed.len(), 2, "the dataset must have viewed b1 badges");
    let b1 = CLASSES[0];
    let pixel_at = Utc::now().timestamp();
    let pixels = [
        (
            &viewed[0],
            BROWSER_A,
            "198.51.100.1",
            Some("https://www.linkedin.com/feed/"),
            Some("NL"),
            "linkedin",
            1u8,
        ),
        (
            &viewed[0],
            BROWSER_A,
            "198.51.100.1",
            None,
            Some("NL"),
            "direct",
            1,
        ),
        (
            &viewed[0],
            BROWSER_B,
            "198.51.100.2",
            None,
            None,
            "direct",
            2,
        ),
        (
            &viewed[1],
            BROWSER_B,
            "198.51.100.2",
            Some("https://badges.example.org/x"),
            Some("FR"),
            "platform",
            2,
        ),
    ];
    for (a, ua, ip, referer, country, source, viewer) in pixels {
        let ids = PixelIds {
            org_id: "acme",
            issuer_id: "i1",
            badge_class_id: "b1",
            assertion_id: a,
        };
        let mut req = http
            .get(format!(
                "{}/p.gif?o=acme&i=i1&b=b1&a={a}&kid=k1&sig={}",
                stack.ports.ingest_url(),
                sign(PIXEL_KEY.as_bytes(), &ids)
            ))
            .header("User-Agent", ua)
            .header("X-Forwarded-For", ip);
        if let Some(r) = referer {
            req = req.header("Referer", r);
        }
        if let Some(c) = country {
            req = req.header("CF-IPCountry", c);
        }
        assert_eq!(req.send().await.unwrap().status(), 200);
        let mut e = Ev::new("badge.viewed", pixel_at, &b1, a);
        e.source = source.into();
        e.country = country.unwrap_or("").into();
        e.viewer = viewer;
        events.push(e);
    }
    let shared_b1 = events
        .iter()
        .find(|e| e.class == "b1" && e.kind == "badge.shared")
        .unwrap()
        .assertion
        .clone();
    let ids = PixelIds {
        org_id: "acme",
        issuer_id: "i1",
        badge_class_id: "b1",
        assertion_id: &shared_b1,
    };
    let r = http
        .get(format!(
            "{}/s.gif?o=acme&i=i1&b=b1&a={shared_b1}&kid=k1&sig={}&c=embed",
            stack.ports.ingest_url(),
            sign(PIXEL_KEY.as_bytes(), &ids)
        ))
        .header("User-Agent", BROWSER_A)
        .header("X-Forwarded-For", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut e = Ev::new("badge.shared", pixel_at, &b1, &shared_b1);
    e.channel = "embed".into();
    events.push(e);

    let model = Model {
        events,
        classes: CLASSES.to_vec(),
    };
    let total = model.events.len() as u64;
    let ch = &stack.ch;
    ch.wait_for_events(DB, total, Duration::from_secs(60)).await;
    // Every award, share and view is in each rollup once with its method,
    // channel or source.
    let distributed = model
        .events
        .iter()
        .filter(|e| ["badge.awarded", "badge.shared", "badge.viewed"].contains(&e.kind))
        .count() as u64;
    for table in ["rollup_minute", "rollup_hour", "rollup_day"] {
        eventually(Duration::from_secs(30), table, || async {
            let n = ch
                .number(&format!(
                    "SELECT countMerge(events) FROM {DB}.{table} WHERE dimension != 'view_country'"
                ))
                .await;
            (n == distributed).then_some(())
        })
        .await;
    }

    // Simulated retention: minute rows older than 3 days and hour rows
    // older than 6 days are gone (the exporter trusts minutes from now − 2
    // days and hours from now − 5 days).
    for (table, days) in [("rollup_minute", 3), ("rollup_hour", 6)] {
        let cut = now - days * 86_400;
        ch.query(&format!(
            "ALTER TABLE {DB}.{table} DELETE WHERE bucket < toDateTime({cut})"
        ))
        .await
        .unwrap();
        eventually(Duration::from_secs(30), "retention mutation", || async {
            let n = ch
                .number(&format!(
                    "SELECT count() FROM {DB}.{table} WHERE bucket < toDateTime({cut})"
                ))
                .await;
            (n == 0).then_some(())
        })
        .await;
    }
    assert!(
        ch.number(&format!("SELECT count() FROM {DB}.rollup_hour"))
            .await
            > 0
    );

    let api = Api {
        http: http.clone(),
        stack: &stack,
        openapi: OpenApi::exporter(),
    };
    let admin = "key-admin";
    let acme = scope(Some("acme"), None, None);

    // Windows: one through every boundary (hours of its start expired,
    // minutes of both edges expired), one old one inside the expired hours,
    // everything including now, and nothing.
    let w_cut = (
        d0 + 86_400 + 5 * 3_600 + 17 * 60 + 23,
        d0 + 4 * 86_400 + 13 * 3_600 + 2 * 60 + 41,
    );
    let w_old = (d0 + 3 * 3_600 + 12 * 60 + 7, d0 + 2 * 86_400 + 59);
    let w_all = (d0 - 2 * 86_400, now + 3_600);
    let w_empty = (
        NaiveDate::from_ymd_opt(2001, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp(),
        NaiveDate::from_ymd_opt(2001, 1, 8)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp(),
    );
    let windows = [
        ("cut", w_cut),
        ("old", w_old),
        ("all", w_all),
        ("empty", w_empty),
    ];
    // Sanity of the dataset: the windows hold data of every kind.
    let c = model.counts(acme, w_cut.0, w_cut.1);
    assert!(
        c.awarded > 5 && c.accepted > 3 && c.shares > 2 && c.views > 2,
        "{c:?}"
    );

    // ---- overview: all-time KPIs, period values, trends, every scope.
    let scopes: [(&str, &str, Scope); 6] = [
        ("key-admin", "", scope(None, None, None)),
        (
            "key-admin",
            "&org=globex",
            scope(Some("globex"), None, None),
        ),
        ("key-acme", "", acme),
        ("key-i1", "", scope(Some("acme"), Some("i1"), None)),
        ("key-b1", "", scope(Some("acme"), None, Some("b1"))),
        (
            "key-acme",
            "&issuer=i2&badge_class=b3",
            scope(Some("acme"), Some("i2"), Some("b3")),
        ),
    ];
    for (key, extra, s) in scopes {
        for (wname, w) in windows {
            let ctx = format!("overview {key}{extra} {wname}");
            let o = api
                .get(key, &format!("/api/v1/overview?{}{extra}", q(w)))
                .await;
            assert_measures(
                &o["kpis"],
                &model.counts(s, i64::MIN, i64::MAX),
                &format!("{ctx} kpis"),
            );
            let cur = model.counts(s, w.0, w.1);
            let prev = model.counts(s, (2 * w.0 - w.1).max(0), w.0);
            assert_measures(&o["period_values"], &cur, &format!("{ctx} period"));
            assert_eq!(o["period"]["from"], rfc(w.0));
            for (name, v) in count_fields(&cur) {
                let p = count_fields(&prev).iter().find(|x| x.0 == name).unwrap().1;
                let t = &o["trends"][name];
                assert_eq!(t["current"], v, "{ctx} {name}");
                assert_eq!(t["previous"], p, "{ctx} {name}");
                close(
                    &t["change"],
                    (p > 0).then(|| (v as f64 - p as f64) / p as f64),
                    &format!("{ctx} {name} change"),
                );
            }
        }
    }
    // Scoped keys are narrowed; outside their scope 403; no key 401.
    let o = api.get("key-i1", "/api/v1/overview").await;
    assert_eq!(
        o["scope"],
        json!({"org": "acme", "issuer": "i1", "badge_class": null})
    );
    api.error(Some("key-acme"), "/api/v1/overview?org=globex", 403, "org:")
        .await;
    api.error(
        Some("key-i1"),
        "/api/v1/distribution?dimension=view_source&issuer=i2",
        403,
        "issuer:",
    )
    .await;
    api.error(
        Some("key-b1"),
        "/api/v1/trends?badge_class=b2",
        403,
        "badge_class:",
    )
    .await;
    api.error(None, "/api/v1/top-badges", 401, "missing API key")
        .await;
    api.error(Some("nope"), "/api/v1/lifecycle", 401, "unknown API key")
        .await;
    let (status, _, _) = api
        .call(
            None,
            &format!("/api/v1/drivers?access_token=key-acme&{}", q(w_cut)),
        )
        .await;
    assert_eq!(status, 200, "access_token works as a key");

    // Overview as CSV: one row per measure, same numbers.
    let o = api
        .get("key-acme", &format!("/api/v1/overview?{}", q(w_cut)))
        .await;
    let rows = api
        .csv(
            "key-acme",
            &format!("/api/v1/overview?{}&format=csv", q(w_cut)),
        )
        .await;
    assert_eq!(
        rows[0],
        [
            "metric",
            "kpi",
            "period_value",
            "current",
            "previous",
            "change"
        ]
    );
    assert_eq!(rows.len(), 15);
    for r in csv_maps(&rows) {
        let m = &r["metric"];
        csv_num(&r["kpi"], &o["kpis"][m], m);
        csv_num(&r["period_value"], &o["period_values"][m], m);
        csv_num(&r["previous"], &o["trends"][m]["previous"], m);
        csv_num(&r["change"], &o["trends"][m]["change"], m);
    }

    // ---- distribution.
    for (key, s) in [
        ("key-admin", scope(None, None, None)),
        ("key-acme", acme),
        ("key-i1", scope(Some("acme"), Some("i1"), None)),
    ] {
        for (wname, w) in windows {
            for dim in [
                "award_method",
                "share_channel",
                "view_source",
                "view_country",
            ] {
                let ctx = format!("distribution {dim} {key} {wname}");
                let mut want: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                for e in model.select(s, w.0, w.1) {
                    match (dim, e.kind) {
                        ("award_method", "badge.awarded") => {
                            want.entry(e.method.clone())
                                .or_default()
                                .insert((e.org.clone(), e.assertion.clone()));
                        }
                        ("share_channel", "badge.shared") => {
                            *counts.entry(e.channel.clone()).or_default() += 1
                        }
                        ("view_source", "badge.viewed") => {
                            *counts.entry(e.source.clone()).or_default() += 1
                        }
                        ("view_country", "badge.viewed") => {
                            let c = if e.country.is_empty() {
                                "unknown".to_owned()
                            } else {
                                e.country.clone()
                            };
                            *counts.entry(c).or_default() += 1
                        }
                        _ => {}
                    }
                }
                for (k, v) in want {
                    counts.insert(k, v.len() as u64);
                }
                let mut expected: Vec<(String, u64)> = counts.into_iter().collect();
                expected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                let total: u64 = expected.iter().map(|e| e.1).sum();
                let d = api
                    .get(
                        key,
                        &format!("/api/v1/distribution?dimension={dim}&{}", q(w)),
                    )
                    .await;
                assert_eq!(d["dimension"], dim);
                let rows = d["rows"].as_array().unwrap();
                let got: Vec<(String, u64)> = rows
                    .iter()
                    .map(|r| {
                        (
                            r["value"].as_str().unwrap().to_owned(),
                            r["count"].as_u64().unwrap(),
                        )
                    })
                    .collect();
                assert_eq!(got, expected, "{ctx}");
                for (r, (_, n)) in rows.iter().zip(&expected) {
                    close(&r["share"], Some(*n as f64 / total as f64), &ctx);
                }
                if key == "key-acme" && wname == "cut" {
                    let csv = api
                        .csv(
                            key,
                            &format!("/api/v1/distribution?dimension={dim}&{}&format=csv", q(w)),
                        )
                        .await;
                    assert_eq!(csv[0], ["value", "count", "share"]);
                    assert_eq!(csv.len(), rows.len() + 1);
                    for (c, r) in csv[1..].iter().zip(rows) {
                        assert_eq!(c[0], r["value"].as_str().unwrap());
                        csv_num(&c[1], &r["count"], &ctx);
                        csv_num(&c[2], &r["share"], &ctx);
                    }
                }
            }
        }
    }
    let d = api
        .get(
            "key-acme",
            &format!("/api/v1/distribution?dimension=view_country&{}", q(w_all)),
        )
        .await;
    let fr = d["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["value"] == "FR")
        .unwrap();
    assert_eq!(fr["count"], 1, "the pixel's country: {d}");

    // ---- top badges: every metric, low_sample last, names, ties.
    let names: HashMap<&str, &str> = CLASSES
        .iter()
        .map(|c| (c.id, c.meta.map_or("", |m| m.0)))
        .collect();
    for (key, s) in [
        ("key-admin", scope(None, None, None)),
        ("key-i1", scope(Some("acme"), Some("i1"), None)),
    ] {
        for (wname, w) in windows {
            for (sort, order) in [
                ("performance", "desc"),
                ("views", "desc"),
                ("acceptance_rate", "asc"),
            ] {
                let ctx = format!("top-badges {key} {wname} {sort} {order}");
                let mut expected: Vec<(&str, &str, Counts)> = Vec::new();
                for c in &model.classes {
                    if !s.matches(c.org, c.issuer, c.id) {
                        continue;
                    }
                    let evs: Vec<&Ev> =
                        model.select(scope(Some(c.org), None, Some(c.id)), w.0, w.1);
                    if !evs.is_empty() {
                        expected.push((c.org, c.id, counts_of(&evs)));
                    }
                }
                let value = |c: &Counts| -> Option<f64> {
                    count_fields(c)
                        .iter()
                        .find(|x| x.0 == sort)
                        .map(|x| x.1 as f64)
                        .or_else(|| derived(c)[sort])
                };
                expected.sort_by(|a, b| {
                    let low = (a.2.awarded < MIN_AWARDED).cmp(&(b.2.awarded < MIN_AWARDED));
                    let by = match (value(&a.2), value(&b.2)) {
                        (Some(x), Some(y)) => {
                            if order == "desc" {
                                y.total_cmp(&x)
                            } else {
                                x.total_cmp(&y)
                            }
                        }
                        (Some(_), None) => std::cmp::Ordering::Less,
                        (None, Some(_)) => std::cmp::Ordering::Greater,
                        _ => std::cmp::Ordering::Equal,
                    };
                    low.then(by).then(a.1.cmp(b.1)).then(a.0.cmp(b.0))
                });
                let t = api
                    .get(
                        key,
                        &format!(
                            "/api/v1/top-badges?sort={sort}&order={order}&limit=3&{}",
                            q(w)
                        ),
                    )
                    .await;
                let rows = t["rows"].as_array().unwrap();
                assert_eq!(rows.len(), expected.len().min(3), "{ctx}: {t}");
                for (r, (org, id, c)) in rows.iter().zip(&expected) {
                    assert_eq!(r["org_id"], *org, "{ctx}");
                    assert_eq!(r["badge_class_id"], *id, "{ctx}");
                    assert_eq!(r["name"], names[id], "{ctx}");
                    assert_eq!(r["low_sample"], c.awarded < MIN_AWARDED, "{ctx}");
                    assert_measures(r, c, &ctx);
                }
            }
        }
    }
    let csv = api
        .csv(
            admin,
            &format!("/api/v1/top-badges?limit=1000&format=csv&{}", q(w_all)),
        )
        .await;
    let maps = csv_maps(&csv);
    let by_id: HashMap<&str, &HashMap<String, String>> = maps
        .iter()
        .map(|m| (m["badge_class_id"].as_str(), m))
        .collect();
    assert_eq!(by_id["b2"]["name"], "'=Excel Pro", "formula neutralised");
    assert_eq!(by_id["b3"]["name"], "Go, \"Basics\"", "quoted round trip");
    assert_eq!(by_id["b4"]["name"], "");
    let t = api
        .get(
            admin,
            &format!("/api/v1/top-badges?limit=1000&{}", q(w_all)),
        )
        .await;
    for r in t["rows"].as_array().unwrap() {
        let m = by_id[r["badge_class_id"].as_str().unwrap()];
        for name in [
            "awarded",
            "views",
            "performance",
            "share_rate",
            "external_impact_score",
        ] {
            csv_num(&m[name], &r[name], name);
        }
        assert_eq!(m["low_sample"], r["low_sample"].to_string());
    }

    // ---- trends: every granularity, zero-filled, partial edge buckets exact.
    let floor = |g: &str, t: i64| -> i64 {
        let d = DateTime::<Utc>::from_timestamp(t, 0).unwrap();
        match g {
            "minute" => t / 60 * 60,
            "hour" => t / 3_600 * 3_600,
            "day" => t / 86_400 * 86_400,
            "week" => (t / 86_400 - i64::from(d.weekday().num_days_from_monday())) * 86_400,
            _ => NaiveDate::from_ymd_opt(d.year(), d.month(), 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp(),
        }
    };
    let next = |g: &str, t: i64| -> i64 {
        match g {
            "minute" => t + 60,
            "hour" => t + 3_600,
            "day" => t + 86_400,
            "week" => t + 7 * 86_400,
            _ => {
                let d = DateTime::<Utc>::from_timestamp(t, 0).unwrap();
                let (y, m) = if d.month() == 12 {
                    (d.year() + 1, 1)
                } else {
                    (d.year(), d.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, 1)
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
                    .unwrap()
                    .and_utc()
                    .timestamp()
            }
        }
    };
    let metrics = "awarded,accepted,shared,shares,views,unique_viewers,acceptance_rate,performance,badge_classes";
    let w_now = (now - 95 * 60 + 17, now + 25 * 60);
    let w_short = (
        d0 + 2 * 86_400 + 7 * 3_600 + 1_234,
        d0 + 2 * 86_400 + 19 * 3_600 + 4_321,
    );
    let trend_cases = [
        ("key-acme", acme, "day", w_cut),
        ("key-acme", acme, "week", w_all),
        ("key-admin", scope(None, None, None), "month", w_all),
        ("key-admin", scope(None, None, None), "hour", w_old),
        (
            "key-b1",
            scope(Some("acme"), None, Some("b1")),
            "hour",
            w_cut,
        ),
        (
            "key-i1",
            scope(Some("acme"), Some("i1"), None),
            "minute",
            w_short,
        ),
        ("key-acme", acme, "minute", w_now),
        ("key-acme", acme, "day", w_empty),
    ];
    for (key, s, g, w) in trend_cases {
        let ctx = format!("trends {key} {g} {}..{}", rfc(w.0), rfc(w.1));
        let t = api
            .get(
                key,
                &format!("/api/v1/trends?metrics={metrics}&granularity={g}&{}", q(w)),
            )
            .await;
        assert_eq!(t["granularity"], g);
        let mut buckets = Vec::new();
        let mut b = floor(g, w.0);
        while b < w.1 {
            buckets.push(b);
            b = next(g, b);
        }
        let series = t["series"].as_object().unwrap();
        assert_eq!(
            series.keys().cloned().collect::<BTreeSet<_>>(),
            metrics.split(',').map(str::to_owned).collect()
        );
        for m in metrics.split(',') {
            let points = series[m].as_array().unwrap();
            assert_eq!(points.len(), buckets.len(), "{ctx} {m}");
            for (p, &b) in points.iter().zip(&buckets) {
                assert_eq!(p["t"], rfc(b), "{ctx}");
                let c = model.counts(s, b.max(w.0), next(g, b).min(w.1));
                match count_fields(&c).iter().find(|x| x.0 == m) {
                    Some((_, v)) => assert_eq!(p["value"], *v, "{ctx} {m} at {}", rfc(b)),
                    None => close(
                        &p["value"],
                        derived(&c)[m],
                        &format!("{ctx} {m} at {}", rfc(b)),
                    ),
                }
            }
        }
        if g == "minute" && key == "key-acme" {
            let views: u64 = series["views"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["value"].as_u64().unwrap())
                .sum();
            assert_eq!(views, 4, "the pixel views, from minute rollups: {t}");
        }
    }
    let t = api
        .get("key-acme", &format!("/api/v1/trends?{}", q(w_empty)))
        .await;
    assert_eq!(
        t["series"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["accepted", "awarded", "shared", "views"]
    );
    assert_eq!(t["series"]["awarded"].as_array().unwrap().len(), 7);
    assert!(t["series"]["awarded"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["value"] == 0));
    let t = api
        .get(
            "key-acme",
            &format!("/api/v1/trends?metrics=share_rate&{}", q(w_empty)),
        )
        .await;
    assert!(t["series"]["share_rate"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["value"].is_null()));
    // Trends CSV: t plus one column per metric.
    let t = api
        .get(
            "key-acme",
            &format!(
                "/api/v1/trends?metrics=views,reach_score&granularity=day&{}",
                q(w_cut)
            ),
        )
        .await;
    let csv = api
        .csv(
            "key-acme",
            &format!(
                "/api/v1/trends?metrics=views,reach_score&granularity=day&format=csv&{}",
                q(w_cut)
            ),
        )
        .await;
    assert_eq!(csv[0], ["t", "views", "reach_score"]);
    assert_eq!(
        csv.len() - 1,
        t["series"]["views"].as_array().unwrap().len()
    );
    for (i, row) in csv[1..].iter().enumerate() {
        assert_eq!(row[0], t["series"]["views"][i]["t"].as_str().unwrap());
        csv_num(&row[1], &t["series"]["views"][i]["value"], "views");
        csv_num(
            &row[2],
            &t["series"]["reach_score"][i]["value"],
            "reach_score",
        );
    }
    api.error(
        Some(admin),
        &format!("/api/v1/trends?granularity=minute&{}", q(w_all)),
        400,
        "granularity:",
    )
    .await;
    api.error(
        Some(admin),
        "/api/v1/trends?granularity=fortnight",
        400,
        "granularity:",
    )
    .await;
    api.error(
        Some(admin),
        "/api/v1/trends?metrics=views,likes",
        400,
        "metrics:",
    )
    .await;

    // ---- lifecycle.
    #[derive(Default)]
    struct Life {
        aw: Option<i64>,
        ac: Option<i64>,
        sh: Option<i64>,
        vw: Option<i64>,
    }
    let mut lives: BTreeMap<(String, String, String, String), Life> = BTreeMap::new();
    for e in &model.events {
        if e.kind == "badge_class.upserted" {
            continue;
        }
        let l = lives
            .entry((
                e.org.clone(),
                e.issuer.clone(),
                e.class.clone(),
                e.assertion.clone(),
            ))
            .or_default();
        let slot = match e.kind {
            "badge.awarded" => &mut l.aw,
            "badge.accepted" => &mut l.ac,
            "badge.shared" => &mut l.sh,
            "badge.viewed" => &mut l.vw,
            _ => continue,
        };
        *slot = Some(slot.map_or(e.at, |t| t.min(e.at)));
    }
    let median = |mut v: Vec<i64>| -> Option<f64> {
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
    };
    for (key, s) in [
        ("key-admin", scope(None, None, None)),
        ("key-acme", acme),
        ("key-b1", scope(Some("acme"), None, Some("b1"))),
        ("key-globex", scope(Some("globex"), None, None)),
    ] {
        for (wname, w) in windows {
            let ctx = format!("lifecycle {key} {wname}");
            let cohort: Vec<&Life> = lives
                .iter()
                .filter(|((o, i, c, _), l)| {
                    s.matches(o, i, c) && l.aw.is_some_and(|t| t >= w.0 && t < w.1)
                })
                .map(|(_, l)| l)
                .collect();
            let n0 = cohort.len() as u64;
            let n1 = cohort.iter().filter(|l| l.ac.is_some()).count() as u64;
            let n2 = cohort
                .iter()
                .filter(|l| l.ac.is_some() && l.sh.is_some())
                .count() as u64;
            let n3 = cohort
                .iter()
                .filter(|l| l.ac.is_some() && l.sh.is_some() && l.vw.is_some())
                .count() as u64;
            let l = api.get(key, &format!("/api/v1/lifecycle?{}", q(w))).await;
            let stages = l["stages"].as_array().unwrap();
            let names: Vec<&str> = stages
                .iter()
                .map(|s| s["stage"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["awarded", "accepted", "shared", "viewed"]);
            let counts = [n0, n1, n2, n3];
            for (i, st) in stages.iter().enumerate() {
                assert_eq!(st["count"], counts[i], "{ctx} {}", names[i]);
                let conv = if i == 0 {
                    Some(1.0)
                } else {
                    (counts[i - 1] > 0).then(|| counts[i] as f64 / counts[i - 1] as f64)
                };
                close(&st["conversion"], conv, &ctx);
                close(&st["drop_off"], conv.map(|c| 1.0 - c), &ctx);
            }
            let mh = &l["median_hours"];
            close(
                &mh["award_to_accept"],
                median(cohort.iter().filter_map(|l| Some(l.ac? - l.aw?)).collect()),
                &ctx,
            );
            close(
                &mh["accept_to_share"],
                median(cohort.iter().filter_map(|l| Some(l.sh? - l.ac?)).collect()),
                &ctx,
            );
            close(
                &mh["share_to_view"],
                // Over the Viewed stage: accepted, shared and viewed.
                median(
                    cohort
                        .iter()
                        .filter(|l| l.ac.is_some())
                        .filter_map(|l| Some(l.vw? - l.sh?))
                        .collect(),
                ),
                &ctx,
            );
            if wname == "all" && key == "key-acme" {
                assert!(n3 > 0 && mh["share_to_view"].is_number(), "{l}");
                let csv = api
                    .csv(key, &format!("/api/v1/lifecycle?format=csv&{}", q(w)))
                    .await;
                assert_eq!(
                    csv[0],
                    [
                        "stage",
                        "count",
                        "conversion",
                        "drop_off",
                        "median_hours_from_previous"
                    ]
                );
                for (i, row) in csv[1..].iter().enumerate() {
                    assert_eq!(row[0], names[i]);
                    csv_num(&row[1], &stages[i]["count"], &ctx);
                    csv_num(&row[2], &stages[i]["conversion"], &ctx);
                    csv_num(&row[3], &stages[i]["drop_off"], &ctx);
                }
                csv_num(&csv[2][4], &mh["award_to_accept"], &ctx);
                csv_num(&csv[4][4], &mh["share_to_view"], &ctx);
            }
        }
    }

    // ---- drivers.
    for (key, s) in [("key-acme", acme), ("key-admin", scope(None, None, None))] {
        for (wname, w) in windows {
            let ctx = format!("drivers {key} {wname}");
            let d = api.get(key, &format!("/api/v1/drivers?{}", q(w))).await;
            let drivers = d["drivers"].as_array().unwrap();
            let attrs: Vec<&str> = drivers
                .iter()
                .map(|x| x["attribute"].as_str().unwrap())
                .collect();
            assert_eq!(
                attrs,
                ["skills_aligned", "in_pathway", "in_catalog", "featured"],
                "{ctx}"
            );
            let with_meta: Vec<&ClassDef> = model
                .classes
                .iter()
                .filter(|c| c.meta.is_some() && s.matches(c.org, c.issuer, c.id))
                .collect();
            for x in drivers {
                let a = x["attribute"].as_str().unwrap();
                let has = |c: &ClassDef| {
                    let m = c.meta.unwrap().1;
                    match a {
                        "skills_aligned" => m.skills,
                        "in_pathway" => m.pathway,
                        "in_catalog" => m.catalog,
                        _ => m.featured == Some(true),
                    }
                };
                let mut groups = Vec::new();
                for (side, want) in [("with", true), ("without", false)] {
                    let members: Vec<Counts> = with_meta
                        .iter()
                        .filter(|c| has(c) == want)
                        .map(|c| model.counts(scope(Some(c.org), None, Some(c.id)), w.0, w.1))
                        .collect();
                    let mut pooled = Counts::default();
                    for c in &members {
                        pooled.awarded += c.awarded;
                        pooled.accepted += c.accepted;
                        pooled.shared += c.shared;
                        pooled.shares += c.shares;
                        pooled.views += c.views;
                    }
                    let scores = |m: &str| -> Vec<f64> {
                        members
                            .iter()
                            .filter(|c| c.awarded > 0)
                            .map(|c| derived(c)[m].unwrap())
                            .collect()
                    };
                    let mean =
                        |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
                    let g = &x[side];
                    let gctx = format!("{ctx} {a} {side}");
                    assert_eq!(g["badge_classes"], members.len(), "{gctx}");
                    assert_eq!(g["awarded"], pooled.awarded, "{gctx}");
                    let p = derived(&pooled);
                    close(&g["acceptance_rate"], p["acceptance_rate"], &gctx);
                    close(&g["share_rate"], p["share_rate"], &gctx);
                    close(
                        &g["external_impact_score"],
                        p["external_impact_score"],
                        &gctx,
                    );
                    let (e, r) = (scores("engagement_score"), scores("reach_score"));
                    close(&g["engagement_score"], mean(&e), &gctx);
                    close(&g["reach_score"], mean(&r), &gctx);
                    groups.push((pooled, e, r));
                }
                for m in [
                    "engagement_score",
                    "reach_score",
                    "acceptance_rate",
                    "share_rate",
                    "external_impact_score",
                ] {
                    let (w_, wo) = (x["with"][m].as_f64(), x["without"][m].as_f64());
                    let lift = match (w_, wo) {
                        (Some(a), Some(b)) if b != 0.0 => Some(a / b - 1.0),
                        _ => None,
                    };
                    close(&x["lift"][m], lift, &format!("{ctx} {a} lift {m}"));
                    let p = &x["p_value"][m];
                    assert!(
                        p.is_null() || p.as_f64().is_some_and(|v| (0.0..=1.0).contains(&v)),
                        "{ctx} {a} {m}: {p}"
                    );
                }
                // The p-values are the library's tests on the model's inputs
                // (the tests themselves are checked against SciPy).
                let ((a1, e1, r1), (a2, e2, r2)) = (&groups[0], &groups[1]);
                use badgepulse_exporter::model::stats;
                close(
                    &x["p_value"]["acceptance_rate"],
                    stats::two_proportion_z(
                        a1.accepted.min(a1.awarded),
                        a1.awarded,
                        a2.accepted.min(a2.awarded),
                        a2.awarded,
                    ),
                    &ctx,
                );
                close(
                    &x["p_value"]["share_rate"],
                    stats::two_proportion_z(
                        a1.shared.min(a1.accepted),
                        a1.accepted,
                        a2.shared.min(a2.accepted),
                        a2.accepted,
                    ),
                    &ctx,
                );
                close(
                    &x["p_value"]["engagement_score"],
                    stats::welch_t(e1, e2),
                    &ctx,
                );
                close(&x["p_value"]["reach_score"], stats::welch_t(r1, r2), &ctx);
                close(
                    &x["p_value"]["external_impact_score"],
                    stats::poisson_rates(a1.views, a1.shares, a2.views, a2.shares),
                    &ctx,
                );
            }
            for sentence in d["insights"].as_array().unwrap() {
                let s = sentence.as_str().unwrap();
                assert!(
                    s.starts_with("Badges ") && s.contains(" than badges without (p "),
                    "{s}"
                );
            }
            if wname == "empty" {
                assert!(d["insights"].as_array().unwrap().is_empty());
                assert!(drivers
                    .iter()
                    .all(|x| x["with"]["engagement_score"].is_null()
                        && x["lift"]["share_rate"].is_null()));
            }
        }
    }
    let d = api
        .get("key-acme", &format!("/api/v1/drivers?{}", q(w_cut)))
        .await;
    let csv = api
        .csv(
            "key-acme",
            &format!("/api/v1/drivers?format=csv&{}", q(w_cut)),
        )
        .await;
    let maps = csv_maps(&csv);
    assert_eq!(maps.len(), 4);
    for (m, x) in maps.iter().zip(d["drivers"].as_array().unwrap()) {
        assert_eq!(m["attribute"], x["attribute"].as_str().unwrap());
        csv_num(&m["with_badge_classes"], &x["with"]["badge_classes"], "csv");
        csv_num(&m["without_share_rate"], &x["without"]["share_rate"], "csv");
        csv_num(
            &m["lift_acceptance_rate"],
            &x["lift"]["acceptance_rate"],
            "csv",
        );
        csv_num(
            &m["p_value_reach_score"],
            &x["p_value"]["reach_score"],
            "csv",
        );
    }

    // ---- annotations: created in scope, listed in scope and window.
    let at = |t: i64| rfc(t);
    let (s1, a1) = api.post(admin, json!({"org": "acme", "at": at(d0 + 2 * 86_400 + 12 * 3_600), "title": "Spring campaign", "text": "line 1\nline 2, \"quoted\""})).await;
    assert_eq!(s1, 201, "{a1}");
    assert_eq!(a1["org"], "acme");
    assert!(a1["issuer"].is_null() && a1["badge_class"].is_null());
    assert_eq!(a1["id"].as_str().unwrap().len(), 36);
    let (s2, a2) = api
        .post(
            "key-i1",
            json!({"at": at(d0 + 3 * 86_400), "title": "=HYPERLINK(\"x\")"}),
        )
        .await;
    assert_eq!(s2, 201, "{a2}");
    assert_eq!(a2["issuer"], "i1", "narrowed to the key's issuer");
    let (s3, a3) = api
        .post(
            "key-b1",
            json!({"at": at(d0 + 4 * 86_400), "title": "Rust launch"}),
        )
        .await;
    assert_eq!(s3, 201, "{a3}");
    assert_eq!(a3["badge_class"], "b1");
    assert!(a3["issuer"].is_null());
    let (s4, _) = api
        .post(
            admin,
            json!({"org": "globex", "at": at(d0 + 86_400), "title": "Globex update"}),
        )
        .await;
    assert_eq!(s4, 201);
    let (s5, _) = api
        .post("key-acme", json!({"at": "2001-01-02", "title": "Old"}))
        .await;
    assert_eq!(s5, 201);
    let (s6, e6) = api
        .post(
            "key-b1",
            json!({"at": at(d0), "title": "x", "badge_class": "b2"}),
        )
        .await;
    assert_eq!(s6, 403, "{e6}");
    let (s7, e7) = api
        .post("key-acme", json!({"at": at(d0), "title": "x".repeat(201)}))
        .await;
    assert_eq!(s7, 400);
    assert!(e7["error"].as_str().unwrap().starts_with("title:"));
    let titles = |v: &Value, field: &str| -> Vec<String> {
        v[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["title"].as_str().unwrap().to_owned())
            .collect()
    };
    let wq = q(w_all);
    let listed = |key: &'static str| {
        let api = &api;
        let wq = wq.clone();
        async move { api.get(key, &format!("/api/v1/annotations?{wq}")).await }
    };
    let three = ["Spring campaign", "=HYPERLINK(\"x\")", "Rust launch"];
    assert_eq!(titles(&listed("key-acme").await, "annotations"), three);
    assert_eq!(titles(&listed("key-i1").await, "annotations"), three);
    assert_eq!(
        titles(&listed("key-b1").await, "annotations"),
        ["Spring campaign", "Rust launch"]
    );
    assert_eq!(
        titles(&listed("key-globex").await, "annotations"),
        ["Globex update"]
    );
    assert_eq!(
        titles(&listed(admin).await, "annotations"),
        [
            "Globex update",
            "Spring campaign",
            "=HYPERLINK(\"x\")",
            "Rust launch"
        ]
    );
    let old = api
        .get("key-acme", &format!("/api/v1/annotations?{}", q(w_empty)))
        .await;
    assert_eq!(titles(&old, "annotations"), ["Old"]);
    let t = api
        .get("key-acme", &format!("/api/v1/trends?{wq}&granularity=week"))
        .await;
    assert_eq!(
        titles(&t, "annotations"),
        three,
        "trends carry the window's annotations"
    );
    let t = api
        .get("key-b1", &format!("/api/v1/trends?{}", q(w_cut)))
        .await;
    assert_eq!(
        titles(&t, "annotations"),
        ["Spring campaign", "Rust launch"]
    );
    let csv = api
        .csv("key-acme", &format!("/api/v1/annotations?format=csv&{wq}"))
        .await;
    assert_eq!(
        csv[0],
        [
            "id",
            "at",
            "title",
            "text",
            "org",
            "issuer",
            "badge_class",
            "created_at"
        ]
    );
    assert_eq!(csv[1][3], "line 1\nline 2, \"quoted\"");
    assert_eq!(csv[2][2], "'=HYPERLINK(\"x\")", "formula neutralised");
    assert_eq!(csv[2][5], "i1");
    assert_eq!(csv[3][6], "b1");

    // ---- the empty window: zeros and nulls, never NaN.
    let o = api
        .get(admin, &format!("/api/v1/overview?{}", q(w_empty)))
        .await;
    assert_eq!(o["period_values"]["awarded"], 0);
    assert!(o["period_values"]["performance"].is_null());
    let d = api
        .get(
            admin,
            &format!("/api/v1/distribution?dimension=award_method&{}", q(w_empty)),
        )
        .await;
    assert_eq!(d["rows"], json!([]));
    let l = api
        .get(admin, &format!("/api/v1/lifecycle?{}", q(w_empty)))
        .await;
    assert_eq!(
        l["median_hours"],
        json!({"award_to_accept": null, "accept_to_share": null, "share_to_view": null})
    );
    assert_eq!(
        l["stages"][1],
        json!({"stage": "accepted", "count": 0, "conversion": null, "drop_off": null})
    );
    let t = api
        .get(admin, &format!("/api/v1/top-badges?{}", q(w_empty)))
        .await;
    assert_eq!(t["rows"], json!([]));
    for path in ["overview", "top-badges", "drivers", "lifecycle", "trends"] {
        let (_, _, body) = api
            .call(Some(admin), &format!("/api/v1/{path}?{}", q(w_empty)))
            .await;
        assert!(
            !body.contains("NaN") && !body.contains("inf"),
            "{path}: {body}"
        );
    }

    // ---- parameter errors: 400 JSON naming the parameter.
    api.error(Some(admin), "/api/v1/distribution", 400, "dimension:")
        .await;
    api.error(
        Some(admin),
        "/api/v1/distribution?dimension=colour",
        400,
        "dimension:",
    )
    .await;
    api.error(Some(admin), "/api/v1/top-badges?sort=likes", 400, "sort:")
        .await;
    api.error(Some(admin), "/api/v1/top-badges?limit=5000", 400, "limit:")
        .await;
    api.error(
        Some(admin),
        "/api/v1/lifecycle?from=yesterday",
        400,
        "from:",
    )
    .await;
    api.error(
        Some(admin),
        "/api/v1/drivers?from=2024-03-02&to=2024-03-01",
        400,
        "from:",
    )
    .await;
    api.error(Some(admin), "/api/v1/overview?format=pdf", 400, "format:")
        .await;
    api.error(
        Some(admin),
        "/api/v1/overview?granularty=day",
        400,
        "granularty:",
    )
    .await;
    api.error(Some(admin), "/api/v1/annotations?limit=0", 400, "limit:")
        .await;

    // ---- the OpenAPI document names every route (and every answer above
    // was checked against it by `Api::send`).
    let doc = api.get("key-b1", "/api/v1/openapi.json").await;
    assert_eq!(&doc, api.openapi.document());
    for (path, methods) in badgepulse_exporter::http::api_routes() {
        for m in methods {
            assert!(doc["paths"][path][m].is_object(), "{m} {path}");
        }
    }

    scopes_are_what_each_key_may_see(&api, &model).await;
    answers_carry_etags_and_unchanged_ones_are_not_sent_again(&api, d0, w_cut).await;
}

/// `GET /api/v1/scopes` of every key equals the model's orgs, issuers and
/// badge classes at and below the key's scope, with their all-time
/// awards and the upserted names.
async fn scopes_are_what_each_key_may_see(api: &Api<'_>, model: &Model) {
    let awarded = |s: Scope| -> u64 { model.counts(s, i64::MIN, i64::MAX).awarded };
    let expected = |key_scope: Scope| -> Value {
        let seen: BTreeSet<(&str, &str, &str)> = model
            .events
            .iter()
            .filter(|e| key_scope.matches(&e.org, &e.issuer, &e.class))
            .map(|e| (e.org.as_str(), e.issuer.as_str(), e.class.as_str()))
            .collect();
        let orgs: BTreeSet<&str> = seen.iter().map(|k| k.0).collect();
        let issuers: BTreeSet<(&str, &str)> = seen.iter().map(|k| (k.0, k.1)).collect();
        let name = |org: &str, class: &str| {
            model
                .classes
                .iter()
                .find(|c| c.org == org && c.id == class)
                .and_then(|c| c.meta.map(|m| m.0))
        };
        json!({
            "scope": { "org": key_scope.org, "issuer": key_scope.issuer, "badge_class": key_scope.class },
            "orgs": if key_scope.issuer.is_none() && key_scope.class.is_none() {
                orgs.iter().map(|o| json!({ "org_id": o, "awarded": awarded(scope(Some(o), None, None)) })).collect()
            } else {
                Vec::new()
            },
            "issuers": if key_scope.class.is_none() {
                issuers.iter().map(|(o, i)| json!({
                    "org_id": o, "issuer_id": i, "awarded": awarded(scope(Some(o), Some(i), None))
                })).collect()
            } else {
                Vec::new()
            },
            "badge_classes": seen.iter().map(|(o, i, c)| json!({
                "org_id": o, "issuer_id": i, "badge_class_id": c, "name": name(o, c),
                "awarded": awarded(scope(Some(o), Some(i), Some(c)))
            })).collect::<Vec<_>>(),
        })
    };
    for (key, extra, key_scope) in [
        ("key-admin", "", scope(None, None, None)),
        (
            "key-admin",
            "?org=globex",
            scope(Some("globex"), None, None),
        ),
        ("key-acme", "", scope(Some("acme"), None, None)),
        (
            "key-acme",
            "?issuer=i2",
            scope(Some("acme"), Some("i2"), None),
        ),
        ("key-globex", "", scope(Some("globex"), None, None)),
        ("key-i1", "", scope(Some("acme"), Some("i1"), None)),
        ("key-b1", "", scope(Some("acme"), None, Some("b1"))),
    ] {
        let got = api.get(key, &format!("/api/v1/scopes{extra}")).await;
        let want = expected(key_scope);
        assert_eq!(got, want, "scopes of {key}{extra}");
        assert!(!want["badge_classes"].as_array().unwrap().is_empty());
    }
    // The admin key sees both orgs, and a badge class without an upsert
    // has no name.
    let all = api.get("key-admin", "/api/v1/scopes").await;
    assert_eq!(all["orgs"].as_array().unwrap().len(), 2);
    assert!(all["badge_classes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["badge_class_id"] == "b4" && b["name"].is_null()));
    // CSV: one row per org, issuer and badge class.
    let csv = api.csv("key-i1", "/api/v1/scopes?format=csv").await;
    assert_eq!(
        csv[0],
        [
            "level",
            "org_id",
            "issuer_id",
            "badge_class_id",
            "name",
            "awarded"
        ]
    );
    let i1 = expected(scope(Some("acme"), Some("i1"), None));
    let rows: Vec<Vec<String>> = i1["issuers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            vec![
                "issuer".to_owned(),
                "acme".to_owned(),
                i["issuer_id"].as_str().unwrap().to_owned(),
                String::new(),
                String::new(),
                i["awarded"].to_string(),
            ]
        })
        .chain(i1["badge_classes"].as_array().unwrap().iter().map(|b| {
            vec![
                "badge_class".to_owned(),
                "acme".to_owned(),
                "i1".to_owned(),
                b["badge_class_id"].as_str().unwrap().to_owned(),
                // A name a spreadsheet would read as a formula is neutralised.
                match b["name"].as_str().unwrap_or_default() {
                    n if n.starts_with(['=', '+', '-', '@']) => format!("'{n}"),
                    n => n.to_owned(),
                },
                b["awarded"].to_string(),
            ]
        }))
        .collect();
    assert_eq!(csv[1..], rows[..]);
    // Outside the key's scope: 403; a window does not apply: 400.
    api.error(Some("key-acme"), "/api/v1/scopes?org=globex", 403, "org:")
        .await;
    api.error(Some("key-i1"), "/api/v1/scopes?issuer=i2", 403, "issuer:")
        .await;
    api.error(
        Some("key-admin"),
        "/api/v1/scopes?from=2024-01-01",
        400,
        "from:",
    )
    .await;
    api.error(None, "/api/v1/scopes", 401, "").await;
}

/// Every GET answer has a strong `ETag`; sent back in `If-None-Match` it
/// gets `304` without a body until the answer changes, and a changed
/// answer comes with a new tag.
async fn answers_carry_etags_and_unchanged_ones_are_not_sent_again(
    api: &Api<'_>,
    d0: i64,
    w: (i64, i64),
) {
    let wq = q(w);
    let paths = [
        format!("/api/v1/overview?{wq}"),
        format!("/api/v1/overview?{wq}&format=csv"),
        format!("/api/v1/distribution?{wq}&dimension=share_channel"),
        format!("/api/v1/distribution?{wq}&dimension=share_channel&format=csv"),
        format!("/api/v1/top-badges?{wq}"),
        format!("/api/v1/trends?{wq}&granularity=hour"),
        format!("/api/v1/drivers?{wq}"),
        format!("/api/v1/lifecycle?{wq}&format=csv"),
        format!("/api/v1/annotations?{wq}"),
        "/api/v1/scopes".to_owned(),
        "/api/v1/scopes?format=csv".to_owned(),
        "/api/v1/openapi.json".to_owned(),
        format!("/api/v1/charts/trends.svg?{wq}"),
        format!("/api/v1/charts/top-badges.png?{wq}"),
        format!("/report?{wq}"),
    ];
    let mut tags = BTreeMap::new();
    for path in &paths {
        let full = api.send(Some("key-acme"), path, &[]).await;
        assert_eq!(full.status, 200, "{path}: {}", full.text());
        let tag = full.header("etag");
        assert!(
            tag.len() > 2 && tag.starts_with('"') && tag.ends_with('"'),
            "{path}: a strong ETag, got {tag:?}"
        );
        let again = api.send(Some("key-acme"), path, &[]).await;
        assert_eq!(again.header("etag"), tag, "{path}: same answer, same tag");
        assert_eq!(again.body, full.body, "{path}");

        let not_modified = api
            .send(Some("key-acme"), path, &[("If-None-Match", &tag)])
            .await;
        assert_eq!(not_modified.status, 304, "{path}");
        assert!(not_modified.body.is_empty(), "{path}: a 304 has no body");
        assert_eq!(not_modified.header("etag"), tag, "{path}");
        let listed = format!("\"other\", W/{tag}");
        let weak = api
            .send(Some("key-acme"), path, &[("If-None-Match", &listed)])
            .await;
        assert_eq!(weak.status, 304, "{path}: If-None-Match compares weakly");
        let other = api
            .send(Some("key-acme"), path, &[("If-None-Match", "\"other\"")])
            .await;
        assert_eq!(other.status, 200, "{path}");
        assert_eq!(other.body, full.body, "{path}");
        // Another key's scope is another answer.
        if !path.contains("openapi") {
            let globex = api.send(Some("key-globex"), path, &[]).await;
            assert_ne!(globex.header("etag"), tag, "{path}: another scope");
        }
        tags.insert(path.clone(), tag);
    }
    // A new annotation changes the answers that show it, and so their tags.
    let (status, _) = api
        .post(
            "key-acme",
            json!({ "at": rfc(d0 + 2 * 86_400 + 3_600), "title": "ETag check" }),
        )
        .await;
    assert_eq!(status, 201);
    for path in [&paths[8], &paths[5]] {
        let after = api
            .send(Some("key-acme"), path, &[("If-None-Match", &tags[path])])
            .await;
        assert_eq!(after.status, 200, "{path}: changed since the tag");
        assert_ne!(after.header("etag"), tags[path], "{path}");
        assert!(after.text().contains("ETag check"), "{path}");
    }
}
