//! The API listener without ClickHouse: parameters, keys and errors are
//! checked before anything reaches the store.

use super::*;

use std::time::Duration;

use axum::body::Body;
use tower::ServiceExt;

use crate::analytics::Settings;
use crate::db::store::Store;
use crate::freshness::reader::Reader;
use crate::render::charts::ChartKind;
use badgepulse_runtime::keys::hash_key;
use params::chart_params;

fn app() -> Router {
    app_counting_into(Metrics::new())
}

fn app_counting_into(metrics: Metrics) -> Router {
    // Nothing listens here: requests that reach the store fail fast.
    let client = clickhouse::Client::default()
        .with_url("http://127.0.0.1:9")
        .with_database("bp_test");
    let keys = ApiKeys::from_config(&[
        crate::config::ApiKeyConfig {
            sha256: hash_key("adm"),
            scope: "admin".into(),
        },
        crate::config::ApiKeyConfig {
            sha256: hash_key("acme"),
            scope: "org:acme".into(),
        },
        crate::config::ApiKeyConfig {
            sha256: hash_key("b1"),
            scope: "badge:acme/b1".into(),
        },
    ])
    .unwrap();
    let store = Store::new(client, metrics.clone(), Duration::from_secs(5));
    router(Arc::new(AppState {
        analytics: Analytics::new(
            Reader::new(store),
            Settings::from_config(&crate::config::ExporterConfig::default()),
        ),
        keys,
        metrics,
        body_timeout: Duration::from_secs(2),
    }))
}

async fn send(
    method: &str,
    uri: &str,
    bearer: Option<&str>,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let mut req = axum::http::Request::builder().method(method).uri(uri);
    if let Some(k) = bearer {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let resp = app()
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

async fn get(uri: &str, bearer: Option<&str>) -> (StatusCode, serde_json::Value) {
    send("GET", uri, bearer, "").await
}

/// `uri` answers 400 with an error naming `param`.
async fn bad(uri: &str, param: &str) {
    let (status, body) = get(uri, Some("adm")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
    let msg = body["error"].as_str().unwrap();
    assert!(msg.starts_with(&format!("{param}:")), "{uri}: {msg}");
}

#[tokio::test]
async fn errors_are_json_naming_the_parameter() {
    let (status, body) = get("/api/v1/overview", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"].as_str().unwrap().contains("API key"),
        "{body}"
    );

    let (status, _) = get("/api/v1/overview?access_token=nope", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = get("/api/v1/overview?org=globex", Some("acme")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"].as_str().unwrap().starts_with("org:"),
        "{body}"
    );

    let (status, body) = get(
        "/api/v1/overview?from=2024-03-10&to=2024-03-01",
        Some("acme"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().starts_with("from:"),
        "{body}"
    );

    let (status, body) = get("/api/v1/overview?to=tomorrow&access_token=acme", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().starts_with("to:"), "{body}");

    bad("/api/v1/overview?org=a&org=b", "org").await;

    let (status, body) = get("/api/v1/nope", Some("adm")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn every_endpoint_checks_its_parameters() {
    // Unauthenticated requests learn nothing about their parameters.
    let (status, _) = get("/api/v1/trends?granularity=year", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    bad("/api/v1/overview?granularity=day", "granularity").await;
    bad("/api/v1/overview?format=xml", "format").await;
    bad("/api/v1/distribution", "dimension").await;
    bad("/api/v1/distribution?dimension=channel", "dimension").await;
    bad("/api/v1/top-badges?sort=fame", "sort").await;
    bad("/api/v1/top-badges?order=up", "order").await;
    bad("/api/v1/top-badges?limit=0", "limit").await;
    bad("/api/v1/top-badges?limit=1001", "limit").await;
    bad("/api/v1/top-badges?limit=ten", "limit").await;
    bad("/api/v1/trends?granularity=year", "granularity").await;
    bad("/api/v1/trends?metrics=views,fame", "metrics").await;
    bad("/api/v1/trends?metrics=views,,awarded", "metrics").await;
    bad("/api/v1/trends?metrics=views,views", "metrics").await;
    // The default window (30 days) has 43,200 minutes.
    bad("/api/v1/trends?granularity=minute", "granularity").await;
    bad("/api/v1/drivers?sort=views", "sort").await;
    bad("/api/v1/lifecycle?dimension=x", "dimension").await;
    bad("/api/v1/annotations?limit=100000", "limit").await;
    bad("/api/v1/openapi.json?format=csv", "format").await;
    bad("/api/v1/lifecycle?issuer=i1", "org").await;
    bad("/api/v1/impact", "annotation").await;
    bad("/api/v1/impact?annotation=a%20b", "annotation").await;
    bad("/api/v1/impact?annotation=a1&days=0", "days").await;
    bad("/api/v1/impact?annotation=a1&horizon=366", "horizon").await;
    bad("/api/v1/impact?annotation=a1&to=2024-03-01", "to").await;
    bad("/api/v1/timing?tz=Europe/Atlantis", "tz").await;
    bad("/api/v1/timing?stage=shared", "stage").await;
    bad("/api/v1/cohorts?granularity=day", "granularity").await;
    bad("/api/v1/cohorts?stage=awarded", "stage").await;
    bad("/api/v1/cohorts?from=1990-01-01&granularity=week", "from").await;
    bad("/api/v1/benchmark", "org").await;
    bad("/api/v1/benchmark?org=acme&badge_class=b1", "badge_class").await;
    bad("/api/v1/charts/impact.svg", "annotation").await;
    bad("/api/v1/charts/timing.png?tz=Mars", "tz").await;
    let (status, body) = get("/api/v1/benchmark", Some("b1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("badge_class:"));
}

#[tokio::test]
async fn annotations_are_validated_before_storing() {
    let post = |key: &'static str, body: &'static str| async move {
        send("POST", "/api/v1/annotations", Some(key), body).await
    };
    let (status, _) = send("POST", "/api/v1/annotations", None, "{}").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let cases = [
        ("acme", "nope", StatusCode::BAD_REQUEST, "body:"),
        ("acme", "[1]", StatusCode::BAD_REQUEST, "body:"),
        ("acme", r#"{"title":"x"}"#, StatusCode::BAD_REQUEST, "at:"),
        (
            "acme",
            r#"{"at":"2024-03-01"}"#,
            StatusCode::BAD_REQUEST,
            "title:",
        ),
        (
            "acme",
            r#"{"at":"2024-03-01","title":""}"#,
            StatusCode::BAD_REQUEST,
            "title:",
        ),
        (
            "acme",
            r#"{"at":"2024-03-01","title":"x","colour":"red"}"#,
            StatusCode::BAD_REQUEST,
            "colour:",
        ),
        (
            "acme",
            r#"{"at":"2024-03-01","title":5}"#,
            StatusCode::BAD_REQUEST,
            "title:",
        ),
        (
            "acme",
            r#"{"at":"2024-03-01","title":"x","org":"globex"}"#,
            StatusCode::FORBIDDEN,
            "org:",
        ),
        (
            "b1",
            r#"{"at":"2024-03-01","title":"x","badge_class":"b2"}"#,
            StatusCode::FORBIDDEN,
            "badge_class:",
        ),
        (
            "adm",
            r#"{"at":"2024-03-01","title":"x"}"#,
            StatusCode::BAD_REQUEST,
            "org:",
        ),
    ];
    for (key, body, status, prefix) in cases {
        let (got, json) = post(key, body).await;
        assert_eq!(got, status, "{body}: {json}");
        assert!(
            json["error"].as_str().unwrap().starts_with(prefix),
            "{body}: {json}"
        );
    }
    let big = format!(
        r#"{{"at":"2024-03-01","title":"x","text":"{}"}}"#,
        "y".repeat(MAX_ANNOTATION_BODY)
    );
    let (status, json) = send("POST", "/api/v1/annotations", Some("acme"), &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{json}");
    assert!(json["error"].as_str().unwrap().starts_with("body:"));
    // The scope in the query string, as every GET takes it.
    let in_query = [
        (
            "adm",
            "/api/v1/annotations?org=acme&org=acme",
            r#"{"at":"2024-03-01","title":"x"}"#,
            StatusCode::BAD_REQUEST,
            "org:",
        ),
        (
            "adm",
            "/api/v1/annotations?org=acme",
            r#"{"at":"2024-03-01","title":"x","org":"globex"}"#,
            StatusCode::BAD_REQUEST,
            "org:",
        ),
        (
            "acme",
            "/api/v1/annotations?issuer=i1",
            r#"{"at":"2024-03-01","title":"x","issuer":"i2"}"#,
            StatusCode::BAD_REQUEST,
            "issuer:",
        ),
        (
            "acme",
            "/api/v1/annotations?org=globex",
            r#"{"at":"2024-03-01","title":"x"}"#,
            StatusCode::FORBIDDEN,
            "org:",
        ),
        (
            "acme",
            "/api/v1/annotations?limit=3",
            r#"{"at":"2024-03-01","title":"x"}"#,
            StatusCode::BAD_REQUEST,
            "limit:",
        ),
    ];
    for (key, path, body, status, prefix) in in_query {
        let (got, json) = send("POST", path, Some(key), body).await;
        assert_eq!(got, status, "{path} {body}: {json}");
        assert!(
            json["error"].as_str().unwrap().starts_with(prefix),
            "{path} {body}: {json}"
        );
    }
    // Valid annotations reach the (absent) store: the scope in the
    // body, in the query string, or in both alike.
    let (status, _) = post("b1", r#"{"at":"2024-03-01","title":"Launch"}"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    for (path, body) in [
        (
            "/api/v1/annotations?org=acme",
            r#"{"at":"2024-03-01","title":"x"}"#,
        ),
        (
            "/api/v1/annotations?org=acme&issuer=i1",
            r#"{"at":"2024-03-01","title":"x","org":"acme"}"#,
        ),
    ] {
        let (status, json) = send("POST", path, Some("adm"), body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {json}");
    }
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let (status, doc) = get("/api/v1/openapi.json", Some("acme")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    for (path, methods) in api_routes() {
        for m in methods {
            assert!(
                doc["paths"][path][m].is_object(),
                "{m} {path} missing from the OpenAPI document"
            );
            // And the router serves it (401 without a key, not 404/405).
            let (status, _) = send(&m.to_uppercase(), path, None, "").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{m} {path}");
        }
    }
    let documented = doc["paths"].as_object().unwrap().len();
    assert_eq!(documented, api_routes().len());
    // Every parameter a chart accepts is documented on the chart path.
    let chart_doc: Vec<&str> = doc["paths"]["/api/v1/charts/{chart}.{ext}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for kind in ChartKind::ALL {
        for p in chart_params(kind) {
            assert!(chart_doc.contains(p), "chart parameter {p} undocumented");
        }
        assert!(doc.to_string().contains(&format!("\"{}\"", kind.as_str())));
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["accessToken"]["name"], "access_token");
    // Every $ref resolves.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/").skip(1) {
        let target = &r[..r.find('"').unwrap()];
        let (kind, name) = target.split_once('/').unwrap();
        assert!(
            doc["components"][kind][name].is_object(),
            "dangling $ref {target}"
        );
    }
}

#[tokio::test]
async fn charts_and_report_check_their_parameters() {
    // Authentication first, whatever the chart or parameter.
    for uri in [
        "/api/v1/charts/overview.png",
        "/api/v1/charts/pie.png?width=1",
        "/report?granularity=year",
    ] {
        let (status, _) = get(uri, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    for uri in ["/api/v1/charts/pie.png", "/api/v1/charts/overview.gif"] {
        let (status, body) = get(uri, Some("adm")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(body["error"].as_str().unwrap().starts_with("chart:"));
    }
    bad("/api/v1/charts/overview.png?width=199", "width").await;
    bad("/api/v1/charts/overview.svg?width=4001", "width").await;
    bad("/api/v1/charts/lifecycle.svg?height=big", "height").await;
    bad("/api/v1/charts/overview.svg?format=csv", "format").await;
    // Each chart takes its JSON endpoint's parameters, and only those.
    bad(
        "/api/v1/charts/overview.svg?dimension=award_method",
        "dimension",
    )
    .await;
    bad("/api/v1/charts/distribution.svg", "dimension").await;
    bad("/api/v1/charts/top-badges.png?limit=0", "limit").await;
    bad(
        "/api/v1/charts/trends.png?granularity=minute",
        "granularity",
    )
    .await;
    bad("/api/v1/charts/trends.svg?metrics=fame", "metrics").await;
    bad("/api/v1/charts/drivers.svg?sort=views", "sort").await;
    bad("/report?sort=views", "sort").await;
    bad("/report?format=csv", "format").await;
    bad("/report?granularity=minute", "granularity").await;
    let (status, body) = get("/report?org=globex", Some("acme")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = get("/report?access_token=b1&badge_class=b2", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn health_and_metrics_are_not_on_the_api_listener() {
    for path in badgepulse_runtime::ops::ADMIN_PATHS {
        for key in [None, Some("adm")] {
            let (status, json) = get(path, key).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {json}");
        }
    }
}

#[tokio::test]
async fn store_failure_is_503_json() {
    for uri in [
        "/api/v1/overview?from=2024-03-01",
        "/api/v1/distribution?dimension=view_country",
        "/api/v1/top-badges",
        "/api/v1/trends?format=csv",
        "/api/v1/drivers",
        "/api/v1/lifecycle",
        "/api/v1/annotations",
        "/api/v1/charts/overview.png?width=300",
        "/api/v1/charts/distribution.svg?dimension=share_channel",
        "/report",
    ] {
        let (status, body) = get(uri, Some("acme")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert!(body["error"].is_string(), "{uri}: {body}");
    }
}

#[tokio::test]
async fn get_answers_carry_an_etag_and_a_match_is_not_modified() {
    let metrics = Metrics::new();
    let app = app_counting_into(metrics.clone());
    let request = |uri: &str, if_none_match: Option<&str>| {
        let mut req = axum::http::Request::get(uri).header("authorization", "Bearer acme");
        if let Some(tag) = if_none_match {
            req = req.header("if-none-match", tag);
        }
        let app = app.clone();
        let req = req.body(Body::empty()).unwrap();
        async move {
            let resp = app.oneshot(req).await.unwrap();
            let (parts, body) = resp.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            (parts.status, parts.headers, bytes)
        }
    };
    let (status, headers, body) = request("/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let tag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(tag, etag::entity_tag(b"application/json", &body));
    assert_eq!(headers["cache-control"], "private, no-cache");

    let (status, headers, body) = request("/api/v1/openapi.json", Some(&tag)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(headers["etag"], tag.as_str());
    assert!(headers.get("content-type").is_none());
    let (status, _, body) = request("/api/v1/openapi.json", Some("\"stale\"")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.is_empty());
    // Errors carry no tag.
    let (status, headers, _) = request("/api/v1/overview?from=x", Some(&tag)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers.get("etag").is_none());
    let (status, _, _) = request("/nothing/here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Timed by route template and status class.
    let text = String::from_utf8(metrics.render()).unwrap();
    for (route, class, n) in [
        ("/api/v1/openapi.json", "2xx", 2),
        ("/api/v1/openapi.json", "3xx", 1),
        ("/api/v1/overview", "4xx", 1),
        ("unmatched", "4xx", 1),
        ("/api/v1/charts/{file}", "2xx", 0),
    ] {
        let series = format!(
            "badgepulse_exporter_http_request_duration_seconds_count{{route=\"{route}\",status_class=\"{class}\"}} {n}"
        );
        assert!(text.contains(&series), "{series} in\n{text}");
    }
}
