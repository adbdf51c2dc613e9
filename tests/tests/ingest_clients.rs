//! What badge pages and operators get from ingest, used as they would use
//! it, against a real NATS: the `sign-url` CLI's URL and snippet load as an
//! accepted pixel; the share script, run by headless Chromium in a page,
//! sends its beacon (and falls back to `/s.gif` without `sendBeacon`);
//! client address and country come only from the configured proxy and
//! header; and the publish metrics count what was published.

use std::time::Duration;

use badgepulse_contract::subject::STREAM;
use badgepulse_tests::{
    chromium, eventually, free_port, metric_value, scrape, sha256_hex, start_ingest, stream_events,
    stream_messages, workspace_bin, Nats, Service,
};

const KEY: &str = "clients-test-pixel-key-1";
const OLD_KEY: &str = "clients-test-pixel-key-0";
const TOKEN: &str = "clients-test-token";
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

/// An ingest config on `port`: `proxies` trusted, country from `header`.
fn config(nats: &Nats, port: u16, admin: u16, proxies: &str, header: &str) -> String {
    format!(
        r#"[nats]
url = "{}"
[ingest]
bind = "127.0.0.1:{port}"
admin_bind = "127.0.0.1:{admin}"
public_url = "http://127.0.0.1:{port}"
trusted_proxies = [{proxies}]
country_header = "{header}"
[ingest.pixel_keys]
k1 = "{KEY}"
k0 = "{OLD_KEY}"
[[ingest.tokens]]
sha256 = "{}"
orgs = ["*"]
"#,
        nats.url(),
        sha256_hex(TOKEN)
    )
}

/// Ingest: the service, its public URL, its admin URL and its config.
async fn start(nats: &Nats, proxies: &str, header: &str) -> (Service, String, String, String) {
    let (port, admin) = (free_port(), free_port());
    let text = config(nats, port, admin, proxies, header);
    let ingest = start_ingest(&text, port, admin).await;
    (ingest.svc, ingest.url, ingest.admin, text)
}

/// A metric on the admin listener at `admin`.
async fn metric(admin: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(&scrape(&format!("{admin}/metrics")).await, name, labels)
}

async fn beacons(admin: &str, kind: &str, outcome: &str) -> f64 {
    metric(
        admin,
        "badgepulse_ingest_beacons_total",
        &[("kind", kind), ("outcome", outcome)],
    )
    .await
}

/// `badgepulse-ingest --config FILE sign-url ARGS`.
fn sign_url(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(workspace_bin("badgepulse-ingest"))
        .arg("--config")
        .arg(config)
        .arg("sign-url")
        .args([
            "--org",
            "acme",
            "--issuer",
            "i1",
            "--badge-class",
            "b1",
            "--assertion",
            "a1",
        ])
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn sign_url_prints_a_pixel_that_ingest_accepts() {
    let nats = Nats::start().await;
    let (_svc, url, admin, text) = start(&nats, "", "").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ingest.toml");
    std::fs::write(&file, text).unwrap();
    let http = reqwest::Client::new();

    // Without --kid, the first key in name order (k0).
    for (args, kid) in [(&[][..], "k0"), (&["--kid", "k1"][..], "k1")] {
        let out = sign_url(&file, args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let mut lines = stdout.lines();
        let pixel = lines.next().unwrap();
        let snippet = lines.next().unwrap();
        assert!(pixel.starts_with(&format!("{url}/p.gif?")), "{pixel}");
        assert!(pixel.contains(&format!("kid={kid}&")), "{pixel}");
        // The snippet embeds the same URL, HTML-escaped, as a 1×1 image.
        assert!(snippet.starts_with("<img "), "{snippet}");
        assert!(snippet.contains(&pixel.replace('&', "&amp;")), "{snippet}");

        let before = beacons(&admin, "view", "accepted").await;
        let r = http
            .get(pixel)
            .header("User-Agent", BROWSER)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(beacons(&admin, "view", "accepted").await, before + 1.0);
    }
    assert_eq!(beacons(&admin, "view", "bad_signature").await, 0.0);

    let out = sign_url(&file, &["--kid", "k9"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("k9") && err.contains("ingest.pixel_keys"),
        "{err}"
    );
    let out = sign_url(&file, &["--assertion", "bad id!"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--assertion"), "{err}");
}

/// A badge page with one share button, loading the share script from
/// ingest and clicking the button once loaded; with `no_beacon` the
/// browser lacks `navigator.sendBeacon`.
fn share_page(ingest: &str, sig: &str, no_beacon: bool) -> String {
    let remove = if no_beacon {
        "<script>Object.defineProperty(Navigator.prototype, 'sendBeacon', {value: undefined});</script>"
    } else {
        ""
    };
    format!(
        r##"<!doctype html><html><head><title>badge</title>{remove}</head><body>
<a href="#" id="share" data-badgepulse-share="linkedin" data-o="acme" data-i="i1" data-b="b1"
   data-a="a1" data-kid="k1" data-sig="{sig}">Share on LinkedIn</a>
<script src="{ingest}/v1/share.js"></script>
<script>window.addEventListener("load", function () {{
  document.getElementById("share").click();
  document.title = "clicked";
}});</script>
</body></html>"##
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_share_script_sends_a_beacon_or_falls_back_to_the_pixel() {
    let nats = Nats::start().await;
    let (_svc, url, admin, _) = start(&nats, "", "").await;
    let http = reqwest::Client::new();

    // Dependency-free: no import, no other script, no address of its own.
    let js = http
        .get(format!("{url}/v1/share.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(js.len() < 4096, "{} bytes", js.len());
    for banned in ["import ", "require(", "createElement(\"script\")", "fetch("] {
        assert!(!js.contains(banned), "share.js uses {banned}");
    }
    let code: String = js
        .lines()
        .filter(|l| !l.trim_start().starts_with('*') && !l.trim_start().starts_with("/*"))
        .collect();
    assert!(
        !code.contains("http://") && !code.contains("https://"),
        "{code}"
    );

    let sig = badgepulse_contract::signing::sign(
        KEY.as_bytes(),
        &badgepulse_contract::signing::PixelIds {
            org_id: "acme",
            issuer_id: "i1",
            badge_class_id: "b1",
            assertion_id: "a1",
        },
    );
    let dir = tempfile::tempdir().unwrap();
    for no_beacon in [false, true] {
        let page = dir.path().join(format!("badge-{no_beacon}.html"));
        std::fs::write(&page, share_page(&url, &sig, no_beacon)).unwrap();
        let profile = tempfile::tempdir().unwrap();
        let before = beacons(&admin, "share", "accepted").await;
        let requests = |route: &'static str| {
            let admin = admin.clone();
            let status = if route == "/s.gif" { "200" } else { "204" };
            async move {
                metric(
                    &admin,
                    "badgepulse_ingest_http_requests_total",
                    &[("route", route), ("status", status)],
                )
                .await
            }
        };
        let (beacon_posts, share_pixels) = (requests("/v1/beacon").await, requests("/s.gif").await);
        let dom = chromium(
            profile.path(),
            &[
                "--dump-dom",
                "--virtual-time-budget=3000",
                &format!("--user-agent={BROWSER}"),
            ],
            &format!("file://{}", page.display()),
        )
        .await;
        assert!(dom.contains("<title>clicked</title>"), "{dom}");
        eventually(Duration::from_secs(20), "the share beacon", || async {
            (beacons(&admin, "share", "accepted").await == before + 1.0).then_some(())
        })
        .await;
        // The way it came: sendBeacon's POST, or the pixel without it.
        let (posts, pixels) = if no_beacon { (0.0, 1.0) } else { (1.0, 0.0) };
        assert_eq!(
            requests("/v1/beacon").await - beacon_posts,
            posts,
            "sendBeacon POSTs"
        );
        assert_eq!(
            requests("/s.gif").await - share_pixels,
            pixels,
            "share pixels"
        );
    }
    let client = nats.client().await;
    let shares: Vec<_> = stream_events(&stream_messages(&client, STREAM).await)
        .into_iter()
        .filter(|e| e.kind == badgepulse_contract::event::EventType::Shared)
        .collect();
    assert_eq!(shares.len(), 2);
    assert!(shares.iter().all(|e| e.org_id == "acme"
        && e.assertion_id == "a1"
        && e.channel == Some(badgepulse_contract::event::ShareChannel::Linkedin)));
}

/// A signed view pixel of assertion `a` of acme's i1/b1.
fn pixel(url: &str, a: &str) -> String {
    let ids = badgepulse_contract::signing::PixelIds {
        org_id: "acme",
        issuer_id: "i1",
        badge_class_id: "b1",
        assertion_id: a,
    };
    let sig = badgepulse_contract::signing::sign(KEY.as_bytes(), &ids);
    format!("{url}/p.gif?o=acme&i=i1&b=b1&a={a}&kid=k1&sig={sig}")
}

#[tokio::test]
async fn address_and_country_come_only_from_what_is_configured() {
    let nats = Nats::start().await;
    // No trusted proxy; country from X-Country only.
    let (_svc, url, admin, _) = start(&nats, "", "X-Country").await;
    let http = reqwest::Client::new();
    let view = |a: &str, headers: &[(&str, &str)]| {
        let mut r = http.get(pixel(&url, a)).header("User-Agent", BROWSER);
        for (name, value) in headers {
            r = r.header(*name, *value);
        }
        r.send()
    };
    // X-Forwarded-For from an untrusted peer is ignored: one viewer.
    view(
        "a1",
        &[("X-Forwarded-For", "203.0.113.1"), ("CF-IPCountry", "FR")],
    )
    .await
    .unwrap();
    view(
        "a2",
        &[("X-Forwarded-For", "198.51.100.7"), ("X-Country", "de")],
    )
    .await
    .unwrap();
    view("a3", &[]).await.unwrap();

    // Platform events: the publish metrics count them.
    let events: Vec<_> = (0..3)
        .map(|n| {
            serde_json::json!({"event_id": format!("m{n}"), "type": "badge.awarded",
                "occurred_at": "2026-11-01T10:00:00Z", "org_id": "acme", "issuer_id": "i1",
                "badge_class_id": "b1", "assertion_id": format!("x{n}")})
        })
        .collect();
    let r = http
        .post(format!("{url}/v1/events"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "events": events }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let client = nats.client().await;
    let views = eventually(
        Duration::from_secs(20),
        "three views in the stream",
        || async {
            let views: Vec<_> = stream_events(&stream_messages(&client, STREAM).await)
                .into_iter()
                .filter(|e| e.kind == badgepulse_contract::event::EventType::Viewed)
                .collect();
            (views.len() == 3).then_some(views)
        },
    )
    .await;
    let country = |a: &str| {
        views
            .iter()
            .find(|e| e.assertion_id == a)
            .unwrap()
            .country
            .clone()
    };
    assert_eq!(
        country("a1"),
        None,
        "CF-IPCountry is not the configured header"
    );
    assert_eq!(country("a2").as_deref(), Some("DE"));
    assert_eq!(country("a3"), None);
    let keys: std::collections::BTreeSet<_> = views.iter().map(|e| e.viewer_key).collect();
    assert_eq!(keys.len(), 1, "one peer, one browser: {keys:?}");
    assert!(keys.iter().all(Option::is_some));

    let published = |kind: &'static str| {
        let admin = admin.clone();
        async move {
            metric(
                &admin,
                "badgepulse_ingest_publish_duration_seconds_count",
                &[("kind", kind)],
            )
            .await
        }
    };
    assert_eq!(
        published("event").await,
        1.0,
        "one request's PubAcks, timed together"
    );
    assert!(published("beacon_batch").await >= 1.0);
    assert_eq!(
        metric(
            &admin,
            "badgepulse_ingest_events_total",
            &[("outcome", "accepted")]
        )
        .await,
        3.0
    );
    assert_eq!(
        metric(
            &admin,
            "badgepulse_ingest_publish_failures_total",
            &[("kind", "event")]
        )
        .await,
        0.0
    );
    assert_eq!(
        metric(&admin, "badgepulse_ingest_buffer_depth", &[]).await,
        0.0
    );
}
