//! The business metrics of `/metrics` (SPEC §9).
//!
//! - Business metrics (`badgepulse_badge_events_total`, rates, scores,
//!   award methods, share channels, view sources, lifecycle stages) are
//!   rebuilt from ClickHouse by [`refresh_loop`] every
//!   `exporter.refresh_interval_secs` into a fresh registry that replaces
//!   the cached one: a scrape only encodes the cache and never waits on
//!   ClickHouse. A refresh replaces all of them or none.
//! - Label cardinality is bounded by the queries (`queries::issuer_totals`,
//!   `dimension_totals`, `lifecycle_totals`): at most
//!   `exporter.max_label_orgs` orgs and `max_label_issuers` (org, issuer)
//!   pairs, the rest folded into `__other__`; methods, channels, sources
//!   and stages are closed sets.
//! - `badgepulse_benchmark_percentile{org_id,measure}`: each labelled org's
//!   all-time percentile among every org (SPEC §7.10), from one cheap read
//!   of the org rows of `scope_total`; a rank cannot be folded, so orgs
//!   beyond the label limit get none. The other insights (impact, timing,
//!   cohorts) have no gauge: per annotation, per cell or per cohort they
//!   are unbounded, and timing would scan every assertion each refresh.

use std::time::Duration;

use prometheus::{GaugeVec, IntCounterVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

use crate::db::store::Store;
use crate::db::totals::{DimensionTotals, IssuerTotals, LifecycleTotals, OTHER_LABEL};
use crate::model::benchmark::{self, PeerCounts, Rules};
use crate::model::measures::{Counts, Measures};
use crate::telemetry::Metrics;

/// What one refresh of the business metrics reads, already bounded in
/// label cardinality.
#[derive(Debug, Clone, Default)]
pub struct BusinessRows {
    pub issuers: Vec<IssuerTotals>,
    pub dimensions: Vec<DimensionTotals>,
    pub lifecycle: Vec<LifecycleTotals>,
    /// All-time counts of every org (not folded: the benchmark's peers).
    pub orgs: Vec<PeerCounts>,
}

/// Label value for an empty distribution value (e.g. a view without a
/// source), as in `/api/v1/distribution` for countries.
const UNKNOWN_LABEL: &str = "unknown";

/// The business metrics of SPEC §9 for `rows`, in a fresh registry. Rates
/// and scores whose denominator is 0 are left out rather than exported as
/// NaN; so is a percentile the benchmark's `rules` do not rank.
pub fn business_registry(rows: &BusinessRows, rules: Rules) -> Registry {
    let registry = Registry::new();
    let labels = &["org_id", "issuer_id"];
    let events = IntCounterVec::new(
        Opts::new(
            "badgepulse_badge_events_total",
            "All-time badge events by org, issuer and event; awarded, accepted and shared count distinct assertions, viewed counts views",
        ),
        &["org_id", "issuer_id", "event"],
    )
    .expect("valid metric");
    let gauge = |name: &str, help: &str| {
        let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
        registry
            .register(Box::new(g.clone()))
            .expect("unique metric");
        g
    };
    registry
        .register(Box::new(events.clone()))
        .expect("unique metric");
    let unique_viewers = gauge(
        "badgepulse_unique_viewers",
        "All-time distinct viewer keys among views",
    );
    let acceptance_rate = gauge(
        "badgepulse_acceptance_rate",
        "All-time min(1, accepted / awarded)",
    );
    let share_rate = gauge(
        "badgepulse_share_rate",
        "All-time min(1, shared / accepted)",
    );
    let engagement = gauge(
        "badgepulse_engagement_score",
        "All-time Learner Engagement Score, 0-100",
    );
    let impact = gauge(
        "badgepulse_external_impact_score",
        "All-time views per share",
    );

    for row in &rows.issuers {
        let ids = [row.org_id.as_str(), row.issuer_id.as_str()];
        for (event, value) in [
            ("awarded", row.awarded),
            ("accepted", row.accepted),
            ("shared", row.shared),
            ("viewed", row.views),
        ] {
            events
                .with_label_values(&[ids[0], ids[1], event])
                .inc_by(value);
        }
        unique_viewers
            .with_label_values(&ids)
            .set(row.unique_viewers as f64);
        let m = Measures::derive(Counts {
            awarded: row.awarded,
            accepted: row.accepted,
            shared: row.shared,
            shares: row.shares,
            views: row.views,
            unique_viewers: row.unique_viewers,
            ..Counts::default()
        });
        for (gauge, value) in [
            (&acceptance_rate, m.acceptance_rate),
            (&share_rate, m.share_rate),
            (&engagement, m.engagement_score),
            (&impact, m.external_impact_score),
        ] {
            if let Some(v) = value {
                gauge.with_label_values(&ids).set(v);
            }
        }
    }

    let counter = |name: &str, help: &str, label: &str| {
        let c =
            IntCounterVec::new(Opts::new(name, help), &["org_id", label]).expect("valid metric");
        registry
            .register(Box::new(c.clone()))
            .expect("unique metric");
        c
    };
    let methods = counter(
        "badgepulse_award_method_total",
        "All-time awarded assertions by org and award method",
        "method",
    );
    let channels = counter(
        "badgepulse_share_channel_total",
        "All-time share events by org and channel",
        "channel",
    );
    let sources = counter(
        "badgepulse_view_source_total",
        "All-time view events by org and source",
        "source",
    );
    for row in &rows.dimensions {
        let family = match row.event_type.as_str() {
            "badge.awarded" => &methods,
            "badge.shared" => &channels,
            "badge.viewed" => &sources,
            other => {
                tracing::warn!(
                    event_type = other,
                    "unexpected event type in dimension totals"
                );
                continue;
            }
        };
        let value = if row.value.is_empty() {
            UNKNOWN_LABEL
        } else {
            row.value.as_str()
        };
        family
            .with_label_values(&[row.org_id.as_str(), value])
            .inc_by(row.count);
    }

    let lifecycle = GaugeVec::new(
        Opts::new(
            "badgepulse_lifecycle_assertions",
            "All-time assertions by lifecycle stage: each stage counts the awarded assertions having that event and every earlier stage's (awarded >= accepted >= shared >= viewed)",
        ),
        &["org_id", "stage"],
    )
    .expect("valid metric");
    registry
        .register(Box::new(lifecycle.clone()))
        .expect("unique metric");
    let percentile = GaugeVec::new(
        Opts::new(
            "badgepulse_benchmark_percentile",
            "All-time percentile rank (0-100) of the org among the orgs with at least exporter.min_awarded awards and a value of the measure; absent with fewer than exporter.benchmark_min_peers such orgs",
        ),
        &["org_id", "measure"],
    )
    .expect("valid metric");
    registry
        .register(Box::new(percentile.clone()))
        .expect("unique metric");
    let labelled: std::collections::BTreeSet<&str> = rows
        .issuers
        .iter()
        .map(|r| r.org_id.as_str())
        .filter(|o| *o != OTHER_LABEL)
        .collect();
    for org in labelled {
        for m in benchmark::benchmark((org, ""), &rows.orgs, rules) {
            if let Some(p) = m.percentile {
                percentile.with_label_values(&[org, m.measure]).set(p);
            }
        }
    }
    for row in &rows.lifecycle {
        for (stage, value) in [
            ("awarded", row.awarded),
            ("accepted", row.accepted),
            ("shared", row.shared),
            ("viewed", row.viewed),
        ] {
            lifecycle
                .with_label_values(&[row.org_id.as_str(), stage])
                .set(value as f64);
        }
    }
    registry
}

/// Reads everything [`business_registry`] needs, the three queries
/// concurrently.
async fn read_business(
    store: &Store,
    max_orgs: u64,
    max_issuers: u64,
) -> Result<BusinessRows, crate::db::store::StoreError> {
    let (issuers, dimensions, lifecycle, orgs) = tokio::try_join!(
        store.issuer_totals(max_orgs, max_issuers),
        store.dimension_totals(max_orgs),
        store.lifecycle_totals(max_orgs),
        store.org_totals(),
    )?;
    Ok(BusinessRows {
        issuers,
        dimensions,
        lifecycle,
        orgs,
    })
}

/// Recomputes the business metrics now and then every `interval` until
/// `shutdown`. A failed refresh keeps the previous values and is counted.
pub async fn refresh_loop(
    store: Store,
    metrics: Metrics,
    interval: Duration,
    max_orgs: usize,
    max_issuers: usize,
    rules: Rules,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let refreshed = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = read_business(&store, max_orgs as u64, max_issuers as u64) => r,
        };
        match refreshed {
            Ok(rows) => {
                metrics.set_business(business_registry(&rows, rules));
                metrics
                    .last_refresh
                    .set(chrono::Utc::now().timestamp() as f64);
                tracing::debug!(
                    issuers = rows.issuers.len(),
                    dimensions = rows.dimensions.len(),
                    orgs = rows.lifecycle.len(),
                    "business metrics refreshed"
                );
            }
            Err(e) => {
                metrics.refresh_errors.inc();
                tracing::warn!(error = %e, "refreshing business metrics failed; serving the previous values");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        org: &str,
        issuer: &str,
        awarded: u64,
        accepted: u64,
        shares: u64,
        views: u64,
    ) -> IssuerTotals {
        IssuerTotals {
            org_id: org.into(),
            issuer_id: issuer.into(),
            awarded,
            accepted,
            shared: shares.min(accepted),
            shares,
            views,
            unique_viewers: views / 2,
        }
    }

    fn dim(org: &str, event_type: &str, value: &str, count: u64) -> DimensionTotals {
        DimensionTotals {
            org_id: org.into(),
            event_type: event_type.into(),
            value: value.into(),
            count,
        }
    }

    const RULES: Rules = Rules {
        min_awarded: 2,
        min_peers: 5,
    };

    #[test]
    fn renders_business_and_pipeline_metrics() {
        let m = Metrics::new();
        m.http_requests
            .with_label_values(&["/api/v1/overview", "200"])
            .inc();
        let before = String::from_utf8(m.render()).unwrap();
        assert!(!before.contains("badgepulse_badge_events_total"));

        let org = |id: &str, awarded: u64, accepted: u64| PeerCounts {
            org_id: id.into(),
            issuer_id: String::new(),
            awarded,
            accepted,
            shared: 0,
            shares: 0,
            views: 0,
        };
        m.set_business(business_registry(
            &BusinessRows {
                issuers: vec![
                    row("acme", "academy", 10, 5, 2, 8),
                    row("acme", "__other__", 0, 0, 0, 3),
                ],
                dimensions: vec![
                    dim("acme", "badge.awarded", "api", 7),
                    dim("acme", "badge.awarded", "bulk", 3),
                    dim("acme", "badge.shared", "linkedin", 2),
                    dim("acme", "badge.viewed", "", 4),
                    dim("__other__", "badge.viewed", "direct", 7),
                ],
                lifecycle: vec![LifecycleTotals {
                    org_id: "acme".into(),
                    awarded: 10,
                    accepted: 5,
                    shared: 2,
                    viewed: 1,
                }],
                // acme among five orgs: acceptance 0.5 against 0.25, 0.5, 0.75
                // and 1; an org beyond the labels; one under min_awarded.
                orgs: vec![
                    org("acme", 10, 5),
                    org("b", 4, 1),
                    org("c", 2, 1),
                    org("d", 4, 3),
                    org("e", 2, 2),
                    org("f", 1, 1),
                ],
            },
            RULES,
        ));
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains("# TYPE badgepulse_badge_events_total counter"),
            "{text}"
        );
        assert!(text.contains(r#"badgepulse_badge_events_total{event="awarded",issuer_id="academy",org_id="acme"} 10"#), "{text}");
        assert!(text.contains(r#"badgepulse_badge_events_total{event="viewed",issuer_id="__other__",org_id="acme"} 3"#), "{text}");
        assert!(
            text.contains(r#"badgepulse_acceptance_rate{issuer_id="academy",org_id="acme"} 0.5"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"badgepulse_external_impact_score{issuer_id="academy",org_id="acme"} 4"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"badgepulse_unique_viewers{issuer_id="__other__",org_id="acme"} 1"#),
            "{text}"
        );
        // Zero denominators: no series rather than NaN.
        assert!(
            !text.contains(r#"badgepulse_acceptance_rate{issuer_id="__other__""#),
            "{text}"
        );
        assert!(!text.contains("NaN"), "{text}");
        assert!(text.contains(
            r#"badgepulse_exporter_http_requests_total{route="/api/v1/overview",status="200"} 1"#
        ));
        for line in [
            "# TYPE badgepulse_award_method_total counter",
            r#"badgepulse_award_method_total{method="api",org_id="acme"} 7"#,
            r#"badgepulse_award_method_total{method="bulk",org_id="acme"} 3"#,
            r#"badgepulse_share_channel_total{channel="linkedin",org_id="acme"} 2"#,
            r#"badgepulse_view_source_total{org_id="acme",source="unknown"} 4"#,
            r#"badgepulse_view_source_total{org_id="__other__",source="direct"} 7"#,
            "# TYPE badgepulse_lifecycle_assertions gauge",
            r#"badgepulse_lifecycle_assertions{org_id="acme",stage="awarded"} 10"#,
            r#"badgepulse_lifecycle_assertions{org_id="acme",stage="accepted"} 5"#,
            r#"badgepulse_lifecycle_assertions{org_id="acme",stage="shared"} 2"#,
            r#"badgepulse_lifecycle_assertions{org_id="acme",stage="viewed"} 1"#,
            // (1 below + ½ × 2 equal) ÷ 5.
            "# TYPE badgepulse_benchmark_percentile gauge",
            r#"badgepulse_benchmark_percentile{measure="acceptance_rate",org_id="acme"} 40"#,
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }

        // Only labelled orgs get a rank; a measure without enough peers
        // (no org has shares) none.
        assert!(
            !text.contains(
                r#"badgepulse_benchmark_percentile{measure="acceptance_rate",org_id="b"}"#
            ),
            "{text}"
        );
        assert!(
            !text.contains(r#"measure="external_impact_score""#),
            "{text}"
        );
        // A refresh replaces the series: vanished label pairs disappear.
        m.set_business(business_registry(
            &BusinessRows {
                issuers: vec![row("globex", "labs", 1, 1, 0, 0)],
                ..BusinessRows::default()
            },
            RULES,
        ));
        let text = String::from_utf8(m.render()).unwrap();
        assert!(!text.contains(r#"org_id="acme""#), "{text}");
        assert!(text.contains(r#"org_id="globex""#), "{text}");
        assert!(!text.contains("badgepulse_lifecycle_assertions{"), "{text}");
    }
}
