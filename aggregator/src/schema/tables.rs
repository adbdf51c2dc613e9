//! What each table holds (SPEC §6): its columns with their comments, how
//! it is partitioned, and the SELECT that computes its rows from event
//! rows — the same text for its materialised view and for the recovery
//! path, so both always agree.

use badgepulse_contract::event::{AwardMethod, EventType, ShareChannel, ViewSource};
use badgepulse_contract::tables::{
    rollup_states, scope_states, Tier, SCOPE_TOTAL, SKETCH_PRECISION,
};

use super::Schema;

/// The tables the aggregator writes for each batch, in the order the
/// recovery path fills them. `events` comes first: the others are rebuilt
/// from it.
pub const DERIVED_TABLES: [&str; 7] = [
    "rollup_minute",
    "rollup_hour",
    "rollup_day",
    "assertion_lifecycle",
    "scope_hour",
    "scope_day",
    SCOPE_TOTAL,
];

/// Partitions sized so that retention drops whole partitions: days for
/// minutes (7-day default), months for hours (400 days), years for days.
pub fn partition_by(tier: Tier) -> &'static str {
    match tier {
        Tier::Minute => "toYYYYMMDD(bucket)",
        Tier::Hour => "toYYYYMM(bucket)",
        Tier::Day => "toYear(bucket)",
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
    seq UInt64 COMMENT 'JetStream stream sequence of the message that carried it'"
        )
    }

    pub(crate) fn rollup_columns() -> String {
        let ty = event_type_enum();
        format!(
            "    bucket DateTime('UTC') COMMENT 'Bucket start (UTC)',
    org_id String COMMENT 'Organisation',
    issuer_id String COMMENT 'Issuer',
    badge_class_id String COMMENT 'Badge class',
    event_type {ty} COMMENT 'Event type',
    dim_value String COMMENT 'The type''s distribution value: award_method, share channel or view source; empty for other types',
    country String COMMENT 'badge.viewed: country; empty otherwise or unknown',
    partition UInt16 COMMENT 'NATS partition (follows from org_id)',
    events AggregateFunction(count) COMMENT 'Number of events: countMerge(events)',
    assertions AggregateFunction(uniqExact, String) COMMENT 'Distinct assertions: uniqExactMerge(assertions)',
    viewers AggregateFunction(uniqExactIf, UInt64, UInt8) COMMENT 'Distinct viewer keys of views that have one: uniqExactIfMerge(viewers)',
    max_seq AggregateFunction(max, UInt64) COMMENT 'Exactly-once bookkeeping: highest stream sequence folded in'"
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
            "    issuer_id String COMMENT 'Issuer'".to_owned(),
            "    badge_class_id String COMMENT 'Badge class'".to_owned(),
            "    assertion_id String COMMENT 'Assertion (one row per assertion after merges)'".to_owned(),
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
        let ty = event_type_enum();
        let k = SKETCH_PRECISION;
        let bucket = if bucketed {
            "    bucket DateTime('UTC') COMMENT 'Bucket start (UTC)',\n"
        } else {
            ""
        };
        format!(
            "{bucket}    org_id String COMMENT 'Organisation',
    scope_issuer_id String COMMENT 'Issuer; empty in the rows that total the whole org',
    scope_badge_class_id String COMMENT 'Badge class; empty in the rows that total an issuer or the org',
    event_type {ty} COMMENT 'Event type',
    partition UInt16 COMMENT 'NATS partition (follows from org_id)',
    events AggregateFunction(count) COMMENT 'Number of events: countMerge(events)',
    assertions AggregateFunction(uniqCombinedIf({k}), String, UInt8) COMMENT 'Distinct assertions of awarded, accepted, shared and revoked events: uniqCombinedIfMerge({k})(assertions); exact to beyond 10,000, a 0.2 % sketch above',
    viewers AggregateFunction(uniqCombinedIf({k}), UInt64, UInt8) COMMENT 'Distinct viewer keys of views that have one: uniqCombinedIfMerge({k})(viewers)',
    classes AggregateFunction(uniqCombined({k}), String, String) COMMENT 'Distinct (org, badge class) pairs with events: uniqCombinedMerge({k})(classes)',
    max_seq AggregateFunction(max, UInt64) COMMENT 'Exactly-once bookkeeping: highest stream sequence folded in'"
        )
    }

    /// The SELECT that computes `table`'s rows from event rows in `source`,
    /// restricted by the extra condition `filter` (`AND …` or empty). Shared
    /// by the materialised view and the recovery path, so both always agree.
    pub fn derived_select(&self, table: &str, source: &str, filter: &str) -> String {
        match table {
            "assertion_lifecycle" => {
                let when = |stage: &str, ty: &str| {
                    format!("minIfState(occurred_at, type = '{ty}') AS first_{stage}")
                };
                let count =
                    |stage: &str, ty: &str| format!("countIfState(type = '{ty}') AS {stage}");
                format!(
                    "SELECT org_id, issuer_id, badge_class_id, assertion_id, partition, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, maxState(seq) AS max_seq FROM {source} WHERE type != 'badge_class.upserted' {filter} GROUP BY org_id, issuer_id, badge_class_id, assertion_id, partition",
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
            scope if scope.starts_with("scope_") => {
                let (bucket, bucket_key) = match Tier::of_table(scope) {
                    Some(g) => (
                        format!("{}(occurred_at) AS bucket, ", g.bucket_fn()),
                        "bucket, ",
                    ),
                    None => (String::new(), ""),
                };
                // ARRAY JOIN: each event once per scope level (2: its badge
                // class, 1: its issuer, 0: its org).
                format!(
                    "SELECT {bucket}org_id, if(scope_level >= 1, issuer_id, '') AS scope_issuer_id, \
                     if(scope_level = 2, badge_class_id, '') AS scope_badge_class_id, type AS event_type, partition, \
                     {}, maxState(seq) AS max_seq \
                     FROM {source} ARRAY JOIN [0, 1, 2] AS scope_level WHERE 1 {filter} \
                     GROUP BY {bucket_key}org_id, scope_issuer_id, scope_badge_class_id, event_type, partition",
                    scope_states()
                )
            }
            rollup => {
                let g = Tier::ALL
                    .into_iter()
                    .find(|g| g.rollup_table() == rollup)
                    .unwrap_or_else(|| panic!("no derived table {rollup}"));
                format!(
                    "SELECT {}(occurred_at) AS bucket, org_id, issuer_id, badge_class_id, type AS event_type, \
                     multiIf(type = 'badge.awarded', toString(award_method), type = 'badge.shared', toString(share_channel), type = 'badge.viewed', toString(view_source), '') AS dim_value, \
                     country, partition, {}, maxState(seq) AS max_seq \
                     FROM {source} WHERE 1 {filter} \
                     GROUP BY bucket, org_id, issuer_id, badge_class_id, event_type, dim_value, country, partition",
                    g.bucket_fn(),
                    rollup_states()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_follow_the_contract() {
        assert!(event_type_enum().starts_with("Enum8('badge.awarded' = 1, "));
        assert!(award_method_enum().starts_with("Enum8('' = 0, 'manual' = 1"));
    }
}
