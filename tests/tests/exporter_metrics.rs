//! The business metrics of SPEC §9 on the exporter's `/metrics`: exact
//! values for a known dataset, and label cardinality bounded by
//! `exporter.max_label_orgs`/`max_label_issuers` with the rest folded into
//! `__other__` with exact totals.
//!
//! The dataset is inserted into `events_input`, so the materialised views
//! fill the rollups and `assertion_lifecycle` exactly as the aggregator's
//! inserts do. Two exporters read it: one with the default limits, one
//! with `max_label_orgs = 1` and `max_label_issuers = 1`.

use std::time::Duration;

use badgepulse_aggregator::schema::Schema;
use badgepulse_tests::{
    eventually, free_port, metric_value, scrape, wait_http, ClickHouse, Service,
};

const DB: &str = "e2e_exporter_metrics";

/// (org, issuer, badge class, assertion, type, method/channel/source, viewer key)
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    u64,
);

/// The known dataset. `globex` and `initech` both use assertion id `a1`:
/// folded into `__other__`, they must still count as two assertions.
const EVENTS: &[Row] = &[
    // acme / academy: 15 events.
    ("acme", "academy", "rust", "a1", "badge.awarded", "api", 0),
    ("acme", "academy", "rust", "a1", "badge.accepted", "", 0),
    (
        "acme",
        "academy",
        "rust",
        "a1",
        "badge.shared",
        "linkedin",
        0,
    ),
    ("acme", "academy", "rust", "a1", "badge.shared", "x", 0),
    (
        "acme",
        "academy",
        "rust",
        "a1",
        "badge.viewed",
        "linkedin",
        11,
    ),
    (
        "acme",
        "academy",
        "rust",
        "a1",
        "badge.viewed",
        "direct",
        12,
    ),
    ("acme", "academy", "rust", "a2", "badge.awarded", "bulk", 0),
    ("acme", "academy", "rust", "a2", "badge.accepted", "", 0),
    (
        "acme",
        "academy",
        "rust",
        "a2",
        "badge.shared",
        "linkedin",
        0,
    ),
    (
        "acme",
        "academy",
        "rust",
        "a2",
        "badge.viewed",
        "direct",
        11,
    ),
    // A platform view: no source, no viewer key.
    ("acme", "academy", "rust", "a2", "badge.viewed", "", 0),
    ("acme", "academy", "rust", "a3", "badge.awarded", "api", 0),
    ("acme", "academy", "rust", "a3", "badge.accepted", "", 0),
    ("acme", "academy", "rust", "a4", "badge.awarded", "api", 0),
    // Accepted, never awarded: in `accepted`, outside the lifecycle.
    ("acme", "academy", "rust", "a5", "badge.accepted", "", 0),
    // acme / labs: 2 events; viewed without accept or share.
    ("acme", "labs", "go", "b1", "badge.awarded", "manual", 0),
    ("acme", "labs", "go", "b1", "badge.viewed", "direct", 13),
    // globex: 3 events.
    ("globex", "g1", "x1", "a1", "badge.awarded", "api", 0),
    ("globex", "g1", "x1", "a1", "badge.accepted", "", 0),
    ("globex", "g1", "x1", "a1", "badge.shared", "email", 0),
    ("globex", "g1", "x1", "a2", "badge.awarded", "api", 0),
    // initech: 4 events.
    ("initech", "i1", "y1", "a1", "badge.awarded", "bulk", 0),
    ("initech", "i1", "y1", "a1", "badge.accepted", "", 0),
    ("initech", "i1", "y1", "a1", "badge.shared", "email", 0),
    ("initech", "i1", "y1", "a1", "badge.viewed", "email", 11),
];

async fn load(ch: &ClickHouse) {
    for statement in Schema::new(DB, "").all_statements() {
        ch.query(&statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    // Filed as the aggregator files them (`awarded_on`): under the award
    // day for an assertion with an award, under day 0 for the others.
    let awarded = |org: &str, assertion: &str| {
        EVENTS
            .iter()
            .any(|e| e.0 == org && e.3 == assertion && e.4 == "badge.awarded")
    };
    let values: Vec<String> = EVENTS
        .iter()
        .enumerate()
        .map(
            |(n, (org, issuer, class, assertion, kind, value, viewer))| {
                let filed = if awarded(org, assertion) {
                    "toDate('2026-03-01')"
                } else {
                    "toDate(0)"
                };
                let (method, channel, source) = match *kind {
                    "badge.awarded" => (*value, "", ""),
                    "badge.shared" => ("", *value, ""),
                    "badge.viewed" => ("", "", *value),
                    _ => ("", "", ""),
                };
                format!(
                    "('e{n}', '{kind}', toDateTime('2026-03-01 10:00:00', 'UTC') + {n}, \
                 toDateTime('2026-03-01 10:00:00', 'UTC') + {n}, '{org}', '{issuer}', '{class}', \
                 '{assertion}', '{method}', '{channel}', '{source}', '', {viewer}, 0, {seq}, {filed})",
                    seq = n + 1
                )
            },
        )
        .collect();
    ch.query(&format!(
        "INSERT INTO {DB}.events_input (event_id, type, occurred_at, received_at, org_id, \
         issuer_id, badge_class_id, assertion_id, award_method, share_channel, view_source, \
         country, viewer_key, partition, seq, awarded_on) VALUES {}",
        values.join(", ")
    ))
    .await
    .unwrap();
}

/// An exporter with `limits` added to its section: the service and the
/// base URL of its admin listener (`/metrics`).
fn start_exporter(ch: &ClickHouse, limits: &str) -> (Service, String) {
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        "[clickhouse]\nurl = \"{}\"\ndatabase = \"{DB}\"\n[exporter]\nbind = \"127.0.0.1:{port}\"\n\
         admin_bind = \"127.0.0.1:{admin}\"\nrefresh_interval_secs = 1\n{limits}",
        ch.url()
    );
    (
        Service::start("badgepulse-exporter", &config, &[]),
        format!("http://127.0.0.1:{admin}"),
    )
}

/// The first `/metrics` text that carries the business metrics, from the
/// admin listener at `admin`.
async fn business_metrics(admin: &str) -> String {
    wait_http(&format!("{admin}/readyz"), Duration::from_secs(60))
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "business metrics", || async {
        let text = scrape(&format!("{admin}/metrics")).await;
        text.contains("badgepulse_lifecycle_assertions{")
            .then_some(text)
    })
    .await
}

/// Every sample of `name` in `text`: (labels, value).
fn series<'t>(text: &'t str, name: &str) -> Vec<(&'t str, f64)> {
    text.lines()
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let labels = series.strip_prefix(name)?.strip_prefix('{')?;
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

/// Asserts the value of `name{labels}`, and that the series exists.
#[track_caller]
fn check(text: &str, name: &str, labels: &[(&str, &str)], want: f64) {
    let n = series(text, name)
        .iter()
        .filter(|(l, _)| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .count();
    assert_eq!(n, 1, "{name}{labels:?}: expected one series\n{text}");
    let got = metric_value(text, name, labels);
    assert!(
        (got - want).abs() < 1e-9,
        "{name}{labels:?} = {got}, want {want}\n{text}"
    );
}

/// Asserts that `name{labels}` has no series (a ratio with denominator 0).
#[track_caller]
fn absent(text: &str, name: &str, labels: &[(&str, &str)]) {
    assert!(
        !series(text, name).iter().any(|(l, _)| labels
            .iter()
            .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))),
        "{name}{labels:?} should be absent\n{text}"
    );
}

/// Per (org, issuer): awarded, accepted, shared, viewed, unique viewers,
/// acceptance rate, share rate, engagement score, external impact score.
type IssuerWant = (&'static str, &'static str, [f64; 5], [Option<f64>; 4]);

fn check_issuers(text: &str, want: &[IssuerWant]) {
    for (org, issuer, counts, ratios) in want {
        let ids = [("org_id", *org), ("issuer_id", *issuer)];
        for (event, value) in ["awarded", "accepted", "shared", "viewed"]
            .iter()
            .zip(counts)
        {
            let labels = [ids[0], ids[1], ("event", *event)];
            check(text, "badgepulse_badge_events_total", &labels, *value);
        }
        check(text, "badgepulse_unique_viewers", &ids, counts[4]);
        for (name, value) in [
            "badgepulse_acceptance_rate",
            "badgepulse_share_rate",
            "badgepulse_engagement_score",
            "badgepulse_external_impact_score",
        ]
        .iter()
        .zip(ratios)
        {
            match value {
                Some(v) => check(text, name, &ids, *v),
                None => absent(text, name, &ids),
            }
        }
    }
}

/// (metric, label name, org, value, count)
type DimWant = (&'static str, &'static str, &'static str, &'static str, f64);

fn check_dimensions(text: &str, want: &[DimWant]) {
    for (name, label, org, value, count) in want {
        check(text, name, &[("org_id", org), (label, value)], *count);
    }
    // Nothing else: every series of these families is listed.
    for name in [
        "badgepulse_award_method_total",
        "badgepulse_share_channel_total",
        "badgepulse_view_source_total",
    ] {
        assert_eq!(
            series(text, name).len(),
            want.iter().filter(|w| w.0 == name).count(),
            "{name}\n{text}"
        );
    }
}

fn check_lifecycle(text: &str, want: &[(&str, [f64; 4])]) {
    for (org, counts) in want {
        for (stage, value) in ["awarded", "accepted", "shared", "viewed"]
            .iter()
            .zip(counts)
        {
            check(
                text,
                "badgepulse_lifecycle_assertions",
                &[("org_id", org), ("stage", stage)],
                *value,
            );
        }
    }
    assert_eq!(
        series(text, "badgepulse_lifecycle_assertions").len(),
        want.len() * 4,
        "{text}"
    );
}

const AM: &str = "badgepulse_award_method_total";
const SC: &str = "badgepulse_share_channel_total";
const VS: &str = "badgepulse_view_source_total";

#[tokio::test]
async fn business_metrics_are_exact_and_bounded() {
    let ch = ClickHouse::start().await;
    load(&ch).await;
    let (_wide, wide_url) = start_exporter(&ch, "");
    let (_tight, tight_url) = start_exporter(&ch, "max_label_orgs = 1\nmax_label_issuers = 1\n");

    // Default limits: every org and issuer has its own labels.
    let text = business_metrics(&wide_url).await;
    check_issuers(
        &text,
        &[
            (
                "acme",
                "academy",
                [4.0, 4.0, 2.0, 4.0, 2.0],
                [Some(1.0), Some(0.5), Some(75.0), Some(4.0 / 3.0)],
            ),
            (
                "acme",
                "labs",
                [1.0, 0.0, 0.0, 1.0, 1.0],
                [Some(0.0), None, Some(0.0), None],
            ),
            (
                "globex",
                "g1",
                [2.0, 1.0, 1.0, 0.0, 0.0],
                [Some(0.5), Some(1.0), Some(50.0), Some(0.0)],
            ),
            (
                "initech",
                "i1",
                [1.0, 1.0, 1.0, 1.0, 1.0],
                [Some(1.0), Some(1.0), Some(100.0), Some(1.0)],
            ),
        ],
    );
    assert_eq!(
        series(&text, "badgepulse_unique_viewers").len(),
        4,
        "{text}"
    );
    check_dimensions(
        &text,
        &[
            (AM, "method", "acme", "api", 3.0),
            (AM, "method", "acme", "bulk", 1.0),
            (AM, "method", "acme", "manual", 1.0),
            (AM, "method", "globex", "api", 2.0),
            (AM, "method", "initech", "bulk", 1.0),
            (SC, "channel", "acme", "linkedin", 2.0),
            (SC, "channel", "acme", "x", 1.0),
            (SC, "channel", "globex", "email", 1.0),
            (SC, "channel", "initech", "email", 1.0),
            (VS, "source", "acme", "linkedin", 1.0),
            (VS, "source", "acme", "direct", 3.0),
            (VS, "source", "acme", "unknown", 1.0),
            (VS, "source", "initech", "email", 1.0),
        ],
    );
    check_lifecycle(
        &text,
        &[
            ("acme", [5.0, 3.0, 2.0, 2.0]),
            ("globex", [2.0, 1.0, 1.0, 0.0]),
            ("initech", [1.0, 1.0, 1.0, 1.0]),
        ],
    );

    // One org, one issuer: the rest folds into __other__ with exact
    // totals (globex's and initech's `a1` stay two assertions).
    let text = business_metrics(&tight_url).await;
    check_issuers(
        &text,
        &[
            (
                "acme",
                "academy",
                [4.0, 4.0, 2.0, 4.0, 2.0],
                [Some(1.0), Some(0.5), Some(75.0), Some(4.0 / 3.0)],
            ),
            (
                "acme",
                "__other__",
                [1.0, 0.0, 0.0, 1.0, 1.0],
                [Some(0.0), None, Some(0.0), None],
            ),
            (
                "__other__",
                "__other__",
                [3.0, 2.0, 2.0, 1.0, 1.0],
                [Some(2.0 / 3.0), Some(1.0), Some(400.0 / 6.0), Some(0.5)],
            ),
        ],
    );
    assert_eq!(
        series(&text, "badgepulse_unique_viewers").len(),
        3,
        "{text}"
    );
    check_dimensions(
        &text,
        &[
            (AM, "method", "acme", "api", 3.0),
            (AM, "method", "acme", "bulk", 1.0),
            (AM, "method", "acme", "manual", 1.0),
            (AM, "method", "__other__", "api", 2.0),
            (AM, "method", "__other__", "bulk", 1.0),
            (SC, "channel", "acme", "linkedin", 2.0),
            (SC, "channel", "acme", "x", 1.0),
            (SC, "channel", "__other__", "email", 2.0),
            (VS, "source", "acme", "linkedin", 1.0),
            (VS, "source", "acme", "direct", 3.0),
            (VS, "source", "acme", "unknown", 1.0),
            (VS, "source", "__other__", "email", 1.0),
        ],
    );
    check_lifecycle(
        &text,
        &[
            ("acme", [5.0, 3.0, 2.0, 2.0]),
            ("__other__", [3.0, 2.0, 2.0, 1.0]),
        ],
    );
    // No business series names a folded org or issuer.
    for l in text
        .lines()
        .filter(|l| l.starts_with("badgepulse_") && !l.starts_with("badgepulse_exporter_"))
    {
        for hidden in ["globex", "initech", "\"labs\"", "\"g1\"", "\"i1\""] {
            assert!(!l.contains(hidden), "{l}");
        }
    }
}
