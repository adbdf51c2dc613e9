//! The SPEC §7 measures of a scope and a set of events: the counts that
//! ClickHouse returns and the ratios and scores derived from them.
//!
//! Pure functions only. Invariant: a derived measure is `None` (JSON
//! `null`) whenever its denominator is 0; never NaN or infinity.

use serde::Serialize;

/// The counted measures, as one row of `queries::measure_counts`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clickhouse::Row, serde::Deserialize,
)]
pub struct Counts {
    /// Distinct assertions with `badge.awarded`.
    pub awarded: u64,
    /// Distinct assertions with `badge.accepted`.
    pub accepted: u64,
    /// Distinct assertions with at least one `badge.shared`.
    pub shared: u64,
    /// `badge.shared` events.
    pub shares: u64,
    /// `badge.viewed` events.
    pub views: u64,
    /// Distinct viewer keys among views that have one.
    pub unique_viewers: u64,
    /// Distinct assertions with `badge.revoked`.
    pub revoked: u64,
    /// Badge classes with any event.
    pub badge_classes: u64,
}

/// Every measure of SPEC §7: the counts plus the derived ratios and scores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Measures {
    #[serde(flatten)]
    pub counts: Counts,
    /// `min(1, accepted / awarded)`.
    pub acceptance_rate: Option<f64>,
    /// `min(1, shared / accepted)`.
    pub share_rate: Option<f64>,
    /// `100 × (min(accepted, awarded) + min(shared, awarded)) / (2 × awarded)`.
    pub engagement_score: Option<f64>,
    /// `views / shares`.
    pub external_impact_score: Option<f64>,
    /// `100 × v / (v + 1)` with `v = views / awarded`.
    pub reach_score: Option<f64>,
    /// `(engagement_score + reach_score) / 2`.
    pub performance: Option<f64>,
}

/// Every measure name, in the order of the JSON objects.
pub const NAMES: [&str; 14] = [
    "awarded",
    "accepted",
    "shared",
    "shares",
    "views",
    "unique_viewers",
    "revoked",
    "badge_classes",
    "acceptance_rate",
    "share_rate",
    "engagement_score",
    "external_impact_score",
    "reach_score",
    "performance",
];

/// A SPEC §7 derived measure as an expression over the counts. The same
/// definition is evaluated here ([`Measures::derive`]) and rendered as
/// ClickHouse SQL for the Grafana dashboards
/// (`badgepulse-exporter print-measures`, read by `grafana/generate.py`),
/// so each formula is written once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expr {
    /// A count of [`Counts`], by name.
    Count(&'static str),
    /// Another derived measure of [`DERIVED`], by name.
    Measure(&'static str),
    Num(f64),
    Add(&'static Expr, &'static Expr),
    Mul(&'static Expr, &'static Expr),
    /// `a / b`, null when `b` is 0.
    Div(&'static Expr, &'static Expr),
    /// The smaller of the two.
    Least(&'static Expr, &'static Expr),
}

use Expr::{Add, Count, Div, Least, Measure, Mul, Num};

/// `views / awarded` (part of `reach_score`).
const VIEWS_PER_AWARD: Expr = Div(&Count("views"), &Count("awarded"));

/// The derived measures of SPEC §7, in [`NAMES`] order; every one is null
/// when a denominator is 0 (never NaN or infinity).
pub const DERIVED: [(&str, Expr); 6] = [
    // min(1, accepted / awarded)
    (
        "acceptance_rate",
        Least(&Num(1.0), &Div(&Count("accepted"), &Count("awarded"))),
    ),
    // min(1, shared / accepted)
    (
        "share_rate",
        Least(&Num(1.0), &Div(&Count("shared"), &Count("accepted"))),
    ),
    // 100 × (min(accepted, awarded) + min(shared, awarded)) / (2 × awarded)
    (
        "engagement_score",
        Div(
            &Mul(
                &Num(100.0),
                &Add(
                    &Least(&Count("accepted"), &Count("awarded")),
                    &Least(&Count("shared"), &Count("awarded")),
                ),
            ),
            &Mul(&Num(2.0), &Count("awarded")),
        ),
    ),
    // views / shares
    (
        "external_impact_score",
        Div(&Count("views"), &Count("shares")),
    ),
    // 100 × v / (v + 1), v = views / awarded
    (
        "reach_score",
        Div(
            &Mul(&Num(100.0), &VIEWS_PER_AWARD),
            &Add(&VIEWS_PER_AWARD, &Num(1.0)),
        ),
    ),
    // (engagement_score + reach_score) / 2
    (
        "performance",
        Div(
            &Add(&Measure("engagement_score"), &Measure("reach_score")),
            &Num(2.0),
        ),
    ),
];

/// The derived measure called `name`.
fn derived(name: &str) -> &'static Expr {
    &DERIVED
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no derived measure {name}"))
        .1
}

impl Expr {
    /// Its value for `counts`; `None` when a denominator is 0.
    pub fn eval(&self, counts: &Counts) -> Option<f64> {
        let two = |a: &Expr, b: &Expr| Some((a.eval(counts)?, b.eval(counts)?));
        match *self {
            Count(name) => Some(counts.get(name) as f64),
            Measure(name) => derived(name).eval(counts),
            Num(n) => Some(n),
            Add(a, b) => two(a, b).map(|(a, b)| a + b),
            Mul(a, b) => two(a, b).map(|(a, b)| a * b),
            Div(a, b) => two(a, b).and_then(|(a, b)| (b != 0.0).then(|| a / b)),
            Least(a, b) => two(a, b).map(|(a, b)| a.min(b)),
        }
    }

    /// As ClickHouse SQL (18.16 and current), `column(name)` naming each
    /// count's column; NULL where [`Expr::eval`] is `None`. The NULL is
    /// decided once, up front (`if(den = 0 OR …, NULL, …)`): current
    /// ClickHouse's `least` ignores a NULL argument where 18.16 returns
    /// NULL, so no NULL may reach it.
    pub fn sql(&self, column: &dyn Fn(&str) -> String) -> String {
        let mut dens = Vec::new();
        self.denominators(column, &mut dens);
        let body = self.plain_sql(column);
        if dens.is_empty() {
            return body;
        }
        let zero: Vec<String> = dens.iter().map(|d| format!("{d} = 0")).collect();
        format!("if({}, NULL, {body})", zero.join(" OR "))
    }

    /// The SQL of every denominator that is not a constant other than 0.
    fn denominators(&self, column: &dyn Fn(&str) -> String, out: &mut Vec<String>) {
        match *self {
            Count(_) | Num(_) => {}
            Measure(name) => derived(name).denominators(column, out),
            Add(a, b) | Mul(a, b) | Least(a, b) => {
                a.denominators(column, out);
                b.denominators(column, out);
            }
            Div(a, b) => {
                a.denominators(column, out);
                b.denominators(column, out);
                if !matches!(b, Num(n) if *n != 0.0) {
                    let den = b.plain_sql(column);
                    if !out.contains(&den) {
                        out.push(den);
                    }
                }
            }
        }
    }

    /// The SQL without the NULL guard.
    fn plain_sql(&self, column: &dyn Fn(&str) -> String) -> String {
        match *self {
            Count(name) => column(name),
            Measure(name) => format!("({})", derived(name).plain_sql(column)),
            Num(n) => format!("{n}"),
            Add(a, b) => format!("({} + {})", a.plain_sql(column), b.plain_sql(column)),
            Mul(a, b) => format!("({} * {})", a.plain_sql(column), b.plain_sql(column)),
            Div(a, b) => format!("({} / {})", a.plain_sql(column), b.plain_sql(column)),
            Least(a, b) => format!("least({}, {})", a.plain_sql(column), b.plain_sql(column)),
        }
    }
}

impl Counts {
    /// The count called `name` (one of the first eight [`NAMES`]).
    pub fn get(&self, name: &str) -> u64 {
        match name {
            "awarded" => self.awarded,
            "accepted" => self.accepted,
            "shared" => self.shared,
            "shares" => self.shares,
            "views" => self.views,
            "unique_viewers" => self.unique_viewers,
            "revoked" => self.revoked,
            "badge_classes" => self.badge_classes,
            other => panic!("no count {other}"),
        }
    }
}

impl Measures {
    /// Derives every ratio and score from `counts` ([`DERIVED`]).
    pub fn derive(counts: Counts) -> Measures {
        let d = |name| derived(name).eval(&counts);
        Measures {
            counts,
            acceptance_rate: d("acceptance_rate"),
            share_rate: d("share_rate"),
            engagement_score: d("engagement_score"),
            external_impact_score: d("external_impact_score"),
            reach_score: d("reach_score"),
            performance: d("performance"),
        }
    }

    /// The measure called `name` (one of [`NAMES`]); `None` for an unknown
    /// name or a null value.
    pub fn get(&self, name: &str) -> Option<Value> {
        let c = &self.counts;
        let count = |n: u64| Some(Value::Count(n));
        let ratio = |r: Option<f64>| r.map(Value::Ratio);
        match name {
            "awarded" => count(c.awarded),
            "accepted" => count(c.accepted),
            "shared" => count(c.shared),
            "shares" => count(c.shares),
            "views" => count(c.views),
            "unique_viewers" => count(c.unique_viewers),
            "revoked" => count(c.revoked),
            "badge_classes" => count(c.badge_classes),
            "acceptance_rate" => ratio(self.acceptance_rate),
            "share_rate" => ratio(self.share_rate),
            "engagement_score" => ratio(self.engagement_score),
            "external_impact_score" => ratio(self.external_impact_score),
            "reach_score" => ratio(self.reach_score),
            "performance" => ratio(self.performance),
            _ => None,
        }
    }
}

/// A dimension of the distribution insights (SPEC §7.2). Each is counted
/// the way its headline measure is: award methods as distinct awarded
/// assertions (`awarded`), share channels as share events (`shares`),
/// view sources and countries as view events (`views`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    AwardMethod,
    ShareChannel,
    ViewSource,
    ViewCountry,
}

impl Dimension {
    pub const ALL: [Dimension; 4] = [
        Dimension::AwardMethod,
        Dimension::ShareChannel,
        Dimension::ViewSource,
        Dimension::ViewCountry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::AwardMethod => "award_method",
            Dimension::ShareChannel => "share_channel",
            Dimension::ViewSource => "view_source",
            Dimension::ViewCountry => "view_country",
        }
    }

    pub fn parse(s: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// The event type the dimension describes.
    pub fn event_type(self) -> &'static str {
        match self {
            Dimension::AwardMethod => "badge.awarded",
            Dimension::ShareChannel => "badge.shared",
            Dimension::ViewSource | Dimension::ViewCountry => "badge.viewed",
        }
    }

    /// Whether rows count distinct assertions (else events).
    pub fn counts_assertions(self) -> bool {
        self == Dimension::AwardMethod
    }
}

/// One measure's value: counts stay integers in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Count(u64),
    Ratio(f64),
}

impl Value {
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Count(n) => n as f64,
            Value::Ratio(r) => r,
        }
    }
}

/// A trend indicator (SPEC §7.1): a measure in the window and in the
/// equally long window before it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Trend {
    pub current: Option<Value>,
    pub previous: Option<Value>,
    /// `(current − previous) / previous`; null when previous is 0 or null,
    /// or current is null.
    pub change: Option<f64>,
}

impl Trend {
    pub fn new(current: Option<Value>, previous: Option<Value>) -> Trend {
        let change = match (current.map(Value::as_f64), previous.map(Value::as_f64)) {
            (Some(c), Some(p)) if p != 0.0 => Some((c - p) / p),
            _ => None,
        };
        Trend {
            current,
            previous,
            change,
        }
    }
}

/// The trend of every measure, keyed by name in [`NAMES`] order.
pub fn trends(current: &Measures, previous: &Measures) -> Vec<(&'static str, Trend)> {
    NAMES
        .iter()
        .map(|&name| (name, Trend::new(current.get(name), previous.get(name))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(awarded: u64, accepted: u64, shared: u64, shares: u64, views: u64) -> Counts {
        Counts {
            awarded,
            accepted,
            shared,
            shares,
            views,
            ..Counts::default()
        }
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn derives_per_spec() {
        let m = Measures::derive(counts(100, 80, 40, 60, 300));
        assert!(close(m.acceptance_rate, 0.8));
        assert!(close(m.share_rate, 0.5));
        assert!(close(m.engagement_score, 100.0 * (80.0 + 40.0) / 200.0));
        assert!(close(m.external_impact_score, 5.0));
        // v = 3 → 75.
        assert!(close(m.reach_score, 75.0));
        assert!(close(m.performance, (60.0 + 75.0) / 2.0));
    }

    #[test]
    fn rates_are_capped() {
        // Accepts or shares of assertions awarded before the window.
        let m = Measures::derive(counts(10, 20, 30, 30, 0));
        assert!(close(m.acceptance_rate, 1.0));
        assert!(close(m.share_rate, 1.0));
        assert!(close(m.engagement_score, 100.0));
        assert!(close(m.reach_score, 0.0));
        assert!(close(m.external_impact_score, 0.0));
    }

    #[test]
    fn zero_denominators_are_null_never_nan() {
        let m = Measures::derive(Counts::default());
        assert_eq!(m.acceptance_rate, None);
        assert_eq!(m.share_rate, None);
        assert_eq!(m.engagement_score, None);
        assert_eq!(m.external_impact_score, None);
        assert_eq!(m.reach_score, None);
        assert_eq!(m.performance, None);

        // Views without awards or shares (e.g. a window after the awards).
        let m = Measures::derive(counts(0, 3, 0, 0, 9));
        assert_eq!(m.acceptance_rate, None);
        assert!(close(m.share_rate, 0.0));
        assert_eq!(m.external_impact_score, None);
        assert_eq!(m.performance, None);

        let json = serde_json::to_value(Measures::derive(Counts::default())).unwrap();
        let obj = json.as_object().unwrap();
        assert_eq!(obj.len(), NAMES.len());
        for name in NAMES {
            assert!(obj.contains_key(name), "{name}");
        }
        assert!(obj["performance"].is_null());
        assert_eq!(obj["awarded"], 0);
    }

    #[test]
    fn every_derived_measure_renders_as_sql_with_nulls() {
        let sql = |name: &str| derived(name).sql(&|c: &str| format!("p_{c}"));
        assert_eq!(
            sql("acceptance_rate"),
            "if(p_awarded = 0, NULL, least(1, (p_accepted / p_awarded)))"
        );
        assert_eq!(
            sql("external_impact_score"),
            "if(p_shares = 0, NULL, (p_views / p_shares))"
        );
        assert!(sql("performance").contains("(p_views / p_awarded)"));
        let names: Vec<&str> = DERIVED.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, NAMES[8..]);
    }

    #[test]
    fn trend_changes() {
        let r = |v: f64| Some(Value::Ratio(v));
        assert_eq!(
            Trend::new(Some(Value::Count(15)), Some(Value::Count(10))).change,
            Some(0.5)
        );
        assert_eq!(Trend::new(r(5.0), r(10.0)).change, Some(-0.5));
        assert_eq!(Trend::new(r(5.0), r(0.0)).change, None);
        assert_eq!(
            Trend::new(Some(Value::Count(5)), Some(Value::Count(0))).change,
            None
        );
        assert_eq!(Trend::new(None, r(1.0)).change, None);
        assert_eq!(Trend::new(r(1.0), None).change, None);

        let cur = Measures::derive(counts(20, 10, 5, 5, 10));
        let prev = Measures::derive(counts(10, 10, 0, 0, 0));
        let t: std::collections::HashMap<_, _> = trends(&cur, &prev).into_iter().collect();
        assert_eq!(t.len(), NAMES.len());
        assert_eq!(t["awarded"].change, Some(1.0));
        assert_eq!(t["shares"].change, None);
        assert_eq!(t["external_impact_score"].previous, None);
        assert_eq!(t["acceptance_rate"].change, Some(-0.5));
        let json = serde_json::to_string(&t["awarded"]).unwrap();
        assert_eq!(json, r#"{"current":20,"previous":10,"change":1.0}"#);
        let json = serde_json::to_string(&t["share_rate"]).unwrap();
        assert_eq!(json, r#"{"current":0.5,"previous":0.0,"change":null}"#);
    }
}
