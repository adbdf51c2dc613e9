//! Charts and the HTML report end to end (SPEC §8): known traffic goes
//! through the real ingest → NATS → aggregator → ClickHouse pipeline;
//! then every chart, as PNG and SVG, must decode to an image of the
//! requested size that draws data (and says "no data" for an empty
//! window), with the JSON endpoints' auth and scope rules; and `/report`
//! must be a self-contained page that escapes user input and that
//! headless Chromium renders with its KPI tiles and charts.
//!
//! One stack serves every assertion, to keep the runtime small.

use std::time::Duration;

use badgepulse_tests::{chromium, Stack};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

const DB: &str = "e2e_exporter_report";
const TOKEN: &str = "report-test-platform-token";
const EVIL: &str = "<script>alert('pwned')</script> & \"Rust\"";
const KEYS: [(&str, &str); 3] = [
    ("rep-admin", "admin"),
    ("rep-acme", "org:acme"),
    ("rep-b2", "badge:acme/b2"),
];
const CHARTS: [&str; 10] = [
    "overview",
    "trends",
    "distribution",
    "top-badges",
    "drivers",
    "lifecycle",
    "impact",
    "timing",
    "cohorts",
    "benchmark",
];

fn rfc(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn day(t: i64) -> String {
    rfc(t)[..10].to_owned()
}

/// Platform events: b1 (named [`EVIL`], skills aligned) and b2, awards
/// in the report window (the 4 days up to tomorrow) and a few in the
/// window before it, with accepts, shares and views.
fn dataset(today: i64) -> Vec<Value> {
    let mut events = Vec::new();
    let mut id = 0;
    let mut push = |kind: &str, at: i64, class: &str, assertion: &str, extra: Value| {
        id += 1;
        let mut e = json!({
            "event_id": format!("rep-{id}"), "type": kind, "occurred_at": rfc(at),
            "org_id": "acme", "issuer_id": "i1", "badge_class_id": class,
        });
        if !assertion.is_empty() {
            e["assertion_id"] = json!(assertion);
        }
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        events.push(e);
    };
    let start = today - 3 * 86_400;
    push(
        "badge_class.upserted",
        start - 5 * 86_400,
        "b1",
        "",
        json!({"name": EVIL, "skills": ["rust"]}),
    );
    push(
        "badge_class.upserted",
        start - 5 * 86_400,
        "b2",
        "",
        json!({"name": "Data Basics"}),
    );
    let methods = ["api", "manual", "bulk"];
    let channels = ["linkedin", "x", "email"];
    for (class, n, previous) in [("b1", 12, 0), ("b2", 6, 2)] {
        for j in 0..n + previous {
            let a = format!("{class}-a{j}");
            let t = if j < previous {
                start - 2 * 86_400 + j * 3_600
            } else {
                start + (j % 3) * 86_400 + j * 600
            };
            push(
                "badge.awarded",
                t,
                class,
                &a,
                json!({"award_method": methods[(j % 3) as usize]}),
            );
            if class == "b1" && j % 4 == 3 {
                continue;
            }
            push("badge.accepted", t + 3_600, class, &a, json!({}));
            if j % 2 == 1 {
                continue;
            }
            push(
                "badge.shared",
                t + 7_200,
                class,
                &a,
                json!({"channel": channels[(j % 3) as usize]}),
            );
            for k in 0..(if class == "b1" { 3 } else { 1 }) {
                push(
                    "badge.viewed",
                    t + 9_000 + k * 60,
                    class,
                    &a,
                    json!({"source": "platform"}),
                );
            }
        }
    }
    events
}

async fn start_stack() -> Stack {
    Stack::start(DB, |config| {
        config
            .token(TOKEN, &["*"])
            .aggregator("flush_interval_ms = 100")
            .exporter("min_awarded = 5")
            .api_keys(&KEYS)
    })
    .await
}

/// Status, content type and body of a GET.
async fn get(http: &reqwest::Client, url: &str, key: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut req = http.get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.bytes().await.unwrap().to_vec())
}

/// A decoded PNG: width, height and RGB pixels.
struct Image {
    width: u32,
    height: u32,
    rgb: Vec<[u8; 3]>,
}

impl Image {
    fn decode(bytes: &[u8]) -> Image {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("a PNG frame");
        let channels = info.color_type.samples();
        let rgb = buf[..info.buffer_size()]
            .chunks(channels)
            .map(|p| match channels {
                1 | 2 => [p[0]; 3],
                _ => [p[0], p[1], p[2]],
            })
            .collect();
        Image {
            width: info.width,
            height: info.height,
            rgb,
        }
    }

    /// Pixels in rows `y0..y1` that are dark (text) and that are
    /// saturated (chart colours).
    fn ink(&self, y0: u32, y1: u32) -> (usize, usize) {
        let rows =
            &self.rgb[(y0 * self.width) as usize..(y1.min(self.height) * self.width) as usize];
        let dark = rows
            .iter()
            .filter(|p| p.iter().map(|&c| u32::from(c)).sum::<u32>() < 3 * 110)
            .count();
        let colour = rows
            .iter()
            .filter(|p| p.iter().max().unwrap() - p.iter().min().unwrap() > 60)
            .count();
        (dark, colour)
    }
}

/// The `width` and `height` attributes of an SVG document's root.
fn svg_size(svg: &str) -> (u32, u32) {
    assert!(svg.starts_with("<svg "), "not an SVG document: {svg:.80}");
    let root = &svg[..svg.find('>').unwrap()];
    let attr = |name: &str| -> u32 {
        let at = root.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        root[at..at + root[at..].find('"').unwrap()]
            .parse()
            .unwrap()
    };
    (attr("width"), attr("height"))
}

/// A chart's parameters: the window (an impact's follows from its
/// annotation) and the chart's own.
fn chart_params(chart: &str, window: &str, annotation: &str) -> String {
    match chart {
        "impact" => format!("annotation={annotation}"),
        "distribution" => format!("{window}&dimension=share_channel"),
        "top-badges" => format!("{window}&sort=awarded&limit=5"),
        "trends" => format!("{window}&metrics=awarded,views,acceptance_rate"),
        "timing" => format!("{window}&tz=Europe/Berlin"),
        "cohorts" => format!("{window}&granularity=week&stage=accepted"),
        _ => window.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_and_report_render_the_analytics() {
    let stack = start_stack().await;
    let http = reqwest::Client::new();
    let now = Utc::now().timestamp();
    let today = now / 86_400 * 86_400;
    let events = dataset(today);
    assert!(events
        .iter()
        .all(|e| e["occurred_at"].as_str().unwrap() < rfc(now).as_str()));
    stack.send_events(TOKEN, &events).await;
    let total = events.len() as u64;
    let ch = &stack.ch;
    ch.wait_for_events(DB, total, Duration::from_secs(60)).await;
    let window = format!(
        "from={}&to={}",
        day(today - 3 * 86_400),
        day(today + 86_400)
    );
    let r = http
        .post(format!("{}/api/v1/annotations", stack.ports.exporter_url()))
        .bearer_auth("rep-acme")
        .json(&json!({"at": rfc(today - 2 * 86_400), "title": EVIL, "text": "launch\n<b>day</b>"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let annotation = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = &stack.ports.exporter_url();

    // ------------------------------------------------------------ charts
    for chart in CHARTS {
        let params = chart_params(chart, &window, &annotation);
        let url =
            |ext: &str, size: &str| format!("{base}/api/v1/charts/{chart}.{ext}?{params}{size}");
        // SVG, default size and a requested one.
        let (status, ct, body) = get(&http, &url("svg", ""), Some("rep-acme")).await;
        assert_eq!(status, 200, "{chart}: {}", String::from_utf8_lossy(&body));
        assert_eq!(ct, "image/svg+xml", "{chart}");
        let svg = String::from_utf8(body).unwrap();
        assert_eq!(svg_size(&svg), (800, 400), "{chart}");
        let (_, _, body) = get(
            &http,
            &url("svg", "&width=640&height=360"),
            Some("rep-acme"),
        )
        .await;
        let svg = String::from_utf8(body).unwrap();
        assert_eq!(svg_size(&svg), (640, 360), "{chart}");
        assert!(!svg.contains("no data"), "{chart} drew no data: {svg}");
        assert!(!svg.contains("<script"), "{chart}: unescaped name");
        // PNG of the requested size, with text and colour.
        let (status, ct, body) = get(
            &http,
            &url("png", "&width=640&height=360"),
            Some("rep-acme"),
        )
        .await;
        assert_eq!(status, 200, "{chart}: {}", String::from_utf8_lossy(&body));
        assert_eq!(ct, "image/png", "{chart}");
        let img = Image::decode(&body);
        assert_eq!((img.width, img.height), (640, 360), "{chart}");
        let (dark, colour) = img.ink(0, 360);
        assert!(dark > 300, "{chart}: {dark} dark pixels (no text?)");
        assert!(
            colour > 300,
            "{chart}: {colour} coloured pixels (no bars/lines?)"
        );
        // Same parameter checks as the JSON endpoint.
        let (status, _, _) = get(&http, &url("png", "&width=4001"), Some("rep-acme")).await;
        assert_eq!(status, 400, "{chart}");
        let (status, _, _) = get(&http, &url("png", ""), None).await;
        assert_eq!(status, 401, "{chart}");
        let (status, _, _) = get(&http, &url("svg", "&org=globex"), Some("rep-acme")).await;
        assert_eq!(status, 403, "{chart}");
    }
    // The chart draws the JSON endpoint's numbers.
    let (_, _, body) = get(
        &http,
        &format!("{base}/api/v1/charts/lifecycle.svg?{window}"),
        Some("rep-acme"),
    )
    .await;
    let svg = String::from_utf8(body).unwrap();
    let (_, _, body) = get(
        &http,
        &format!("{base}/api/v1/lifecycle?{window}"),
        Some("rep-acme"),
    )
    .await;
    let lifecycle: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(lifecycle["stages"][0]["count"], 18);
    for stage in lifecycle["stages"].as_array().unwrap() {
        let n = stage["count"].as_u64().unwrap();
        assert!(
            svg.contains(&format!(">{n}")),
            "lifecycle chart lacks {n}: {svg}"
        );
    }
    // A badge-scoped key sees only its badge; an empty window says so.
    let (status, _, body) = get(
        &http,
        &format!("{base}/api/v1/charts/top-badges.svg?{window}&access_token=rep-b2"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let svg = String::from_utf8(body).unwrap();
    assert!(
        svg.contains("Data Basics") && !svg.contains("&lt;script"),
        "{svg}"
    );
    // (An impact's windows follow from its annotation, not from `from`.)
    for chart in CHARTS.into_iter().filter(|c| *c != "impact") {
        let params = chart_params(chart, "from=2020-01-01&to=2020-01-02&org=acme", "");
        for ext in ["svg", "png"] {
            let (status, _, body) = get(
                &http,
                &format!("{base}/api/v1/charts/{chart}.{ext}?{params}&width=300&height=200"),
                Some("rep-admin"),
            )
            .await;
            assert_eq!(status, 200, "{chart}.{ext}");
            if ext == "svg" {
                let svg = String::from_utf8(body).unwrap();
                assert_eq!(svg_size(&svg), (300, 200));
                if chart == "overview" {
                    // KPI tiles are all-time: the window does not empty them.
                    assert!(svg.contains(r#"class="tile""#), "{svg}");
                } else if chart == "benchmark" {
                    // Every measure, each saying why it has no rank.
                    assert_eq!(svg.matches("not ranked: ").count(), 5, "{svg}");
                } else {
                    assert!(svg.contains(">no data</text>"), "{chart}: {svg}");
                }
            } else {
                let img = Image::decode(&body);
                assert_eq!((img.width, img.height), (300, 200), "{chart}");
            }
        }
    }

    // ------------------------------------------------------------ report
    let report_url = format!("{base}/report?{window}&org=acme&access_token=rep-admin");
    let r = http.get(&report_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'none'"));
    let html = r.text().await.unwrap();
    assert!(
        !html.contains("<script"),
        "unescaped user input in the report"
    );
    assert!(
        html.contains("&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt; &amp; &quot;Rust&quot;")
    );
    assert!(
        html.contains("launch<br>&lt;b&gt;day&lt;/b&gt;"),
        "annotation text"
    );
    assert!(html.contains(&format!("Period: {}", rfc(today - 3 * 86_400))));
    assert!(html.contains("Scope: org acme"));
    // 18 awards in the window against 2 before: +800 %.
    assert!(
        html.contains(r#"<span class="trend up">▲ +800.0%</span>"#),
        "{html}"
    );
    assert!(html.contains(r#"<span class="trend neutral">"#));
    assert!(html.contains("@media print"));
    // The insights: the annotation's impact, timing, cohorts, benchmark.
    for id in ["impact", "timing", "cohorts", "benchmark"] {
        assert!(html.contains(&format!(r#"<section id="{id}""#)), "{id}");
    }
    assert!(
        html.contains("<h3>&lt;script&gt;alert(&#39;pwned&#39;)"),
        "the impact of the annotation"
    );
    assert!(html.contains("<th>accepted within</th>"), "{html}");
    let (status, _, _) = get(&http, &format!("{base}/report?{window}"), None).await;
    assert_eq!(status, 401);
    let (status, _, _) = get(
        &http,
        &format!("{base}/report?{window}&org=globex&access_token=rep-acme"),
        None,
    )
    .await;
    assert_eq!(status, 403);

    // Headless Chromium: the DOM after rendering has the tiles and the
    // inline charts, and the screenshot shows them.
    let profile = tempfile::tempdir().unwrap();
    let dom = chromium(profile.path(), &["--dump-dom"], &report_url).await;
    assert_eq!(dom.matches(r#"<div class="tile""#).count(), 14, "{dom}");
    assert!(dom.matches("<svg").count() >= 8, "{dom}");
    assert!(!dom.contains("<script"));
    let shot = profile.path().join("report.png");
    chromium(
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
        ],
        &report_url,
    )
    .await;
    let img = Image::decode(&std::fs::read(&shot).expect("a screenshot"));
    assert_eq!((img.width, img.height), (1280, 2000));
    // The header and the tiles (the top ~700 px) carry text; the page
    // below them shows the coloured trend and distribution charts.
    let (dark, _) = img.ink(0, 700);
    assert!(dark > 3_000, "{dark} dark pixels in the header and tiles");
    let (_, colour) = img.ink(500, 2000);
    assert!(colour > 3_000, "{colour} coloured pixels in the charts");
}
