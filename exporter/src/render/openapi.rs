//! The OpenAPI 3.0 description of the analytics API (SPEC §8), served at
//! `GET /api/v1/openapi.json`. Hand-written: it must list every route of
//! `http::API_ROUTES` (a test checks it) with its parameters, response
//! schemas and both ways to present an API key.

use serde_json::{json, Value};

use super::charts::{ChartKind, DEFAULT_HEIGHT, DEFAULT_WIDTH, MAX_SIDE, MIN_SIDE};
use crate::analytics::annotations::MAX_ANNOTATIONS;
use crate::analytics::trends::MAX_BUCKETS;
use crate::model::benchmark::MEASURES as BENCHMARK_MEASURES;
use crate::model::cohorts::{Stage, MAX_CELLS};
use crate::model::impact::{
    DEFAULT_DAYS, DEFAULT_HORIZON, MAX_DAYS, MAX_HORIZON, MEASURES as IMPACT_MEASURES,
};
use crate::model::measures::{Dimension, NAMES};
use crate::model::timing::WITHIN;
use crate::model::window::Granularity;

fn param_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/parameters/{name}") })
}

/// The parameters every GET endpoint takes: scope, window and format.
fn common(tabular: bool) -> Vec<Value> {
    let mut p: Vec<Value> = ["org", "issuer", "badge_class", "from", "to"]
        .iter()
        .map(|n| param_ref(n))
        .collect();
    if tabular {
        p.push(param_ref("format"));
    }
    p
}

fn with(mut base: Vec<Value>, extra: Vec<Value>) -> Vec<Value> {
    base.extend(extra);
    base
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A 200 answer with a JSON schema and, for tabular endpoints, CSV.
fn ok(schema: &str, tabular: bool) -> Value {
    let mut content = json!({ "application/json": { "schema": schema_ref(schema) } });
    if tabular {
        content["text/csv"] = json!({
            "schema": { "type": "string" },
            "description": "With format=csv: RFC 4180, header row; text cells starting with = + - @ tab or CR are prefixed with '"
        });
    }
    json!({ "description": "OK", "content": content })
}

fn errors() -> Value {
    let e = |d: &str| json!({ "description": d, "content": { "application/json": { "schema": schema_ref("Error") } } });
    json!({
        "400": e("A bad parameter; the message starts with its name"),
        "401": e("Missing or unknown API key"),
        "403": e("The parameters reach outside the key's scope"),
        "503": e("ClickHouse is unavailable; retry later"),
    })
}

fn get(summary: &str, params: Vec<Value>, schema: &str, tabular: bool) -> Value {
    let mut responses = errors();
    responses["200"] = ok(schema, tabular);
    json!({ "get": { "summary": summary, "parameters": params, "responses": responses } })
}

/// [`get`] of an analytics answer: it may come from memory (see the
/// `Age` header and the `Cache-Control` request header).
fn answer(summary: &str, params: Vec<Value>, schema: &str) -> Value {
    let mut path = get(
        summary,
        with(params, vec![param_ref("Cache-Control")]),
        schema,
        true,
    );
    path["get"]["responses"]["200"]["headers"] = json!({
        "Age": {
            "description": "Seconds since the answer was computed. Answers are kept in memory and recomputed when the data behind them changes; one may be served for up to exporter.cache_max_staleness_ms after a change while it is recomputed, and one without `to` while its window ends at most exporter.cache_live_window_secs before the request",
            "schema": { "type": "integer", "minimum": 0 }
        }
    });
    path
}

fn nullable_number() -> Value {
    json!({ "type": "number", "nullable": true })
}

fn measures_schema() -> Value {
    let mut props = serde_json::Map::new();
    for name in NAMES {
        let counted = !matches!(
            name,
            "acceptance_rate"
                | "share_rate"
                | "engagement_score"
                | "external_impact_score"
                | "reach_score"
                | "performance"
        );
        props.insert(
            name.to_owned(),
            if counted {
                json!({ "type": "integer", "minimum": 0 })
            } else {
                nullable_number()
            },
        );
    }
    json!({ "type": "object", "description": "Every measure of SPEC §7; ratios are null when their denominator is 0", "properties": props })
}

fn group_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "badge_classes": { "type": "integer" },
            "awarded": { "type": "integer" },
            "engagement_score": nullable_number(),
            "reach_score": nullable_number(),
            "acceptance_rate": nullable_number(),
            "share_rate": nullable_number(),
            "external_impact_score": nullable_number()
        }
    })
}

fn per_measure_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "engagement_score": nullable_number(),
            "reach_score": nullable_number(),
            "acceptance_rate": nullable_number(),
            "share_rate": nullable_number(),
            "external_impact_score": nullable_number()
        }
    })
}

/// The query parameters of the insights (impact, timing, cohorts), shared
/// by their endpoints and the chart path.
fn insight_params() -> [(&'static str, Value); 6] {
    let stages: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
    [
        (
            "impact",
            json!({ "name": "annotation", "in": "query", "description": "The annotation's id (required); 404 when the key cannot see it", "schema": { "type": "string" } }),
        ),
        (
            "impact",
            json!({ "name": "days", "in": "query", "description": "Length of the windows before and after the annotation", "schema": { "type": "integer", "minimum": 1, "maximum": MAX_DAYS, "default": DEFAULT_DAYS } }),
        ),
        (
            "impact",
            json!({ "name": "horizon", "in": "query", "description": "Days after its award within which a badge counts as accepted (and shared)", "schema": { "type": "integer", "minimum": 1, "maximum": MAX_HORIZON, "default": DEFAULT_HORIZON } }),
        ),
        (
            "timing",
            json!({ "name": "tz", "in": "query", "description": "IANA time zone placing each award in a local weekday and hour", "schema": { "type": "string", "default": "UTC", "example": "Europe/Paris" } }),
        ),
        (
            "cohorts",
            json!({ "name": "granularity", "in": "query", "description": "Cohort period (ISO weeks start on Monday), UTC", "schema": { "type": "string", "enum": ["week", "month"], "default": "month" } }),
        ),
        (
            "cohorts",
            json!({ "name": "stage", "in": "query", "schema": { "type": "string", "enum": stages, "default": "accepted" } }),
        ),
    ]
}

fn params_of(endpoint: &str) -> Vec<Value> {
    insight_params()
        .into_iter()
        .filter(|(e, _)| *e == endpoint)
        .map(|(_, p)| p)
        .collect()
}

/// The OpenAPI document.
pub fn document() -> Value {
    let names: Vec<&str> = NAMES.to_vec();
    let dimensions: Vec<&str> = Dimension::ALL.iter().map(|d| d.as_str()).collect();
    let granularities: Vec<&str> = Granularity::ALL.iter().map(|g| g.as_str()).collect();
    let time = |d: &str| json!({ "type": "string", "description": d, "example": "2024-03-01" });
    let id = json!({ "type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$" });
    let scope_obj = json!({
        "type": "object",
        "properties": { "org": { "type": "string", "nullable": true }, "issuer": { "type": "string", "nullable": true }, "badge_class": { "type": "string", "nullable": true } }
    });
    let period_obj = json!({
        "type": "object",
        "properties": { "from": { "type": "string", "format": "date-time" }, "to": { "type": "string", "format": "date-time" } }
    });
    let annotation = json!({
        "type": "object",
        "properties": {
            "id": { "type": "string", "format": "uuid" },
            "at": { "type": "string", "format": "date-time" },
            "title": { "type": "string", "maxLength": 200 },
            "text": { "type": "string" },
            "org": { "type": "string" },
            "issuer": { "type": "string", "nullable": true },
            "badge_class": { "type": "string", "nullable": true },
            "created_at": { "type": "string", "format": "date-time" }
        }
    });
    let mut annotations_path = get(
        "Annotations in scope with `at` in [from, to)",
        with(
            common(true),
            vec![
                json!({ "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": MAX_ANNOTATIONS, "default": 1000 } }),
            ],
        ),
        "AnnotationList",
        true,
    );
    let mut post_responses = errors();
    post_responses["201"] = json!({ "description": "Created", "content": { "application/json": { "schema": schema_ref("Annotation") } } });
    post_responses["413"] = json!({ "description": "Body larger than 64 KiB", "content": { "application/json": { "schema": schema_ref("Error") } } });
    annotations_path["post"] = json!({
        "summary": "Create an annotation (a program update shown on trend charts). The scope is given as query parameters (like every GET) or body fields; both given and different is a 400 naming the parameter. A scoped key creates inside its own scope; org is required for admin keys. Every read that starts after the 201 includes it.",
        "parameters": [param_ref("org"), param_ref("issuer"), param_ref("badge_class")],
        "requestBody": { "required": true, "content": { "application/json": { "schema": schema_ref("NewAnnotation") } } },
        "responses": post_responses
    });

    let charts: Vec<&str> = ChartKind::ALL.iter().map(|c| c.as_str()).collect();
    let side = |name: &str, default: u32| json!({ "name": name, "in": "query", "schema": { "type": "integer", "minimum": MIN_SIDE, "maximum": MAX_SIDE, "default": default } });
    let only = |charts: &str, p: Value| {
        let mut p = p;
        p["description"] = json!(format!(
            "Only for the {charts} chart; as on the JSON endpoint"
        ));
        p
    };
    let mut chart_params = common(false);
    chart_params.extend([
        json!({ "name": "chart", "in": "path", "required": true, "schema": { "type": "string", "enum": charts } }),
        json!({ "name": "ext", "in": "path", "required": true, "description": "Image format", "schema": { "type": "string", "enum": ["png", "svg"] } }),
        side("width", DEFAULT_WIDTH),
        side("height", DEFAULT_HEIGHT),
        only("distribution", json!({ "name": "dimension", "in": "query", "schema": { "type": "string", "enum": dimensions } })),
        only("top-badges", json!({ "name": "sort", "in": "query", "schema": { "type": "string", "enum": names } })),
        only("top-badges", json!({ "name": "order", "in": "query", "schema": { "type": "string", "enum": ["desc", "asc"] } })),
        only("top-badges", json!({ "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } })),
        only("trends", json!({ "name": "metrics", "in": "query", "schema": { "type": "string" } })),
        only("trends", json!({ "name": "granularity", "in": "query", "schema": { "type": "string", "enum": granularities } })),
    ]);
    for (endpoint, p) in insight_params() {
        // The cohorts' granularity is the trends' parameter name.
        if p["name"] != "granularity" {
            chart_params.push(only(endpoint, p));
        }
    }
    let mut chart_responses = errors();
    chart_responses["404"] = json!({ "description": "No such chart or extension", "content": { "application/json": { "schema": schema_ref("Error") } } });
    chart_responses["200"] = json!({ "description": "The chart", "content": {
        "image/png": { "schema": { "type": "string", "format": "binary" } },
        "image/svg+xml": { "schema": { "type": "string" } } } });
    let charts_path = json!({ "get": {
        "summary": "The data of the JSON endpoint of the same name drawn as a PNG or SVG chart of width×height pixels",
        "parameters": chart_params, "responses": chart_responses } });
    let mut report_params = common(false);
    report_params.push(json!({ "name": "granularity", "in": "query", "description": "Trend buckets", "schema": { "type": "string", "enum": granularities, "default": "day" } }));
    report_params.push(json!({ "name": "tz", "in": "query", "description": "Time zone of the timing section (IANA name)", "schema": { "type": "string", "default": "UTC" } }));
    let mut impact_path = answer(
        "SPEC §7.7: how acceptance and sharing (cohorts of each window, within the horizon), views per share, awards and views per day changed between the days before and after a program update, with p-values. The scope is narrowed to the annotation's own; from and to are not accepted",
        vec![param_ref("org"), param_ref("issuer"), param_ref("badge_class"), param_ref("format")],
        "Impact",
    );
    impact_path["get"]["parameters"]
        .as_array_mut()
        .expect("parameters")
        .extend(params_of("impact"));
    impact_path["get"]["responses"]["404"] = json!({ "description": "No such annotation in the key's scope", "content": { "application/json": { "schema": schema_ref("Error") } } });
    let mut benchmark_path = answer(
        "SPEC §7.10: the scope's org (or issuer) among every org (or every org's issuers): its value, percentile rank and the peers' quartiles of each rate. Never a peer's id or value. 400 for a badge-class scope",
        common(true),
        "Benchmark",
    );
    benchmark_path["get"]["responses"]["400"]["description"] = json!(
        "A bad parameter, or a badge-class scope (the message starts with the parameter's name)"
    );

    let mut report_responses = errors();
    report_responses["200"] = json!({ "description": "A self-contained printable HTML page (inline SVG charts, no external resources)", "content": { "text/html": { "schema": { "type": "string" } } } });
    let report_path = json!({ "get": {
        "summary": "The whole analytics workspace of the scope and window as one printable HTML page: KPI tiles with trend arrows, charts and tables",
        "parameters": report_params, "responses": report_responses } });

    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "badgepulse analytics API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Post-award analytics for digital badges (SPEC §7–8). Windows are [from, to) in UTC; from/to take RFC 3339 or YYYY-MM-DD (00:00 UTC) and default to the last 30 days. Scoped keys are narrowed to their scope automatically. Errors are JSON {\"error\"} naming the parameter."
        },
        "security": [ { "bearerAuth": [] }, { "accessToken": [] } ],
        "paths": {
            "/api/v1/overview": answer("KPI tiles (all time), period values and trend indicators against the previous equally long window", common(true), "Overview"),
            "/api/v1/distribution": answer(
                "Counts and shares by award method, share channel, view source or view country",
                with(common(true), vec![json!({ "name": "dimension", "in": "query", "required": true, "schema": { "type": "string", "enum": dimensions } })]),
                "Distribution",
            ),
            "/api/v1/top-badges": answer(
                "Badge classes ranked by a measure; classes with fewer than min_awarded awards last, flagged low_sample",
                with(common(true), vec![
                    json!({ "name": "sort", "in": "query", "schema": { "type": "string", "enum": names, "default": "performance" } }),
                    json!({ "name": "order", "in": "query", "schema": { "type": "string", "enum": ["desc", "asc"], "default": "desc" } }),
                    json!({ "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 20 } }),
                ]),
                "TopBadges",
            ),
            "/api/v1/trends": answer(
                "Time series per bucket; every bucket overlapping the window is present (zeros when empty)",
                with(common(true), vec![
                    json!({ "name": "metrics", "in": "query", "description": "Comma-separated measure names", "schema": { "type": "string", "default": "awarded,accepted,shared,views" } }),
                    json!({ "name": "granularity", "in": "query", "description": format!("Bucket size (ISO weeks start on Monday); at most {MAX_BUCKETS} buckets"), "schema": { "type": "string", "enum": granularities, "default": "day" } }),
                ]),
                "Trends",
            ),
            "/api/v1/drivers": answer("Performance drivers: badge classes with and without each attribute, lifts and p-values", common(true), "Drivers"),
            "/api/v1/lifecycle": answer("Funnel of the assertions awarded in the window: Awarded ⊇ Accepted ⊇ Shared ⊇ Viewed", common(true), "Lifecycle"),
            "/api/v1/impact": impact_path,
            "/api/v1/timing": answer(
                "SPEC §7.8: acceptance (by now) of the badges first awarded in the window by local weekday and hour, the share accepted within 1 h … 90 d, and the best cell with a Bonferroni-adjusted test",
                with(common(true), params_of("timing")),
                "Timing",
            ),
            "/api/v1/cohorts": answer(
                &format!("SPEC §7.9: the retention triangle: per week or month of first award (UTC), the share that reached the stage by the end of each age. Default window: the last 365 days; at most {MAX_CELLS} cells (cohorts in the window × ages from its start to now)"),
                with(common(true), params_of("cohorts")),
                "Cohorts",
            ),
            "/api/v1/benchmark": benchmark_path,
            "/api/v1/annotations": annotations_path,
            "/api/v1/charts/{chart}.{ext}": charts_path,
            "/report": report_path,
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": { "200": { "description": "OK", "content": { "application/json": { "schema": { "type": "object" } } } }, "401": { "description": "Missing or unknown API key" } }
                }
            }
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": { "type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY" },
                "accessToken": { "type": "apiKey", "in": "query", "name": "access_token", "description": "?access_token=KEY, for browsers" }
            },
            "parameters": {
                "org": { "name": "org", "in": "query", "schema": id.clone(), "description": "Narrow to an org (required with issuer/badge_class for admin keys)" },
                "issuer": { "name": "issuer", "in": "query", "schema": id.clone() },
                "badge_class": { "name": "badge_class", "in": "query", "schema": id },
                "from": { "name": "from", "in": "query", "schema": time("Window start, inclusive (default: to − 30 days)") },
                "to": { "name": "to", "in": "query", "schema": time("Window end, exclusive (default: now, whenever the answer is computed)") },
                "Cache-Control": { "name": "Cache-Control", "in": "header", "schema": { "type": "string" }, "description": "no-cache (or no-store, max-age=0): compute the answer from ClickHouse now" },
                "format": { "name": "format", "in": "query", "schema": { "type": "string", "enum": ["json", "csv"], "default": "json" } }
            },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
                "Scope": scope_obj,
                "Period": period_obj,
                "Measures": measures_schema(),
                "Overview": {
                    "type": "object",
                    "properties": {
                        "scope": schema_ref("Scope"), "period": schema_ref("Period"),
                        "kpis": schema_ref("Measures"), "period_values": schema_ref("Measures"),
                        "trends": { "type": "object", "additionalProperties": { "type": "object", "properties": { "current": nullable_number(), "previous": nullable_number(), "change": nullable_number() } } }
                    }
                },
                "Distribution": {
                    "type": "object",
                    "properties": {
                        "scope": schema_ref("Scope"), "period": schema_ref("Period"), "dimension": { "type": "string" },
                        "rows": { "type": "array", "items": { "type": "object", "properties": { "value": { "type": "string" }, "count": { "type": "integer" }, "share": nullable_number() } } }
                    }
                },
                "TopBadges": {
                    "type": "object",
                    "properties": {
                        "scope": schema_ref("Scope"), "period": schema_ref("Period"), "sort": { "type": "string" }, "order": { "type": "string" }, "min_awarded": { "type": "integer" },
                        "rows": { "type": "array", "items": { "allOf": [
                            { "type": "object", "properties": { "org_id": { "type": "string" }, "badge_class_id": { "type": "string" }, "name": { "type": "string" }, "low_sample": { "type": "boolean" } } },
                            schema_ref("Measures")
                        ] } }
                    }
                },
                "Trends": {
                    "type": "object",
                    "properties": {
                        "scope": schema_ref("Scope"), "period": schema_ref("Period"), "granularity": { "type": "string" },
                        "series": { "type": "object", "additionalProperties": { "type": "array", "items": { "type": "object", "properties": { "t": { "type": "string", "format": "date-time" }, "value": nullable_number() } } } },
                        "annotations": { "type": "array", "items": schema_ref("Annotation") }
                    }
                },
                "Group": group_schema(),
                "PerMeasure": per_measure_schema(),
                "Drivers": {
                    "type": "object",
                    "properties": {
                        "scope": schema_ref("Scope"), "period": schema_ref("Period"),
                        "drivers": { "type": "array", "items": { "type": "object", "properties": {
                            "attribute": { "type": "string" }, "with": schema_ref("Group"), "without": schema_ref("Group"),
                            "lift": schema_ref("PerMeasure"), "p_value": schema_ref("PerMeasure") } } },
                        "insights": { "type": "array", "items": { "type": "string" } }
                    }
                },
                "Lifecycle": {
                    "type": "object",
                    "properties": {
                        "scope": schema_ref("Scope"), "period": schema_ref("Period"),
                        "stages": { "type": "array", "items": { "type": "object", "properties": {
                            "stage": { "type": "string", "enum": ["awarded", "accepted", "shared", "viewed"] }, "count": { "type": "integer" },
                            "conversion": nullable_number(), "drop_off": nullable_number() } } },
                        "median_hours": { "type": "object", "properties": { "award_to_accept": nullable_number(), "accept_to_share": nullable_number(), "share_to_view": nullable_number() } }
                    }
                },
                "Annotation": annotation,
                "AnnotationList": {
                    "type": "object",
                    "properties": { "scope": schema_ref("Scope"), "period": schema_ref("Period"), "annotations": { "type": "array", "items": schema_ref("Annotation") } }
                },
                "NewAnnotation": {
                    "type": "object",
                    "required": ["at", "title"],
                    "additionalProperties": false,
                    "properties": {
                        "at": { "type": "string", "description": "RFC 3339 or YYYY-MM-DD" },
                        "title": { "type": "string", "minLength": 1, "maxLength": 200 },
                        "text": { "type": "string", "maxLength": 10000 },
                        "org": { "type": "string" }, "issuer": { "type": "string" }, "badge_class": { "type": "string" }
                    }
                }
            }
        }
    });
    for (name, schema) in insight_schemas() {
        doc["components"]["schemas"][name] = schema;
    }
    doc
}

/// The schemas of the insights' bodies (SPEC §7.7–§7.10).
fn insight_schemas() -> Vec<(&'static str, Value)> {
    let nullable_array = |items: Value| json!({ "type": "array", "items": items });
    let within: serde_json::Map<String, Value> = WITHIN
        .iter()
        .map(|(name, _)| ((*name).to_owned(), nullable_number()))
        .collect();
    let rate_row = |key: &str| {
        json!({ "type": "object", "properties": {
            key: { "type": "integer" }, "awarded": { "type": "integer" }, "acceptance_rate": nullable_number() } })
    };
    let impact_measure = json!({ "type": "object", "properties": {
        "measure": { "type": "string", "enum": IMPACT_MEASURES },
        "before": nullable_number(), "after": nullable_number(), "change": nullable_number(),
        "p_value": nullable_number(), "significant": { "type": "boolean" } } });
    let cell = json!({ "type": "object", "properties": {
        "weekday": { "type": "integer", "minimum": 1, "maximum": 7 }, "hour": { "type": "integer", "minimum": 0, "maximum": 23 },
        "awarded": { "type": "integer" }, "acceptance_rate": nullable_number() } });
    let best = json!({ "type": "object", "nullable": true, "properties": {
        "weekday": { "type": "integer" }, "hour": { "type": "integer" }, "awarded": { "type": "integer" },
        "acceptance_rate": { "type": "number" }, "p_value": nullable_number() } });
    let cohort = json!({ "type": "object", "properties": {
        "cohort": { "type": "string", "format": "date-time" }, "size": { "type": "integer" },
        "values": nullable_array(nullable_number()) } });
    let benchmarked = json!({ "type": "object", "properties": {
        "measure": { "type": "string", "enum": BENCHMARK_MEASURES },
        "value": nullable_number(), "peers": { "type": "integer" }, "percentile": nullable_number(),
        "p25": nullable_number(), "median": nullable_number(), "p75": nullable_number(),
        "reason": { "type": "string", "description": "Present when percentile and quartiles are null: why" } } });
    vec![
        (
            "Impact",
            json!({
                "type": "object",
                "properties": {
                    "scope": schema_ref("Scope"), "period": schema_ref("Period"),
                    "annotation": schema_ref("Annotation"), "days": { "type": "integer" }, "horizon": { "type": "integer" },
                    "before": schema_ref("Period"),
                    "after": { "type": "object", "properties": { "from": { "type": "string", "format": "date-time" }, "to": { "type": "string", "format": "date-time" }, "complete": { "type": "boolean" } } },
                    "measures": nullable_array(impact_measure),
                    "insights": { "type": "array", "items": { "type": "string" } }
                }
            }),
        ),
        (
            "Timing",
            json!({
                "type": "object",
                "properties": {
                    "scope": schema_ref("Scope"), "period": schema_ref("Period"), "tz": { "type": "string" },
                    "by_weekday": nullable_array(rate_row("weekday")),
                    "by_hour": nullable_array(rate_row("hour")),
                    "cells": nullable_array(cell),
                    "accepted_within": { "type": "object", "properties": within },
                    "best": best,
                    "insights": { "type": "array", "items": { "type": "string" } }
                }
            }),
        ),
        (
            "Cohorts",
            json!({
                "type": "object",
                "properties": {
                    "scope": schema_ref("Scope"), "period": schema_ref("Period"),
                    "granularity": { "type": "string", "enum": ["week", "month"] }, "stage": { "type": "string" },
                    "cohorts": nullable_array(cohort)
                }
            }),
        ),
        (
            "Benchmark",
            json!({
                "type": "object",
                "properties": {
                    "scope": schema_ref("Scope"), "period": schema_ref("Period"),
                    "level": { "type": "string", "enum": ["org", "issuer"] },
                    "min_awarded": { "type": "integer" }, "min_peers": { "type": "integer" },
                    "measures": nullable_array(benchmarked)
                }
            }),
        ),
    ]
}
