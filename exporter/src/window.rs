//! Time windows: parsing the `from`/`to` parameters (SPEC §8) and the
//! decomposition of a window `[from, to)` into the pieces that each
//! ClickHouse source can answer exactly.
//!
//! Pure functions only: no I/O, no SQL (the SQL for each piece is in
//! `queries.rs`).
//!
//! Invariant of [`decompose`]: the segments are disjoint, in time order,
//! and their union is exactly the window; a segment of source `Day`,
//! `Hour` or `Minute` starts and ends on that source's bucket boundaries
//! (UTC), so whole rollup buckets answer it.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

/// A half-open interval `[from, to)` of UTC epoch seconds with `from < to`.
/// Seconds fit `u32` because ClickHouse's `DateTime` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    from: u32,
    to: u32,
}

impl Window {
    /// `None` unless `from < to`.
    pub fn new(from: u32, to: u32) -> Option<Window> {
        (from < to).then_some(Window { from, to })
    }

    pub fn from(&self) -> u32 {
        self.from
    }

    pub fn to(&self) -> u32 {
        self.to
    }

    /// Length in seconds.
    pub fn len_secs(&self) -> u32 {
        self.to - self.from
    }

    /// The equally long window just before this one, clipped at the epoch;
    /// `None` when this window starts at the epoch.
    pub fn previous(&self) -> Option<Window> {
        Window::new(self.from.saturating_sub(self.len_secs()), self.from)
    }

    pub fn from_rfc3339(&self) -> String {
        rfc3339(self.from)
    }

    pub fn to_rfc3339(&self) -> String {
        rfc3339(self.to)
    }
}

/// `2024-03-09T22:58:30Z`.
pub fn rfc3339(epoch_secs: u32) -> String {
    DateTime::<Utc>::from_timestamp(i64::from(epoch_secs), 0)
        .expect("u32 seconds are a valid time")
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Where a segment's data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// `rollup_day`: whole UTC days.
    Day,
    /// `rollup_hour`: whole hours.
    Hour,
    /// `rollup_minute`: whole minutes.
    Minute,
    /// The raw `events` table: any second.
    Raw,
}

impl Source {
    /// Bucket length in seconds (1 for raw events).
    pub fn step(self) -> u32 {
        match self {
            Source::Day => 86_400,
            Source::Hour => 3_600,
            Source::Minute => 60,
            Source::Raw => 1,
        }
    }

    /// The next finer source, `None` for raw events.
    fn finer(self) -> Option<Source> {
        match self {
            Source::Day => Some(Source::Hour),
            Source::Hour => Some(Source::Minute),
            Source::Minute => Some(Source::Raw),
            Source::Raw => None,
        }
    }
}

/// A piece of a window answered by one source: `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub source: Source,
    pub from: u32,
    pub to: u32,
}

/// Splits `window` into the coarsest pieces: whole UTC days from
/// `rollup_day`, the remaining whole hours from `rollup_hour`, the
/// remaining whole minutes from `rollup_minute` and the sub-minute edges
/// from raw `events`. At most 7 segments (one day run, and up to two each
/// of hours, minutes and raw seconds), in time order.
///
/// Retention caveat: `rollup_minute` keeps 7 days and `rollup_hour` 400
/// days by default (`[aggregator] retention_*`). Minute segments lie within
/// an hour of `from` or `to`, hour segments within a day; a window edge
/// older than those retentions would read dropped buckets. This version
/// assumes they are present; the fix is to fall back to raw `events` for
/// segments older than the configured retention.
pub fn decompose(window: Window) -> Vec<Segment> {
    let mut out = Vec::with_capacity(7);
    split(
        u64::from(window.from),
        u64::from(window.to),
        Source::Day,
        &mut out,
    );
    out
}

fn split(from: u64, to: u64, source: Source, out: &mut Vec<Segment>) {
    if from >= to {
        return;
    }
    let Some(finer) = source.finer() else {
        out.push(segment(source, from, to));
        return;
    };
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

fn segment(source: Source, from: u64, to: u64) -> Segment {
    // Both ends lie within the original u32 window.
    Segment {
        source,
        from: from as u32,
        to: to as u32,
    }
}

/// Parses a `from`/`to` value: RFC 3339 (fractions of a second are
/// dropped) or `YYYY-MM-DD` meaning 00:00 UTC of that day. The error names
/// `param`.
pub fn parse_time(param: &str, value: &str) -> Result<u32, String> {
    let t = if let Ok(day) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        day.and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp()
    } else {
        let parsed = DateTime::parse_from_rfc3339(value).or_else(|e| {
            // An unencoded `+` of a UTC offset arrives as a space.
            match value.rsplit_once(' ') {
                Some((head, offset)) if head.len() >= 19 => {
                    DateTime::parse_from_rfc3339(&format!("{head}+{offset}"))
                }
                _ => Err(e),
            }
        });
        parsed
            .map_err(|_| format!("{param}: expected an RFC 3339 time (2024-03-01T00:00:00Z) or a date (2024-03-01), got {value:?}"))?
            .timestamp()
    };
    u32::try_from(t).map_err(|_| format!("{param}: {value:?} is outside 1970-01-01 to 2106-02-07"))
}

/// The window of a request: `from`/`to` as given, defaulting to the 30 days
/// before `to`, and `to` defaulting to `now`. Errors name the parameter.
pub fn resolve_window(from: Option<&str>, to: Option<&str>, now: u32) -> Result<Window, String> {
    const DEFAULT_SPAN: u32 = 30 * 86_400;
    let to = match to {
        Some(v) => parse_time("to", v)?,
        None => now,
    };
    let from = match from {
        Some(v) => parse_time("from", v)?,
        None => to.saturating_sub(DEFAULT_SPAN),
    };
    Window::new(from, to).ok_or_else(|| {
        format!(
            "from: must be before to ({} is not before {})",
            rfc3339(from),
            rfc3339(to)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> u32 {
        parse_time("t", s).unwrap()
    }

    fn seg(source: Source, from: &str, to: &str) -> Segment {
        Segment {
            source,
            from: t(from),
            to: t(to),
        }
    }

    /// The invariant of `decompose` for one window.
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
            assert_eq!(s.from % s.source.step(), 0, "{s:?}");
            assert_eq!(s.to % s.source.step(), 0, "{s:?}");
        }
        assert!(segs.iter().filter(|s| s.source == Source::Day).count() <= 1);
    }

    #[test]
    fn cuts_through_every_boundary() {
        let w = Window::new(t("2024-03-09T22:58:30Z"), t("2024-03-12T01:02:15Z")).unwrap();
        assert_eq!(
            decompose(w),
            vec![
                seg(Source::Raw, "2024-03-09T22:58:30Z", "2024-03-09T22:59:00Z"),
                seg(
                    Source::Minute,
                    "2024-03-09T22:59:00Z",
                    "2024-03-09T23:00:00Z"
                ),
                seg(Source::Hour, "2024-03-09T23:00:00Z", "2024-03-10T00:00:00Z"),
                seg(Source::Day, "2024-03-10", "2024-03-12"),
                seg(Source::Hour, "2024-03-12T00:00:00Z", "2024-03-12T01:00:00Z"),
                seg(
                    Source::Minute,
                    "2024-03-12T01:00:00Z",
                    "2024-03-12T01:02:00Z"
                ),
                seg(Source::Raw, "2024-03-12T01:02:00Z", "2024-03-12T01:02:15Z"),
            ]
        );
        check_invariant(w);
    }

    #[test]
    fn aligned_windows_use_one_source() {
        let days = Window::new(t("2024-01-01"), t("2024-02-01")).unwrap();
        assert_eq!(
            decompose(days),
            vec![seg(Source::Day, "2024-01-01", "2024-02-01")]
        );
        let hours = Window::new(t("2024-01-01T03:00:00Z"), t("2024-01-01T05:00:00Z")).unwrap();
        assert_eq!(
            decompose(hours),
            vec![seg(
                Source::Hour,
                "2024-01-01T03:00:00Z",
                "2024-01-01T05:00:00Z"
            )]
        );
        let secs = Window::new(t("2024-01-01T03:00:10Z"), t("2024-01-01T03:00:50Z")).unwrap();
        assert_eq!(
            decompose(secs),
            vec![seg(
                Source::Raw,
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
        assert!(segs.iter().all(|s| s.source != Source::Day), "{segs:?}");
        assert_eq!(segs.iter().filter(|s| s.source == Source::Hour).count(), 1);
        check_invariant(w);
        // Crossing midnight without a whole day: no day segment either.
        let w = Window::new(t("2024-01-01T12:00:00Z"), t("2024-01-02T12:00:00Z")).unwrap();
        assert!(decompose(w).iter().all(|s| s.source != Source::Day));
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
    fn previous_window() {
        let w = Window::new(100, 160).unwrap();
        assert_eq!(w.previous(), Window::new(40, 100));
        assert_eq!(Window::new(30, 160).unwrap().previous(), Window::new(0, 30));
        assert_eq!(Window::new(0, 160).unwrap().previous(), None);
    }

    #[test]
    fn parses_times() {
        assert_eq!(t("1970-01-01"), 0);
        assert_eq!(t("2024-03-01"), 1_709_251_200);
        assert_eq!(t("2024-03-01T00:00:00Z"), 1_709_251_200);
        assert_eq!(t("2024-03-01T02:00:00+02:00"), 1_709_251_200);
        assert_eq!(t("2024-03-01T02:00:00 02:00"), 1_709_251_200);
        assert_eq!(t("2024-03-01T00:00:00.999Z"), 1_709_251_200);
        let err = parse_time("from", "yesterday").unwrap_err();
        assert!(err.starts_with("from:"), "{err}");
        let err = parse_time("to", "1969-12-31").unwrap_err();
        assert!(err.starts_with("to:"), "{err}");
        assert!(parse_time("to", "2024-02-30").is_err());
    }

    #[test]
    fn resolves_windows() {
        let now = t("2024-03-31T12:00:00Z");
        let w = resolve_window(None, None, now).unwrap();
        assert_eq!((w.from(), w.to()), (t("2024-03-01T12:00:00Z"), now));
        let w = resolve_window(Some("2024-03-10"), None, now).unwrap();
        assert_eq!((w.from(), w.to()), (t("2024-03-10"), now));
        let w = resolve_window(None, Some("2024-02-01"), now).unwrap();
        assert_eq!((w.from(), w.to()), (t("2024-01-02"), t("2024-02-01")));
        let err = resolve_window(Some("2024-03-10"), Some("2024-03-10"), now).unwrap_err();
        assert!(err.starts_with("from:"), "{err}");
        let err = resolve_window(Some("2024-03-10"), Some("soon"), now).unwrap_err();
        assert!(err.starts_with("to:"), "{err}");
        assert_eq!(w.from_rfc3339(), "2024-01-02T00:00:00Z");
    }
}
