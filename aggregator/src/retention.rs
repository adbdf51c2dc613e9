//! Rollup retention (SPEC §6): whole partitions of `rollup_minute`
//! (daily partitions, 7 days by default) and of the hour
//! tables (monthly, 400 days) are dropped once every bucket in them is
//! older than the retention; the day tables (yearly) are kept forever
//! unless configured, and `scope_total` always.
//!
//! Interplay with exactly-once recovery: a table's high-water mark may drop
//! when the partition holding its highest `max_seq` is dropped. Recovery
//! therefore only recomputes buckets at or after [`keep_from`], so it never
//! re-adds rows to a partition that still holds them (see ARCHITECTURE.md).
//! Retention runs under the write half of the lock whose read half each
//! batch holds, so it never interleaves with a batch.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

use badgepulse_contract::tables::Tier;

/// The start of the partition holding `t` for granularity `g`.
fn partition_start(g: Tier, t: DateTime<Utc>) -> DateTime<Utc> {
    let d = t.date_naive();
    let start = match g {
        Tier::Minute => d,
        Tier::Hour => NaiveDate::from_ymd_opt(d.year(), d.month(), 1).expect("valid date"),
        Tier::Day => NaiveDate::from_ymd_opt(d.year(), 1, 1).expect("valid date"),
    };
    Utc.from_utc_datetime(&start.and_hms_opt(0, 0, 0).expect("valid time"))
}

/// The oldest bucket time still kept at `now` with `days` of retention
/// (`None`: keep everything): the start of the partition holding
/// `now - days`.
pub fn keep_from(g: Tier, days: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (days > 0).then(|| partition_start(g, now - Duration::days(i64::from(days))))
}

/// The start of the partition named `id` (`system.parts.partition`, e.g.
/// `20260301`, `202603`, `2026`).
pub fn parse_partition(g: Tier, id: &str) -> Option<DateTime<Utc>> {
    let n: u32 = id.trim_matches('\'').parse().ok()?;
    let date = match g {
        Tier::Minute => NaiveDate::from_ymd_opt((n / 10_000) as i32, n / 100 % 100, n % 100)?,
        Tier::Hour => NaiveDate::from_ymd_opt((n / 100) as i32, n % 100, 1)?,
        Tier::Day => NaiveDate::from_ymd_opt(n as i32, 1, 1)?,
    };
    Some(Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?))
}

/// Which of `partitions` to drop: those starting before `keep_from`.
pub fn expired(g: Tier, partitions: &[String], keep_from: DateTime<Utc>) -> Vec<&str> {
    partitions
        .iter()
        .filter(|p| parse_partition(g, p).is_some_and(|start| start < keep_from))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn keep_from_is_a_partition_start() {
        let now = t("2026-03-10T15:30:00Z");
        assert_eq!(
            keep_from(Tier::Minute, 7, now),
            Some(t("2026-03-03T00:00:00Z"))
        );
        assert_eq!(
            keep_from(Tier::Hour, 400, now),
            Some(t("2025-02-01T00:00:00Z"))
        );
        assert_eq!(keep_from(Tier::Day, 0, now), None);
        // 800 days before 2026-03-10 is 2023-12-31.
        assert_eq!(
            keep_from(Tier::Day, 800, now),
            Some(t("2023-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn partitions_parse_and_expire() {
        let parts: Vec<String> = ["20260301", "20260302", "20260303", "20260310", "garbage"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let keep = t("2026-03-03T00:00:00Z");
        assert_eq!(
            expired(Tier::Minute, &parts, keep),
            vec!["20260301", "20260302"]
        );
        assert_eq!(
            parse_partition(Tier::Hour, "202602"),
            Some(t("2026-02-01T00:00:00Z"))
        );
        assert_eq!(
            parse_partition(Tier::Day, "2026"),
            Some(t("2026-01-01T00:00:00Z"))
        );
        assert_eq!(parse_partition(Tier::Minute, "20261341"), None);
    }
}
