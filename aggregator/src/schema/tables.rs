//! What each table holds (SPEC §6): its columns with their comments, how
//! it is partitioned and sorted, and the SELECT that computes its rows
//! from event rows — the same text for its materialised view and for the
//! recovery path, so both always agree. ARCHITECTURE.md argues the layout;
//! docs/clickhouse.md describes it for analysts.

use badgepulse_contract::event::{AwardMethod, EventType, ShareChannel, ViewSource};
use badgepulse_contract::tables::{
    dimension_enum, rollup_states, scope_states, Tier, DIMENSIONS, LIFECYCLE_TOUCHES, ROLLUP_TOTAL,
    SCOPE_COLUMNS, SCOPE_LEVELS, SCOPE_MONTH, SCOPE_TOTAL, SKETCH_PRECISION, VIEW_DAYS,
};

use super::Schema;

/// One row per award event, sorted by (org, assertion): the aggregator
/// looks up each batch's assertions' first award day here.
pub const ASSERTION_AWARDS: &str = "assertion_awards";

/// One row per award that arrived after rows of its assertion were filed
/// under a later award day: what a cohort must also read (and exclude).
pub const LIFECYCLE_REFILED: &str = "lifecycle_refiled";

/// The derived tables with one row per event (a plain `seq` column)
/// rather than aggregate states.
pub fn one_row_per_event(table: &str) -> bool {
    matches!(
        table,
        "events" | "event_ids" | ASSERTION_AWARDS | LIFECYCLE_REFILED
    )
}

/// The tables the aggregator writes for each batch, besides `events`, in
/// the order the recovery path fills them; every one is rebuilt from
/// `events` alone. The two lookup tables come first
/// (`plan::before_lookups`).
pub const DERIVED_TABLES: [&str; 14] = [
    ASSERTION_AWARDS,
    "event_ids",
    LIFECYCLE_REFILED,
    "rollup_minute",
    "rollup_hour",
    "rollup_day",
    ROLLUP_TOTAL,
    "assertion_lifecycle",
    "scope_hour",
    "scope_day",
    SCOPE_MONTH,
    SCOPE_TOTAL,
    VIEW_DAYS,
    LIFECYCLE_TOUCHES,
];

/// How far back from its receipt an event still lands in a tier's
/// tables: `occurred_at >= received_at - horizon`. It bounds the
/// partitions one INSERT block of history can touch (current ClickHouse
/// refuses more than `max_partitions_per_insert_block`, 100): at most 93
/// daily minute partitions and 85 monthly hour partitions, whatever the
/// history spans. Rows beyond the horizon would be older than the longest
/// retention the configuration allows ([`Tier::max_retention_days`]) and
/// dropped anyway. `None`: every event (year partitions, or none).
pub fn horizon_days(tier: Tier) -> Option<u32> {
    max_retention_days(tier).map(|days| days + 1)
}

/// The longest retention `aggregator.retention_*_days` may configure for
/// a tier whose tables have a [`horizon_days`].
pub fn max_retention_days(tier: Tier) -> Option<u32> {
    match tier {
        Tier::Minute => Some(90),
        Tier::Hour => Some(2_500),
        Tier::Day => None,
    }
}

/// Partitions sized so that retention drops whole partitions: days for
/// minutes (7-day default), months for hours (400 days), years for days.
pub fn partition_by(tier: Tier) -> &'static str {
    match tier {
        Tier::Minute => "toYYYYMMDD(bucket)",
        Tier::Hour => "toYYYYMM(bucket)",
        Tier::Day => "toYear(bucket)",
    }
}

/// `AND occurred_at >= subtractDays(received_at, N)` for a tier with a
/// horizon; empty otherwise.
fn horizon_filter(tier: Option<Tier>) -> String {
    match tier.and_then(horizon_days) {
        Some(days) => format!(" AND occurred_at >= subtractDays(received_at, {days})"),
        None => String::new(),
    }
}

/// `Enum8(...)` over a closed set; `''` (0) stands for "not applicable".
fn enum8<T: Copy>(all: &[T], name: fn(T) -> &'static str, with_empty: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    if with_empty {
        parts.push("'' = 0".into());
    }
    for (i, v) in all.iter().enumerate() {
        parts.push(format!("'{}' = {}", name(*v), i + 1));
    }
    format!("Enum8({})", parts.join(", "))
}

pub fn event_type_enum() -> String {
    enum8(EventType::ALL, EventType::as_str, false)
}

pub(crate) fn award_method_enum() -> String {
    enum8(AwardMethod::ALL, AwardMethod::as_str, true)
}

fn share_channel_enum() -> String {
    enum8(ShareChannel::ALL, ShareChannel::as_str, true)
}

fn view_source_enum() -> String {
    enum8(ViewSource::ALL, ViewSource::as_str, true)
}

impl Schema {
    pub(crate) fn event_columns() -> String {
        let ty = event_type_enum();
        let am = award_method_enum();
        let sc = share_channel_enum();
        let vs = view_source_enum();
        format!(
            "    event_id String COMMENT 'Idempotency key from the platform, or a UUIDv7 minted by ingest for beacons; unique per org',
    type {ty} COMMENT 'Event type',
    occurred_at DateTime('UTC') COMMENT 'When it happened (UTC); time of receipt for beacons',
    received_at DateTime('UTC') COMMENT 'When ingest received it (UTC)',
    org_id String COMMENT 'Organisation',
    issuer_id String COMMENT 'Issuer within the organisation',
    badge_class_id String COMMENT 'Badge class (the badge definition)',
    assertion_id String COMMENT 'Awarded badge instance; empty for badge_class.upserted',
    award_method {am} COMMENT 'badge.awarded: how it was awarded; empty otherwise',
    share_channel {sc} COMMENT 'badge.shared: where it was shared; empty otherwise',
    view_source {vs} COMMENT 'badge.viewed: where the viewer came from; empty otherwise',
    country String COMMENT 'badge.viewed: ISO 3166-1 alpha-2 country from the trusted header; empty if unknown',
    viewer_key UInt64 COMMENT 'badge.viewed: 64-bit keyed hash of (daily salt, IP, User-Agent, org); 0 when unknown. Not linkable across days',
    badge_class_name String COMMENT 'badge_class.upserted: name',
    skills Array(String) COMMENT 'badge_class.upserted: aligned skills',
    pathways Array(String) COMMENT 'badge_class.upserted: pathways',
    courses Array(String) COMMENT 'badge_class.upserted: courses',
    catalogs Array(String) COMMENT 'badge_class.upserted: catalogs',
    collections Array(String) COMMENT 'badge_class.upserted: collections',
    attribute_keys Array(String) COMMENT 'badge_class.upserted: boolean attribute names',
    attribute_values Array(UInt8) COMMENT 'badge_class.upserted: boolean attribute values, parallel to attribute_keys',
    partition UInt16 COMMENT 'NATS partition the event travelled on',
    seq UInt64 COMMENT 'JetStream stream sequence of the message that carried it',
    award_known_on Date COMMENT 'The assertion''s first award day known before this event''s batch; 1970-01-01: none',
    awarded_on Date COMMENT 'The day its assertion_lifecycle row is filed under: the first award day known when written; 1970-01-01: none yet'"
        )
    }

    pub(crate) fn event_id_columns() -> &'static str {
        "    org_id String COMMENT 'Organisation',
    event_id String COMMENT 'events.event_id: the duplicate lookup reads this table, sorted by (org_id, event_id)',
    partition UInt16 COMMENT 'NATS partition the event travelled on',
    seq UInt64 COMMENT 'JetStream stream sequence of the message that carried it'"
    }

    /// The columns of a `rollup_*` table; `bucketed` adds the bucket.
    pub(crate) fn rollup_columns(bucketed: bool) -> String {
        let k = SKETCH_PRECISION;
        let dimension = dimension_enum();
        format!(
            "{}    org_id String COMMENT 'Organisation',
    dimension {dimension} COMMENT 'The distribution: award_method (badge.awarded), share_channel (badge.shared), view_source or view_country (badge.viewed)',
    value String COMMENT 'The value in that distribution (a method, channel, source or ISO country code; empty: unknown country)',
    partition UInt16 COMMENT 'NATS partition (follows from org_id)',
    events AggregateFunction(count) COMMENT 'Number of events: countMerge(events)',
    assertions AggregateFunction(uniqCombinedIf({k}), String, UInt8) COMMENT 'award_method rows: distinct assertions, uniqCombinedIfMerge({k})(assertions); exact to 16,384, a 0.2 % sketch above',
    max_seq AggregateFunction(max, UInt64) COMMENT 'Exactly-once bookkeeping: highest stream sequence folded in'",
            bucket_column(bucketed)
        )
    }

    pub(crate) fn lifecycle_columns() -> String {
        let when = |stage: &str, ty: &str| {
            format!("    first_{stage} AggregateFunction(minIf, DateTime('UTC'), UInt8) COMMENT 'First {ty} time: minIfMerge(first_{stage}); 1970-01-01 if never'")
        };
        let count = |stage: &str, ty: &str| {
            format!("    {stage} AggregateFunction(countIf, UInt8) COMMENT 'Number of {ty} events: countIfMerge({stage})'")
        };
        [
            "    org_id String COMMENT 'Organisation'".to_owned(),
            "    awarded_on Date COMMENT 'The first award day known when the events were written (events.awarded_on; 1970-01-01: none yet): a cohort reads its days, 1970-01-01 and the assertions lifecycle_refiled names'".to_owned(),
            "    issuer_id String COMMENT 'Issuer'".to_owned(),
            "    badge_class_id String COMMENT 'Badge class'".to_owned(),
            "    assertion_id String COMMENT 'Assertion (one row per assertion and awarded_on after merges; merge the rows of an assertion)'".to_owned(),
            "    partition UInt16 COMMENT 'NATS partition (follows from org_id)'".to_owned(),
            when("awarded", "badge.awarded"),
            when("accepted", "badge.accepted"),
            when("shared", "badge.shared"),
            when("viewed", "badge.viewed"),
            when("revoked", "badge.revoked"),
            count("awarded", "badge.awarded"),
            count("accepted", "badge.accepted"),
            count("shares", "badge.shared"),
            count("views", "badge.viewed"),
            count("revoked", "badge.revoked"),
            "    max_seq AggregateFunction(max, UInt64) COMMENT 'Exactly-once bookkeeping: highest stream sequence folded in'".to_owned(),
        ]
        .join(",\n")
    }

    /// The columns of a `scope_*` table; `bucketed` adds the bucket.
    pub(crate) fn scope_columns(bucketed: bool) -> String {
        let k = SKETCH_PRECISION;
        let distinct = |column: &str, ty: &str| {
            format!("    {column} AggregateFunction(uniqCombinedIf({k}), String, UInt8) COMMENT 'Distinct assertions with {ty}: uniqCombinedIfMerge({k})({column}); exact to 16,384, a 0.2 % sketch above'")
        };
        let number = |column: &str, ty: &str| {
            format!("    {column} AggregateFunction(countIf, UInt8) COMMENT 'Number of {ty} events: countIfMerge({column})'")
        };
        format!(
            "{}{SCOPE_KEY_COLUMNS},
    partition UInt16 COMMENT 'NATS partition (follows from org_id)',
    events AggregateFunction(count) COMMENT 'Number of events: countMerge(events)',
{},
{},
{},
{},
{},
{},
    classes AggregateFunction(uniqCombined({k}), String, String) COMMENT 'Distinct (org, badge class) pairs with events: uniqCombinedMerge({k})(classes)',
    max_seq AggregateFunction(max, UInt64) COMMENT 'Exactly-once bookkeeping: highest stream sequence folded in'{}",
            bucket_column(bucketed),
            distinct("awarded", "badge.awarded"),
            distinct("accepted", "badge.accepted"),
            distinct("shared", "badge.shared"),
            number("shares", "badge.shared"),
            number("views", "badge.viewed"),
            distinct("revoked", "badge.revoked"),
            if bucketed { SCOPE_SORT_COLUMNS } else { "" },
        )
    }

    /// The columns of the bucketed scope tables in layout 3, in table
    /// order: all but [`SCOPE_SORT_COLUMNS`].
    pub fn layout3_scope_column_names() -> Vec<String> {
        Self::scope_columns(false)
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }

    pub(crate) fn assertion_awards_columns() -> &'static str {
        "    org_id String COMMENT 'Organisation',
    assertion_id String COMMENT 'Awarded assertion',
    awarded_on Date COMMENT 'Day of this award (UTC)',
    partition UInt16 COMMENT 'NATS partition the event travelled on',
    seq UInt64 COMMENT 'JetStream stream sequence of the award event'"
    }

    pub(crate) fn lifecycle_refiled_columns() -> &'static str {
        "    org_id String COMMENT 'Organisation',
    awarded_on Date COMMENT 'Day of an award that arrived after rows of its assertion were filed under a later award day',
    assertion_id String COMMENT 'The assertion',
    refiled_from Date COMMENT 'The later day its earlier rows are filed under (assertion_lifecycle.awarded_on)',
    partition UInt16 COMMENT 'NATS partition the event travelled on',
    seq UInt64 COMMENT 'JetStream stream sequence of the award event'"
    }

    pub(crate) fn lifecycle_touches_columns() -> &'static str {
        "    org_id String COMMENT 'Organisation',
    day Date COMMENT 'An award day whose cohort the events changed (assertion_lifecycle.awarded_on, or the day an earlier award moved an assertion from)',
    partition UInt16 COMMENT 'NATS partition (follows from org_id)',
    max_seq AggregateFunction(max, UInt64) COMMENT 'Highest stream sequence of such an event: maxMerge(max_seq). The day is sealed when lifecycle_days holds its row with sealed_seq at least this'"
    }

    pub(crate) fn lifecycle_days_columns() -> &'static str {
        "    org_id String COMMENT 'Organisation',
    day Date COMMENT 'UTC day of the first award of the cohort',
    partition UInt16 COMMENT 'NATS partition (follows from org_id)',
    awarded UInt64 COMMENT 'Assertions first awarded that day',
    accepted UInt64 COMMENT '… of which accepted',
    shared UInt64 COMMENT '… of which accepted and shared',
    viewed UInt64 COMMENT '… of which accepted, shared and viewed',
    slot_keys Array(UInt16) COMMENT 'Timing: key q × 8 + m for UTC quarter hour q of the award, m = 0 awarded, 1 accepted, 2 to 6 accepted within 1 h, 1 d, 7 d, 30 d, 90 d',
    slot_counts Array(UInt64) COMMENT 'Assertions per slot_keys key',
    reach_keys Array(UInt32) COMMENT 'Cohorts: key d × 4 + s for the UTC day number d on which stage s (1 accepted, 2 shared, 3 viewed, SPEC §7.6 nesting) was reached',
    reach_counts Array(UInt64) COMMENT 'Assertions per reach_keys key',
    delay_keys Array(UInt16) COMMENT 'Impact: key n × 2 for a first accept at most n whole days after the award (0 at or before it, 366 for later than 365), n × 2 + 1 when also shared within n days',
    delay_counts Array(UInt64) COMMENT 'Assertions per delay_keys key',
    sealed_seq UInt64 COMMENT 'The lifecycle_touches.max_seq these counts include: a row with a higher sealed_seq replaces it (read argMax(…, sealed_seq))'"
    }

    pub(crate) fn view_days_columns() -> &'static str {
        "    bucket DateTime('UTC') COMMENT 'UTC day start',
    org_id String COMMENT 'Organisation',
    partition UInt16 COMMENT 'NATS partition (follows from org_id)',
    max_seq AggregateFunction(max, UInt64) COMMENT 'Highest stream sequence of a view with a viewer key that day: maxMerge(max_seq). A day is sealed when viewer_days holds its org row with sealed_seq at least this'"
    }

    /// The columns of `viewer_days` and `viewer_hours`.
    pub(crate) fn viewer_columns(bucket: &str) -> String {
        format!(
            "    bucket DateTime('UTC') COMMENT '{bucket} start (UTC)',
{SCOPE_KEY_COLUMNS},
    partition UInt16 COMMENT 'NATS partition (follows from org_id)',
    unique_viewers UInt64 COMMENT 'Distinct viewer keys among the views of the scope in the bucket, counted exactly from events when the day was sealed; read argMax(unique_viewers, sealed_seq)',
    sealed_seq UInt64 COMMENT 'The view_days.max_seq this count includes: a row with a higher sealed_seq replaces it'"
        )
    }

    /// The SELECT that computes `table`'s rows from event rows in `source`,
    /// restricted by the extra condition `filter` (`AND …` or empty). Shared
    /// by the materialised view and the recovery path, so both always agree.
    pub fn derived_select(&self, table: &str, source: &str, filter: &str) -> String {
        match table {
            "event_ids" => {
                format!("SELECT org_id, event_id, partition, seq FROM {source} WHERE 1 {filter}")
            }
            ASSERTION_AWARDS => format!(
                "SELECT org_id, assertion_id, toDate(occurred_at) AS awarded_on, partition, seq \
                 FROM {source} WHERE type = 'badge.awarded' {filter}"
            ),
            LIFECYCLE_REFILED => format!(
                "SELECT org_id, toDate(occurred_at) AS awarded_on, assertion_id, award_known_on AS refiled_from, partition, seq \
                 FROM {source} WHERE type = 'badge.awarded' AND award_known_on != toDate(0) \
                 AND toDate(occurred_at) < award_known_on {filter}"
            ),
            "assertion_lifecycle" => {
                let when = |stage: &str, ty: &str| {
                    format!("minIfState(occurred_at, type = '{ty}') AS first_{stage}")
                };
                let count =
                    |stage: &str, ty: &str| format!("countIfState(type = '{ty}') AS {stage}");
                format!(
                    "SELECT org_id, awarded_on, issuer_id, badge_class_id, assertion_id, partition, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, maxState(seq) AS max_seq FROM {source} WHERE type != 'badge_class.upserted' {filter} GROUP BY org_id, awarded_on, issuer_id, badge_class_id, assertion_id, partition",
                    when("awarded", "badge.awarded"),
                    when("accepted", "badge.accepted"),
                    when("shared", "badge.shared"),
                    when("viewed", "badge.viewed"),
                    when("revoked", "badge.revoked"),
                    count("awarded", "badge.awarded"),
                    count("accepted", "badge.accepted"),
                    count("shares", "badge.shared"),
                    count("views", "badge.viewed"),
                    count("revoked", "badge.revoked"),
                )
            }
            LIFECYCLE_TOUCHES => format!(
                "SELECT org_id, day, partition, maxState(seq) AS max_seq FROM {source} \
                 ARRAY JOIN arrayFilter(d -> d != toDate(0), [awarded_on, award_known_on]) AS day \
                 WHERE type != 'badge_class.upserted' {filter} GROUP BY org_id, day, partition"
            ),
            VIEW_DAYS => format!(
                "SELECT toStartOfDay(occurred_at) AS bucket, org_id, partition, maxState(seq) AS max_seq \
                 FROM {source} WHERE type = 'badge.viewed' AND viewer_key != 0 {filter} \
                 GROUP BY bucket, org_id, partition"
            ),
            scope if scope.starts_with("scope_") => {
                let tier = Tier::of_table(scope);
                let (bucket, bucket_key) = match (scope, tier) {
                    (_, Some(g)) => (
                        format!("{}(occurred_at) AS bucket, ", g.bucket_fn()),
                        "bucket, ",
                    ),
                    (SCOPE_MONTH, None) => ("toDateTime(toStartOfMonth(occurred_at), 'UTC') AS bucket, ".to_owned(), "bucket, "),
                    _ => (String::new(), ""),
                };
                // Hour rows are kept for the org scope only.
                let levels = if tier == Some(Tier::Hour) { "[0]" } else { SCOPE_LEVELS };
                let sort = if bucket_key.is_empty() {
                    String::new()
                } else {
                    format!(", {SCOPE_SORT_SELECT}")
                };
                format!(
                    "SELECT {bucket}org_id, {SCOPE_COLUMNS}, partition, {}, maxState(seq) AS max_seq{sort} \
                     FROM {source} ARRAY JOIN {levels} AS level WHERE 1{} {filter} \
                     GROUP BY {bucket_key}org_id, scope_issuer_id, scope_badge_class_id, partition",
                    scope_states(),
                    horizon_filter(tier),
                )
            }
            rollup => {
                let tier = Tier::ALL.into_iter().find(|g| g.rollup_table() == rollup);
                let (bucket, bucket_key) = match tier {
                    Some(g) => (format!("{}(occurred_at) AS bucket, ", g.bucket_fn()), "bucket, "),
                    None if rollup == ROLLUP_TOTAL => (String::new(), ""),
                    None => panic!("no derived table {rollup}"),
                };
                format!(
                    "SELECT {bucket}org_id, CAST(dv.1 AS {}) AS dimension, dv.2 AS value, partition, {}, maxState(seq) AS max_seq \
                     FROM {source} ARRAY JOIN {} AS dv \
                     WHERE type IN ('badge.awarded', 'badge.shared', 'badge.viewed'){} {filter} \
                     GROUP BY {bucket_key}org_id, dimension, value, partition",
                    dimension_enum(),
                    rollup_states("dv.1 = 1"),
                    dimension_values(),
                    horizon_filter(tier),
                )
            }
        }
    }

    pub(crate) fn badge_classes_select(&self, source: &str) -> String {
        format!(
            "SELECT org_id, badge_class_id, issuer_id, badge_class_name AS name, skills, pathways, courses, catalogs, collections, \
             attribute_keys, attribute_values, notEmpty(skills) AS skills_aligned, \
             notEmpty(pathways) OR notEmpty(courses) AS in_pathway, notEmpty(catalogs) OR notEmpty(collections) AS in_catalog, \
             occurred_at AS updated_at FROM {source} WHERE type = 'badge_class.upserted'"
        )
    }

    /// The names of the `events` columns, in order.
    pub fn event_column_names() -> Vec<String> {
        Self::event_columns()
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    }
}

/// The scope key columns of the `scope_*` and `viewer_*` tables.
const SCOPE_KEY_COLUMNS: &str = "    org_id String COMMENT 'Organisation',
    scope_issuer_id String COMMENT 'Issuer; empty in the rows that total the whole org',
    scope_badge_class_id String COMMENT 'Badge class; empty in the rows that total an issuer or the org'";

/// The computed columns that lead the sorting key of the bucketed scope
/// tables (after `org_id`): a read of one level (the org's own rows, one
/// issuer's rows, or the badge classes') over a window is one range of
/// rows instead of every level's rows of every bucket in it. Issuer rows
/// sort by issuer before bucket, so one issuer's window is one range too;
/// badge-class rows sort by bucket, so an org's class list for a window is
/// one range. Both follow from the scope columns ([`SCOPE_SORT_SELECT`];
/// ClickHouse 18.16 cannot fill computed columns from a view).
pub(crate) const SCOPE_SORT_COLUMNS: &str = ",
    scope_level UInt8 COMMENT 'Level of the row: 0 the org, 1 an issuer, 2 a badge class',
    scope_key String COMMENT 'The issuer of an issuer row, else empty'";

/// [`SCOPE_SORT_COLUMNS`] computed from the scope columns of a row.
pub(crate) const SCOPE_SORT_SELECT: &str =
    "toUInt8((scope_issuer_id != '') + (scope_badge_class_id != '')) AS scope_level, \
     if(scope_badge_class_id = '', scope_issuer_id, '') AS scope_key";

/// The sorting key of the bucketed scope tables ([`SCOPE_SORT_COLUMNS`]).
pub(crate) const SCOPE_SORT_KEY: &str =
    "ORDER BY (org_id, scope_level, scope_key, bucket, scope_issuer_id, scope_badge_class_id, partition)";

fn bucket_column(bucketed: bool) -> &'static str {
    if bucketed {
        "    bucket DateTime('UTC') COMMENT 'Bucket start (UTC)',\n"
    } else {
        ""
    }
}

/// An event's distribution values as `(dimension code, value)` pairs, for
/// one `ARRAY JOIN` (ClickHouse 18.16 takes no second one): an award its
/// method, a share its channel, a view its source and its country, any
/// other type none.
fn dimension_values() -> String {
    let mut branches = Vec::new();
    for event_type in ["badge.awarded", "badge.shared", "badge.viewed"] {
        let pairs: Vec<String> = DIMENSIONS
            .iter()
            .filter(|(_, _, _, of)| *of == event_type)
            .map(|(_, code, value, _)| format!("(toUInt8({code}), {value})"))
            .collect();
        branches.push(format!("type = '{event_type}', [{}]", pairs.join(", ")));
    }
    format!(
        "multiIf({}, CAST([] AS Array(Tuple(UInt8, String))))",
        branches.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_follow_the_contract() {
        assert!(event_type_enum().starts_with("Enum8('badge.awarded' = 1, "));
        assert!(award_method_enum().starts_with("Enum8('' = 0, 'manual' = 1"));
    }
}
