//! Hostile input against the running services (part of issue 8): a corpus
//! of malformed, oversized, deeply nested, wrong-type, wrong-charset and
//! injection inputs for every endpoint of ingest and the exporter. Nothing
//! may crash or answer 5xx, every rejection must name the problem, and
//! nothing may be stored but the one valid event sent alongside.

use std::time::Duration;

use badgepulse_tests::{eventually, free_port, sha256_hex, wait_http, ClickHouse, Nats, Service};
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

const TOKEN: &str = "hostile-token";
const API_KEY: &str = "hostile-api-key";
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

fn valid_event() -> Value {
    json!({"event_id": "the-only-valid-one", "type": "badge.awarded",
           "occurred_at": (Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true),
           "org_id": "acme", "issuer_id": "i1", "badge_class_id": "b1", "assertion_id": "a1"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_corpus_is_rejected_clearly_and_stores_nothing() {
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let (ingest, admin, exporter) = (free_port(), free_port(), free_port());
    let config = format!(
        "[nats]\nurl = \"{}\"\n[clickhouse]\nurl = \"{}\"\ndatabase = \"hostile\"\n[ingest]\nbind = \"127.0.0.1:{ingest}\"\n\
         [ingest.pixel_keys]\nk1 = \"hostile-pixel-key-01234\"\n[[ingest.tokens]]\nsha256 = \"{}\"\norgs = [\"acme\"]\n\
         [aggregator]\nadmin_bind = \"127.0.0.1:{admin}\"\nflush_interval_ms = 100\n\
         [exporter]\nbind = \"127.0.0.1:{exporter}\"\n[[exporter.api_keys]]\nsha256 = \"{}\"\nscope = \"org:acme\"\n",
        nats.url(),
        ch.url(),
        sha256_hex(TOKEN),
        sha256_hex(API_KEY)
    );
    let _services = [
        Service::start("badgepulse-aggregator", &config, &[]),
        Service::start("badgepulse-ingest", &config, &[]),
        Service::start("badgepulse-exporter", &config, &[]),
    ];
    let ingest = format!("http://127.0.0.1:{ingest}");
    let exporter = format!("http://127.0.0.1:{exporter}");
    for url in [&ingest, &exporter, &format!("http://127.0.0.1:{admin}")] {
        wait_http(&format!("{url}/readyz"), Duration::from_secs(60))
            .await
            .unwrap();
    }
    let http = reqwest::Client::new();

    // Pixels: always the GIF, whatever the query or headers.
    let long = "a".repeat(6000);
    let pixel_queries = [
        "".to_owned(),
        "o=%ff%fe&i=%00&b=%&a=%zz".to_owned(),
        "o=acme'%20OR%201=1--&i=i1&b=b1&a=a1&kid=k1&sig=00".to_owned(),
        format!("o={long}&i=i1&b=b1&a=a1&kid=k1&sig=00"),
        "o=acme&o=evil&i=i1&b=b1&a=a1&kid=k1&sig=zz".to_owned(),
        "kid=../../etc/passwd&sig=%0d%0aSet-Cookie:%20x=1".to_owned(),
        "o=%E2%80%AE&i=%F0%9F%98%80&b=b&a=a&kid=k1&sig=".to_owned(),
    ];
    for q in &pixel_queries {
        for path in ["p.gif", "s.gif"] {
            let r = http
                .get(format!("{ingest}/{path}?{q}"))
                .header("User-Agent", BROWSER)
                .header("Referer", format!("https://{long}.example/%00%7f"))
                .header("X-Forwarded-For", "not-an-ip, 999.1.1.1")
                .header("CF-IPCountry", "<script>")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}?{q}");
            assert!(r.headers().get("set-cookie").is_none());
            assert_eq!(r.bytes().await.unwrap().len(), 43);
        }
    }
    // sendBeacon: garbage bodies, always 204.
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for body in [
        "".to_owned(),
        "null".to_owned(),
        "{\"type\":\"view\",\"o\":{\"$gt\":\"\"}}".to_owned(),
        nested.clone(),
        "\u{feff}{\"type\":\"share\"}".to_owned(),
        "x".repeat(100_000),
    ] {
        let r = http
            .post(format!("{ingest}/v1/beacon"))
            .header("User-Agent", BROWSER)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    // Platform events: every malformed body is a 4xx naming the problem;
    // the one valid event beside bad ones is accepted.
    let post = |body: String| {
        http.post(format!("{ingest}/v1/events"))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    for (body, status, mentions) in [
        (nested.clone(), 400, "JSON"),
        ("{\"events\": {}}".to_owned(), 400, "events"),
        ("{\"events\": null}".to_owned(), 400, "events"),
        ("[]".to_owned(), 400, "events"),
        ("\u{0}\u{1}".to_owned(), 400, "JSON"),
        (
            format!("{{\"events\": [{}]}}", vec!["{}"; 1001].join(",")),
            413,
            "1000",
        ),
        (
            format!("{{\"events\": [], \"pad\": \"{}\"}}", "x".repeat(1_100_000)),
            413,
            "bytes",
        ),
    ] {
        let r = post(body).await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains(mentions), "{v}");
    }
    let mut bad: Vec<Value> = vec![
        json!({"event_id": 5, "type": "badge.awarded"}),
        json!({"event_id": "x'); DROP TABLE events; --", "type": "badge.awarded", "occurred_at": "2026-01-01T00:00:00Z", "org_id": "acme", "issuer_id": "i", "badge_class_id": "b", "assertion_id": "a"}),
        json!({"event_id": "e", "type": "badge.awarded", "occurred_at": "2026-01-01T00:00:00Z", "org_id": "acme\u{0}", "issuer_id": "i", "badge_class_id": "b", "assertion_id": "a"}),
        json!({"event_id": "e2", "type": "badge.awarded", "occurred_at": "9999-99-99", "org_id": "acme", "issuer_id": "i", "badge_class_id": "b", "assertion_id": "a"}),
        json!({"event_id": "e3", "type": "badge_class.upserted", "occurred_at": "2026-01-01T00:00:00Z", "org_id": "acme", "issuer_id": "i", "badge_class_id": "b", "name": "x".repeat(10_000)}),
        json!({"event_id": "e4", "type": "badge_class.upserted", "occurred_at": "2026-01-01T00:00:00Z", "org_id": "acme", "issuer_id": "i", "badge_class_id": "b", "name": "n", "skills": [[["deep"]]]}),
        json!({"event_id": "e5", "type": "badge.viewed", "occurred_at": "2026-01-01T00:00:00Z", "org_id": "acme", "issuer_id": "i", "badge_class_id": "b", "assertion_id": "a", "source": "search", "country": "ÄÖ"}),
        json!({"event_id": "e6", "type": "badge.awarded", "occurred_at": 1700000000, "org_id": "acme", "issuer_id": "i", "badge_class_id": "b", "assertion_id": "a"}),
        json!({"event_id": "e7", "type": "badge.awarded", "occurred_at": "2026-01-01T00:00:00Z", "org_id": "globex", "issuer_id": "i", "badge_class_id": "b", "assertion_id": "a"}),
        json!(null),
        json!([1, 2, 3]),
    ];
    let rejected_count = bad.len();
    bad.push(valid_event());
    let r = post(json!({ "events": bad }).to_string()).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 1, "{v}");
    let rejected = v["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), rejected_count, "{v}");
    for r in rejected {
        let e = r["error"].as_str().unwrap();
        let (field, message) = e
            .split_once(": ")
            .unwrap_or_else(|| panic!("error without a field: {e}"));
        assert!(!field.is_empty() && !message.is_empty(), "{e}");
    }

    // Exporter: injection attempts through every parameter are 400s naming
    // the parameter (or 403 when they name another org); nothing breaks.
    let injections = [
        "' OR 1=1 --",
        "acme'; DROP TABLE hostile.events; --",
        "acme\\",
        "%00",
        "acme) UNION SELECT 1 --",
    ];
    let mut checked = 0;
    for bad_value in injections {
        let enc: String = bad_value
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        for (endpoint, param) in [
            ("overview", "org"),
            ("overview", "issuer"),
            ("overview", "badge_class"),
            ("overview", "from"),
            ("overview", "to"),
            ("distribution?dimension=award_method&", "org"),
            ("distribution?", "dimension"),
            ("top-badges?", "sort"),
            ("top-badges?", "limit"),
            ("trends?", "metrics"),
            ("trends?", "granularity"),
            ("lifecycle", "from"),
            ("drivers", "to"),
            ("annotations", "org"),
        ] {
            let sep = if endpoint.ends_with('?') || endpoint.ends_with('&') {
                ""
            } else {
                "?"
            };
            let url = format!("{exporter}/api/v1/{endpoint}{sep}{param}={enc}");
            let r = http.get(&url).bearer_auth(API_KEY).send().await.unwrap();
            let status = r.status().as_u16();
            assert!(status == 400 || status == 403, "{url}: {status}");
            let v: Value = r.json().await.unwrap();
            let e = v["error"].as_str().unwrap_or_default();
            if status == 400 {
                assert!(e.contains(param), "{url}: error does not name {param}: {e}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 60);
    let r = http
        .get(format!("{exporter}/api/v1/overview?format=csv&org=acme"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Still alive, and only the valid event was stored.
    for url in [&ingest, &exporter] {
        assert_eq!(
            http.get(format!("{url}/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    eventually(
        Duration::from_secs(30),
        "the valid event stored",
        || async { (ch.number("SELECT count() FROM hostile.events").await == 1).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ch.number("SELECT count() FROM hostile.events").await, 1);
    assert_eq!(
        ch.query("SELECT event_id FROM hostile.events")
            .await
            .unwrap()
            .trim(),
        "the-only-valid-one"
    );
    assert!(
        ch.number(
            "SELECT count() FROM system.tables WHERE database = 'hostile' AND name = 'events'"
        )
        .await
            == 1
    );
}
