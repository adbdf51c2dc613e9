//! Impact of a program update (SPEC §7.7): the windows before and after
//! an annotation's time, the five measures compared between them, their
//! tests and the insight sentences.
//!
//! Pure functions over the counts `db` returns. The choices the SPEC
//! leaves open are in `docs/metrics.md` and `docs/decisions.md`:
//! - an accept (share) recorded before the award counts as within the
//!   horizon, as in the timing's `accepted_within`;
//! - `significant` needs both cohorts (for the cohort rates) or both
//!   windows (for the window measures) to have at least `min_awarded`
//!   awards;
//! - a measure whose test is undefined has a null p-value and is never
//!   significant.

use serde::Serialize;

use super::measures::{Counts, Trend, Value};
use super::performance_drivers::{format_p, ALPHA};
use super::stats;
use super::window::Window;

/// Default and largest `days` (the length of each window).
pub const DEFAULT_DAYS: u32 = 28;
pub const MAX_DAYS: u32 = 365;

/// Default and largest `horizon`, days.
pub const DEFAULT_HORIZON: u32 = 7;
pub const MAX_HORIZON: u32 = 365;

const DAY: u32 = 86_400;

/// The measures compared, in output order.
pub const MEASURES: [&str; 5] = [
    "acceptance_rate",
    "share_rate",
    "external_impact_score",
    "awards_per_day",
    "views_per_day",
];

/// The two windows around an annotation at `at`: `[at − N d, at)` before
/// and `[at, at + N d)` after, cut at now. Epoch seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub at: u32,
    pub before: (u32, u32),
    pub after: (u32, u32),
    /// The after window is whole (`at + N d ≤ now`).
    pub complete: bool,
    /// `at` is after now: every measure is null.
    pub future: bool,
    /// Awards at or before this (`now − horizon`) have had their whole
    /// horizon: the cohorts end here.
    pub cohort_end: u32,
}

impl Windows {
    /// The windows of `days` days around `at` at `now`, with cohorts of
    /// `horizon` days. The before window is clipped at the epoch; the
    /// after window ends at now when it would reach past it (and is empty
    /// when `at` is in the future).
    pub fn new(at: u32, days: u32, horizon: u32, now: u32) -> Windows {
        let span = days.saturating_mul(DAY);
        let end = at.saturating_add(span);
        Windows {
            at,
            before: (at.saturating_sub(span), at),
            after: (at, end.min(now).max(at)),
            complete: end <= now,
            future: at > now,
            cohort_end: now.saturating_sub(horizon.saturating_mul(DAY)),
        }
    }

    /// Where both cohorts' awards lie: from the before window's start to
    /// the end of the later window, at most `cohort_end` (inclusive);
    /// `None` when that is empty.
    pub fn cohorts(&self) -> Option<Window> {
        let end = self.after.1.max(self.before.1);
        Window::new(self.before.0, end.min(self.cohort_end.saturating_add(1)))
    }

    /// Length of `[from, to)` in days, fractional.
    pub fn days((from, to): (u32, u32)) -> f64 {
        f64::from(to.saturating_sub(from)) / f64::from(DAY)
    }
}

/// One cohort of SPEC §7.7: the assertions first awarded in a window and
/// at least `horizon` days before now; how many were accepted within
/// `horizon` days of the award, and how many of those also shared within
/// `horizon` days of the award.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cohort {
    pub awarded: u64,
    pub accepted: u64,
    pub shared: u64,
}

/// What the comparison reads: the two cohorts and the §7 counts of the
/// two windows (of which it reads `awarded`, `shares` and `views`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inputs {
    pub before_cohort: Cohort,
    pub after_cohort: Cohort,
    pub before: Counts,
    pub after: Counts,
}

/// One measure before and after.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeasureChange {
    pub measure: &'static str,
    pub before: Option<f64>,
    pub after: Option<f64>,
    /// `(after − before) / before`; null when before is 0 or null, or
    /// after is null.
    pub change: Option<f64>,
    /// Two-sided; null when the test is undefined for the data.
    pub p_value: Option<f64>,
    /// `p < 0.05` and at least `min_awarded` awards in both cohorts (or
    /// windows).
    pub significant: bool,
}

fn ratio(x: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| x as f64 / n as f64)
}

fn per_day(count: u64, days: f64) -> Option<f64> {
    (days > 0.0).then(|| count as f64 / days)
}

/// The five measures of `inputs` in [`MEASURES`] order; all null (and
/// none significant) when the annotation lies in the future.
pub fn compare(windows: &Windows, inputs: &Inputs, min_awarded: u64) -> Vec<MeasureChange> {
    let (bc, ac) = (inputs.before_cohort, inputs.after_cohort);
    let (b, a) = (inputs.before, inputs.after);
    let (bd, ad) = (Windows::days(windows.before), Windows::days(windows.after));
    let cohorts_big = bc.awarded >= min_awarded && ac.awarded >= min_awarded;
    let windows_big = b.awarded >= min_awarded && a.awarded >= min_awarded;
    // (measure, before, after, p-value, enough awards)
    let rows = [
        (
            MEASURES[0],
            ratio(bc.accepted, bc.awarded),
            ratio(ac.accepted, ac.awarded),
            stats::two_proportion_z(bc.accepted, bc.awarded, ac.accepted, ac.awarded),
            cohorts_big,
        ),
        (
            MEASURES[1],
            ratio(bc.shared, bc.accepted),
            ratio(ac.shared, ac.accepted),
            stats::two_proportion_z(bc.shared, bc.accepted, ac.shared, ac.accepted),
            cohorts_big,
        ),
        (
            MEASURES[2],
            ratio(b.views, b.shares),
            ratio(a.views, a.shares),
            stats::poisson_rates(b.views, b.shares, a.views, a.shares),
            windows_big,
        ),
        (
            MEASURES[3],
            per_day(b.awarded, bd),
            per_day(a.awarded, ad),
            stats::poisson_rates_exposed(b.awarded, bd, a.awarded, ad),
            windows_big,
        ),
        (
            MEASURES[4],
            per_day(b.views, bd),
            per_day(a.views, ad),
            stats::poisson_rates_exposed(b.views, bd, a.views, ad),
            windows_big,
        ),
    ];
    rows.into_iter()
        .map(|(measure, before, after, p_value, big)| {
            if windows.future {
                return MeasureChange {
                    measure,
                    before: None,
                    after: None,
                    change: None,
                    p_value: None,
                    significant: false,
                };
            }
            let change = Trend::new(after.map(Value::Ratio), before.map(Value::Ratio)).change;
            MeasureChange {
                measure,
                before,
                after,
                change,
                p_value,
                significant: big && p_value.is_some_and(|p| p < ALPHA),
            }
        })
        .collect()
}

/// `61.0 %`.
fn percent(r: f64) -> String {
    format!("{:.1} %", r * 100.0)
}

/// `7 days`, `1 day`.
fn days_text(n: u32) -> String {
    if n == 1 {
        "1 day".to_owned()
    } else {
        format!("{n} days")
    }
}

/// One plain sentence per significant change, in measure order, e.g.
/// "Acceptance within 7 days rose from 61.0 % to 72.4 % after “New
/// reminder email” (p = 0.003).": what happened after the update, never a
/// claim that the update caused it.
pub fn insights(changes: &[MeasureChange], title: &str, horizon: u32) -> Vec<String> {
    let within = days_text(horizon);
    changes
        .iter()
        .filter(|c| c.significant)
        .filter_map(|c| {
            let (before, after, p) = (c.before?, c.after?, c.p_value?);
            let (subject, b, a) = match c.measure {
                "acceptance_rate" => (
                    format!("Acceptance within {within}"),
                    percent(before),
                    percent(after),
                ),
                "share_rate" => (
                    format!("Sharing within {within} (of the badges accepted within {within})"),
                    percent(before),
                    percent(after),
                ),
                "external_impact_score" => (
                    "Views per share".to_owned(),
                    format!("{before:.2}"),
                    format!("{after:.2}"),
                ),
                "awards_per_day" => (
                    "Awards per day".to_owned(),
                    format!("{before:.1}"),
                    format!("{after:.1}"),
                ),
                _ => (
                    "Views per day".to_owned(),
                    format!("{before:.1}"),
                    format!("{after:.1}"),
                ),
            };
            let direction = if after > before {
                "rose"
            } else if after < before {
                "fell"
            } else {
                return None;
            };
            Some(format!(
                "{subject} {direction} from {b} to {a} after “{title}” ({}).",
                format_p(p)
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u32 = 1_750_000_000;

    fn close(a: Option<f64>, b: f64) {
        let a = a.unwrap_or_else(|| panic!("expected {b}, got null"));
        assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
    }

    fn counts(awarded: u64, shares: u64, views: u64) -> Counts {
        Counts {
            awarded,
            shares,
            views,
            ..Counts::default()
        }
    }

    #[test]
    fn windows_are_cut_at_now() {
        let at = NOW - 10 * DAY;
        let w = Windows::new(at, 28, 7, NOW);
        assert_eq!(w.before, (at - 28 * DAY, at));
        assert_eq!(w.after, (at, NOW));
        assert!(!w.complete && !w.future);
        assert_eq!(w.cohort_end, NOW - 7 * DAY);
        assert_eq!(w.cohorts(), Window::new(at - 28 * DAY, NOW - 7 * DAY + 1));
        assert_eq!(Windows::days(w.after), 10.0);
        let w = Windows::new(NOW - 40 * DAY, 28, 7, NOW);
        assert_eq!(w.cohorts(), Window::new(NOW - 68 * DAY, NOW - 12 * DAY));
        let w = Windows::new(NOW - DAY, 1, 7, NOW);
        assert_eq!(w.cohorts(), None, "no award has had its horizon");
        let w = Windows::new(NOW - 28 * DAY, 28, 7, NOW);
        assert!(w.complete, "an after window ending at now is whole");
        let w = Windows::new(NOW + 60, 28, 7, NOW);
        assert!(w.future && !w.complete);
        assert_eq!(w.after, (NOW + 60, NOW + 60));
        let w = Windows::new(100, 1, 7, NOW);
        assert_eq!(w.before, (0, 100), "clipped at the epoch");
    }

    #[test]
    fn measures_tests_and_significance() {
        let w = Windows::new(NOW - 40 * DAY, 28, 7, NOW);
        let inputs = Inputs {
            before_cohort: Cohort {
                awarded: 100,
                accepted: 45,
                shared: 9,
            },
            after_cohort: Cohort {
                awarded: 100,
                accepted: 30,
                shared: 12,
            },
            before: counts(40, 10, 30),
            after: counts(25, 10, 12),
        };
        let m = compare(&w, &inputs, 10);
        assert_eq!(
            m.iter().map(|c| c.measure).collect::<Vec<_>>(),
            MEASURES.to_vec()
        );
        // 45/100 → 30/100: 2 * norm.sf(2.1908902300206647) (SciPy).
        close(m[0].before, 0.45);
        close(m[0].after, 0.3);
        close(m[0].change, -1.0 / 3.0);
        close(m[0].p_value, 0.028_459_736_916_310_55);
        assert!(m[0].significant);
        // 9/45 → 12/30 (pooled z-test, the drivers' function).
        close(m[1].before, 0.2);
        close(m[1].after, 0.4);
        close(
            m[1].p_value,
            stats::two_proportion_z(9, 45, 12, 30).unwrap(),
        );
        // 30 views / 10 shares → 12 / 10: 2 * binom.sf(29, 42, 0.5).
        close(m[2].before, 3.0);
        close(m[2].after, 1.2);
        close(m[2].p_value, 0.007_915_897_334_896_727);
        assert!(m[2].significant);
        // Awards per day over 28 days each.
        close(m[3].before, 40.0 / 28.0);
        close(m[3].after, 25.0 / 28.0);
        close(
            m[3].p_value,
            stats::poisson_rates_exposed(40, 28.0, 25, 28.0).unwrap(),
        );
        // Too few awards in a window: never significant.
        let small = compare(&w, &inputs, 30);
        assert!(small[0].significant, "cohorts of 100 ≥ 30");
        assert!(!small[2].significant, "25 awards < 30");
        let json = serde_json::to_value(m[0]).unwrap();
        assert_eq!(json.as_object().unwrap().len(), 6);
    }

    #[test]
    fn empty_groups_and_the_future_are_null() {
        let w = Windows::new(NOW - 40 * DAY, 28, 7, NOW);
        let m = compare(&w, &Inputs::default(), 0);
        for c in &m[..3] {
            assert_eq!((c.before, c.after, c.p_value), (None, None, None), "{c:?}");
        }
        // Per-day rates of empty windows are 0, and untestable.
        for c in &m[3..] {
            assert_eq!((c.before, c.after), (Some(0.0), Some(0.0)), "{c:?}");
            assert_eq!((c.change, c.p_value), (None, None), "{c:?}");
        }
        assert!(m.iter().all(|c| !c.significant));
        let future = Windows::new(NOW + 1, 28, 7, NOW);
        let inputs = Inputs {
            before: counts(5, 1, 1),
            ..Inputs::default()
        };
        assert!(compare(&future, &inputs, 0)
            .iter()
            .all(|c| c.before.is_none() && c.p_value.is_none() && !c.significant));
    }

    #[test]
    fn insight_sentences_never_claim_a_cause() {
        let mk = |measure, before, after, p| MeasureChange {
            measure,
            before: Some(before),
            after: Some(after),
            change: None,
            p_value: Some(p),
            significant: true,
        };
        let changes = [
            mk("acceptance_rate", 0.61, 0.724, 0.003),
            mk("share_rate", 0.2, 0.1, 0.0004),
            mk("external_impact_score", 2.1, 3.4, 0.02),
            mk("awards_per_day", 12.34, 8.06, 0.01),
            MeasureChange {
                significant: false,
                ..mk("views_per_day", 1.0, 9.0, 0.001)
            },
        ];
        assert_eq!(
            insights(&changes, "New reminder email", 7),
            [
                "Acceptance within 7 days rose from 61.0 % to 72.4 % after “New reminder email” (p = 0.003).",
                "Sharing within 7 days (of the badges accepted within 7 days) fell from 20.0 % to 10.0 % after “New reminder email” (p < 0.001).",
                "Views per share rose from 2.10 to 3.40 after “New reminder email” (p = 0.02).",
                "Awards per day fell from 12.3 to 8.1 after “New reminder email” (p = 0.01).",
            ]
        );
        assert!(insights(&changes[..1], "x", 1)[0].starts_with("Acceptance within 1 day rose"));
    }
}
