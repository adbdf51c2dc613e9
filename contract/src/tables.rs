//! ClickHouse names and expressions that the aggregator (which writes the
//! tables) and the exporter (which reads them) must agree on: the rollup
//! tiers and their tables, and the aggregate states of a derived row,
//! which the aggregator's materialised views and the exporter's raw-events
//! pieces of a window must compute alike so that `…Merge` over both is
//! exact. The DDL itself lives in `badgepulse_aggregator::schema`; the
//! layout is argued in ARCHITECTURE.md and described for analysts in
//! docs/clickhouse.md.

/// The precision `K` of the `uniqCombined(K)` distinct-count states. With
/// `K = 18` a state keeps an exact set of 32-bit hashes up to 16,384
/// values and becomes a HyperLogLog of 2^18 registers beyond (standard
/// error 0.2 %), which is SPEC §7's "exact up to 10,000, within 2 %
/// beyond". Readers must merge with the same `K`.
pub const SKETCH_PRECISION: u8 = 18;

/// Measures per scope and calendar month (UTC).
pub const SCOPE_MONTH: &str = "scope_month";

/// All-time measures per scope (no time bucket).
pub const SCOPE_TOTAL: &str = "scope_total";

/// All-time distribution counts per org.
pub const ROLLUP_TOTAL: &str = "rollup_total";

/// Per org and UTC day, the highest stream sequence of a view that has a
/// viewer key: what the sealed unique-viewer counts must have seen.
pub const VIEW_DAYS: &str = "view_days";

/// Unique viewers per closed UTC day and scope, sealed from `events`.
pub const VIEWER_DAYS: &str = "viewer_days";

/// Unique viewers per hour of a closed UTC day, org scope, sealed.
pub const VIEWER_HOURS: &str = "viewer_hours";

/// Per org and award day, the highest stream sequence of an event that
/// changed the cohort first awarded that day: what a sealed
/// [`LIFECYCLE_DAYS`] row must have seen. Every lifecycle row touches the
/// day it is filed under (`events.awarded_on`), and an award that moves
/// an assertion to an earlier day also touches the day it leaves
/// (`events.award_known_on`). Named to sort after `assertion_lifecycle`
/// and `lifecycle_refiled`, which ClickHouse 18.16 fills first (name
/// order); on releases that need not, the aggregator seals a partition
/// only once a batch has brought its tables up to date.
pub const LIFECYCLE_TOUCHES: &str = "lifecycle_touches";

/// What the cohort first awarded on one UTC day holds, per org, sealed by
/// the aggregator from `assertion_lifecycle` ([`cohort_day_summaries`]):
/// its lifecycle stage counts (SPEC §7.6 nesting), its awards and accepts
/// per quarter hour (the timing), the days its assertions reached each
/// stage (the cohorts) and their accept and share delays in days (the
/// impact). The all-time lifecycle of `/metrics` and the org-wide
/// timing, cohorts and impact add these up instead of reading every
/// assertion.
pub const LIFECYCLE_DAYS: &str = "lifecycle_days";

/// `SELECT org_id, day, hi`: the award days whose cohort changed after
/// their last seal (or was never sealed), with `hi` their last change,
/// from `touches` (`lifecycle_touches`) and `days` (`lifecycle_days`),
/// both restricted by `condition` (` WHERE …` or empty). The aggregator
/// lists the days to seal with it, the exporter the days to count.
pub fn unsealed_lifecycle_days(touches: &str, days: &str, condition: &str) -> String {
    format!(
        "SELECT org_id, day, hi FROM \
         (SELECT org_id, day, maxMerge(max_seq) AS hi FROM {touches}{condition} GROUP BY org_id, day) AS t \
         ANY LEFT JOIN \
         (SELECT org_id, day, max(sealed_seq) AS sealed FROM {days}{condition} GROUP BY org_id, day) AS s \
         USING org_id, day WHERE sealed < hi"
    )
}

/// The finest slot of the timing (SPEC §7.8) a sealed award day counts
/// its awards in: UTC quarter hours, of which every slot the exporter
/// uses (an hour, 30 or 15 minutes, `model::timing::slot_secs`) is a
/// whole number.
pub const AWARD_SLOT_SECS: u32 = 900;

/// The delays of the timing's `accepted_within` (SPEC §7.8): JSON name
/// and seconds.
pub const ACCEPT_WITHIN: [(&str, u32); 5] = [
    ("1h", 3_600),
    ("1d", 86_400),
    ("7d", 7 * 86_400),
    ("30d", 30 * 86_400),
    ("90d", 90 * 86_400),
];

/// The largest impact horizon (SPEC §7.7), days: a sealed award day
/// counts its accepts and shares by whole days after the award up to it,
/// and every later one as one day more.
pub const MAX_HORIZON_DAYS: u32 = 365;

/// The measures of one award slot in `lifecycle_days.slot_keys`
/// (`slot × 8 + measure`): awarded, accepted, then accepted within each
/// of [`ACCEPT_WITHIN`].
pub const SLOT_MEASURES: u32 = 8;

/// The columns of a `lifecycle_days` row that [`cohort_day_summaries`]
/// computes, in its order (after `org_id, day`).
pub const SUMMARY_COLUMNS: &str = "awarded, accepted, shared, viewed, slot_keys, slot_counts, \
     reach_keys, reach_counts, delay_keys, delay_counts";

/// `SELECT org_id, day, awarded, accepted, shared, viewed, slot_keys,
/// slot_counts, reach_keys, reach_counts, delay_keys, delay_counts`: what
/// a `lifecycle_days` row holds of the cohorts first awarded on the org
/// days that `days` (a `SELECT org_id, day` with `day` a `Date`) lists,
/// from the rows of `lifecycle` (`assertion_lifecycle`) and `refiled`
/// (`lifecycle_refiled`), both table names as the query must spell them.
///
/// - `awarded` … `viewed`: the stage counts, SPEC §7.6 nesting.
/// - `slot_keys`/`slot_counts` (the timing, SPEC §7.8): per UTC quarter
///   hour `q` of the award ([`AWARD_SLOT_SECS`]), key `q × 8 + m` counts
///   the assertions awarded (`m` = 0), accepted (1) and accepted within
///   each of [`ACCEPT_WITHIN`] (2 to 6).
/// - `reach_keys`/`reach_counts` (the cohorts, SPEC §7.9): key `d × 4 + s`
///   counts the assertions that reached stage `s` (1 accepted, 2 shared,
///   3 viewed: that stage's first event and every earlier stage's) on UTC
///   day number `d` (the latest of those first events).
/// - `delay_keys`/`delay_counts` (the impact, SPEC §7.7): key `n × 2`
///   counts the assertions first accepted at most `n` whole days after
///   the award (0 for an accept at or before it; [`MAX_HORIZON_DAYS`] + 1
///   for anything later), key `n × 2 + 1` those also shared, `n` then
///   covering the accept and the first share.
///
/// Each map lists only keys with a count (sums of ones: no zero is ever
/// summed, so no release of ClickHouse drops a key). A cohort's rows are
/// those filed under its days, those filed before any award was known
/// (day 0), and every row of an assertion whose earlier award arrived
/// after rows were filed under a later day; an assertion counts on the
/// day of its first award among the rows read, unless an award of a day
/// before that was refiled (its first award is on a day not listed,
/// whose rows were not read). An assertion is its `(org_id,
/// assertion_id)`, as the aggregator files it: an id awarded under two
/// badge classes counts once, on its first award. The aggregator seals
/// award days with it; the exporter counts the days not sealed yet with
/// it.
pub fn cohort_day_summaries(lifecycle: &str, refiled: &str, days: &str) -> String {
    // The assertions an earlier award moved into the days, and the days
    // their rows are filed under: conditions on the sorting key's
    // `(org_id, awarded_on)` keep every branch a read of ranges (a bare
    // `(org_id, assertion_id) IN …` in the OR would read all of the
    // table's rows).
    let moved = format!(
        "SELECT org_id, assertion_id FROM {refiled} WHERE (org_id, awarded_on) IN ({days})"
    );
    let within: String = ACCEPT_WITHIN
        .iter()
        .map(|(_, secs)| format!(", acc AND to_accept <= {secs}"))
        .collect();
    let late = MAX_HORIZON_DAYS + 1;
    let whole_days =
        |delay: &str| format!("least({late}, greatest(0, intDiv({delay} + 86399, 86400)))");
    let map = |keys: &str, name: &str| {
        format!(
            "tupleElement(sumMap({keys}, arrayMap(k -> toUInt64(1), {keys})), 1) AS {name}_keys, \
             tupleElement(sumMap({keys}, arrayMap(k -> toUInt64(1), {keys})), 2) AS {name}_counts"
        )
    };
    format!(
        "SELECT org_id, day, count() AS awarded, countIf(acc) AS accepted, countIf(shd) AS shared, \
         countIf(vwd) AS viewed, {}, {}, {} \
         FROM (SELECT org_id, toDate(aw) AS day, ac_n > 0 AS acc, acc AND sh_n > 0 AS shd, shd AND vw_n > 0 AS vwd, \
         toInt64(ac) - toInt64(aw) AS to_accept, \
         arrayFilter((k, f) -> f, arrayMap(m -> toUInt16(intDiv(toUInt32(aw) % 86400, {AWARD_SLOT_SECS}) * {SLOT_MEASURES} + m), \
         range({})), [toUInt8(1), acc{within}]) AS sk, \
         arrayFilter((k, f) -> f, [toUInt32(intDiv(toUInt32(ac), 86400) * 4 + 1), \
         toUInt32(intDiv(greatest(toUInt32(ac), toUInt32(sh)), 86400) * 4 + 2), \
         toUInt32(intDiv(greatest(greatest(toUInt32(ac), toUInt32(sh)), toUInt32(vw)), 86400) * 4 + 3)], \
         [acc, shd, vwd]) AS rk, \
         {} AS accept_days, greatest(accept_days, {}) AS share_days, \
         arrayFilter((k, f) -> f, [toUInt16(accept_days * 2), toUInt16(share_days * 2 + 1)], [acc, shd]) AS dk \
         FROM (SELECT org_id, assertion_id, minIfMerge(first_awarded) AS aw, minIfMerge(first_accepted) AS ac, \
         minIfMerge(first_shared) AS sh, minIfMerge(first_viewed) AS vw, countIfMerge(awarded) AS aw_n, \
         countIfMerge(accepted) AS ac_n, countIfMerge(shares) AS sh_n, countIfMerge(views) AS vw_n \
         FROM {lifecycle} WHERE (org_id, awarded_on) IN ({days}) \
         OR (awarded_on = toDate(0) AND org_id IN (SELECT org_id FROM ({days}))) \
         OR ((org_id, awarded_on) IN (SELECT org_id, refiled_from FROM {refiled} WHERE (org_id, assertion_id) IN ({moved})) \
         AND (org_id, assertion_id) IN ({moved})) \
         GROUP BY org_id, assertion_id) AS a \
         ANY LEFT JOIN (SELECT org_id, assertion_id, min(awarded_on) AS first_refiled FROM {refiled} \
         WHERE org_id IN (SELECT org_id FROM ({days})) GROUP BY org_id, assertion_id) AS r USING org_id, assertion_id \
         WHERE aw_n > 0 AND (org_id, toDate(aw)) IN ({days}) \
         AND (first_refiled = toDate(0) OR first_refiled >= toDate(aw))) \
         GROUP BY org_id, day",
        map("sk", "slot"),
        map("rk", "reach"),
        map("dk", "delay"),
        2 + ACCEPT_WITHIN.len(),
        whole_days("to_accept"),
        whole_days("(toInt64(sh) - toInt64(aw))"),
    )
}

/// The scope levels of the `scope_*` and `viewer_days` tables, as the
/// materialised views `ARRAY JOIN` them: every event is counted once in
/// its org's row (0), its issuer's (1) and its badge class's (2).
pub const SCOPE_LEVELS: &str = "[0, 1, 2]";

/// `scope_issuer_id` and `scope_badge_class_id` of an event at
/// `level` (see [`SCOPE_LEVELS`]; the `scope_level` column of the bucketed
/// scope tables is the same number, computed from the two).
pub const SCOPE_COLUMNS: &str = "if(level >= 1, issuer_id, '') AS scope_issuer_id, \
     if(level = 2, badge_class_id, '') AS scope_badge_class_id";

/// The measures a `scope_*` row holds, as `(column, state expression over
/// events columns, merge expression)`. The aggregator's views and the
/// exporter's raw-event pieces compute the states alike, so `…Merge` over
/// both is exact. Unique viewers are not among them: they are sealed per
/// day ([`VIEWER_DAYS`]).
pub fn scope_measures() -> [(&'static str, String, String); 7] {
    let k = SKETCH_PRECISION;
    let distinct = |column: &'static str, event_type: &str| {
        (
            column,
            format!("uniqCombinedIfState({k})(assertion_id, type = '{event_type}')"),
            format!("uniqCombinedIfMerge({k})({column})"),
        )
    };
    let number = |column: &'static str, event_type: &str| {
        (
            column,
            format!("countIfState(type = '{event_type}')"),
            format!("countIfMerge({column})"),
        )
    };
    [
        distinct("awarded", "badge.awarded"),
        distinct("accepted", "badge.accepted"),
        distinct("shared", "badge.shared"),
        number("shares", "badge.shared"),
        number("views", "badge.viewed"),
        distinct("revoked", "badge.revoked"),
        (
            "classes",
            format!("uniqCombinedState({k})(org_id, badge_class_id)"),
            format!("uniqCombinedMerge({k})(classes)"),
        ),
    ]
}

/// The states of a `scope_*` row computed from `events` columns, each
/// `AS` its column: `events` (the number of events, which ranks orgs and
/// issuers by activity) and the [`scope_measures`].
pub fn scope_states() -> String {
    std::iter::once("countState() AS events".to_owned())
        .chain(
            scope_measures()
                .iter()
                .map(|(column, state, _)| format!("{state} AS {column}")),
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// The distribution dimensions of the `rollup_*` tables, by their
/// `Enum8` code, with the `events` column that gives each dimension's
/// value and the event type that carries it.
pub const DIMENSIONS: [(&str, u8, &str, &str); 4] = [
    ("award_method", 1, "toString(award_method)", "badge.awarded"),
    (
        "share_channel",
        2,
        "toString(share_channel)",
        "badge.shared",
    ),
    ("view_source", 3, "toString(view_source)", "badge.viewed"),
    ("view_country", 4, "country", "badge.viewed"),
];

/// The `Enum8` type of the `rollup_*` tables' `dimension` column.
pub fn dimension_enum() -> String {
    let values: Vec<String> = DIMENSIONS
        .iter()
        .map(|(name, code, _, _)| format!("'{name}' = {code}"))
        .collect();
    format!("Enum8({})", values.join(", "))
}

/// The states of a `rollup_*` row computed from `events` columns, where
/// `is_award_method` is a `UInt8` expression telling whether the row's
/// dimension is `award_method` (whose counts are distinct assertions, the
/// others' event counts): `events` and `assertions`.
pub fn rollup_states(is_award_method: &str) -> String {
    format!(
        "countState() AS events, uniqCombinedIfState({SKETCH_PRECISION})(assertion_id, {is_award_method}) AS assertions"
    )
}

/// The count of a `rollup_*` dimension's value merged from its states:
/// distinct assertions for award methods, events for the others.
pub fn rollup_count(dimension: &str) -> String {
    if dimension == "award_method" {
        format!("uniqCombinedIfMerge({SKETCH_PRECISION})(assertions)")
    } else {
        "countMerge(events)".to_owned()
    }
}

/// A rollup tier: the bucket length of the derived tables that hold
/// bucketed rows (SPEC §6: minute, hour and day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    Minute,
    Hour,
    Day,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Minute, Tier::Hour, Tier::Day];

    /// The distribution rollup of this tier (org scope).
    pub fn rollup_table(self) -> &'static str {
        match self {
            Tier::Minute => "rollup_minute",
            Tier::Hour => "rollup_hour",
            Tier::Day => "rollup_day",
        }
    }

    /// The table of per-scope measures of this tier, if there is one:
    /// there are no minute scope rows (readers take sub-hour pieces of a
    /// window from `events`, sorted for it), and hour rows are kept for the
    /// org scope only.
    pub fn scope_table(self) -> Option<&'static str> {
        match self {
            Tier::Minute => None,
            Tier::Hour => Some("scope_hour"),
            Tier::Day => Some("scope_day"),
        }
    }

    /// The sealed unique-viewer table of this tier, if there is one.
    pub fn viewer_table(self) -> Option<&'static str> {
        match self {
            Tier::Minute => None,
            Tier::Hour => Some(VIEWER_HOURS),
            Tier::Day => Some(VIEWER_DAYS),
        }
    }

    /// The bucketed tables of this tier, which its retention drops.
    pub fn tables(self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.rollup_table())
            .chain(self.scope_table())
            .chain(self.viewer_table())
    }

    /// The tier of a bucketed table; `None` for the others.
    pub fn of_table(table: &str) -> Option<Tier> {
        Tier::ALL
            .into_iter()
            .find(|t| t.tables().any(|n| n == table))
    }

    /// The ClickHouse function that maps a time to its bucket's start.
    pub fn bucket_fn(self) -> &'static str {
        match self {
            Tier::Minute => "toStartOfMinute",
            Tier::Hour => "toStartOfHour",
            Tier::Day => "toStartOfDay",
        }
    }

    /// Bucket length in seconds.
    pub fn step_secs(self) -> u32 {
        match self {
            Tier::Minute => 60,
            Tier::Hour => 3_600,
            Tier::Day => 86_400,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucketed_table_has_one_tier() {
        for tier in Tier::ALL {
            for table in tier.tables() {
                assert_eq!(Tier::of_table(table), Some(tier));
            }
        }
        assert_eq!(Tier::of_table(SCOPE_TOTAL), None);
        assert_eq!(Tier::of_table(SCOPE_MONTH), None);
        assert_eq!(Tier::of_table("events"), None);
    }

    #[test]
    fn scope_states_name_every_column_once() {
        let states = scope_states();
        for (column, _, merge) in scope_measures() {
            assert_eq!(states.matches(&format!(" AS {column}")).count(), 1);
            assert!(merge.contains(&format!("({column})")), "{merge}");
        }
        assert_eq!(
            dimension_enum(),
            "Enum8('award_method' = 1, 'share_channel' = 2, 'view_source' = 3, 'view_country' = 4)"
        );
    }
}
