//! SPEC §7.3 `GET /api/v1/top-badges`: badge classes ranked by a
//! measure, those under `min_awarded` awards listed last.

use serde::Serialize;

use super::{Analytics, PeriodJson};
use crate::db::store::StoreError;
use crate::freshness::ReadMode;
use crate::model::scope::Filter;
use crate::model::window::Window;
use std::collections::HashMap;

use crate::model::measures::{Measures, Value};
use crate::model::tiers::Resolution;

// -------------------------------------------------------------- top badges

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Asc,
    Desc,
}

impl Order {
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Asc => "asc",
            Order::Desc => "desc",
        }
    }

    pub fn parse(s: &str) -> Option<Order> {
        match s {
            "asc" => Some(Order::Asc),
            "desc" => Some(Order::Desc),
            _ => None,
        }
    }
}

/// How top badges are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ranking {
    /// A measure name of [`NAMES`].
    pub sort: &'static str,
    pub order: Order,
    /// 1 to 1000.
    pub limit: usize,
}

impl Default for Ranking {
    fn default() -> Self {
        Ranking {
            sort: "performance",
            order: Order::Desc,
            limit: 20,
        }
    }
}

/// One badge class in the ranking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BadgeRow {
    pub org_id: String,
    pub badge_class_id: String,
    /// Latest name; empty when the class was never upserted.
    pub name: String,
    #[serde(flatten)]
    pub measures: Measures,
    /// Fewer than `min_awarded` awards in the window.
    pub low_sample: bool,
}

/// The body of `GET /api/v1/top-badges`.
#[derive(Debug, Clone, Serialize)]
pub struct TopBadges {
    pub scope: Filter,
    pub period: PeriodJson,
    pub sort: &'static str,
    pub order: Order,
    pub min_awarded: u64,
    pub rows: Vec<BadgeRow>,
}

/// Ranks `rows`: classes meeting `min_awarded` first, then by the sort
/// measure in `order` with nulls last, ties by badge class id and org;
/// the first `limit`.
pub fn rank(mut rows: Vec<BadgeRow>, ranking: Ranking) -> Vec<BadgeRow> {
    rows.sort_by(|a, b| {
        let va = a.measures.get(ranking.sort).map(Value::as_f64);
        let vb = b.measures.get(ranking.sort).map(Value::as_f64);
        let by_value = match (va, vb) {
            (Some(x), Some(y)) => match ranking.order {
                Order::Desc => y.total_cmp(&x),
                Order::Asc => x.total_cmp(&y),
            },
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        a.low_sample
            .cmp(&b.low_sample)
            .then(by_value)
            .then_with(|| a.badge_class_id.cmp(&b.badge_class_id))
            .then_with(|| a.org_id.cmp(&b.org_id))
    });
    rows.truncate(ranking.limit);
    rows
}

impl Analytics {
    /// SPEC §7.3.
    pub async fn top_badges(
        &self,
        filter: &Filter,
        window: Window,
        ranking: Ranking,
        mode: ReadMode,
    ) -> Result<TopBadges, StoreError> {
        let period = self.period(window, Resolution::Month);
        let (counts, meta) = tokio::try_join!(
            self.reader.class_counts(filter, &period, mode),
            self.reader.badge_classes(filter, mode),
        )?;
        let names: HashMap<(String, String), String> = meta
            .into_iter()
            .map(|m| ((m.org_id, m.badge_class_id), m.name))
            .collect();
        let min_awarded = self.settings.min_awarded;
        let rows = counts
            .into_iter()
            .map(|c| {
                let measures = Measures::derive(c.counts());
                let name = names
                    .get(&(c.org_id.clone(), c.badge_class_id.clone()))
                    .cloned()
                    .unwrap_or_default();
                BadgeRow {
                    org_id: c.org_id,
                    badge_class_id: c.badge_class_id,
                    name,
                    low_sample: measures.counts.awarded < min_awarded,
                    measures,
                }
            })
            .collect();
        Ok(TopBadges {
            scope: filter.clone(),
            period: window.into(),
            sort: ranking.sort,
            order: ranking.order,
            min_awarded,
            rows: rank(rows, ranking),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::measures::{Counts, NAMES};

    fn badge(id: &str, org: &str, awarded: u64, accepted: u64, views: u64, min: u64) -> BadgeRow {
        let measures = Measures::derive(Counts {
            awarded,
            accepted,
            views,
            ..Counts::default()
        });
        BadgeRow {
            org_id: org.into(),
            badge_class_id: id.into(),
            name: String::new(),
            low_sample: awarded < min,
            measures,
        }
    }
    fn ids(rows: &[BadgeRow]) -> Vec<String> {
        rows.iter()
            .map(|r| format!("{}/{}", r.org_id, r.badge_class_id))
            .collect()
    }
    #[test]
    fn ranking_puts_low_samples_last_and_breaks_ties() {
        let rows = vec![
            badge("b", "o", 10, 5, 0, 10),  // performance 12.5
            badge("a", "o", 10, 10, 0, 10), // 25
            badge("c", "o", 10, 5, 0, 10),  // 12.5, tie with b
            badge("a", "n", 10, 5, 0, 10),  // 12.5, tie: by id then org
            badge("z", "o", 2, 2, 100, 10), // high but low sample
            badge("y", "o", 0, 0, 5, 10),   // null performance, low sample
        ];
        let r = rank(rows.clone(), Ranking::default());
        assert_eq!(ids(&r), ["o/a", "n/a", "o/b", "o/c", "o/z", "o/y"]);
        let r = rank(
            rows.clone(),
            Ranking {
                sort: "performance",
                order: Order::Asc,
                limit: 3,
            },
        );
        assert_eq!(ids(&r), ["n/a", "o/b", "o/c"]);
        // Sorting by a count; nulls never come first.
        let r = rank(
            rows,
            Ranking {
                sort: "views",
                order: Order::Desc,
                limit: 100,
            },
        );
        assert_eq!(ids(&r), ["n/a", "o/a", "o/b", "o/c", "o/z", "o/y"]);
        let json = serde_json::to_value(&r[0]).unwrap();
        assert_eq!(json["badge_class_id"], "a");
        assert_eq!(json["low_sample"], false);
        assert_eq!(json["performance"], 12.5);
        assert_eq!(json.as_object().unwrap().len(), 3 + NAMES.len() + 1);
    }
}
