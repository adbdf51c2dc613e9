//! The peer benchmark (SPEC §7.10): where an org (among the orgs) or an
//! issuer (among the issuers of every org) stands on each rate, as a
//! percentile rank and the peers' quartiles.
//!
//! Invariant: an answer holds the scope's own value, how many peers
//! qualified, and figures computed over all of them (percentile,
//! quartiles): never a peer's id, and never a value tied to a peer. Pure.

use serde::Serialize;

use super::measures::{Counts, Measures};
use super::scope::Filter;
use super::stats;

/// The measures benchmarked, in output order.
pub const MEASURES: [&str; 5] = [
    "acceptance_rate",
    "share_rate",
    "engagement_score",
    "external_impact_score",
    "reach_score",
];

/// The smallest `benchmark_min_peers` allowed.
pub const MIN_PEERS_FLOOR: u64 = 5;

/// What a scope is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// An org among every org.
    Org,
    /// An issuer among the (org, issuer) pairs of every org.
    Issuer,
}

impl Level {
    /// The level of an answer for `filter`; the error (a 400) names the
    /// parameter: a badge class has no peers, and an answer across every
    /// org has no place among them.
    pub fn of(filter: &Filter) -> Result<Level, String> {
        if filter.badge_class.is_some() {
            return Err("badge_class: the benchmark compares orgs or issuers, not badge classes; ask without badge_class (a key scoped to a badge class cannot)".into());
        }
        if filter.org.is_none() {
            return Err(
                "org: required: the benchmark places one org (or issuer) among its peers".into(),
            );
        }
        Ok(if filter.issuer.is_some() {
            Level::Issuer
        } else {
            Level::Org
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Org => "org",
            Level::Issuer => "issuer",
        }
    }
}

/// One peer's counts in the window: a row of `db::benchmark`.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct PeerCounts {
    pub org_id: String,
    /// Empty at the org level.
    pub issuer_id: String,
    pub awarded: u64,
    pub accepted: u64,
    pub shared: u64,
    pub shares: u64,
    pub views: u64,
}

impl PeerCounts {
    fn measures(&self) -> Measures {
        Measures::derive(Counts {
            awarded: self.awarded,
            accepted: self.accepted,
            shared: self.shared,
            shares: self.shares,
            views: self.views,
            ..Counts::default()
        })
    }
}

/// One measure of the answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Benchmarked {
    pub measure: &'static str,
    /// The scope's own value over the window (null when undefined).
    pub value: Option<f64>,
    /// Peers that qualify: at least `min_awarded` awards in the window
    /// and a value of this measure (the scope itself included when it
    /// qualifies).
    pub peers: u64,
    /// `100 × (peers below + ½ × peers equal) ÷ peers`, the scope counted
    /// as equal.
    pub percentile: Option<f64>,
    pub p25: Option<f64>,
    pub median: Option<f64>,
    pub p75: Option<f64>,
    /// Why the rank and quartiles are null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What qualifies a peer and how many are needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// `exporter.min_awarded`.
    pub min_awarded: u64,
    /// `exporter.benchmark_min_peers`.
    pub min_peers: u64,
}

/// The benchmark of the peer `own` (its org and, at the issuer level,
/// issuer) among `peers` (every peer with events in the window, `own`
/// included if it has any).
pub fn benchmark(own: (&str, &str), peers: &[PeerCounts], rules: Rules) -> Vec<Benchmarked> {
    let own_counts = peers
        .iter()
        .find(|p| (p.org_id.as_str(), p.issuer_id.as_str()) == own);
    let own_awarded = own_counts.map_or(0, |p| p.awarded);
    let own_measures = own_counts.map(PeerCounts::measures).unwrap_or_default();
    let measures: Vec<(u64, Measures)> = peers
        .iter()
        .filter(|p| p.awarded >= rules.min_awarded)
        .map(|p| (p.awarded, p.measures()))
        .collect();
    MEASURES
        .iter()
        .map(|&measure| {
            let value = own_measures.get(measure).map(|v| v.as_f64());
            let mut values: Vec<f64> = measures
                .iter()
                .filter_map(|(_, m)| m.get(measure).map(|v| v.as_f64()))
                .collect();
            values.sort_by(f64::total_cmp);
            let n = values.len() as u64;
            let reason = if own_awarded < rules.min_awarded {
                Some(format!(
                    "the scope has {own_awarded} awards in the window, fewer than min_awarded ({})",
                    rules.min_awarded
                ))
            } else if value.is_none() {
                Some(format!(
                    "the scope has no {measure} in the window (its denominator is 0)"
                ))
            } else if n < rules.min_peers {
                Some(format!(
                    "{n} peers qualify, fewer than benchmark_min_peers ({})",
                    rules.min_peers
                ))
            } else {
                None
            };
            let ranked = reason.is_none();
            let q = |p: f64| ranked.then(|| stats::quantile_type7(&values, p)).flatten();
            Benchmarked {
                measure,
                value,
                peers: n,
                percentile: value
                    .filter(|_| ranked)
                    .and_then(|v| stats::percentile_rank(&values, v)),
                p25: q(0.25),
                median: q(0.5),
                p75: q(0.75),
                reason,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(
        org: &str,
        awarded: u64,
        accepted: u64,
        shared: u64,
        shares: u64,
        views: u64,
    ) -> PeerCounts {
        PeerCounts {
            org_id: org.into(),
            issuer_id: String::new(),
            awarded,
            accepted,
            shared,
            shares,
            views,
        }
    }

    fn filter(org: Option<&str>, issuer: Option<&str>, badge: Option<&str>) -> Filter {
        Filter {
            org: org.map(Into::into),
            issuer: issuer.map(Into::into),
            badge_class: badge.map(Into::into),
        }
    }

    #[test]
    fn levels() {
        assert_eq!(Level::of(&filter(Some("a"), None, None)), Ok(Level::Org));
        assert_eq!(
            Level::of(&filter(Some("a"), Some("i"), None)),
            Ok(Level::Issuer)
        );
        assert!(Level::of(&filter(Some("a"), None, Some("b")))
            .unwrap_err()
            .starts_with("badge_class:"));
        assert!(Level::of(&filter(None, None, None))
            .unwrap_err()
            .starts_with("org:"));
    }

    const RULES: Rules = Rules {
        min_awarded: 10,
        min_peers: 5,
    };

    #[test]
    fn ranks_and_quartiles_over_qualifying_peers() {
        let peers = [
            peer("a", 10, 5, 1, 2, 4),     // acceptance 0.5
            peer("b", 20, 5, 5, 5, 5),     // 0.25
            peer("c", 10, 5, 0, 0, 0),     // 0.5, no shares: no impact score
            peer("d", 40, 30, 10, 10, 80), // 0.75
            peer("e", 10, 5, 2, 4, 2),     // 0.5
            peer("f", 9, 9, 9, 9, 90),     // too few awards
            peer("g", 10, 10, 1, 1, 1),    // 1.0
        ];
        let b = benchmark(("a", ""), &peers, RULES);
        assert_eq!(
            b.iter().map(|m| m.measure).collect::<Vec<_>>(),
            MEASURES.to_vec()
        );
        let acc = &b[0];
        assert_eq!(acc.value, Some(0.5));
        assert_eq!(acc.peers, 6);
        // Values 0.25, 0.5 ×3, 0.75, 1.0: (1 + 1.5) / 6 (SciPy
        // percentileofscore(kind='mean') gives 41.666…).
        assert_eq!(acc.percentile, Some(100.0 * 2.5 / 6.0));
        // numpy.quantile([0.25, 0.5, 0.5, 0.5, 0.75, 1.0], [.25, .5, .75]).
        assert_eq!(
            (acc.p25, acc.median, acc.p75),
            (Some(0.5), Some(0.5), Some(0.6875))
        );
        assert_eq!(acc.reason, None);
        // Impact score: c has no shares, so 5 peers remain (the minimum).
        assert_eq!(b[3].peers, 5);
        assert!(b[3].percentile.is_some());
        let json = serde_json::to_value(acc).unwrap();
        assert!(json.get("reason").is_none(), "{json}");
        assert_eq!(json.as_object().unwrap().len(), 7);
    }

    #[test]
    fn nulls_say_why() {
        let peers = [
            peer("a", 10, 5, 0, 0, 0),
            peer("b", 10, 5, 1, 1, 3),
            peer("c", 10, 6, 1, 1, 3),
            peer("d", 3, 1, 1, 1, 1),
        ];
        // Fewer than 5 peers.
        let b = benchmark(("b", ""), &peers, RULES);
        assert_eq!(b[0].peers, 3);
        assert_eq!(b[0].value, Some(0.5));
        assert_eq!((b[0].percentile, b[0].p25, b[0].median), (None, None, None));
        assert!(b[0].reason.as_deref().unwrap().contains("3 peers qualify"));
        // A scope without the measure.
        let b = benchmark(
            ("a", ""),
            &peers,
            Rules {
                min_peers: 1,
                ..RULES
            },
        );
        assert_eq!(b[3].value, None);
        assert!(b[3]
            .reason
            .as_deref()
            .unwrap()
            .contains("no external_impact_score"));
        assert!(b[0].percentile.is_some());
        // A scope under min_awarded, and one without events.
        for own in ["d", "zz"] {
            let b = benchmark(
                (own, ""),
                &peers,
                Rules {
                    min_peers: 1,
                    ..RULES
                },
            );
            assert!(b.iter().all(|m| m.percentile.is_none()
                && m.median.is_none()
                && m.reason
                    .as_deref()
                    .unwrap()
                    .contains("fewer than min_awarded")));
        }
    }
}
