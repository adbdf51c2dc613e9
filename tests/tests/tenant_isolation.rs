//! Tenant isolation (SPEC §4, §8, §11): the probes and `/metrics` (which
//! holds every tenant's figures) are served only on the admin listeners;
//! the public listeners answer `404` for them. And a key scoped to one org
//! obtains nothing of another org through any route of the API listener:
//! every route of `API_ROUTES` (every chart, JSON and CSV) is walked with
//! every way of naming the other org's scope.

use std::time::Duration;

use badgepulse_exporter::http::api_routes;
use badgepulse_exporter::render::charts::ChartKind;
use badgepulse_runtime::ops::ADMIN_PATHS;
use badgepulse_tests::{
    eventually, scrape, start_services, ClickHouse, Nats, OpenApi, StackConfig, StackPorts,
};
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

const TOKEN: &str = "isolation-platform-token";
const ACME_KEY: &str = "isolation-acme-key";
const ADMIN_KEY: &str = "isolation-admin-key";
const DB: &str = "e2e_isolation";

/// What only the other org's data holds: names and titles, never echoed
/// from a request (ids may be, in `scope`).
const GLOBEX_SECRETS: [&str; 2] = ["Globex Confidential Badge", "Globex confidential plan"];

fn event(id: &str, kind: &str, org: &str, issuer: &str, class: &str, extra: Value) -> Value {
    let mut e = json!({
        "event_id": id, "type": kind,
        "occurred_at": (Utc::now() - chrono::Duration::hours(3)).to_rfc3339_opts(SecondsFormat::Secs, true),
        "org_id": org, "issuer_id": issuer, "badge_class_id": class,
    });
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

/// Acme: 3 awards of "Acme Badge"; globex: 7 awards of its confidential
/// badge, accepted, shared and viewed, and an annotation.
fn events() -> Vec<Value> {
    let mut v = vec![
        event(
            "ac-u",
            "badge_class.upserted",
            "acme",
            "i1",
            "b1",
            json!({"name": "Acme Badge", "skills": ["rust"]}),
        ),
        event(
            "gx-u",
            "badge_class.upserted",
            "globex",
            "gx-issuer",
            "gx-badge",
            json!({"name": GLOBEX_SECRETS[0], "skills": ["secrets"]}),
        ),
    ];
    for n in 0..3 {
        let a = format!("ac-a{n}");
        v.push(event(
            &format!("ac-aw{n}"),
            "badge.awarded",
            "acme",
            "i1",
            "b1",
            json!({"assertion_id": a}),
        ));
    }
    for n in 0..7 {
        let a = format!("gx-a{n}");
        for kind in ["awarded", "accepted", "shared", "viewed"] {
            v.push(event(
                &format!("gx-{kind}{n}"),
                &format!("badge.{kind}"),
                "globex",
                "gx-issuer",
                "gx-badge",
                json!({"assertion_id": a}),
            ));
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_of_the_public_listeners_gives_another_orgs_figures() {
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let ports = StackPorts::free();
    let config = StackConfig::new(&nats.url(), &ch.url(), DB, ports)
        .token(TOKEN, &["*"])
        .aggregator("flush_interval_ms = 100")
        .exporter("refresh_interval_secs = 1")
        .api_key(ACME_KEY, "org:acme")
        .api_key(ADMIN_KEY, "admin")
        .toml();
    let _services = start_services(&config, &ports.all()).await;
    let http = reqwest::Client::new();
    let events = events();
    let r = http
        .post(format!("{}/v1/events", ports.ingest_url()))
        .bearer_auth(TOKEN)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    ch.wait_for_events(DB, events.len() as u64, Duration::from_secs(60))
        .await;
    let r = http
        .post(format!(
            "{}/api/v1/annotations?org=globex",
            ports.exporter_url()
        ))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"at": Utc::now().to_rfc3339(), "title": GLOBEX_SECRETS[1]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let globex_annotation = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = http
        .post(format!("{}/api/v1/annotations", ports.exporter_url()))
        .bearer_auth(ACME_KEY)
        .json(&json!({"at": Utc::now().to_rfc3339(), "title": "Acme update"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let acme_annotation = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The admin listeners serve the probes and the metrics, which do hold
    // every tenant's figures (which is why they are not public).
    for admin in [ports.ingest_admin_url(), ports.exporter_admin_url()] {
        for path in ADMIN_PATHS {
            let r = http.get(format!("{admin}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 200, "{admin}{path}");
        }
    }
    eventually(
        Duration::from_secs(30),
        "globex on the admin /metrics",
        || async {
            scrape(&format!("{}/metrics", ports.exporter_admin_url()))
                .await
                .contains("org_id=\"globex\"")
                .then_some(())
        },
    )
    .await;

    // The public listeners do not, with or without a key, however asked.
    for public in [ports.ingest_url(), ports.exporter_url()] {
        for path in ADMIN_PATHS {
            for variant in [
                path.to_owned(),
                format!("{path}?org=globex"),
                format!("{path}/"),
                format!("/api/v1{path}"),
                format!("/api/v1/..{path}"),
                format!("//{}", path.trim_start_matches('/')),
            ] {
                for key in [None, Some(ACME_KEY), Some(ADMIN_KEY)] {
                    let mut req = http.get(format!("{public}{variant}"));
                    if let Some(key) = key {
                        req = req.bearer_auth(key);
                    }
                    let r = req.send().await.unwrap();
                    let status = r.status();
                    let body = r.text().await.unwrap();
                    assert_eq!(status, 404, "{public}{variant} with {key:?}: {body}");
                    assert!(!body.contains("globex"), "{public}{variant}: {body}");
                }
            }
        }
    }

    // Every route of the API listener, with the acme key, every way of
    // naming globex's scope: refused, or acme's own figures only.
    let exporter = ports.exporter_url();
    let mut paths = Vec::new();
    for (route, methods) in api_routes() {
        assert!(methods.contains(&"get"), "{route}");
        if route.contains("{chart}") {
            for chart in ChartKind::ALL {
                for ext in ["svg", "png"] {
                    paths.push(
                        route
                            .replace("{chart}", chart.as_str())
                            .replace("{ext}", ext),
                    );
                }
            }
        } else {
            paths.push(route.to_owned());
        }
    }
    let impact = format!("annotation={acme_annotation}&");
    let extra = |path: &str| match path {
        p if p.contains("distribution") => "dimension=view_source&",
        p if p.contains("impact") => impact.as_str(),
        _ => "",
    };
    let openapi = OpenApi::exporter();
    let mut walked = 0;
    for path in &paths {
        let tabular = path.starts_with("/api/v1/")
            && !path.contains("/charts/")
            && !path.ends_with("openapi.json");
        let formats: &[&str] = if tabular { &["", "format=csv&"] } else { &[""] };
        for format in formats {
            for (scope, refused) in [
                ("", false),
                ("org=acme&", false),
                ("org=globex&", true),
                ("org=globex&issuer=gx-issuer&", true),
                ("org=globex&badge_class=gx-badge&", true),
                ("issuer=gx-issuer&", false),
                ("badge_class=gx-badge&", false),
                ("org=acme&org=globex&", true),
            ] {
                if path.ends_with("openapi.json") && !scope.is_empty() {
                    continue;
                }
                for by_query in [false, true] {
                    let mut url = format!("{exporter}{path}?{}{format}{scope}", extra(path));
                    let mut req = http.get(&url);
                    if by_query {
                        url.push_str(&format!("access_token={ACME_KEY}"));
                        req = http.get(&url);
                    } else {
                        req = req.bearer_auth(ACME_KEY);
                    }
                    let r = req.send().await.unwrap();
                    let (status, headers) = (r.status().as_u16(), r.headers().clone());
                    let bytes = r.bytes().await.unwrap();
                    // Refused or not, the answer is one the document describes.
                    openapi.assert_answer("GET", path, status, &headers, &bytes);
                    let body = String::from_utf8_lossy(&bytes).into_owned();
                    walked += 1;
                    if refused {
                        assert!(status == 403 || status == 400, "{url}: {status} {body}");
                    } else if path.contains("benchmark") && scope.contains("badge_class=") {
                        // A badge class has no peers.
                        assert_eq!(status, 400, "{url}: {body}");
                    } else {
                        assert_eq!(status, 200, "{url}: {body}");
                    }
                    for secret in GLOBEX_SECRETS {
                        assert!(!body.contains(secret), "{url} shows {secret:?}: {body}");
                    }
                    // The scopes an org key lists are its own org's only.
                    if path == "/api/v1/scopes" && format.is_empty() && !refused {
                        let v: Value = serde_json::from_str(&body).unwrap();
                        for level in ["orgs", "issuers", "badge_classes"] {
                            for entry in v[level].as_array().unwrap() {
                                assert_eq!(entry["org_id"], "acme", "{url}: {v}");
                            }
                        }
                        if scope.is_empty() {
                            assert_eq!(
                                v["orgs"],
                                json!([{ "org_id": "acme", "awarded": 3 }]),
                                "{url}"
                            );
                        }
                    }
                    // Acme's own numbers, not the platform's.
                    if path == "/api/v1/overview" && format.is_empty() && !refused {
                        let v: Value = serde_json::from_str(&body).unwrap();
                        let expected = if scope.contains("gx-") { 0 } else { 3 };
                        assert_eq!(v["kpis"]["awarded"], expected, "{url}: {v}");
                        assert_eq!(v["kpis"]["views"], 0, "{url}: {v}");
                    }
                }
            }
        }
    }
    // The other org's program update is not found, however asked; the
    // benchmark ranks acme among every org without naming one.
    for path in [
        "/api/v1/impact",
        "/api/v1/impact?org=acme&",
        "/api/v1/charts/impact.svg",
    ] {
        let sep = if path.contains('?') { "" } else { "?" };
        let url = format!("{exporter}{path}{sep}annotation={globex_annotation}");
        let r = http.get(&url).bearer_auth(ACME_KEY).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(status, 404, "{url}: {body}");
        assert!(!body.contains(GLOBEX_SECRETS[1]), "{url}: {body}");
    }
    let r = http
        .get(format!("{exporter}/api/v1/benchmark"))
        .bearer_auth(ACME_KEY)
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(!body.contains("globex") && !body.contains("gx-"), "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["measures"][0]["peers"], 0,
        "3 awards are fewer than min_awarded: {v}"
    );

    // POST of an annotation into the other org.
    for target in ["?org=globex", ""] {
        let body = if target.is_empty() {
            json!({"org": "globex", "at": "2026-01-01", "title": "x"})
        } else {
            json!({"at": "2026-01-01", "title": "x"})
        };
        let r = http
            .post(format!("{exporter}/api/v1/annotations{target}"))
            .bearer_auth(ACME_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{target}");
    }
    eprintln!(
        "tenant isolation: {walked} requests over {} routes of the API listener",
        paths.len()
    );
}
