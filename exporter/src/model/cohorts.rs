//! Award cohorts (SPEC §7.9): the classic retention triangle. For each
//! week or month of first awards, the share of its assertions that have
//! reached a stage by the end of each age (0, 1, 2, … periods after the
//! cohort's start).
//!
//! ClickHouse counts the assertions per (cohort, period in which the
//! stage was reached); this module turns those counts into cumulative
//! shares, `null` for the age still running. Pure.

use serde::Serialize;

use super::window::{rfc3339_i64, Granularity, Window};

/// The stage a cohort's assertions are followed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Accepted,
    Shared,
    Viewed,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Accepted, Stage::Shared, Stage::Viewed];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Accepted => "accepted",
            Stage::Shared => "shared",
            Stage::Viewed => "viewed",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// The granularities a cohort may have.
pub const GRANULARITIES: [Granularity; 2] = [Granularity::Week, Granularity::Month];

/// Most cells a triangle may have: cohorts in the window × ages from the
/// window's start to now (a year of weeks asked four years later, 18
/// years of months).
pub const MAX_CELLS: i64 = 50_000;

/// Assertions of one cohort that reached the stage in one period: a row
/// of `db::cohorts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct ReachCounts {
    /// The cohort's period start, epoch seconds (UTC).
    pub cohort: u32,
    /// Whether these assertions reached the stage at all.
    pub reached: u8,
    /// The start of the period in which they reached it (the latest of
    /// the stage's and every earlier stage's first event); 0 when not
    /// reached.
    pub period: u32,
    pub assertions: u64,
}

/// One row of the triangle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortRow {
    /// The period's start, RFC 3339.
    pub cohort: String,
    pub size: u64,
    /// Age 0 to the age that contains now; `null` for that last one (not
    /// fully elapsed).
    pub values: Vec<Option<f64>>,
    /// Epoch seconds of `cohort`.
    #[serde(skip)]
    pub start: i64,
}

/// The number of `g` periods from the period starting at `start` to the
/// one containing `t` (negative when `t` is earlier).
pub fn age(g: Granularity, start: i64, t: i64) -> i64 {
    let floor = g.floor(t);
    match g {
        Granularity::Month => {
            let ym = |s: i64| {
                let d = chrono::DateTime::from_timestamp(s, 0)
                    .expect("in range")
                    .date_naive();
                i64::from(chrono::Datelike::year(&d)) * 12 + i64::from(chrono::Datelike::month0(&d))
            };
            ym(floor) - ym(start)
        }
        // Weeks, and the fixed-length granularities.
        _ => (floor - start).div_euclid(g.next(floor) - floor),
    }
}

/// Whether the triangle of `window` at `now` stays within [`MAX_CELLS`]:
/// at most as many cohorts as periods in the window, each with at most
/// as many ages as periods from the window's start to now. The error
/// names `from`.
pub fn check_span(g: Granularity, window: Window, now: u32) -> Result<(), String> {
    let start = g.floor(i64::from(window.from()));
    let cohorts = age(g, start, i64::from(window.to()) - 1) + 1;
    let ages = age(g, start, i64::from(now.max(window.from()))) + 1;
    let cells = cohorts.saturating_mul(ages);
    if cells > MAX_CELLS {
        return Err(format!(
            "from: {cohorts} {} cohorts with up to {ages} ages each exceed {MAX_CELLS} cells; choose a later from, an earlier to or granularity=month",
            g.as_str()
        ));
    }
    Ok(())
}

/// The triangle of `rows`, by cohort, at `now`.
pub fn triangle(g: Granularity, rows: &[ReachCounts], now: i64) -> Vec<CohortRow> {
    let mut out: Vec<CohortRow> = Vec::new();
    // Assertions per age of reaching, per cohort.
    let mut reached: Vec<Vec<u64>> = Vec::new();
    let mut sorted: Vec<&ReachCounts> = rows.iter().collect();
    sorted.sort_by_key(|r| r.cohort);
    for r in sorted {
        let start = i64::from(r.cohort);
        if out.last().is_none_or(|c| c.start != start) {
            let current = age(g, start, now).max(0) as usize;
            out.push(CohortRow {
                cohort: rfc3339_i64(start),
                size: 0,
                values: Vec::new(),
                start,
            });
            reached.push(vec![0; current + 1]);
        }
        let row = out.last_mut().expect("pushed above");
        let ages = reached.last_mut().expect("pushed above");
        row.size += r.assertions;
        if r.reached != 0 {
            // Reached before the cohort started (an accept recorded
            // before the award): age 0.
            let k = age(g, start, i64::from(r.period)).max(0) as usize;
            if let Some(n) = ages.get_mut(k) {
                *n += r.assertions;
            }
        }
    }
    for (row, ages) in out.iter_mut().zip(reached) {
        let last = ages.len() - 1;
        let mut cumulative = 0;
        row.values = ages
            .iter()
            .enumerate()
            .map(|(k, n)| {
                cumulative += n;
                (k < last && row.size > 0).then(|| cumulative as f64 / row.size as f64)
            })
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> i64 {
        i64::from(crate::model::window::parse_time("t", s).unwrap())
    }

    fn row(cohort: &str, period: Option<&str>, assertions: u64) -> ReachCounts {
        ReachCounts {
            cohort: t(cohort) as u32,
            reached: u8::from(period.is_some()),
            period: period.map_or(0, |p| t(p) as u32),
            assertions,
        }
    }

    #[test]
    fn ages_count_periods() {
        let m = Granularity::Month;
        assert_eq!(age(m, t("2025-01-01"), t("2025-01-31T23:59:59Z")), 0);
        assert_eq!(age(m, t("2025-01-01"), t("2025-02-01")), 1);
        assert_eq!(age(m, t("2024-12-01"), t("2025-03-15")), 3);
        assert_eq!(age(m, t("2025-03-01"), t("2025-02-28")), -1);
        let w = Granularity::Week;
        // 2025-03-31 is a Monday; its week runs into April.
        assert_eq!(age(w, t("2025-03-31"), t("2025-04-06T23:59:59Z")), 0);
        assert_eq!(age(w, t("2025-03-31"), t("2025-04-07")), 1);
        assert_eq!(age(w, t("2025-03-31"), t("2025-03-30")), -1);
        let window = |from: &str, to: &str| Window::new(t(from) as u32, t(to) as u32).unwrap();
        let year = window("2025-01-01", "2026-01-01");
        // 53 weekly cohorts with up to 53 or (ten years later) 575 ages.
        assert!(check_span(w, year, t("2025-12-31") as u32).is_ok());
        assert!(check_span(w, year, t("2035-12-31") as u32).is_ok());
        let err = check_span(
            w,
            window("2015-01-01", "2025-01-01"),
            t("2025-12-31") as u32,
        )
        .unwrap_err();
        assert!(
            err.starts_with("from: 523 week cohorts with up to 575 ages"),
            "{err}"
        );
        assert!(check_span(
            m,
            window("2015-01-01", "2025-01-01"),
            t("2025-12-31") as u32
        )
        .is_ok());
    }

    #[test]
    fn triangles_are_cumulative_and_end_with_the_running_age() {
        let now = t("2025-04-15T12:00:00Z");
        let rows = [
            // February: 4 assertions, 1 reached in February, 1 in March,
            // 1 before the cohort (an accept recorded earlier), 1 never.
            row("2025-02-01", Some("2025-02-01"), 1),
            row("2025-02-01", Some("2025-03-01"), 1),
            row("2025-02-01", Some("2025-01-01"), 1),
            row("2025-02-01", None, 1),
            // April: the running month only.
            row("2025-04-01", Some("2025-04-01"), 2),
        ];
        let tri = triangle(Granularity::Month, &rows, now);
        assert_eq!(tri.len(), 2);
        assert_eq!(tri[0].cohort, "2025-02-01T00:00:00Z");
        assert_eq!(tri[0].size, 4);
        assert_eq!(tri[0].values, [Some(0.5), Some(0.75), None]);
        assert_eq!(tri[1].size, 2);
        assert_eq!(tri[1].values, [None]);
        let json = serde_json::to_value(&tri[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"cohort": "2025-02-01T00:00:00Z", "size": 4, "values": [0.5, 0.75, null]})
        );
        // A weekly cohort across a month boundary (Monday 31 March).
        let rows = [
            row("2025-03-31", Some("2025-03-31"), 1),
            row("2025-03-31", Some("2025-04-07"), 1),
        ];
        let tri = triangle(Granularity::Week, &rows, t("2025-04-15"));
        assert_eq!(tri[0].values, [Some(0.5), Some(1.0), None]);
        assert!(triangle(Granularity::Week, &[], now).is_empty());
    }
}
