//! The exporter's OpenAPI document is valid OpenAPI 3.0 by a standard
//! validator (`openapi-spec-validator`, PyPI, installed by
//! deploy/local/install.sh), and its response schemas catch drift: a body
//! with a field too many, too few or of the wrong type fails them. The
//! real answers of every endpoint are checked against it in
//! `exporter_api.rs` and `tenant_isolation.rs`.

use std::process::Command;

use badgepulse_tests::OpenApi;
use serde_json::{json, Value};

/// `openapi-spec-validator` on `doc`: its output when it refuses it.
fn spec_validator(doc: &Value) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--errors", "all"])
        .arg(&file)
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("No module named openapi_spec_validator"),
        "openapi-spec-validator is missing: run deploy/local/install.sh"
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(text)
    }
}

#[test]
fn the_document_passes_openapi_spec_validator() {
    let doc = badgepulse_exporter::render::openapi::document();
    spec_validator(&doc).unwrap_or_else(|e| panic!("openapi-spec-validator: {e}"));

    // The validator does refuse what client generators trip on: a
    // `description` on a Media Type Object (not a field of OpenAPI 3.0).
    let mut bad = doc.clone();
    bad["paths"]["/api/v1/overview"]["get"]["responses"]["200"]["content"]["text/csv"]
        ["description"] = json!("CSV");
    assert!(spec_validator(&bad).is_err());
}

#[test]
fn response_schemas_catch_drift() {
    let api = OpenApi::exporter();
    let check = |path: &str, status: u16, body: Value| {
        api.check(
            "GET",
            path,
            status,
            "application/json",
            body.to_string().as_bytes(),
        )
    };
    check("/api/v1/overview", 400, json!({ "error": "from: bad" })).unwrap();
    assert!(check("/api/v1/overview", 400, json!({ "error": 1 })).is_err());
    assert!(check(
        "/api/v1/overview",
        400,
        json!({ "error": "x", "hint": "y" })
    )
    .is_err());
    assert!(check("/api/v1/overview", 418, json!({ "error": "x" })).is_err());

    let scopes = json!({
        "scope": { "org": "acme", "issuer": null, "badge_class": null },
        "orgs": [{ "org_id": "acme", "awarded": 3 }],
        "issuers": [{ "org_id": "acme", "issuer_id": "i1", "awarded": 3 }],
        "badge_classes": [{ "org_id": "acme", "issuer_id": "i1", "badge_class_id": "b1", "name": null, "awarded": 3 }]
    });
    check("/api/v1/scopes", 200, scopes.clone()).unwrap();
    let mut missing = scopes.clone();
    missing["orgs"][0]
        .as_object_mut()
        .unwrap()
        .remove("awarded");
    assert!(check("/api/v1/scopes", 200, missing).is_err());
    let mut negative = scopes.clone();
    negative["badge_classes"][0]["awarded"] = json!(-1);
    assert!(check("/api/v1/scopes", 200, negative).is_err());
    let mut renamed = scopes;
    renamed["issuers"][0]["issuer"] = renamed["issuers"][0]["issuer_id"].take();
    assert!(check("/api/v1/scopes", 200, renamed).is_err());

    // Formats are checked: a period is two RFC 3339 times.
    let period = |from: &str| {
        json!({
            "scope": { "org": null, "issuer": null, "badge_class": null },
            "period": { "from": from, "to": "2024-03-02T00:00:00Z" },
            "annotations": []
        })
    };
    check("/api/v1/annotations", 200, period("2024-03-01T00:00:00Z")).unwrap();
    assert!(check("/api/v1/annotations", 200, period("yesterday")).is_err());

    // A 304 has no body; a chart's type must be one documented.
    api.check("GET", "/api/v1/overview", 304, "", b"").unwrap();
    assert!(api
        .check("GET", "/api/v1/overview", 304, "application/json", b"{}")
        .is_err());
    api.check(
        "GET",
        "/api/v1/charts/trends.svg",
        200,
        "image/svg+xml",
        b"<svg/>",
    )
    .unwrap();
    assert!(api
        .check("GET", "/api/v1/charts/trends.svg", 200, "image/gif", b"GIF")
        .is_err());
    assert!(api.check("GET", "/api/v2/nothing", 200, "", b"").is_err());
}
