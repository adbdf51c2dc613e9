//! Compares a running pipeline with a [`Ledger`]: the exporter's all-time
//! KPIs of every org of the ledger, and optionally the rows of
//! ClickHouse's `events` of those orgs by type. Used by
//! `badgepulse-loadgen check` and the demo.
//!
//! Must not: write anything. Every difference is reported, not only the
//! first.

use std::collections::BTreeMap;

use anyhow::Context;
use serde_json::Value;

use crate::ledger::{Counts, Ledger};

/// Where the pipeline answers.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Base URL of badgepulse-exporter.
    pub exporter: String,
    /// An API key whose scope covers every org of the ledger.
    pub api_key: String,
    /// ClickHouse HTTP URL and database, to check `events` too.
    pub clickhouse: Option<(String, String)>,
}

/// The KPIs of SPEC §7 that the ledger states exactly.
pub fn exact_kpis(c: &Counts) -> [(&'static str, u64); 8] {
    [
        ("awarded", c.awarded),
        ("accepted", c.accepted),
        ("shared", c.shared),
        ("shares", c.shares),
        ("views", c.views),
        ("unique_viewers", c.unique_viewers),
        ("revoked", c.revoked),
        ("badge_classes", c.badge_classes),
    ]
}

/// Whether `got` is what SPEC §7 allows for the true value `want`: counts
/// of events exactly; distinct counts (every KPI but `shares` and `views`)
/// exactly up to 10,000 and within 2 % beyond. The exporter's sketches
/// hash values to 32 bits, so up to 10,000 a count may also be one short
/// when two values collide (probability about want² / 2³³; see
/// docs/metrics.md). Duplicated or lost events show in the exact counts
/// and in `events`, never in a distinct count.
pub fn within_spec(name: &str, got: u64, want: u64) -> bool {
    if matches!(name, "shares" | "views") {
        return got == want;
    }
    if want <= 10_000 {
        got == want || got + 1 == want
    } else {
        got.abs_diff(want) * 50 <= want
    }
}

/// Differences between `kpis` (an overview's `kpis` object) and `expected`
/// beyond what SPEC §7 allows ([`within_spec`]), as `org metric: got …,
/// ledger …`. `salt_days`: on how many UTC days ingest received the org's
/// views. Viewer keys are salted per day (SPEC §4), so a viewer seen on
/// two days counts twice, which the ledger cannot know: with more than
/// one day, `unique_viewers` may be up to that many times the ledger's.
pub fn kpi_differences(org: &str, kpis: &Value, expected: &Counts, salt_days: u64) -> Vec<String> {
    exact_kpis(expected)
        .into_iter()
        .filter_map(|(name, want)| {
            let got = kpis[name].as_u64();
            let ok = got.is_some_and(|g| {
                if name == "unique_viewers" && salt_days > 1 {
                    g + 1 >= want && g <= want * salt_days
                } else {
                    within_spec(name, g, want)
                }
            });
            (!ok).then(|| format!("{org} {name}: got {got:?}, ledger {want}"))
        })
        .collect()
}

/// Runs `sql` on ClickHouse at `url`; the answer's text.
async fn clickhouse_text(http: &reqwest::Client, url: &str, sql: String) -> anyhow::Result<String> {
    Ok(http
        .post(url)
        .body(sql)
        .send()
        .await
        .with_context(|| format!("querying ClickHouse at {url}"))?
        .error_for_status()
        .with_context(|| format!("querying ClickHouse at {url}"))?
        .text()
        .await?)
}

/// Every difference between the pipeline and `ledger`; empty when equal.
pub async fn check(ledger: &Ledger, pipeline: &Pipeline) -> anyhow::Result<Vec<String>> {
    let http = reqwest::Client::new();
    let base = pipeline.exporter.trim_end_matches('/');
    let mut differences = Vec::new();
    // The UTC days on which each org's views were received (one salt
    // each); one day when ClickHouse is not checked.
    let mut salt_days: BTreeMap<String, u64> = BTreeMap::new();
    // Only the ledger's orgs: other runs may have written others.
    let orgs = ledger
        .orgs
        .iter()
        .map(|o| format!("'{}'", o.org_id.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect::<Vec<_>>()
        .join(", ");
    if let Some((url, database)) = &pipeline.clickhouse {
        let sql = format!(
            "SELECT org_id, uniqExact(toDate(received_at)) FROM {database}.events \
             WHERE type = 'badge.viewed' AND viewer_key != 0 AND org_id IN ({orgs}) GROUP BY org_id FORMAT TSV"
        );
        for line in clickhouse_text(&http, url, sql).await?.lines() {
            if let Some((org, days)) = line.split_once('\t') {
                salt_days.insert(org.to_owned(), days.parse()?);
            }
        }
    }
    for org in &ledger.orgs {
        let url = format!("{base}/api/v1/overview?org={}", org.org_id);
        let resp = http
            .get(&url)
            .bearer_auth(&pipeline.api_key)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .with_context(|| format!("GET {url}: not JSON"))?;
        anyhow::ensure!(status.is_success(), "GET {url} answered {status}: {body}");
        let days = salt_days.get(&org.org_id).copied().unwrap_or(1);
        differences.extend(kpi_differences(
            &org.org_id,
            &body["kpis"],
            &org.counts,
            days,
        ));
    }
    if let Some((url, database)) = &pipeline.clickhouse {
        let sql = format!(
            "SELECT toString(type), count(), count() - uniqExact(org_id, event_id) FROM {database}.events \
             WHERE org_id IN ({orgs}) GROUP BY type FORMAT TSV"
        );
        let text = clickhouse_text(&http, url, sql).await?;
        let mut stored: BTreeMap<String, u64> = BTreeMap::new();
        for line in text.lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            if let [ty, n, twice] = cols[..] {
                stored.insert(ty.to_owned(), n.parse()?);
                if twice != "0" {
                    differences.push(format!("events {ty}: {twice} stored twice"));
                }
            }
        }
        for (ty, want) in &ledger.traffic.events_by_type {
            let got = stored.get(ty).copied().unwrap_or(0);
            if got != *want {
                differences.push(format!("events {ty}: {got} rows, ledger {want}"));
            }
        }
    }
    Ok(differences)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kpi_differences_name_org_metric_and_both_values() {
        let expected = Counts {
            awarded: 3,
            views: 7,
            ..Counts::default()
        };
        let kpis = serde_json::json!({"awarded": 3, "accepted": 0, "shared": 0, "shares": 0,
            "views": 6, "unique_viewers": 0, "revoked": 0, "badge_classes": 0});
        assert_eq!(
            kpi_differences("acme", &kpis, &expected, 1),
            vec!["acme views: got Some(6), ledger 7".to_owned()]
        );
        assert!(kpi_differences(
            "acme",
            &serde_json::json!({"awarded": 3, "accepted": 0, "shared": 0, "shares": 0,
            "views": 7, "unique_viewers": 0, "revoked": 0, "badge_classes": 0}),
            &expected,
            1
        )
        .is_empty());
        // Distinct counts: one short is a hash collision, more is a
        // difference; beyond 10,000 within 2 %.
        let mut kpis = serde_json::json!({"awarded": 2, "accepted": 0, "shared": 0, "shares": 0,
            "views": 7, "unique_viewers": 0, "revoked": 0, "badge_classes": 0});
        assert!(kpi_differences("acme", &kpis, &expected, 1).is_empty());
        kpis["awarded"] = 1.into();
        assert_eq!(kpi_differences("acme", &kpis, &expected, 1).len(), 1);
        assert!(within_spec("unique_viewers", 98_000, 100_000));
        assert!(!within_spec("unique_viewers", 97_999, 100_000));
        assert!(!within_spec("views", 99_999, 100_000));
        assert!(!within_spec("awarded", 10_001, 10_000));
        // Views received on two UTC days: a viewer of both counts twice.
        let expected = Counts {
            views: 7,
            unique_viewers: 5,
            ..Counts::default()
        };
        let mut kpis = serde_json::json!({"awarded": 0, "accepted": 0, "shared": 0, "shares": 0,
            "views": 7, "unique_viewers": 8, "revoked": 0, "badge_classes": 0});
        assert_eq!(kpi_differences("acme", &kpis, &expected, 1).len(), 1);
        assert!(kpi_differences("acme", &kpis, &expected, 2).is_empty());
        kpis["unique_viewers"] = 11.into();
        assert_eq!(kpi_differences("acme", &kpis, &expected, 2).len(), 1);
        kpis["unique_viewers"] = 3.into();
        assert_eq!(kpi_differences("acme", &kpis, &expected, 2).len(), 1);
        // A missing metric is a difference, not a pass.
        assert_eq!(
            kpi_differences("acme", &serde_json::json!({}), &expected, 1).len(),
            8
        );
    }
}
