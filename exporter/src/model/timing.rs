//! Timing (SPEC §7.8): when in the week awards are accepted most, in a
//! time zone given by its IANA name.
//!
//! ClickHouse counts the cohort per UTC *slot* (a stretch of
//! [`slot_secs`] seconds); this module places each slot in its local
//! weekday and hour and does the rest: the weekday, hour and cell rows,
//! `accepted_within`, the best cell with its Bonferroni-adjusted test, and
//! the insight. A slot is chosen so that no offset change falls inside
//! one and every offset of the zone in the window is a multiple of it
//! (an hour for most zones, 30 minutes for India, 15 for Nepal), so each
//! slot lies in one local hour and the placement is exact across
//! daylight-saving changes. Pure.

use chrono::{DateTime, Datelike, Offset, TimeZone, Timelike};
use chrono_tz::Tz;
use serde::Serialize;

use super::performance_drivers::{format_p, ALPHA};
use super::stats;

/// The cohort's counts in one UTC slot: a row of `db::timing`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, clickhouse::Row, serde::Deserialize, Serialize,
)]
pub struct SlotCounts {
    /// The slot's number: it starts at `slot × slot_secs` (epoch seconds).
    pub slot: u32,
    /// Assertions first awarded in the slot.
    pub awarded: u64,
    /// … of which accepted by now.
    pub accepted: u64,
    /// … whose first accept is at most 1 h, 1 d, 7 d, 30 d and 90 d after
    /// the first award (an accept recorded before the award counts).
    pub within_1h: u64,
    pub within_1d: u64,
    pub within_7d: u64,
    pub within_30d: u64,
    pub within_90d: u64,
}

/// The delays of `accepted_within`: JSON name and seconds (the sealed
/// award days count them, so the contract holds them).
pub use badgepulse_contract::tables::ACCEPT_WITHIN as WITHIN;

/// ISO weekday names, Monday first.
pub const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// `tz`'s offset from UTC at `t` (epoch seconds), in seconds.
pub fn offset_secs(tz: Tz, t: i64) -> i32 {
    let utc = DateTime::from_timestamp(t, 0)
        .expect("in range")
        .naive_utc();
    tz.offset_from_utc_datetime(&utc).fix().local_minus_utc()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// How far apart offsets are looked at. No zone has changed its offset
/// twice within six hours.
const SCAN_STEP: i64 = 6 * 3_600;

/// The slot length, in seconds, for `tz` and the window `[from, to)`: the
/// greatest divisor of an hour that divides every offset of `tz` in the
/// window and every instant at which the offset changes. Every slot
/// (`[k × s, (k + 1) × s)`) then has one offset and lies in one local
/// hour. 3,600 for UTC and most zones.
pub fn slot_secs(tz: Tz, from: u32, to: u32) -> u32 {
    let (from, last) = (i64::from(from), i64::from(to.max(from + 1)) - 1);
    let mut t = from;
    let mut offset = offset_secs(tz, t);
    let mut slot = gcd(3_600, offset.rem_euclid(3_600) as u32);
    while t < last {
        let next = (t + SCAN_STEP).min(last);
        let next_offset = offset_secs(tz, next);
        if next_offset != offset {
            // The first second of the new offset: offset(lo) is the old
            // one, offset(hi) the new one.
            let (mut lo, mut hi) = (t, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset_secs(tz, mid) == offset {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            slot = gcd(slot, hi.rem_euclid(3_600) as u32);
            slot = gcd(slot, next_offset.rem_euclid(3_600) as u32);
            offset = next_offset;
        }
        t = next;
    }
    slot
}

/// The local ISO weekday (1 = Monday) and hour of `t` in `tz`.
pub fn local_cell(tz: Tz, t: i64) -> (u8, u8) {
    let local = DateTime::from_timestamp(t, 0)
        .expect("in range")
        .with_timezone(&tz);
    (
        local.weekday().number_from_monday() as u8,
        local.hour() as u8,
    )
}

/// Awards and accepts of a group of the cohort.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tally {
    awarded: u64,
    accepted: u64,
}

impl Tally {
    fn add(&mut self, awarded: u64, accepted: u64) {
        self.awarded += awarded;
        self.accepted += accepted;
    }

    fn rate(self) -> Option<f64> {
        (self.awarded > 0).then(|| self.accepted as f64 / self.awarded as f64)
    }
}

/// One weekday of `by_weekday`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WeekdayRow {
    /// ISO: 1 = Monday … 7 = Sunday.
    pub weekday: u8,
    pub awarded: u64,
    pub acceptance_rate: Option<f64>,
}

/// One hour of `by_hour`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HourRow {
    pub hour: u8,
    pub awarded: u64,
    pub acceptance_rate: Option<f64>,
}

/// One non-empty weekday × hour cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cell {
    pub weekday: u8,
    pub hour: u8,
    pub awarded: u64,
    pub acceptance_rate: Option<f64>,
}

/// `accepted_within`: shares of the whole cohort; null for an empty one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct AcceptedWithin {
    #[serde(rename = "1h")]
    pub h1: Option<f64>,
    #[serde(rename = "1d")]
    pub d1: Option<f64>,
    #[serde(rename = "7d")]
    pub d7: Option<f64>,
    #[serde(rename = "30d")]
    pub d30: Option<f64>,
    #[serde(rename = "90d")]
    pub d90: Option<f64>,
}

impl AcceptedWithin {
    /// The shares in [`WITHIN`] order.
    pub fn values(&self) -> [Option<f64>; 5] {
        [self.h1, self.d1, self.d7, self.d30, self.d90]
    }
}

/// The cell with the highest acceptance rate among those with at least
/// `min_awarded` awards.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Best {
    pub weekday: u8,
    pub hour: u8,
    pub awarded: u64,
    pub acceptance_rate: f64,
    /// The two-proportion z-test of the cell against every other award of
    /// the cohort, times the number of qualifying cells, at most 1; null
    /// when the test is undefined (no other award, no variance).
    pub p_value: Option<f64>,
    /// Cells that qualified (the Bonferroni factor).
    #[serde(skip)]
    pub cells: usize,
    /// The acceptance rate of every other award of the cohort.
    #[serde(skip)]
    pub others_rate: Option<f64>,
}

/// The analysis of one cohort (the body of `GET /api/v1/timing` without
/// scope, period and `tz`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub by_weekday: Vec<WeekdayRow>,
    pub by_hour: Vec<HourRow>,
    pub cells: Vec<Cell>,
    pub accepted_within: AcceptedWithin,
    pub best: Option<Best>,
    pub insights: Vec<String>,
}

/// The analysis of the cohort counted in `rows` (slots of `slot_secs`
/// seconds), placed in `tz`.
pub fn analyse(tz: Tz, slot_secs: u32, rows: &[SlotCounts], min_awarded: u64) -> Analysis {
    let mut weekdays = [Tally::default(); 7];
    let mut hours = [Tally::default(); 24];
    let mut cells = [[Tally::default(); 24]; 7];
    let mut total = Tally::default();
    let mut within = [0u64; 5];
    for r in rows {
        let start = i64::from(r.slot) * i64::from(slot_secs);
        let (weekday, hour) = local_cell(tz, start);
        let (d, h) = (usize::from(weekday - 1), usize::from(hour));
        weekdays[d].add(r.awarded, r.accepted);
        hours[h].add(r.awarded, r.accepted);
        cells[d][h].add(r.awarded, r.accepted);
        total.add(r.awarded, r.accepted);
        for (w, n) in within.iter_mut().zip([
            r.within_1h,
            r.within_1d,
            r.within_7d,
            r.within_30d,
            r.within_90d,
        ]) {
            *w += n;
        }
    }
    let share = |n: u64| (total.awarded > 0).then(|| n as f64 / total.awarded as f64);
    let mut cell_rows = Vec::new();
    for (d, row) in cells.iter().enumerate() {
        for (h, t) in row.iter().enumerate() {
            if t.awarded > 0 {
                cell_rows.push(Cell {
                    weekday: d as u8 + 1,
                    hour: h as u8,
                    awarded: t.awarded,
                    acceptance_rate: t.rate(),
                });
            }
        }
    }
    let best = best_cell(&cells, total, min_awarded);
    let insights = best
        .iter()
        .filter_map(|b| insight(b, tz))
        .collect::<Vec<_>>();
    Analysis {
        by_weekday: weekdays
            .iter()
            .enumerate()
            .map(|(d, t)| WeekdayRow {
                weekday: d as u8 + 1,
                awarded: t.awarded,
                acceptance_rate: t.rate(),
            })
            .collect(),
        by_hour: hours
            .iter()
            .enumerate()
            .map(|(h, t)| HourRow {
                hour: h as u8,
                awarded: t.awarded,
                acceptance_rate: t.rate(),
            })
            .collect(),
        cells: cell_rows,
        accepted_within: AcceptedWithin {
            h1: share(within[0]),
            d1: share(within[1]),
            d7: share(within[2]),
            d30: share(within[3]),
            d90: share(within[4]),
        },
        best,
        insights,
    }
}

/// The best qualifying cell: highest rate (compared as exact fractions),
/// then more awards, then the lowest weekday, then the lowest hour.
fn best_cell(cells: &[[Tally; 24]; 7], total: Tally, min_awarded: u64) -> Option<Best> {
    let qualifying: Vec<(usize, usize, Tally)> = cells
        .iter()
        .enumerate()
        .flat_map(|(d, row)| row.iter().enumerate().map(move |(h, t)| (d, h, *t)))
        .filter(|(_, _, t)| t.awarded > 0 && t.awarded >= min_awarded)
        .collect();
    // Scanned in (weekday, hour) order; a later cell wins only when it is
    // strictly better, so ties keep the lowest weekday and hour.
    let better = |a: &Tally, b: &Tally| {
        let (x, y) = (
            u128::from(a.accepted) * u128::from(b.awarded),
            u128::from(b.accepted) * u128::from(a.awarded),
        );
        x > y || (x == y && a.awarded > b.awarded)
    };
    let mut best: Option<&(usize, usize, Tally)> = None;
    for q in &qualifying {
        if best.is_none_or(|b| better(&q.2, &b.2)) {
            best = Some(q);
        }
    }
    let &(d, h, cell) = best?;
    let others = Tally {
        awarded: total.awarded - cell.awarded,
        accepted: total.accepted - cell.accepted,
    };
    let p = stats::two_proportion_z(cell.accepted, cell.awarded, others.accepted, others.awarded);
    Some(Best {
        weekday: d as u8 + 1,
        hour: h as u8,
        awarded: cell.awarded,
        acceptance_rate: cell.rate().expect("a qualifying cell has awards"),
        p_value: p.map(|p| stats::bonferroni(p, qualifying.len())),
        cells: qualifying.len(),
        others_rate: others.rate(),
    })
}

/// The best cell as a sentence, when its adjusted p-value is below 0.05.
fn insight(best: &Best, tz: Tz) -> Option<String> {
    let p = best.p_value.filter(|p| *p < ALPHA)?;
    let others = best.others_rate?;
    let slots = if best.cells == 1 {
        "1 time slot".to_owned()
    } else {
        format!("{} time slots", best.cells)
    };
    Some(format!(
        "Badges awarded on {}s between {:02}:00 and {:02}:00 ({}) were accepted at {:.1} %, against {:.1} % for the other awards of the period ({}, adjusted for {slots}).",
        WEEKDAYS[usize::from(best.weekday - 1)],
        best.hour,
        (best.hour + 1) % 24,
        tz.name(),
        best.acceptance_rate * 100.0,
        others * 100.0,
        format_p(p),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> u32 {
        crate::model::window::parse_time("t", s).unwrap()
    }

    fn tz(name: &str) -> Tz {
        name.parse().unwrap()
    }

    #[test]
    fn slots_fit_every_offset_and_change() {
        let year = (t("2025-01-01"), t("2026-01-01"));
        assert_eq!(slot_secs(Tz::UTC, year.0, year.1), 3_600);
        // Paris: +1 h / +2 h, changing at 01:00 UTC.
        assert_eq!(slot_secs(tz("Europe/Paris"), year.0, year.1), 3_600);
        // India: +5:30 all year; Nepal +5:45; Adelaide +9:30 / +10:30.
        assert_eq!(slot_secs(tz("Asia/Kolkata"), year.0, year.1), 1_800);
        assert_eq!(slot_secs(tz("Asia/Kathmandu"), year.0, year.1), 900);
        assert_eq!(slot_secs(tz("Australia/Adelaide"), year.0, year.1), 1_800);
        // Lord Howe moves by 30 minutes: +10:30 / +11.
        assert_eq!(slot_secs(tz("Australia/Lord_Howe"), year.0, year.1), 1_800);
        // Kiritimati was −10:40 until 1979.
        assert_eq!(
            slot_secs(tz("Pacific/Kiritimati"), t("1975-01-01"), t("1976-01-01")),
            1_200
        );
        // A one-second window.
        assert_eq!(slot_secs(tz("Europe/Paris"), year.0, year.0 + 1), 3_600);
    }

    #[test]
    fn local_cells_follow_daylight_saving() {
        let paris = tz("Europe/Paris");
        // 2025-03-30 01:00 UTC: 02:00 CET becomes 03:00 CEST (a Sunday).
        let change = i64::from(t("2025-03-30T01:00:00Z"));
        assert_eq!(local_cell(paris, change - 3_600), (7, 1));
        assert_eq!(local_cell(paris, change - 1), (7, 1));
        assert_eq!(local_cell(paris, change), (7, 3));
        // Back on 2025-10-26 01:00 UTC: 03:00 CEST becomes 02:00 CET.
        let back = i64::from(t("2025-10-26T01:00:00Z"));
        assert_eq!(local_cell(paris, back - 1), (7, 2));
        assert_eq!(local_cell(paris, back), (7, 2));
        assert_eq!(
            local_cell(paris, i64::from(t("2025-03-31T22:30:00Z"))),
            (2, 0)
        );
        assert_eq!(
            local_cell(tz("Asia/Kolkata"), i64::from(t("2025-03-30T18:29:59Z"))),
            (7, 23)
        );
        assert_eq!(
            local_cell(tz("Asia/Kolkata"), i64::from(t("2025-03-30T18:30:00Z"))),
            (1, 0)
        );
    }

    fn slot(start: &str, secs: u32, awarded: u64, accepted: u64) -> SlotCounts {
        SlotCounts {
            slot: t(start) / secs,
            awarded,
            accepted,
            within_1h: accepted / 2,
            within_1d: accepted,
            within_7d: accepted,
            within_30d: accepted,
            within_90d: accepted,
        }
    }

    #[test]
    fn cells_rows_and_shares() {
        let paris = tz("Europe/Paris");
        let rows = [
            // Sunday 01:xx CET and, an hour later in UTC, 03:xx CEST.
            slot("2025-03-30T00:00:00Z", 3_600, 4, 2),
            slot("2025-03-30T01:00:00Z", 3_600, 6, 6),
            // Monday 10:xx CEST.
            slot("2025-03-31T08:00:00Z", 3_600, 10, 5),
        ];
        let a = analyse(paris, 3_600, &rows, 5);
        assert_eq!(a.by_weekday.len(), 7);
        assert_eq!(a.by_hour.len(), 24);
        assert_eq!(a.by_weekday[6].awarded, 10);
        assert_eq!(a.by_weekday[6].acceptance_rate, Some(0.8));
        assert_eq!(a.by_weekday[1].acceptance_rate, None);
        assert_eq!(a.by_hour[1].awarded, 4);
        assert_eq!(a.by_hour[2].awarded, 0, "02:00 did not exist that night");
        assert_eq!(a.by_hour[3].awarded, 6);
        assert_eq!(
            a.cells
                .iter()
                .map(|c| (c.weekday, c.hour, c.awarded))
                .collect::<Vec<_>>(),
            [(1, 10, 10), (7, 1, 4), (7, 3, 6)]
        );
        assert_eq!(a.accepted_within.h1, Some(6.0 / 20.0));
        assert_eq!(a.accepted_within.d90, Some(13.0 / 20.0));
        // Best: 6/6 among cells with ≥ 5 awards (4 awards do not qualify),
        // against 7/14 for the rest; 2 qualifying cells.
        let best = a.best.unwrap();
        assert_eq!((best.weekday, best.hour, best.awarded), (7, 3, 6));
        assert_eq!(best.acceptance_rate, 1.0);
        let p = stats::two_proportion_z(6, 6, 7, 14).unwrap();
        assert_eq!(best.p_value, Some((2.0 * p).min(1.0)));
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["accepted_within"]["7d"], 0.65);
        assert_eq!(
            json["best"].as_object().unwrap().len(),
            5,
            "weekday, hour, awarded, acceptance_rate, p_value"
        );
    }

    #[test]
    fn best_cell_ties_and_empty_cohorts() {
        let utc = Tz::UTC;
        // Same rate 1/2: more awards wins.
        let rows = [
            slot("2025-03-03T09:00:00Z", 3_600, 2, 1),
            slot("2025-03-04T09:00:00Z", 3_600, 4, 2),
            slot("2025-03-05T09:00:00Z", 3_600, 3, 0),
        ];
        let b = analyse(utc, 3_600, &rows, 1).best.unwrap();
        assert_eq!((b.weekday, b.hour), (2, 9));
        // Same rate and awards: the lowest weekday, then the lowest hour.
        let rows = [
            slot("2025-03-05T07:00:00Z", 3_600, 4, 2),
            slot("2025-03-04T11:00:00Z", 3_600, 4, 2),
            slot("2025-03-04T10:00:00Z", 3_600, 4, 2),
        ];
        let b = analyse(utc, 3_600, &rows, 1).best.unwrap();
        assert_eq!((b.weekday, b.hour), (2, 10));
        // Every award in one cell: no others to compare with.
        let rows = [slot("2025-03-04T10:00:00Z", 3_600, 4, 2)];
        let a = analyse(utc, 3_600, &rows, 1);
        assert_eq!(a.best.unwrap().p_value, None);
        assert!(a.insights.is_empty());
        // No cell qualifies; an empty cohort is all nulls.
        assert_eq!(analyse(utc, 3_600, &rows, 5).best, None);
        let a = analyse(utc, 3_600, &[], 5);
        assert_eq!(a.best, None);
        assert_eq!(a.accepted_within, AcceptedWithin::default());
        assert!(a.cells.is_empty());
        assert!(a.by_weekday.iter().all(|r| r.acceptance_rate.is_none()));
    }

    #[test]
    fn insight_when_the_adjusted_p_is_small() {
        let rows = [
            slot("2025-03-04T10:00:00Z", 3_600, 40, 38),
            slot("2025-03-05T10:00:00Z", 3_600, 40, 20),
            slot("2025-03-06T10:00:00Z", 3_600, 40, 20),
        ];
        let a = analyse(tz("Europe/Paris"), 3_600, &rows, 10);
        assert_eq!(
            a.insights,
            ["Badges awarded on Tuesdays between 11:00 and 12:00 (Europe/Paris) were accepted at 95.0 %, against 50.0 % for the other awards of the period (p < 0.001, adjusted for 3 time slots)."]
        );
        // Not significant after adjustment: no insight.
        let rows = [
            slot("2025-03-04T10:00:00Z", 3_600, 20, 14),
            slot("2025-03-05T10:00:00Z", 3_600, 20, 9),
            slot("2025-03-06T10:00:00Z", 3_600, 20, 9),
        ];
        let a = analyse(Tz::UTC, 3_600, &rows, 10);
        let p = a.best.unwrap().p_value.unwrap();
        assert!(p >= 0.05, "{p}");
        assert!(a.insights.is_empty());
    }
}
