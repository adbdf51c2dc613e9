//! Performance drivers (SPEC §7.5): for each driver attribute of the badge
//! classes in scope, the classes with and without it, their measures,
//! lifts, p-values and the "key insights" sentences.
//!
//! Pure functions over the per-class counts and metadata. The statistical choices are documented in `docs/metrics.md`:
//! - the universe is the badge classes in scope that have metadata (were
//!   ever upserted); a class without metadata has no attributes to judge;
//! - a custom attribute absent from a class counts as `false`;
//! - `engagement_score` and `reach_score` are means over the group's
//!   classes with `awarded > 0` in the window (Welch's t-test);
//!   `acceptance_rate` and `share_rate` are pooled (two-proportion
//!   z-test); `external_impact_score` is pooled views per share (exact
//!   conditional test of two Poisson rates).

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::badge_class::BadgeClassMeta;
use super::measures::{Counts, Measures};
use super::stats;

/// The driver attributes every badge class has (SPEC §3).
pub const BUILTIN: [&str; 3] = ["skills_aligned", "in_pathway", "in_catalog"];

/// Most custom attribute keys analysed (the most common ones first
/// would need counts; keys are taken in name order).
pub const MAX_CUSTOM_ATTRIBUTES: usize = 50;

/// Significance level of the insights.
pub const ALPHA: f64 = 0.05;

/// Most insight sentences.
pub const MAX_INSIGHTS: usize = 5;

/// One badge class: its driver attributes and its counts in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassInput {
    /// Names of the attributes it has (builtin and custom, `true` only).
    pub has: BTreeSet<String>,
    pub counts: Counts,
}

/// The measures of one group of badge classes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Group {
    /// Badge classes in the group.
    pub badge_classes: u64,
    /// Awarded assertions in the window, summed over the group.
    pub awarded: u64,
    /// Mean over the group's classes with awards in the window.
    pub engagement_score: Option<f64>,
    /// Mean over the group's classes with awards in the window.
    pub reach_score: Option<f64>,
    /// Pooled over the group's events.
    pub acceptance_rate: Option<f64>,
    /// Pooled over the group's events.
    pub share_rate: Option<f64>,
    /// Pooled over the group's events (views per share).
    pub external_impact_score: Option<f64>,
    #[serde(skip)]
    pooled: Counts,
    #[serde(skip)]
    engagement: Vec<f64>,
    #[serde(skip)]
    reach: Vec<f64>,
}

impl Group {
    fn of<'a>(classes: impl Iterator<Item = &'a ClassInput>) -> Group {
        let mut g = Group::default();
        for c in classes {
            g.badge_classes += 1;
            let p = &mut g.pooled;
            p.awarded += c.counts.awarded;
            p.accepted += c.counts.accepted;
            p.shared += c.counts.shared;
            p.shares += c.counts.shares;
            p.views += c.counts.views;
            let m = Measures::derive(c.counts);
            if let (Some(e), Some(r)) = (m.engagement_score, m.reach_score) {
                g.engagement.push(e);
                g.reach.push(r);
            }
        }
        let pooled = Measures::derive(g.pooled);
        g.awarded = g.pooled.awarded;
        g.acceptance_rate = pooled.acceptance_rate;
        g.share_rate = pooled.share_rate;
        g.external_impact_score = pooled.external_impact_score;
        g.engagement_score = mean(&g.engagement);
        g.reach_score = mean(&g.reach);
        g
    }
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// One value per measure compared between the groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PerMeasure {
    pub engagement_score: Option<f64>,
    pub reach_score: Option<f64>,
    pub acceptance_rate: Option<f64>,
    pub share_rate: Option<f64>,
    pub external_impact_score: Option<f64>,
}

/// The measures compared, in output order, with their names in sentences.
pub const MEASURES: [(&str, &str); 5] = [
    ("engagement_score", "engagement score"),
    ("reach_score", "reach score"),
    ("acceptance_rate", "acceptance rate"),
    ("share_rate", "share rate"),
    ("external_impact_score", "external impact score"),
];

impl PerMeasure {
    pub fn get(&self, measure: &str) -> Option<f64> {
        match measure {
            "engagement_score" => self.engagement_score,
            "reach_score" => self.reach_score,
            "acceptance_rate" => self.acceptance_rate,
            "share_rate" => self.share_rate,
            "external_impact_score" => self.external_impact_score,
            _ => None,
        }
    }
}

/// One attribute's comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Driver {
    pub attribute: String,
    pub with: Group,
    pub without: Group,
    /// `with ÷ without − 1`; null when either is null or `without` is 0.
    pub lift: PerMeasure,
    /// Two-sided p-value of the difference; null when the test is
    /// undefined (an empty group, no variance).
    pub p_value: PerMeasure,
}

/// The body of `GET /api/v1/drivers` (without scope and period).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Analysis {
    pub drivers: Vec<Driver>,
    pub insights: Vec<String>,
}

/// The classes of `metadata` with their counts (classes without events in
/// the window have zero counts), keyed attributes resolved. Custom
/// attribute names that collide with a builtin become `attributes.KEY`.
pub fn inputs(
    metadata: &[BadgeClassMeta],
    counts: &HashMap<(String, String), Counts>,
) -> (Vec<String>, Vec<ClassInput>) {
    let custom_name = |k: &str| {
        if BUILTIN.contains(&k) {
            format!("attributes.{k}")
        } else {
            k.to_owned()
        }
    };
    let mut custom: BTreeSet<String> = BTreeSet::new();
    for m in metadata {
        for k in &m.attribute_keys {
            custom.insert(custom_name(k));
        }
    }
    let mut attributes: Vec<String> = BUILTIN.iter().map(|s| s.to_string()).collect();
    attributes.extend(custom.into_iter().take(MAX_CUSTOM_ATTRIBUTES));
    let classes = metadata
        .iter()
        .map(|m| {
            let mut has = BTreeSet::new();
            for (name, flag) in BUILTIN
                .iter()
                .zip([m.skills_aligned, m.in_pathway, m.in_catalog])
            {
                if flag != 0 {
                    has.insert(name.to_string());
                }
            }
            for (k, v) in m.attribute_keys.iter().zip(&m.attribute_values) {
                if *v != 0 {
                    has.insert(custom_name(k));
                }
            }
            let counts = counts
                .get(&(m.org_id.clone(), m.badge_class_id.clone()))
                .copied()
                .unwrap_or_default();
            ClassInput { has, counts }
        })
        .collect();
    (attributes, classes)
}

/// Compares the classes with and without each of `attributes`.
pub fn analyse(attributes: &[String], classes: &[ClassInput]) -> Analysis {
    let drivers: Vec<Driver> = attributes
        .iter()
        .map(|a| {
            let with = Group::of(classes.iter().filter(|c| c.has.contains(a)));
            let without = Group::of(classes.iter().filter(|c| !c.has.contains(a)));
            compare(a.clone(), with, without)
        })
        .collect();
    let insights = insights(&drivers);
    Analysis { drivers, insights }
}

fn lift(with: Option<f64>, without: Option<f64>) -> Option<f64> {
    match (with, without) {
        (Some(w), Some(wo)) if wo != 0.0 => Some(w / wo - 1.0),
        _ => None,
    }
}

fn compare(attribute: String, with: Group, without: Group) -> Driver {
    let (a, b) = (&with.pooled, &without.pooled);
    let lift = PerMeasure {
        engagement_score: lift(with.engagement_score, without.engagement_score),
        reach_score: lift(with.reach_score, without.reach_score),
        acceptance_rate: lift(with.acceptance_rate, without.acceptance_rate),
        share_rate: lift(with.share_rate, without.share_rate),
        external_impact_score: lift(with.external_impact_score, without.external_impact_score),
    };
    let p_value = PerMeasure {
        engagement_score: stats::welch_t(&with.engagement, &without.engagement),
        reach_score: stats::welch_t(&with.reach, &without.reach),
        acceptance_rate: stats::two_proportion_z(
            a.accepted.min(a.awarded),
            a.awarded,
            b.accepted.min(b.awarded),
            b.awarded,
        ),
        share_rate: stats::two_proportion_z(
            a.shared.min(a.accepted),
            a.accepted,
            b.shared.min(b.accepted),
            b.accepted,
        ),
        external_impact_score: stats::poisson_rates(a.views, a.shares, b.views, b.shares),
    };
    Driver {
        attribute,
        with,
        without,
        lift,
        p_value,
    }
}

/// The subject of an insight sentence for `attribute`.
fn subject(attribute: &str) -> String {
    match attribute {
        "skills_aligned" => "Badges with skills aligned".into(),
        "in_pathway" => "Badges in a pathway or course".into(),
        "in_catalog" => "Badges in a catalog or collection".into(),
        other => format!("Badges with attribute {other}"),
    }
}

/// `p = 0.01`, `p = 0.003`, `p < 0.001`.
pub fn format_p(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else if p < 0.01 {
        format!("p = {p:.3}")
    } else {
        format!("p = {p:.2}")
    }
}

/// For each attribute, its largest significant lift (`p < ALPHA`, by
/// absolute value); the attributes with the largest such lifts, at most
/// [`MAX_INSIGHTS`], each as one sentence.
pub fn insights(drivers: &[Driver]) -> Vec<String> {
    let mut best: Vec<(f64, &str, &str, f64)> = drivers
        .iter()
        .filter_map(|d| {
            MEASURES
                .iter()
                .filter_map(|(m, label)| {
                    let lift = d.lift.get(m)?;
                    let p = d.p_value.get(m)?;
                    (p < ALPHA && lift != 0.0).then_some((lift, d.attribute.as_str(), *label, p))
                })
                .max_by(|x, y| x.0.abs().total_cmp(&y.0.abs()))
        })
        .collect();
    best.sort_by(|x, y| y.0.abs().total_cmp(&x.0.abs()).then_with(|| x.1.cmp(y.1)));
    best.into_iter()
        .take(MAX_INSIGHTS)
        .map(|(lift, attribute, label, p)| {
            let pct = (lift.abs() * 100.0).round();
            let direction = if lift > 0.0 { "higher" } else { "lower" };
            format!(
                "{} have a {pct:.0}% {direction} {label} than badges without ({}).",
                subject(attribute),
                format_p(p)
            )
        })
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

    fn class(has: &[&str], c: Counts) -> ClassInput {
        ClassInput {
            has: has.iter().map(|s| s.to_string()).collect(),
            counts: c,
        }
    }

    fn close(a: Option<f64>, b: f64) {
        let a = a.unwrap_or_else(|| panic!("expected {b}, got null"));
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }

    #[test]
    fn groups_pool_rates_and_average_scores() {
        let classes = vec![
            class(&["skills_aligned"], counts(100, 80, 40, 50, 100)),
            class(&["skills_aligned"], counts(100, 60, 30, 30, 30)),
            class(&["skills_aligned"], counts(0, 0, 0, 0, 9)),
            class(&[], counts(100, 50, 10, 10, 10)),
            class(&[], counts(50, 25, 5, 5, 20)),
        ];
        let a = analyse(&["skills_aligned".to_string()], &classes);
        let d = &a.drivers[0];
        assert_eq!(d.with.badge_classes, 3);
        assert_eq!(d.with.awarded, 200);
        // Pooled: 140/200, 70/140, views 139 / shares 80.
        close(d.with.acceptance_rate, 0.7);
        close(d.with.share_rate, 0.5);
        close(d.with.external_impact_score, 139.0 / 80.0);
        // Engagement per class with awards: 60, 45 → mean 52.5.
        close(d.with.engagement_score, 52.5);
        // Reach: v = 1 → 50, v = 0.3 → 100·0.3/1.3.
        close(d.with.reach_score, (50.0 + 30.0 / 1.3) / 2.0);
        // Without: 75/150 = 0.5, 15/75 = 0.2; engagement 30 and 30.
        close(d.without.acceptance_rate, 0.5);
        close(d.without.share_rate, 0.2);
        close(d.without.engagement_score, 30.0);
        close(d.lift.acceptance_rate, 0.4);
        close(d.lift.share_rate, 1.5);
        close(d.lift.engagement_score, 0.75);
        // Pooled proportions: z-test of 140/200 vs 75/150 (SciPy:
        // 2 * norm.sf(3.8039826810497037)).
        close(d.p_value.acceptance_rate, 1.423_881_395_104_857_6e-4);
        // Without group's engagement scores have no variance, the with
        // group's do: Welch is defined (df = 1).
        assert!(d.p_value.engagement_score.is_some());
        // Poisson: 139 views / 80 shares vs 30 / 15.
        close(
            d.p_value.external_impact_score,
            stats::poisson_rates(139, 80, 30, 15).unwrap(),
        );
        let json = serde_json::to_value(d).unwrap();
        assert_eq!(
            json["with"].as_object().unwrap().len(),
            7,
            "only the SPEC's group fields: {json}"
        );
    }

    #[test]
    fn empty_groups_are_null_not_nan() {
        let classes = vec![class(&["in_catalog"], counts(10, 5, 1, 1, 1))];
        let a = analyse(&["in_catalog".to_string()], &classes);
        let d = &a.drivers[0];
        assert_eq!(d.without.badge_classes, 0);
        assert_eq!(d.without.acceptance_rate, None);
        assert_eq!(d.without.engagement_score, None);
        assert_eq!(d.lift, PerMeasure::default());
        assert_eq!(d.p_value, PerMeasure::default());
        assert!(a.insights.is_empty());
        let json = serde_json::to_string(&a).unwrap();
        assert!(!json.contains("NaN"), "{json}");
    }

    #[test]
    fn inputs_resolve_attributes() {
        let row = |id: &str, skills: u8, keys: &[&str], values: &[u8]| BadgeClassMeta {
            org_id: "acme".into(),
            badge_class_id: id.into(),
            name: id.into(),
            skills_aligned: skills,
            in_pathway: 0,
            in_catalog: 1,
            attribute_keys: keys.iter().map(|s| s.to_string()).collect(),
            attribute_values: values.to_vec(),
        };
        let meta = vec![
            row("b1", 1, &["featured", "in_pathway"], &[1, 1]),
            row("b2", 0, &["featured", "expiring"], &[0, 1]),
        ];
        let mut counts = HashMap::new();
        counts.insert(("acme".to_string(), "b1".to_string()), counts_of(7));
        let (attributes, classes) = inputs(&meta, &counts);
        assert_eq!(
            attributes,
            [
                "skills_aligned",
                "in_pathway",
                "in_catalog",
                "attributes.in_pathway",
                "expiring",
                "featured"
            ]
        );
        assert_eq!(
            classes[0].has.iter().collect::<Vec<_>>(),
            [
                "attributes.in_pathway",
                "featured",
                "in_catalog",
                "skills_aligned"
            ]
        );
        assert_eq!(classes[0].counts.awarded, 7);
        assert_eq!(
            classes[1].has.iter().collect::<Vec<_>>(),
            ["expiring", "in_catalog"]
        );
        assert_eq!(classes[1].counts, Counts::default());
    }

    fn counts_of(awarded: u64) -> Counts {
        counts(awarded, 0, 0, 0, 0)
    }

    #[test]
    fn insight_sentences() {
        let mut classes = Vec::new();
        for _ in 0..3 {
            classes.push(class(&["skills_aligned"], counts(100, 90, 60, 60, 100)));
            classes.push(class(&[], counts(100, 90, 30, 30, 100)));
            classes.push(class(&["featured"], counts(100, 45, 10, 10, 100)));
        }
        let attrs: Vec<String> = ["skills_aligned", "in_pathway", "featured"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let a = analyse(&attrs, &classes);
        // featured: views per share 300/30 vs 600/270 → +350%, its largest
        // lift (acceptance −50%, share rate −56%, engagement −59%).
        // skills_aligned: share rate 180/270 vs 120/405 → +125%, its
        // largest (engagement +71%, impact −67%, acceptance +33%).
        // in_pathway: nobody has it, so nothing is defined.
        assert_eq!(
            a.insights,
            [
                "Badges with attribute featured have a 350% higher external impact score than badges without (p < 0.001).",
                "Badges with skills aligned have a 125% higher share rate than badges without (p < 0.001).",
            ]
        );
        let d = &a.drivers[2];
        close(d.lift.external_impact_score, 3.5);
        close(d.lift.acceptance_rate, -0.5);
        assert_eq!(a.drivers[1].with.badge_classes, 0);
        assert_eq!(a.drivers[1].lift, PerMeasure::default());
        assert_eq!(format_p(0.0123), "p = 0.01");
        assert_eq!(format_p(0.0049), "p = 0.005");
        assert_eq!(format_p(0.0004), "p < 0.001");
    }
}
