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

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};

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
    decompose_with(window, Source::Day, Retention::KEEP_ALL)
}

/// [`decompose`] with `coarsest` as the coarsest source used (a trend by
/// hour must not read whole days) and retention applied: a minute or hour
/// segment starting before `retention` keeps its buckets is answered from
/// raw `events` instead (adjacent raw pieces are joined). The invariant of
/// the module holds for the result.
pub fn decompose_with(window: Window, coarsest: Source, retention: Retention) -> Vec<Segment> {
    let mut pieces = Vec::with_capacity(7);
    split(
        u64::from(window.from),
        u64::from(window.to),
        coarsest,
        &mut pieces,
    );
    read_from_raw(pieces, |seg| match seg.source {
        Source::Minute => seg.from < retention.minute_from,
        Source::Hour => seg.from < retention.hour_from,
        Source::Day | Source::Raw => false,
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
            seg.source = Source::Raw;
        }
        match out.last_mut() {
            Some(last) if last.source == Source::Raw && seg.source == Source::Raw => {
                last.to = seg.to;
            }
            _ => out.push(seg),
        }
    }
    out
}

/// `segments` with every minute piece read from raw `events` instead
/// (adjacent raw pieces joined), for sources that have no minute table
/// (the `scope_*` tables). The module's invariant still holds.
pub fn minutes_from_raw(segments: &[Segment]) -> Vec<Segment> {
    read_from_raw(segments.iter().copied(), |seg| seg.source == Source::Minute)
}

/// The bucket size of a trend (SPEC §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
    /// ISO weeks, starting on Monday 00:00 UTC.
    Week,
    /// Calendar months, starting on the 1st 00:00 UTC.
    Month,
}

impl Granularity {
    pub const ALL: [Granularity; 5] = [
        Granularity::Minute,
        Granularity::Hour,
        Granularity::Day,
        Granularity::Week,
        Granularity::Month,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Minute => "minute",
            Granularity::Hour => "hour",
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Granularity> {
        Granularity::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// The coarsest rollup whose buckets nest inside this granularity's
    /// buckets: a window for a trend is decomposed down from it.
    pub fn source(self) -> Source {
        match self {
            Granularity::Minute => Source::Minute,
            Granularity::Hour => Source::Hour,
            Granularity::Day | Granularity::Week | Granularity::Month => Source::Day,
        }
    }

    /// The start of the bucket holding `t` (epoch seconds, UTC). A week
    /// may start before 1970 (1970-01-01 was a Thursday).
    pub fn floor(self, t: i64) -> i64 {
        match self {
            Granularity::Minute => t.div_euclid(60) * 60,
            Granularity::Hour => t.div_euclid(3_600) * 3_600,
            Granularity::Day => t.div_euclid(86_400) * 86_400,
            Granularity::Week => {
                let day = t.div_euclid(86_400);
                // Day 0 (1970-01-01) is a Thursday: 3 days after Monday.
                (day - (day + 3).rem_euclid(7)) * 86_400
            }
            Granularity::Month => {
                let d = DateTime::<Utc>::from_timestamp(t, 0)
                    .expect("in range")
                    .date_naive();
                month_start(d.year(), d.month())
            }
        }
    }

    /// The start of the bucket after the one starting at `start`.
    pub fn next(self, start: i64) -> i64 {
        match self {
            Granularity::Minute => start + 60,
            Granularity::Hour => start + 3_600,
            Granularity::Day => start + 86_400,
            Granularity::Week => start + 7 * 86_400,
            Granularity::Month => {
                let d = DateTime::<Utc>::from_timestamp(start, 0)
                    .expect("in range")
                    .date_naive();
                if d.month() == 12 {
                    month_start(d.year() + 1, 1)
                } else {
                    month_start(d.year(), d.month() + 1)
                }
            }
        }
    }
}

fn month_start(year: i32, month: u32) -> i64 {
    NaiveDate::from_ymd_opt(year, month, 1)
        .expect("valid month")
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp()
}

/// The start of every `granularity` bucket overlapping `window`, in order;
/// `Err(n)` when there are more than `max` (`n` is `max + 1`: counting
/// stops there).
pub fn buckets(window: Window, granularity: Granularity, max: usize) -> Result<Vec<i64>, usize> {
    let mut out = Vec::new();
    let mut t = granularity.floor(i64::from(window.from));
    while t < i64::from(window.to) {
        if out.len() == max {
            return Err(max + 1);
        }
        out.push(t);
        t = granularity.next(t);
    }
    Ok(out)
}

/// `rfc3339` for a bucket start, which may precede 1970 (ISO weeks).
pub fn rfc3339_i64(epoch_secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(epoch_secs, 0)
        .expect("in range")
        .to_rfc3339_opts(SecondsFormat::Secs, true)
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

/// The window a request asked for: `from`/`to` as given; without `to` it
/// ends *now*, whenever it is resolved ([`WindowSpec::at`]), so that an
/// answer kept up to date (`views.rs`) keeps following the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowSpec {
    from: Option<u32>,
    to: Option<u32>,
}

impl WindowSpec {
    /// The length of a window without `from`: 30 days.
    pub const DEFAULT_SPAN: u32 = 30 * 86_400;

    /// Parses `from`/`to`; errors name the parameter.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<WindowSpec, String> {
        Ok(WindowSpec {
            from: from.map(|v| parse_time("from", v)).transpose()?,
            to: to.map(|v| parse_time("to", v)).transpose()?,
        })
    }

    /// Whether the window ends now (no `to`).
    pub fn up_to_now(&self) -> bool {
        self.to.is_none()
    }

    /// `[from, to)` covering every window this can resolve to: `to` is
    /// unbounded for a window up to now, and so is `from` without one.
    pub fn reach(&self) -> (u32, u32) {
        match (self.from, self.to) {
            (from, Some(to)) => (from.unwrap_or(to.saturating_sub(Self::DEFAULT_SPAN)), to),
            (Some(from), None) => (from, u32::MAX),
            (None, None) => (0, u32::MAX),
        }
    }

    /// The window at `now`: `to` defaulting to `now`, `from` to the 30
    /// days before `to`. Errors name the parameter.
    pub fn at(&self, now: u32) -> Result<Window, String> {
        let to = self.to.unwrap_or(now);
        let from = self.from.unwrap_or(to.saturating_sub(Self::DEFAULT_SPAN));
        Window::new(from, to).ok_or_else(|| {
            format!(
                "from: must be before to ({} is not before {})",
                rfc3339(from),
                rfc3339(to)
            )
        })
    }
}

/// The window of a request at `now` (see [`WindowSpec`]).
pub fn resolve_window(from: Option<&str>, to: Option<&str>, now: u32) -> Result<Window, String> {
    WindowSpec::parse(from, to)?.at(now)
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
    fn a_window_without_to_follows_the_clock() {
        let now = t("2024-03-31T12:00:00Z");
        let live = WindowSpec::parse(None, None).unwrap();
        assert!(live.up_to_now());
        assert_eq!(live.at(now + 60).unwrap().to(), now + 60);
        assert_eq!(live.reach(), (0, u32::MAX));
        let since = WindowSpec::parse(Some("2024-03-10"), None).unwrap();
        assert_eq!(since.at(now).unwrap().from(), t("2024-03-10"));
        assert_eq!(since.reach(), (t("2024-03-10"), u32::MAX));
        let fixed = WindowSpec::parse(None, Some("2024-03-10")).unwrap();
        assert!(!fixed.up_to_now());
        assert_eq!(fixed.at(now), fixed.at(now + 86_400));
        assert_eq!(fixed.reach(), (t("2024-02-09"), t("2024-03-10")));
        let future = WindowSpec::parse(Some("2024-04-01"), None).unwrap();
        assert!(future.at(now).unwrap_err().starts_with("from:"));
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

    #[test]
    fn expired_rollups_fall_back_to_raw_events() {
        let w = Window::new(t("2024-03-09T22:58:30Z"), t("2024-03-12T01:02:15Z")).unwrap();
        // Minute buckets kept only from 2024-03-11, hours from 2024-03-10.
        let r = Retention {
            minute_from: t("2024-03-11T00:00:00Z"),
            hour_from: t("2024-03-10T00:00:00Z"),
        };
        assert_eq!(
            decompose_with(w, Source::Day, r),
            vec![
                // Raw seconds, expired minutes and expired hours, joined.
                seg(Source::Raw, "2024-03-09T22:58:30Z", "2024-03-10T00:00:00Z"),
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
        // Everything expired: days and raw events only.
        let all = Retention {
            minute_from: u32::MAX,
            hour_from: u32::MAX,
        };
        assert_eq!(
            decompose_with(w, Source::Day, all),
            vec![
                seg(Source::Raw, "2024-03-09T22:58:30Z", "2024-03-10T00:00:00Z"),
                seg(Source::Day, "2024-03-10", "2024-03-12"),
                seg(Source::Raw, "2024-03-12T00:00:00Z", "2024-03-12T01:02:15Z"),
            ]
        );
        // A segment straddling the retention boundary is read raw whole.
        let r = Retention {
            minute_from: 0,
            hour_from: t("2024-03-12T00:30:00Z"),
        };
        assert_eq!(
            decompose_with(w, Source::Day, r)[4..],
            [
                seg(Source::Raw, "2024-03-12T00:00:00Z", "2024-03-12T01:00:00Z"),
                seg(
                    Source::Minute,
                    "2024-03-12T01:00:00Z",
                    "2024-03-12T01:02:00Z"
                ),
                seg(Source::Raw, "2024-03-12T01:02:00Z", "2024-03-12T01:02:15Z")
            ]
        );
        assert_eq!(
            decompose_with(w, Source::Day, Retention::KEEP_ALL),
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
    fn minutes_from_raw_joins_the_edges() {
        // 2024-03-09T22:58:30Z to 2024-03-12T01:02:15Z: raw, minute, hour,
        // day, hour, minute, raw.
        let w = Window::new(1_710_025_110, 1_710_205_335).unwrap();
        let segs = minutes_from_raw(&decompose(w));
        let sources: Vec<Source> = segs.iter().map(|s| s.source).collect();
        assert_eq!(
            sources,
            [
                Source::Raw,
                Source::Hour,
                Source::Day,
                Source::Hour,
                Source::Raw
            ]
        );
        assert_eq!((segs[0].from, segs[0].to), (1_710_025_110, 1_710_025_200));
        assert_eq!((segs[4].from, segs[4].to), (1_710_205_200, 1_710_205_335));
        assert!(segs.windows(2).all(|p| p[0].to == p[1].from));
        // A minute trend's window is read from events alone.
        let minutes = minutes_from_raw(&decompose_with(w, Source::Minute, Retention::KEEP_ALL));
        assert_eq!(
            minutes,
            [Segment {
                source: Source::Raw,
                from: w.from(),
                to: w.to()
            }]
        );
    }

    #[test]
    fn coarsest_source_limits_the_decomposition() {
        let w = Window::new(t("2024-03-09T22:58:30Z"), t("2024-03-12T01:02:15Z")).unwrap();
        for (coarsest, allowed) in [
            (Source::Hour, [Source::Hour, Source::Minute, Source::Raw]),
            (Source::Minute, [Source::Minute, Source::Raw, Source::Raw]),
        ] {
            let segs = decompose_with(w, coarsest, Retention::KEEP_ALL);
            assert!(segs.iter().all(|s| allowed.contains(&s.source)), "{segs:?}");
            assert_eq!(segs.first().unwrap().from, w.from());
            assert_eq!(segs.last().unwrap().to, w.to());
            for pair in segs.windows(2) {
                assert_eq!(pair[0].to, pair[1].from);
            }
        }
        let hours = decompose_with(w, Source::Hour, Retention::KEEP_ALL);
        assert_eq!(
            hours[2],
            seg(Source::Hour, "2024-03-09T23:00:00Z", "2024-03-12T01:00:00Z")
        );
    }

    fn ts(s: &str) -> i64 {
        i64::from(t(s))
    }

    #[test]
    fn granularity_floors() {
        let x = ts("2024-03-13T10:42:17Z"); // a Wednesday
        assert_eq!(Granularity::Minute.floor(x), ts("2024-03-13T10:42:00Z"));
        assert_eq!(Granularity::Hour.floor(x), ts("2024-03-13T10:00:00Z"));
        assert_eq!(Granularity::Day.floor(x), ts("2024-03-13"));
        assert_eq!(Granularity::Week.floor(x), ts("2024-03-11"));
        assert_eq!(Granularity::Month.floor(x), ts("2024-03-01"));
        // ISO weeks: Monday is its own week start, Sunday belongs to the
        // week before; weeks cross month and year boundaries.
        assert_eq!(Granularity::Week.floor(ts("2024-03-11")), ts("2024-03-11"));
        assert_eq!(
            Granularity::Week.floor(ts("2024-03-17T23:59:59Z")),
            ts("2024-03-11")
        );
        assert_eq!(Granularity::Week.floor(ts("2025-01-01")), ts("2024-12-30"));
        assert_eq!(Granularity::Week.floor(0), -3 * 86_400);
        // Months of every length, leap February.
        assert_eq!(Granularity::Month.next(ts("2024-01-01")), ts("2024-02-01"));
        assert_eq!(Granularity::Month.next(ts("2024-02-01")), ts("2024-03-01"));
        assert_eq!(Granularity::Month.next(ts("2024-12-01")), ts("2025-01-01"));
        assert_eq!(Granularity::Week.next(ts("2024-12-30")), ts("2025-01-06"));
        for g in Granularity::ALL {
            assert_eq!(Granularity::parse(g.as_str()), Some(g));
        }
        assert_eq!(Granularity::parse("year"), None);
    }

    #[test]
    fn buckets_cover_every_overlapping_interval() {
        let w = Window::new(t("2024-02-28T12:00:00Z"), t("2024-04-02T00:00:00Z")).unwrap();
        assert_eq!(
            buckets(w, Granularity::Month, 100).unwrap(),
            [ts("2024-02-01"), ts("2024-03-01"), ts("2024-04-01")]
        );
        assert_eq!(
            buckets(w, Granularity::Week, 100).unwrap(),
            [
                ts("2024-02-26"),
                ts("2024-03-04"),
                ts("2024-03-11"),
                ts("2024-03-18"),
                ts("2024-03-25"),
                ts("2024-04-01")
            ]
        );
        let days = buckets(w, Granularity::Day, 100).unwrap();
        assert_eq!(days.len(), 34);
        assert_eq!(days[0], ts("2024-02-28"));
        assert_eq!(days[2], ts("2024-03-01"), "2024 is a leap year");
        // An exact end excludes the bucket starting there.
        let w = Window::new(t("2024-03-01"), t("2024-03-02")).unwrap();
        assert_eq!(buckets(w, Granularity::Hour, 24).unwrap().len(), 24);
        assert_eq!(buckets(w, Granularity::Hour, 23), Err(24));
        let one = Window::new(t("2024-03-01T10:00:05Z"), t("2024-03-01T10:00:06Z")).unwrap();
        assert_eq!(
            buckets(one, Granularity::Minute, 1).unwrap(),
            [ts("2024-03-01T10:00:00Z")]
        );
        assert_eq!(rfc3339_i64(-3 * 86_400), "1969-12-29T00:00:00Z");
    }
}
