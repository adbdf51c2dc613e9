//! Where each piece of a window is read from: the decomposition of a
//! window `[from, to)` into whole buckets of the coarsest tier that fits
//! (calendar months, days, hours, minutes) and raw-event edges, with the
//! rollups' retention applied; the [`Period`] a query covers; and the
//! pieces unique viewers are counted over ([`viewer_pieces`]). Pure.
//!
//! Invariant of [`decompose`]: the segments are disjoint, in time order,
//! and their union is exactly the window; a segment read at `Month`,
//! `Day`, `Hour` or `Minute` resolution starts and ends on that tier's
//! bucket boundaries (UTC), so whole buckets answer it.

use chrono::{Datelike, NaiveDate};

use super::window::{Granularity, Window};

/// Where a segment's data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// `scope_month`: whole calendar months (UTC).
    Month,
    /// `rollup_day`, `scope_day`: whole UTC days.
    Day,
    /// `rollup_hour`: whole hours.
    Hour,
    /// `rollup_minute`: whole minutes.
    Minute,
    /// The raw `events` table: any second.
    Raw,
}

impl Resolution {
    /// Bucket length in seconds (1 for raw events; a month's shortest,
    /// 28 days, as an upper bound of what nests in it).
    pub fn step(self) -> u32 {
        match self {
            Resolution::Month => 28 * 86_400,
            Resolution::Day => 86_400,
            Resolution::Hour => 3_600,
            Resolution::Minute => 60,
            Resolution::Raw => 1,
        }
    }

    /// The next finer source, `None` for raw events.
    fn finer(self) -> Option<Resolution> {
        match self {
            Resolution::Month => Some(Resolution::Day),
            Resolution::Day => Some(Resolution::Hour),
            Resolution::Hour => Some(Resolution::Minute),
            Resolution::Minute => Some(Resolution::Raw),
            Resolution::Raw => None,
        }
    }
}

/// A piece of a window answered by one resolution: `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub resolution: Resolution,
    pub from: u32,
    pub to: u32,
}

/// Which rollup buckets the aggregator still keeps (SPEC §6: by default
/// 7 days of `rollup_minute` and 400 days of `rollup_hour`): minute and
/// hour buckets starting before these times may have been dropped, so
/// [`decompose_with`] answers such pieces from raw `events` instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Oldest `rollup_minute` bucket start that is trusted.
    pub minute_from: u32,
    /// Oldest `rollup_hour` bucket start that is trusted.
    pub hour_from: u32,
}

impl Retention {
    /// Every rollup bucket is kept.
    pub const KEEP_ALL: Retention = Retention {
        minute_from: 0,
        hour_from: 0,
    };

    /// The retention at `now` for `minute_days` and `hour_days` of
    /// retention (`exporter.rollup_*_days`, equal to the aggregator's
    /// `retention_*_days`).
    ///
    /// The aggregator keeps every bucket at or after the start of the
    /// partition holding `now - days` (a day for minutes, a month for
    /// hours), so every bucket at or after `now - days` is there. One day
    /// of margin (`now - (days - 1)`) covers clock skew between the
    /// services and a retention run that is just starting.
    pub fn at(now: u32, minute_days: u32, hour_days: u32) -> Retention {
        let from = |days: u32| now.saturating_sub(days.saturating_sub(1).saturating_mul(86_400));
        Retention {
            minute_from: from(minute_days),
            hour_from: from(hour_days),
        }
    }
}

/// Splits `window` into the coarsest pieces: whole UTC days from
/// `rollup_day`, the remaining whole hours from `rollup_hour`, the
/// remaining whole minutes from `rollup_minute` and the sub-minute edges
/// from raw `events`. At most 7 segments (one day run, and up to two each
/// of hours, minutes and raw seconds), in time order. Assumes every rollup
/// bucket is kept; see [`decompose_with`].
pub fn decompose(window: Window) -> Vec<Segment> {
    decompose_with(window, Resolution::Day, Retention::KEEP_ALL)
}

/// [`decompose`] with `coarsest` as the coarsest source used (a trend by
/// hour must not read whole days) and retention applied: a minute or hour
/// segment starting before `retention` keeps its buckets is answered from
/// raw `events` instead (adjacent raw pieces are joined). The invariant of
/// the module holds for the result.
pub fn decompose_with(window: Window, coarsest: Resolution, retention: Retention) -> Vec<Segment> {
    let mut pieces = Vec::with_capacity(7);
    split(
        u64::from(window.from()),
        u64::from(window.to()),
        coarsest,
        &mut pieces,
    );
    read_from_raw(pieces, |seg| match seg.resolution {
        Resolution::Minute => seg.from < retention.minute_from,
        Resolution::Hour => seg.from < retention.hour_from,
        Resolution::Month | Resolution::Day | Resolution::Raw => false,
    })
}

/// `segments` with those for which `to_raw` holds read from raw `events`
/// instead, adjacent raw pieces joined.
fn read_from_raw(
    segments: impl IntoIterator<Item = Segment>,
    to_raw: impl Fn(&Segment) -> bool,
) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for mut seg in segments {
        if to_raw(&seg) {
            seg.resolution = Resolution::Raw;
        }
        match out.last_mut() {
            Some(last)
                if last.resolution == Resolution::Raw && seg.resolution == Resolution::Raw =>
            {
                last.to = seg.to;
            }
            _ => out.push(seg),
        }
    }
    out
}

/// `segments` with every piece whose resolution `absent` lists read from
/// raw `events` instead (adjacent raw pieces joined), for tables that
/// have no rows of that resolution (no minute `scope_*` rows; hour scope
/// rows for the org only; distribution rollups for the org only). A month
/// piece is answered by days where months are absent but days are not.
/// The module's invariant still holds.
pub fn read_raw(segments: &[Segment], absent: &[Resolution]) -> Vec<Segment> {
    let months_as_days = segments.iter().map(|seg| match seg.resolution {
        Resolution::Month
            if absent.contains(&Resolution::Month) && !absent.contains(&Resolution::Day) =>
        {
            Segment {
                resolution: Resolution::Day,
                ..*seg
            }
        }
        _ => *seg,
    });
    read_from_raw(months_as_days, |seg| absent.contains(&seg.resolution))
}

/// What unique viewers are counted over: viewer keys are salted per UTC
/// day (SPEC §4), so the viewers of whole days add up exactly and each
/// day is one sealed number ([`ViewerPiece::Days`]); a part of a day is
/// counted from `events` ([`ViewerPiece::Raw`]), unless it is whole hours
/// counted per hour (`per_hour`, hourly trends: [`ViewerPiece::Hours`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerPiece {
    /// Whole UTC days `[from, to)`.
    Days { from: u32, to: u32 },
    /// Whole hours `[from, to)`, each counted on its own.
    Hours { from: u32, to: u32 },
    /// Any seconds `[from, to)`, counted from `events` per UTC day.
    Raw { from: u32, to: u32 },
}

/// The viewer pieces of `period`'s segments (see [`ViewerPiece`]):
/// months and days become day pieces, hours hour pieces when `per_hour`
/// and raw otherwise, minutes and raw seconds raw; adjacent pieces of one
/// kind are joined. `None` for all time.
pub fn viewer_pieces(period: &Period, per_hour: bool) -> Option<Vec<ViewerPiece>> {
    let Period::Segments(segments) = period else {
        return None;
    };
    let mut out: Vec<ViewerPiece> = Vec::new();
    for seg in segments {
        let (from, to) = (seg.from, seg.to);
        let piece = match seg.resolution {
            Resolution::Month | Resolution::Day => ViewerPiece::Days { from, to },
            Resolution::Hour if per_hour => ViewerPiece::Hours { from, to },
            _ => ViewerPiece::Raw { from, to },
        };
        match (out.last_mut(), piece) {
            (Some(ViewerPiece::Days { to: end, .. }), ViewerPiece::Days { from, to })
            | (Some(ViewerPiece::Hours { to: end, .. }), ViewerPiece::Hours { from, to })
            | (Some(ViewerPiece::Raw { to: end, .. }), ViewerPiece::Raw { from, to })
                if *end == from =>
            {
                *end = to;
            }
            _ => out.push(piece),
        }
    }
    Some(out)
}

/// The first month boundary at or after `t` and the last at or before
/// `to`, epoch seconds; `None` when no whole month lies in `[t, to)`.
fn whole_months(from: u64, to: u64) -> Option<(u64, u64)> {
    let date = |t: u64| {
        chrono::DateTime::from_timestamp(i64::try_from(t).ok()?, 0).map(|d| d.date_naive())
    };
    let start = |d: NaiveDate| {
        NaiveDate::from_ymd_opt(d.year(), d.month(), 1)
            .and_then(|m| m.and_hms_opt(0, 0, 0))
            .map(|m| m.and_utc().timestamp() as u64)
    };
    let first = date(from)?;
    let mut lo = start(first)?;
    if lo < from {
        let next = first.checked_add_months(chrono::Months::new(1))?;
        lo = start(next)?;
    }
    let hi = start(date(to)?)?;
    (lo < hi).then_some((lo, hi))
}

fn split(from: u64, to: u64, source: Resolution, out: &mut Vec<Segment>) {
    if from >= to {
        return;
    }
    let Some(finer) = source.finer() else {
        out.push(segment(source, from, to));
        return;
    };
    if source == Resolution::Month {
        match whole_months(from, to) {
            Some((lo, hi)) => {
                split(from, lo, finer, out);
                out.push(segment(source, lo, hi));
                split(hi, to, finer, out);
            }
            None => split(from, to, finer, out),
        }
        return;
    }
    let step = u64::from(source.step());
    let lo = from.div_ceil(step) * step;
    let hi = to / step * step;
    if lo < hi {
        split(from, lo, finer, out);
        out.push(segment(source, lo, hi));
        split(hi, to, finer, out);
    } else {
        split(from, to, finer, out);
    }
}

fn segment(source: Resolution, from: u64, to: u64) -> Segment {
    // Both ends lie within the original u32 window.
    Segment {
        resolution: source,
        from: from as u32,
        to: to as u32,
    }
}

impl Granularity {
    /// The coarsest rollup whose buckets nest inside this granularity's
    /// buckets: a window for a trend is decomposed down from it.
    pub fn coarsest_resolution(self) -> Resolution {
        match self {
            Granularity::Minute => Resolution::Minute,
            Granularity::Hour => Resolution::Hour,
            Granularity::Day | Granularity::Week => Resolution::Day,
            Granularity::Month => Resolution::Month,
        }
    }
}

/// The events a query covers in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Period {
    /// Every event ever: `scope_total` or `rollup_total`, without a time
    /// condition.
    AllTime,
    /// Events with `occurred_at` in a window, as decomposed by
    /// [`crate::window::decompose_with`]: each segment is read from its
    /// source.
    Segments(Vec<Segment>),
}

impl Period {
    /// `window` decomposed down from `coarsest` with rollup `retention`.
    pub fn window(window: Window, coarsest: Resolution, retention: Retention) -> Period {
        Period::Segments(decompose_with(window, coarsest, retention))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::window::parse_time;

    fn t(s: &str) -> u32 {
        parse_time("t", s).unwrap()
    }
    fn seg(resolution: Resolution, from: &str, to: &str) -> Segment {
        Segment {
            resolution,
            from: t(from),
            to: t(to),
        }
    }
    fn check_invariant(w: Window) {
        let segs = decompose(w);
        assert!(!segs.is_empty() && segs.len() <= 7, "{w:?}: {segs:?}");
        assert_eq!(segs[0].from, w.from());
        assert_eq!(segs.last().unwrap().to, w.to());
        for pair in segs.windows(2) {
            assert_eq!(pair[0].to, pair[1].from, "{w:?}: {segs:?}");
        }
        for s in &segs {
            assert!(s.from < s.to);
            assert_eq!(s.from % s.resolution.step(), 0, "{s:?}");
            assert_eq!(s.to % s.resolution.step(), 0, "{s:?}");
        }
        assert!(
            segs.iter()
                .filter(|s| s.resolution == Resolution::Day)
                .count()
                <= 1
        );
    }
    #[test]
    fn cuts_through_every_boundary() {
        let w = Window::new(t("2024-03-09T22:58:30Z"), t("2024-03-12T01:02:15Z")).unwrap();
        assert_eq!(
            decompose(w),
            vec![
                seg(
                    Resolution::Raw,
                    "2024-03-09T22:58:30Z",
                    "2024-03-09T22:59:00Z"
                ),
                seg(
                    Resolution::Minute,
                    "2024-03-09T22:59:00Z",
                    "2024-03-09T23:00:00Z"
                ),
                seg(
                    Resolution::Hour,
                    "2024-03-09T23:00:00Z",
                    "2024-03-10T00:00:00Z"
                ),
                seg(Resolution::Day, "2024-03-10", "2024-03-12"),
                seg(
                    Resolution::Hour,
                    "2024-03-12T00:00:00Z",
                    "2024-03-12T01:00:00Z"
                ),
                seg(
                    Resolution::Minute,
                    "2024-03-12T01:00:00Z",
                    "2024-03-12T01:02:00Z"
                ),
                seg(
                    Resolution::Raw,
                    "2024-03-12T01:02:00Z",
                    "2024-03-12T01:02:15Z"
                ),
            ]
        );
        check_invariant(w);
    }
    #[test]
    fn aligned_windows_use_one_source() {
        let days = Window::new(t("2024-01-01"), t("2024-02-01")).unwrap();
        assert_eq!(
            decompose(days),
            vec![seg(Resolution::Day, "2024-01-01", "2024-02-01")]
        );
        let hours = Window::new(t("2024-01-01T03:00:00Z"), t("2024-01-01T05:00:00Z")).unwrap();
        assert_eq!(
            decompose(hours),
            vec![seg(
                Resolution::Hour,
                "2024-01-01T03:00:00Z",
                "2024-01-01T05:00:00Z"
            )]
        );
        let secs = Window::new(t("2024-01-01T03:00:10Z"), t("2024-01-01T03:00:50Z")).unwrap();
        assert_eq!(
            decompose(secs),
            vec![seg(
                Resolution::Raw,
                "2024-01-01T03:00:10Z",
                "2024-01-01T03:00:50Z"
            )]
        );
    }
    #[test]
    fn within_one_day_no_day_segment() {
        // 23 hours that cross no midnight: hours, not days.
        let w = Window::new(t("2024-01-01T00:30:00Z"), t("2024-01-01T23:30:00Z")).unwrap();
        let segs = decompose(w);
        assert!(
            segs.iter().all(|s| s.resolution != Resolution::Day),
            "{segs:?}"
        );
        assert_eq!(
            segs.iter()
                .filter(|s| s.resolution == Resolution::Hour)
                .count(),
            1
        );
        check_invariant(w);
        // Crossing midnight without a whole day: no day segment either.
        let w = Window::new(t("2024-01-01T12:00:00Z"), t("2024-01-02T12:00:00Z")).unwrap();
        assert!(decompose(w).iter().all(|s| s.resolution != Resolution::Day));
        check_invariant(w);
    }
    #[test]
    fn invariant_holds_for_many_windows() {
        // Deterministic pseudo-random windows, including the u32 extremes.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..5_000 {
            let a = (next() % u64::from(u32::MAX)) as u32;
            let len = match next() % 4 {
                0 => next() % 120,
                1 => next() % 7_200,
                2 => next() % 200_000,
                _ => next() % 100_000_000,
            } as u32;
            if let Some(w) = Window::new(a, a.saturating_add(len.max(1))) {
                check_invariant(w);
            }
        }
        check_invariant(Window::new(0, u32::MAX).unwrap());
        check_invariant(Window::new(u32::MAX - 1, u32::MAX).unwrap());
    }
    #[test]
    fn expired_rollups_fall_back_to_raw_events() {
        let w = Window::new(t("2024-03-09T22:58:30Z"), t("2024-03-12T01:02:15Z")).unwrap();
        // Minute buckets kept only from 2024-03-11, hours from 2024-03-10.
        let r = Retention {
            minute_from: t("2024-03-11T00:00:00Z"),
            hour_from: t("2024-03-10T00:00:00Z"),
        };
        assert_eq!(
            decompose_with(w, Resolution::Day, r),
            vec![
                // Raw seconds, expired minutes and expired hours, joined.
                seg(
                    Resolution::Raw,
                    "2024-03-09T22:58:30Z",
                    "2024-03-10T00:00:00Z"
                ),
                seg(Resolution::Day, "2024-03-10", "2024-03-12"),
                seg(
                    Resolution::Hour,
                    "2024-03-12T00:00:00Z",
                    "2024-03-12T01:00:00Z"
                ),
                seg(
                    Resolution::Minute,
                    "2024-03-12T01:00:00Z",
                    "2024-03-12T01:02:00Z"
                ),
                seg(
                    Resolution::Raw,
                    "2024-03-12T01:02:00Z",
                    "2024-03-12T01:02:15Z"
                ),
            ]
        );
        // Everything expired: days and raw events only.
        let all = Retention {
            minute_from: u32::MAX,
            hour_from: u32::MAX,
        };
        assert_eq!(
            decompose_with(w, Resolution::Day, all),
            vec![
                seg(
                    Resolution::Raw,
                    "2024-03-09T22:58:30Z",
                    "2024-03-10T00:00:00Z"
                ),
                seg(Resolution::Day, "2024-03-10", "2024-03-12"),
                seg(
                    Resolution::Raw,
                    "2024-03-12T00:00:00Z",
                    "2024-03-12T01:02:15Z"
                ),
            ]
        );
        // A segment straddling the retention boundary is read raw whole.
        let r = Retention {
            minute_from: 0,
            hour_from: t("2024-03-12T00:30:00Z"),
        };
        assert_eq!(
            decompose_with(w, Resolution::Day, r)[4..],
            [
                seg(
                    Resolution::Raw,
                    "2024-03-12T00:00:00Z",
                    "2024-03-12T01:00:00Z"
                ),
                seg(
                    Resolution::Minute,
                    "2024-03-12T01:00:00Z",
                    "2024-03-12T01:02:00Z"
                ),
                seg(
                    Resolution::Raw,
                    "2024-03-12T01:02:00Z",
                    "2024-03-12T01:02:15Z"
                )
            ]
        );
        assert_eq!(
            decompose_with(w, Resolution::Day, Retention::KEEP_ALL),
            decompose(w)
        );
    }
    #[test]
    fn retention_matches_the_aggregator_with_a_day_of_margin() {
        let now = t("2026-03-10T15:30:00Z");
        let r = Retention::at(now, 7, 400);
        assert_eq!(r.minute_from, t("2026-03-04T15:30:00Z"));
        assert_eq!(r.hour_from, now - 399 * 86_400);
        // The aggregator keeps minutes from 2026-03-03 (the partition of
        // now − 7 days) and hours from 2025-02-01: our bounds are later.
        assert!(r.minute_from >= t("2026-03-03T00:00:00Z"));
        assert!(r.hour_from >= t("2025-02-01T00:00:00Z"));
        assert_eq!(Retention::at(now, 1, 1).minute_from, now);
    }
    #[test]
    fn absent_minutes_are_read_raw_and_joined() {
        // 2024-03-09T22:58:30Z to 2024-03-12T01:02:15Z: raw, minute, hour,
        // day, hour, minute, raw.
        let w = Window::new(1_710_025_110, 1_710_205_335).unwrap();
        let segs = read_raw(&decompose(w), &[Resolution::Minute]);
        let sources: Vec<Resolution> = segs.iter().map(|s| s.resolution).collect();
        assert_eq!(
            sources,
            [
                Resolution::Raw,
                Resolution::Hour,
                Resolution::Day,
                Resolution::Hour,
                Resolution::Raw
            ]
        );
        assert_eq!((segs[0].from, segs[0].to), (1_710_025_110, 1_710_025_200));
        assert_eq!((segs[4].from, segs[4].to), (1_710_205_200, 1_710_205_335));
        assert!(segs.windows(2).all(|p| p[0].to == p[1].from));
        // A minute trend's window is read from events alone.
        let minutes = read_raw(
            &decompose_with(w, Resolution::Minute, Retention::KEEP_ALL),
            &[Resolution::Minute],
        );
        assert_eq!(
            minutes,
            [Segment {
                resolution: Resolution::Raw,
                from: w.from(),
                to: w.to()
            }]
        );
    }
    #[test]
    fn coarsest_source_limits_the_decomposition() {
        let w = Window::new(t("2024-03-09T22:58:30Z"), t("2024-03-12T01:02:15Z")).unwrap();
        for (coarsest, allowed) in [
            (
                Resolution::Hour,
                [Resolution::Hour, Resolution::Minute, Resolution::Raw],
            ),
            (
                Resolution::Minute,
                [Resolution::Minute, Resolution::Raw, Resolution::Raw],
            ),
        ] {
            let segs = decompose_with(w, coarsest, Retention::KEEP_ALL);
            assert!(
                segs.iter().all(|s| allowed.contains(&s.resolution)),
                "{segs:?}"
            );
            assert_eq!(segs.first().unwrap().from, w.from());
            assert_eq!(segs.last().unwrap().to, w.to());
            for pair in segs.windows(2) {
                assert_eq!(pair[0].to, pair[1].from);
            }
        }
        let hours = decompose_with(w, Resolution::Hour, Retention::KEEP_ALL);
        assert_eq!(
            hours[2],
            seg(
                Resolution::Hour,
                "2024-03-09T23:00:00Z",
                "2024-03-12T01:00:00Z"
            )
        );
    }

    #[test]
    fn whole_months_are_calendar_months() {
        let w = Window::new(t("2024-01-15T10:00:00Z"), t("2024-04-03T00:00:00Z")).unwrap();
        let segs = decompose_with(w, Resolution::Month, Retention::KEEP_ALL);
        let res: Vec<Resolution> = segs.iter().map(|s| s.resolution).collect();
        assert_eq!(
            res,
            [
                Resolution::Hour,
                Resolution::Day,
                Resolution::Month,
                Resolution::Day
            ]
        );
        // February 2024 has 29 days: months are calendar months.
        assert_eq!(segs[2], seg(Resolution::Month, "2024-02-01", "2024-04-01"));
        assert_eq!(segs[1], seg(Resolution::Day, "2024-01-16", "2024-02-01"));
        assert_eq!(segs[3], seg(Resolution::Day, "2024-04-01", "2024-04-03"));
        assert_eq!((segs[0].from, segs[3].to), (w.from(), w.to()));
        // Less than a month: no month piece, as with days as the coarsest.
        let short = Window::new(t("2024-01-15"), t("2024-02-14")).unwrap();
        assert_eq!(
            decompose_with(short, Resolution::Month, Retention::KEEP_ALL),
            decompose(short)
        );
        // Without month rows, a month is read as days, then joined runs stay split.
        let days = read_raw(&segs, &[Resolution::Month, Resolution::Minute]);
        assert!(days.iter().all(|s| s.resolution != Resolution::Month));
        assert_eq!(days[2], seg(Resolution::Day, "2024-02-01", "2024-04-01"));
    }

    #[test]
    fn viewer_pieces_are_whole_days_or_raw() {
        let w = Window::new(t("2024-03-09T22:58:30Z"), t("2024-04-12T01:02:15Z")).unwrap();
        let period = Period::window(w, Resolution::Month, Retention::KEEP_ALL);
        assert_eq!(
            viewer_pieces(&period, false).unwrap(),
            [
                ViewerPiece::Raw {
                    from: w.from(),
                    to: t("2024-03-10")
                },
                ViewerPiece::Days {
                    from: t("2024-03-10"),
                    to: t("2024-04-12")
                },
                ViewerPiece::Raw {
                    from: t("2024-04-12"),
                    to: w.to()
                },
            ]
        );
        let hourly = Period::window(w, Resolution::Hour, Retention::KEEP_ALL);
        let pieces = viewer_pieces(&hourly, true).unwrap();
        assert_eq!(
            pieces[1],
            ViewerPiece::Hours {
                from: t("2024-03-09T23:00:00Z"),
                to: t("2024-04-12T01:00:00Z")
            }
        );
        assert_eq!(viewer_pieces(&Period::AllTime, false), None);
    }
}
