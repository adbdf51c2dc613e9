//! ClickHouse names and parameters that the aggregator (which writes the
//! tables) and the exporter (which reads them) must agree on: the rollup
//! tiers and their tables, and the aggregate states of a rollup row, which
//! the aggregator's materialised views and the exporter's raw-events window
//! edges must compute alike so that `…Merge` over both is exact. The DDL
//! itself lives in `badgepulse_aggregator::schema`.

/// The precision `K` of the `uniqCombined(K)` distinct-count states in the
/// `scope_*` tables. With `K = 18` a state keeps an exact set of 32-bit
/// hashes up to well past 10,000 values (measured on ClickHouse 18.16 and
/// current releases) and becomes a HyperLogLog of 2^18 registers beyond
/// (standard error 0.2 %), which is SPEC §7's "exact up to 10,000, within
/// 2 % beyond". Readers must merge with the same `K`.
pub const SKETCH_PRECISION: u8 = 18;

/// All-time measures per scope (no time bucket).
pub const SCOPE_TOTAL: &str = "scope_total";

/// The aggregate states of a `scope_*` row, computed from `events`
/// columns: the aggregator's materialised views and the exporter's
/// raw-events window edges compute them alike, so that `…Merge` over both
/// is exact. Yields `events`, `assertions`, `viewers` and `classes`.
pub fn scope_states() -> String {
    let k = SKETCH_PRECISION;
    format!(
        "countState() AS events, \
         uniqCombinedIfState({k})(assertion_id, type IN ('badge.awarded', 'badge.accepted', 'badge.shared', 'badge.revoked')) AS assertions, \
         uniqCombinedIfState({k})(viewer_key, viewer_key != 0) AS viewers, \
         uniqCombinedState({k})(org_id, badge_class_id) AS classes"
    )
}

/// The aggregate states of a `rollup_*` row, computed from `events`
/// columns (as [`scope_states`] for the scope tables). Yields `events`,
/// `assertions` and `viewers`.
pub fn rollup_states() -> &'static str {
    "countState() AS events, uniqExactState(assertion_id) AS assertions, \
     uniqExactIfState(viewer_key, viewer_key != 0) AS viewers"
}

/// The counts of SPEC §7 merged from `rollup_*` states over the rows that
/// `condition` selects (SQL; empty: every row), as analysts and the Grafana
/// dashboards read them: `awarded`, `accepted`, `shared` and `revoked` are
/// distinct assertions of their event type, `shares` and `views` events,
/// `unique_viewers` distinct viewer keys of views.
pub fn rollup_counts(condition: &str) -> Vec<(&'static str, String)> {
    let and = if condition.is_empty() {
        String::new()
    } else {
        format!(" AND {condition}")
    };
    let of = |merge: &str, column: &str, kind: &str| {
        format!("{merge}({column}, event_type = '{kind}'{and})")
    };
    vec![
        (
            "awarded",
            of("uniqExactMergeIf", "assertions", "badge.awarded"),
        ),
        (
            "accepted",
            of("uniqExactMergeIf", "assertions", "badge.accepted"),
        ),
        (
            "shared",
            of("uniqExactMergeIf", "assertions", "badge.shared"),
        ),
        ("shares", of("countMergeIf", "events", "badge.shared")),
        ("views", of("countMergeIf", "events", "badge.viewed")),
        (
            "unique_viewers",
            of("uniqExactIfMergeIf", "viewers", "badge.viewed"),
        ),
    ]
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

    /// The rollup table of this tier (by distribution value and country).
    pub fn rollup_table(self) -> &'static str {
        match self {
            Tier::Minute => "rollup_minute",
            Tier::Hour => "rollup_hour",
            Tier::Day => "rollup_day",
        }
    }

    /// The table of per-scope measures of this tier, if there is one:
    /// there are no minute scope rows (they would be the costliest to
    /// write, one row per minute, scope level and type); readers take
    /// sub-hour pieces of a window from `events`.
    pub fn scope_table(self) -> Option<&'static str> {
        match self {
            Tier::Minute => None,
            Tier::Hour => Some("scope_hour"),
            Tier::Day => Some("scope_day"),
        }
    }

    /// The bucketed tables of this tier.
    pub fn tables(self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.rollup_table()).chain(self.scope_table())
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
        assert_eq!(Tier::of_table("events"), None);
    }
}
