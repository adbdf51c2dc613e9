//! badgepulse-ingest against a real NATS: every endpoint, every rejection
//! path, the privacy audit of what reaches NATS and the logs, a NATS restart
//! in the middle of traffic, and draining on SIGTERM.

use std::collections::HashMap;
use std::time::Duration;

use badgepulse_contract::event::EventType;
use badgepulse_contract::signing::{sign, PixelIds};
use badgepulse_contract::subject::STREAM;
use badgepulse_tests::{
    eventually, free_port, metric_value, scrape, sha256_hex, start_ingest, stream_events,
    stream_messages, wait_http, Nats, Service,
};
use chrono::{SecondsFormat, Timelike, Utc};
use serde_json::{json, Value};

const TOKEN: &str = "ingest-test-token";
const ACME_ONLY: &str = "acme-only-token";
const KEY: &str = "ingest-test-pixel-key-1";
const OLD_KEY: &str = "ingest-test-pixel-key-0";
const BROWSER: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15";

fn config(nats: &Nats, port: u16, admin: u16, extra: &str) -> String {
    format!(
        r#"[nats]
url = "{}"
[ingest]
bind = "127.0.0.1:{port}"
admin_bind = "127.0.0.1:{admin}"
platform_hosts = ["badges.example.org"]
trusted_proxies = ["127.0.0.1/32"]
country_header = "CF-IPCountry"
rate_limit_per_minute = 5
publish_timeout_ms = 1500
{extra}
[ingest.pixel_keys]
k1 = "{KEY}"
k0 = "{OLD_KEY}"
[[ingest.tokens]]
sha256 = "{}"
orgs = ["*"]
[[ingest.tokens]]
sha256 = "{}"
orgs = ["acme"]
"#,
        nats.url(),
        sha256_hex(TOKEN),
        sha256_hex(ACME_ONLY)
    )
}

/// Ingest with `extra` config lines: the service, its public URL and its
/// admin URL.
async fn start(nats: &Nats, extra: &str) -> (Service, String, String) {
    let (port, admin) = (free_port(), free_port());
    let ingest = start_ingest(&config(nats, port, admin, extra), port, admin).await;
    (ingest.svc, ingest.url, ingest.admin)
}

fn signed(o: &str, a: &str, kid: &str, key: &str) -> String {
    let ids = PixelIds {
        org_id: o,
        issuer_id: "i1",
        badge_class_id: "b1",
        assertion_id: a,
    };
    format!(
        "o={o}&i=i1&b=b1&a={a}&kid={kid}&sig={}",
        sign(key.as_bytes(), &ids)
    )
}

fn event(id: &str, org: &str) -> Value {
    json!({"event_id": id, "type": "badge.awarded",
           "occurred_at": (Utc::now() - chrono::Duration::days(3)).to_rfc3339_opts(SecondsFormat::Secs, true),
           "org_id": org, "issuer_id": "i1", "badge_class_id": "b1", "assertion_id": format!("as-{id}"), "award_method": "api"})
}

async fn get(
    http: &reqwest::Client,
    url: &str,
    ua: &str,
    client_ip: &str,
    referer: Option<&str>,
) -> reqwest::Response {
    let mut req = http
        .get(url)
        .header("User-Agent", ua)
        .header("X-Forwarded-For", client_ip)
        .header("CF-IPCountry", "FR");
    if let Some(r) = referer {
        req = req.header("Referer", r);
    }
    req.send().await.unwrap()
}

/// `badgepulse_ingest_beacons_total{kind, outcome}` on the admin listener
/// at `admin`.
async fn beacons(admin: &str, kind: &str, outcome: &str) -> f64 {
    metric_value(
        &scrape(&format!("{admin}/metrics")).await,
        "badgepulse_ingest_beacons_total",
        &[("kind", kind), ("outcome", outcome)],
    )
}

/// Waits until at least 2 s remain in the current minute, so a burst stays
/// inside one rate-limit window.
async fn away_from_minute_boundary() {
    while Utc::now().second() >= 57 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_and_rejection_path() {
    let nats = Nats::start().await;
    let (svc, url, admin) = start(&nats, "").await;
    let http = reqwest::Client::new();

    // Health, readiness, metrics, share script.
    assert_eq!(
        http.get(format!("{admin}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{admin}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let js = http.get(format!("{url}/v1/share.js")).send().await.unwrap();
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(js.text().await.unwrap().contains("sendBeacon"));

    // View pixel: valid (both keys of the rotation), each answered with the GIF.
    away_from_minute_boundary().await;
    for (kid, key, ip) in [("k1", KEY, "192.0.2.1"), ("k0", OLD_KEY, "192.0.2.2")] {
        let r = get(
            &http,
            &format!("{url}/p.gif?{}&src=embed", signed("acme", "a1", kid, key)),
            BROWSER,
            ip,
            None,
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/gif");
        assert!(r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-store"));
        assert!(r.headers().get("set-cookie").is_none());
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            badgepulse_ingest::http::GIF.as_slice()
        );
    }
    // Rejected pixels: still the GIF, outcome counted.
    let good = signed("acme", "a1", "k1", KEY);
    let cases: Vec<(String, &str, &str)> = vec![
        (good.replace("kid=k1", "kid=k7"), BROWSER, "bad_signature"),
        (good.replace("&kid=k1", ""), BROWSER, "bad_signature"),
        (
            signed("acme", "a1", "k1", "forged-key-forged-key"),
            BROWSER,
            "bad_signature",
        ),
        (good.replace("a=a1", "a=a2"), BROWSER, "bad_signature"),
        ("o=acme&i=i1&b=b1".to_owned(), BROWSER, "invalid"),
        (good.replace("o=acme", "o=ac%20me"), BROWSER, "invalid"),
        (
            good.clone(),
            "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
            "bot",
        ),
        (good.clone(), "facebookexternalhit/1.1", "bot"),
        (good.clone(), "python-requests/2.31", "bot"),
        (good.clone(), "", "bot"),
    ];
    for (query, ua, outcome) in &cases {
        let before = beacons(&admin, "view", outcome).await;
        let r = get(
            &http,
            &format!("{url}/p.gif?{query}"),
            ua,
            "192.0.2.9",
            None,
        )
        .await;
        assert_eq!(r.status(), 200, "{query}");
        assert_eq!(r.bytes().await.unwrap().len(), 43);
        assert_eq!(
            beacons(&admin, "view", outcome).await,
            before + 1.0,
            "{query} with {ua:?} should be {outcome}"
        );
    }
    let m = scrape(&format!("{admin}/metrics")).await;
    assert_eq!(
        metric_value(
            &m,
            "badgepulse_ingest_bots_total",
            &[("family", "link_preview")]
        ),
        2.0
    );
    assert_eq!(
        metric_value(
            &m,
            "badgepulse_ingest_bots_total",
            &[("family", "http_library")]
        ),
        1.0
    );
    assert_eq!(
        metric_value(&m, "badgepulse_ingest_bots_total", &[("family", "other")]),
        1.0
    );

    // Share pixel and sendBeacon.
    let r = get(
        &http,
        &format!("{url}/s.gif?{good}&c=linkedin"),
        BROWSER,
        "192.0.2.3",
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    get(
        &http,
        &format!("{url}/s.gif?{good}&c=myspace"),
        BROWSER,
        "192.0.2.3",
        None,
    )
    .await;
    assert_eq!(beacons(&admin, "share", "invalid").await, 1.0);
    let ids = json!({"o":"acme","i":"i1","b":"b1","a":"a1","kid":"k1","sig": sign(KEY.as_bytes(), &PixelIds{org_id:"acme",issuer_id:"i1",badge_class_id:"b1",assertion_id:"a1"})});
    for (body, ct) in [
        (json!({"type":"share","channel":"email"}), "text/plain"),
        (json!({"type":"view","src":"email"}), "application/json"),
    ] {
        let mut full = ids.clone();
        full.as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        let r = http
            .post(format!("{url}/v1/beacon"))
            .header("User-Agent", BROWSER)
            .header("X-Forwarded-For", "192.0.2.4")
            .header("CF-IPCountry", "FR")
            .header("Content-Type", ct)
            .body(full.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let r = http
        .post(format!("{url}/v1/beacon"))
        .header("User-Agent", BROWSER)
        .body("{nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(beacons(&admin, "view", "invalid").await, 3.0);

    // Rate limit: 5 per client per minute.
    away_from_minute_boundary().await;
    for _ in 0..7 {
        get(
            &http,
            &format!("{url}/p.gif?{good}"),
            BROWSER,
            "203.0.113.77",
            Some("https://lnkd.in/x"),
        )
        .await;
    }
    assert_eq!(beacons(&admin, "view", "rate_limited").await, 2.0);

    // Platform events: auth, sizes, malformed input, per-event rejections.
    let post = |body: String, token: Option<&'static str>| {
        let mut req = http.post(format!("{url}/v1/events")).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let ok_body = json!({"events": [event("p-1", "acme")]}).to_string();
    assert_eq!(post(ok_body.clone(), None).await.unwrap().status(), 401);
    assert_eq!(
        post(ok_body.clone(), Some("wrong")).await.unwrap().status(),
        401
    );
    let r = post("{\"events\": [".into(), Some(TOKEN)).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("JSON"));
    let r = post("{\"evts\": []}".into(), Some(TOKEN)).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .starts_with("events"));
    let many: Vec<Value> = (0..1001)
        .map(|i| event(&format!("m-{i}"), "acme"))
        .collect();
    assert_eq!(
        post(json!({"events": many}).to_string(), Some(TOKEN))
            .await
            .unwrap()
            .status(),
        413
    );
    let huge = json!({"events": [event("big", "acme")], "pad": "x".repeat(1 << 20)}).to_string();
    assert_eq!(post(huge, Some(TOKEN)).await.unwrap().status(), 413);

    let mut future = event("p-future", "acme");
    future["occurred_at"] = json!((Utc::now() + chrono::Duration::minutes(10)).to_rfc3339());
    let mut bad_type = event("p-type", "acme");
    bad_type["type"] = json!("badge.burned");
    let mut bad_channel = event("p-ch", "acme");
    bad_channel["type"] = json!("badge.shared");
    bad_channel.as_object_mut().unwrap().remove("award_method");
    bad_channel["channel"] = json!("carrier-pigeon");
    let mut bad_id = event("p-id", "acme");
    bad_id["event_id"] = json!("has space");
    let batch = vec![
        event("p-1", "acme"),
        future,
        bad_type,
        event("p-2", "globex"),
        bad_channel,
        bad_id,
        json!("not an object"),
        event("p-3", "acme"),
        event("p-3", "acme"),
    ];
    let r = post(json!({ "events": batch }).to_string(), Some(ACME_ONLY))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["accepted"], 2, "{body}");
    assert_eq!(body["duplicates"], 1, "{body}");
    let rejected: HashMap<u64, String> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let field = |i: u64| rejected[&i].split(':').next().unwrap().to_owned();
    assert_eq!(rejected.len(), 6, "{body}");
    assert_eq!(field(1), "occurred_at");
    assert_eq!(field(2), "type");
    assert_eq!(field(3), "org_id");
    assert_eq!(field(4), "channel");
    assert_eq!(field(5), "event_id");
    assert_eq!(field(6), "event");
    assert_eq!(body["rejected"][0]["event_id"], "p-future");
    // Resend: duplicates, nothing new.
    let again = post(
        json!({"events": [event("p-1", "acme"), event("p-3", "acme")]}).to_string(),
        Some(TOKEN),
    )
    .await
    .unwrap();
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        json!({"accepted": 0, "duplicates": 2, "rejected": []})
    );

    // What reached NATS: the accepted events once each, beacons with their
    // classification, and no raw IP address or User-Agent anywhere.
    let client = nats.client().await;
    let accepted_views = beacons(&admin, "view", "accepted").await as usize;
    let accepted_shares = beacons(&admin, "share", "accepted").await as usize;
    // Two keys of the rotation, the sendBeacon view, five within the rate limit.
    assert_eq!(accepted_views, 2 + 1 + 5);
    assert_eq!(accepted_shares, 2);
    let messages = eventually(Duration::from_secs(10), "beacons published", || async {
        let msgs = stream_messages(&client, STREAM).await;
        (stream_events(&msgs).len() == 2 + accepted_views + accepted_shares).then_some(msgs)
    })
    .await;
    let events = stream_events(&messages);
    let platform: Vec<_> = messages.iter().filter(|m| !m.beacons).collect();
    assert_eq!(platform.len(), 2);
    assert_eq!(platform[0].msg_id.as_deref(), Some("p-1"));
    assert_eq!(platform[0].subject, "badgepulse.events.0.badge.awarded");
    let views: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventType::Viewed)
        .collect();
    assert!(views
        .iter()
        .all(|v| v.viewer_key.is_some() && v.country.as_deref() == Some("FR")));
    let sources: Vec<&str> = views.iter().map(|v| v.source.unwrap().as_str()).collect();
    assert_eq!(sources.iter().filter(|s| **s == "embed").count(), 2);
    assert_eq!(sources.iter().filter(|s| **s == "email").count(), 1);
    assert_eq!(sources.iter().filter(|s| **s == "linkedin").count(), 5);
    let distinct_viewers: std::collections::HashSet<u64> =
        views.iter().map(|v| v.viewer_key.unwrap()).collect();
    assert_eq!(
        distinct_viewers.len(),
        4,
        "192.0.2.1, 192.0.2.2, 192.0.2.4, 203.0.113.77"
    );
    let shares: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == EventType::Shared)
        .map(|e| e.channel.unwrap().as_str())
        .collect();
    assert_eq!(shares.len(), 2);
    assert!(shares.contains(&"linkedin") && shares.contains(&"email"));
    let everything: Vec<u8> = messages
        .iter()
        .flat_map(|m| [m.headers.as_bytes(), m.payload.as_slice()].concat())
        .collect();
    let everything = String::from_utf8_lossy(&everything);
    for secret in [
        "192.0.2.",
        "203.0.113.",
        "127.0.0.1",
        "Mozilla",
        "Safari",
        "LinkedInBot",
    ] {
        assert!(
            !everything.contains(secret),
            "NATS messages (headers or payloads) contain {secret}"
        );
    }
    drop(svc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_hold_addresses_or_user_agents() {
    let nats = Nats::start().await;
    let (port, admin_port) = (free_port(), free_port());
    // At debug level, every crate's included: what an operator turns on
    // to investigate must not leak either.
    let mut svc = Service::start_with_env(
        "badgepulse-ingest",
        &config(&nats, port, admin_port, ""),
        &[],
        &[("RUST_LOG", "debug")],
    );
    let url = format!("http://127.0.0.1:{port}");
    let admin = format!("http://127.0.0.1:{admin_port}");
    wait_http(&format!("{admin}/readyz"), Duration::from_secs(30))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let good = signed("acme", "a1", "k1", KEY);
    for q in [good.clone(), good.replace("sig=", "sig=ff")] {
        get(
            &http,
            &format!("{url}/p.gif?{q}"),
            "Mozilla/5.0 SecretAgent/1.0",
            "198.51.100.200",
            None,
        )
        .await;
    }
    // NATS outage: the warnings logged must not carry request data either.
    let mut nats = nats;
    nats.stop();
    get(
        &http,
        &format!("{url}/p.gif?{good}"),
        "Mozilla/5.0 SecretAgent/1.0",
        "198.51.100.201",
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.restart().await;
    assert!(svc.stop(), "ingest exits cleanly on SIGTERM");
    let log = svc.log_text();
    assert!(log.contains("ingest stopped"), "{log}");
    for secret in ["198.51.100", "SecretAgent"] {
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "log lines carry {secret}: {leaks:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_mid_traffic_loses_nothing_answered() {
    let mut nats = Nats::start().await;
    let (svc, url, admin) = start(&nats, "").await;
    let http = reqwest::Client::new();
    let good = signed("acme", "a1", "k1", KEY);

    let mut answered_200 = Vec::new();
    let mut answered_503 = 0;
    let mut next = 0;
    let send = |ids: Vec<String>| {
        let events: Vec<Value> = ids.iter().map(|id| event(id, "acme")).collect();
        http.post(format!("{url}/v1/events"))
            .bearer_auth(TOKEN)
            .json(&json!({ "events": events }))
            .send()
    };
    // Phase 1: NATS up. Phase 2: down (503s; pixels buffer). Phase 3: back up.
    for phase in 0..3 {
        if phase == 1 {
            nats.stop();
        }
        if phase == 2 {
            nats.restart().await;
            wait_http(&format!("{admin}/readyz"), Duration::from_secs(30))
                .await
                .unwrap();
        }
        for _ in 0..5 {
            let ids: Vec<String> = (next..next + 20).map(|i| format!("r-{i}")).collect();
            next += 20;
            let r = send(ids.clone()).await.unwrap();
            match r.status().as_u16() {
                200 => answered_200.extend(ids),
                503 => {
                    assert_eq!(r.headers()["retry-after"], "5");
                    answered_503 += 1;
                }
                s => panic!("unexpected status {s}"),
            }
            for n in 0..4 {
                get(
                    &http,
                    &format!("{url}/p.gif?{good}"),
                    BROWSER,
                    &format!("198.51.100.{}", 10 + phase * 10 + n),
                    None,
                )
                .await;
            }
        }
        if phase == 1 {
            let r = http.get(format!("{admin}/readyz")).send().await.unwrap();
            assert_eq!(r.status(), 503, "readyz reports the outage");
        }
    }
    assert!(
        answered_503 >= 1,
        "the outage must have been visible to the platform"
    );
    assert_eq!(answered_200.len(), 3 * 5 * 20 - answered_503 * 20);

    let accepted_views = beacons(&admin, "view", "accepted").await as usize;
    assert_eq!(accepted_views, 60, "every pixel was taken into the buffer");
    let client = nats.client().await;
    let messages = eventually(
        Duration::from_secs(30),
        "buffered beacons published after the restart",
        || async {
            let msgs = stream_messages(&client, STREAM).await;
            let views = stream_events(&msgs)
                .iter()
                .filter(|e| e.kind == EventType::Viewed)
                .count();
            (views >= accepted_views).then_some(msgs)
        },
    )
    .await;
    let events = stream_events(&messages);
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for e in events.iter().filter(|e| e.kind == EventType::Awarded) {
        *per_id.entry(e.event_id.as_str()).or_default() += 1;
    }
    for id in &answered_200 {
        assert_eq!(
            per_id.get(id.as_str()),
            Some(&1),
            "event {id} answered 200 must be stored exactly once"
        );
    }
    let views = events
        .iter()
        .filter(|e| e.kind == EventType::Viewed)
        .count();
    assert_eq!(
        views, accepted_views,
        "every accepted beacon stored exactly once"
    );
    let view_ids: std::collections::HashSet<&str> = events
        .iter()
        .filter(|e| e.kind == EventType::Viewed)
        .map(|e| e.event_id.as_str())
        .collect();
    assert_eq!(view_ids.len(), views);
    drop(svc);
}

/// During a NATS outage the buffer holds exactly `buffer_capacity` beacons,
/// counting the ones already grouped into batches and retrying: the rest
/// are dropped and counted, the held ones are published once when NATS
/// returns, and their room is free again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_overflow_during_an_outage_is_dropped_and_counted() {
    let mut nats = Nats::start().await;
    // Small batches and few in flight: the first beacons leave the queue
    // for retrying batches, which must still count against the capacity.
    let (svc, url, admin) = start(
        &nats,
        "buffer_capacity = 10\nbatch_max_beacons = 2\nmax_inflight_batches = 2\nbatch_max_delay_ms = 1",
    )
    .await;
    let http = reqwest::Client::new();
    let good = signed("acme", "a1", "k1", KEY);
    nats.stop();
    for n in 0..25 {
        let r = get(
            &http,
            &format!("{url}/p.gif?{good}"),
            BROWSER,
            &format!("198.51.100.{n}"),
            None,
        )
        .await;
        assert_eq!(r.status(), 200, "a pixel always answers its GIF");
        // Let the batcher take what is queued into batches.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(beacons(&admin, "view", "accepted").await, 10.0);
    assert_eq!(beacons(&admin, "view", "dropped").await, 15.0);
    let depth = |text: String| metric_value(&text, "badgepulse_ingest_buffer_depth", &[]);
    assert_eq!(depth(scrape(&format!("{admin}/metrics")).await), 10.0);

    nats.restart().await;
    let client = nats.client().await;
    let views = || async {
        stream_events(&stream_messages(&client, STREAM).await)
            .iter()
            .filter(|e| e.kind == EventType::Viewed)
            .count()
    };
    eventually(
        Duration::from_secs(30),
        "the held beacons published after the restart",
        || async {
            let empty = depth(scrape(&format!("{admin}/metrics")).await) == 0.0;
            (empty && views().await == 10).then_some(())
        },
    )
    .await;
    for n in 25..30 {
        get(
            &http,
            &format!("{url}/p.gif?{good}"),
            BROWSER,
            &format!("198.51.100.{n}"),
            None,
        )
        .await;
    }
    assert_eq!(
        beacons(&admin, "view", "accepted").await,
        15.0,
        "room again once published"
    );
    eventually(
        Duration::from_secs(30),
        "the later beacons published",
        || async { (views().await == 15).then_some(()) },
    )
    .await;
    assert_eq!(beacons(&admin, "view", "dropped").await, 15.0);
    drop(svc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_buffered_beacons() {
    let nats = Nats::start().await;
    // A long batching delay keeps beacons in the buffer until shutdown.
    let (mut svc, url, admin) = start(
        &nats,
        "batch_max_delay_ms = 60000\nbatch_max_beacons = 4096",
    )
    .await;
    let http = reqwest::Client::new();
    let good = signed("acme", "a1", "k1", KEY);
    for n in 0..30 {
        get(
            &http,
            &format!("{url}/p.gif?{good}"),
            BROWSER,
            &format!("198.51.100.{n}"),
            None,
        )
        .await;
    }
    assert_eq!(beacons(&admin, "view", "accepted").await, 30.0);
    let client = nats.client().await;
    assert_eq!(
        stream_messages(&client, STREAM).await.len(),
        0,
        "still buffered"
    );
    assert!(svc.stop(), "clean exit");
    let events = stream_events(&stream_messages(&client, STREAM).await);
    assert_eq!(
        events.len(),
        30,
        "every buffered beacon published during the drain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_nats_outage_exits_after_the_drain_deadline() {
    let mut nats = Nats::start().await;
    let (mut svc, url, admin) = start(&nats, "drain_timeout_secs = 2").await;
    let http = reqwest::Client::new();
    nats.stop();
    let good = signed("acme", "a1", "k1", KEY);
    get(
        &http,
        &format!("{url}/p.gif?{good}"),
        BROWSER,
        "198.51.100.9",
        None,
    )
    .await;
    assert_eq!(beacons(&admin, "view", "accepted").await, 1.0);
    let started = std::time::Instant::now();
    assert!(
        svc.stop(),
        "ingest exits by itself (not killed) although NATS is gone"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "exit took {:?}",
        started.elapsed()
    );
    let log = svc.log_text();
    assert!(
        log.contains("beacon batch not published"),
        "the lost batch is logged: {log}"
    );
}

/// `sign-url | head -1`: a reader that closes the pipe before the output is
/// written must not make the command fail (it used to panic on EPIPE).
#[test]
fn sign_url_into_a_closed_pipe_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ingest.toml");
    std::fs::write(&config, format!("[ingest.pixel_keys]\nk1 = \"{KEY}\"\n")).unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(badgepulse_tests::workspace_bin("badgepulse-ingest"))
        .arg("--config")
        .arg(&config)
        .args([
            "sign-url",
            "--org",
            "o",
            "--issuer",
            "i",
            "--badge-class",
            "b",
        ])
        .args(["--assertion", "a"])
        .stdout(writer)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sign-url into a closed pipe: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `badgepulse_ingest_http_requests_total{route,status}`: the pixels count
/// themselves (outside the counting middleware), every other route, unknown
/// paths (`other`) and wrong methods are counted too.
#[tokio::test]
async fn every_request_is_counted_by_route_and_status() {
    let nats = Nats::start().await;
    let (_svc, url, admin) = start(&nats, "").await;
    let http = reqwest::Client::new();
    let view = format!("{url}/p.gif?{}", signed("acme", "a-count", "k1", KEY));
    let share = format!(
        "{url}/s.gif?{}&c=linkedin",
        signed("acme", "a-count", "k1", KEY)
    );
    for (method, target, status) in [
        (reqwest::Method::GET, view.as_str(), 200),
        (reqwest::Method::GET, view.as_str(), 200),
        (reqwest::Method::GET, share.as_str(), 200),
        (reqwest::Method::POST, view.as_str(), 405),
        (reqwest::Method::GET, &format!("{url}/nope"), 404),
        (reqwest::Method::GET, &format!("{url}/v1/events"), 405),
        // The admin paths are not on the public listener (SPEC §4).
        (reqwest::Method::GET, &format!("{url}/healthz"), 404),
        (reqwest::Method::GET, &format!("{url}/readyz"), 404),
        (reqwest::Method::GET, &format!("{url}/metrics"), 404),
        (reqwest::Method::GET, &format!("{admin}/healthz"), 200),
        (reqwest::Method::GET, &format!("{admin}/readyz"), 200),
    ] {
        let r = http
            .request(method.clone(), target)
            .header("User-Agent", BROWSER)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {target}");
    }
    let m = scrape(&format!("{admin}/metrics")).await;
    for (route, status, n) in [
        ("/p.gif", "200", 2.0),
        ("/s.gif", "200", 1.0),
        ("/p.gif", "405", 1.0),
        ("other", "404", 4.0),
        ("/v1/events", "405", 1.0),
    ] {
        assert_eq!(
            metric_value(
                &m,
                "badgepulse_ingest_http_requests_total",
                &[("route", route), ("status", status)]
            ),
            n,
            "requests to {route} answered {status}"
        );
    }
}

/// SPEC §4–5: the daily salt lives in the KV bucket `badgepulse_salts`,
/// created by whichever instance needs it first, kept 48 hours. Two fresh
/// instances race to create it with their first pixels; both must key the
/// same viewer alike (a local stand-in salt would not), and neither falls
/// back. Before the bucket was created by hand, async-nats 0.51 failed on
/// nats-server 2.9 and every instance silently used a stand-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_the_daily_salt_through_nats_kv() {
    use badgepulse_contract::subject::SALT_BUCKET;

    let nats = Nats::start().await;
    let (_a, url_a, admin_a) = start(&nats, "").await;
    let (_b, url_b, admin_b) = start(&nats, "").await;
    let http = reqwest::Client::new();
    let pixel = |url: &str, assertion: &str| {
        format!("{url}/p.gif?{}", signed("acme", assertion, "k1", KEY))
    };
    // First pixels of both instances at once: they race to create the bucket.
    let (s1, s2) = (pixel(&url_a, "s1"), pixel(&url_b, "s2"));
    let (first_a, first_b) = tokio::join!(
        get(&http, &s1, BROWSER, "203.0.113.7", None),
        get(&http, &s2, BROWSER, "203.0.113.7", None),
    );
    assert_eq!(
        (first_a.status().as_u16(), first_b.status().as_u16()),
        (200, 200)
    );
    // A second viewer, through instance A.
    get(&http, &pixel(&url_a, "s3"), BROWSER, "203.0.113.8", None).await;
    for (url, admin) in [(&url_a, &admin_a), (&url_b, &admin_b)] {
        let text = scrape(&format!("{admin}/metrics")).await;
        assert_eq!(
            metric_value(&text, "badgepulse_ingest_salt_fallbacks_total", &[]),
            0.0,
            "{url} used a local stand-in salt"
        );
    }

    let client = nats.client().await;
    let views = eventually(
        Duration::from_secs(10),
        "three views in the stream",
        || async {
            let events = stream_events(&stream_messages(&client, STREAM).await);
            (events.len() == 3).then_some(events)
        },
    )
    .await;
    let key_of = |assertion: &str| {
        views
            .iter()
            .find(|e| e.assertion_id == assertion)
            .and_then(|e| e.viewer_key)
            .unwrap_or_else(|| panic!("view of {assertion} with a viewer key: {views:?}"))
    };
    assert_eq!(
        key_of("s1"),
        key_of("s2"),
        "one viewer, two instances, one key"
    );
    assert_ne!(key_of("s1"), key_of("s3"), "two viewers, two keys");

    // The bucket: today's salt, 32 bytes, one value per key, gone after 48 h.
    let js = async_nats::jetstream::new(client);
    let store = js.get_key_value(SALT_BUCKET).await.expect("salt bucket");
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let salt = store.get(&today).await.unwrap().expect("today's salt");
    assert_eq!(salt.len(), 32);
    let mut stream = js.get_stream(format!("KV_{SALT_BUCKET}")).await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert_eq!(config.max_age, Duration::from_secs(48 * 3600));
    assert_eq!(config.max_messages_per_subject, 1);
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        1,
        "one salt for the day, whichever instance won the race"
    );
}
