//! Time windows: parsing the `from`/`to` parameters (SPEC §8), a window
//! `[from, to)` and the one before it, and trend buckets (minute to
//! month). Pure.

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

    /// The window cut at UTC midnights: the whole UTC days it covers and
    /// the pieces of a day before and after them. A window within one
    /// day is all `head`.
    pub fn whole_days(&self) -> DaySplit {
        const DAY: u32 = 86_400;
        let first = self.from.div_ceil(DAY);
        let end = self.to / DAY;
        if first >= end {
            return DaySplit {
                head: Some(*self),
                days: None,
                tail: None,
            };
        }
        DaySplit {
            head: Window::new(self.from, first * DAY),
            days: Some((first, end)),
            tail: Window::new(end * DAY, self.to),
        }
    }

    pub fn from_rfc3339(&self) -> String {
        rfc3339(self.from)
    }

    pub fn to_rfc3339(&self) -> String {
        rfc3339(self.to)
    }
}

/// A window cut at UTC midnights ([`Window::whole_days`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaySplit {
    /// What lies before the first whole day.
    pub head: Option<Window>,
    /// The whole days, as UTC day numbers `[first, end)`.
    pub days: Option<(u32, u32)>,
    /// What lies after the last whole day.
    pub tail: Option<Window>,
}

impl DaySplit {
    /// The pieces of a day, head first.
    pub fn pieces(&self) -> impl Iterator<Item = Window> {
        self.head.into_iter().chain(self.tail)
    }
}

/// `2024-03-09T22:58:30Z`.
pub fn rfc3339(epoch_secs: u32) -> String {
    DateTime::<Utc>::from_timestamp(i64::from(epoch_secs), 0)
        .expect("u32 seconds are a valid time")
        .to_rfc3339_opts(SecondsFormat::Secs, true)
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
    /// The length of the window when `from` is not given, seconds.
    span: u32,
}

impl WindowSpec {
    /// The length of a window without `from`: 30 days.
    pub const DEFAULT_SPAN: u32 = 30 * 86_400;

    /// Parses `from`/`to`; errors name the parameter.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<WindowSpec, String> {
        Ok(WindowSpec {
            from: from.map(|v| parse_time("from", v)).transpose()?,
            to: to.map(|v| parse_time("to", v)).transpose()?,
            span: Self::DEFAULT_SPAN,
        })
    }

    /// This window with `span` seconds (instead of 30 days) before `to`
    /// when `from` is not given (the cohorts' default is a year).
    pub fn with_default_span(self, span: u32) -> WindowSpec {
        WindowSpec { span, ..self }
    }

    /// Whether the window ends now (no `to`).
    /// `from` and `to` as given (epoch seconds).
    pub fn bounds(&self) -> (Option<u32>, Option<u32>) {
        (self.from, self.to)
    }

    /// The default length in seconds (see [`WindowSpec::with_default_span`]).
    pub fn default_span(&self) -> u32 {
        self.span
    }

    pub fn up_to_now(&self) -> bool {
        self.to.is_none()
    }

    /// `[from, to)` covering every window this can resolve to: `to` is
    /// unbounded for a window up to now, and so is `from` without one.
    pub fn reach(&self) -> (u32, u32) {
        match (self.from, self.to) {
            (from, Some(to)) => (from.unwrap_or(to.saturating_sub(self.span)), to),
            (Some(from), None) => (from, u32::MAX),
            (None, None) => (0, u32::MAX),
        }
    }

    /// The window at `now`: `to` defaulting to `now`, `from` to the 30
    /// days (or the default span) before `to`. Errors name the parameter.
    pub fn at(&self, now: u32) -> Result<Window, String> {
        let to = self.to.unwrap_or(now);
        let from = self.from.unwrap_or(to.saturating_sub(self.span));
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

    #[test]
    fn whole_days_cut_a_window_at_utc_midnights() {
        let day = |s: &str| t(s) / 86_400;
        let w = Window::new(t("2025-03-01T10:00:00Z"), t("2025-03-04T06:30:00Z")).unwrap();
        let split = w.whole_days();
        assert_eq!(
            split.head,
            Window::new(t("2025-03-01T10:00:00Z"), t("2025-03-02T00:00:00Z"))
        );
        assert_eq!(
            split.days,
            Some((day("2025-03-02T00:00:00Z"), day("2025-03-04T00:00:00Z")))
        );
        assert_eq!(
            split.tail,
            Window::new(t("2025-03-04T00:00:00Z"), t("2025-03-04T06:30:00Z"))
        );
        assert_eq!(split.pieces().count(), 2);

        let aligned = Window::new(t("2025-03-01T00:00:00Z"), t("2025-03-03T00:00:00Z")).unwrap();
        let split = aligned.whole_days();
        assert_eq!((split.head, split.tail), (None, None));
        assert_eq!(
            split.days,
            Some((day("2025-03-01T00:00:00Z"), day("2025-03-03T00:00:00Z")))
        );

        // Less than a whole day, even across midnight: all head.
        let short = Window::new(t("2025-03-01T20:00:00Z"), t("2025-03-02T20:00:00Z")).unwrap();
        let split = short.whole_days();
        assert_eq!(
            (split.head, split.days, split.tail),
            (Some(short), None, None)
        );
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
        let year = live.with_default_span(365 * 86_400);
        assert_eq!(year.at(now).unwrap().from(), now - 365 * 86_400);
        assert_ne!(year, live, "a different default is a different window");
        let fixed_year = fixed.with_default_span(365 * 86_400);
        assert_eq!(fixed_year.reach(), (t("2023-03-11"), t("2024-03-10")));
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
