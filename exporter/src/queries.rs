//! Every SQL statement the exporter sends to ClickHouse, built as a
//! `clickhouse::query::Query` without executing it (`store.rs` executes),
//! so tests can collect the exact text with `sql_display()`.
//!
//! Rules for this file:
//! - User input only ever reaches SQL through `?` binds (escaped by the
//!   client); the literal text never contains `?` otherwise.
//! - The SQL runs unchanged on ClickHouse 18.16 and on current ClickHouse:
//!   no server-side `{x:Type}` parameters, `toStartOfInterval`,
//!   `DateTime64`, window functions or `WITH FILL`. Times are bound as
//!   `u32` epoch seconds inside `toDateTime(?, 'UTC')`.
//! - Tables are qualified with the client's database, so every statement
//!   is self-contained.
//!
//! Windows are answered by merging aggregate states (SPEC §7): the
//! decomposition of `window.rs` picks `rollup_day`/`rollup_hour`/
//! `rollup_minute` for whole buckets and raw `events` for the sub-minute
//! edges; the raw branch computes the very same state types
//! (`countState()`, `uniqExactState(assertion_id)`,
//! `uniqExactIfState(viewer_key, viewer_key != 0)`), so `…Merge` over the
//! `UNION ALL` gives exact distinct counts across sources.

use clickhouse::query::Query;
use clickhouse::Client;

use badgepulse_contract::tables::{scope_states, SCOPE_TOTAL, SKETCH_PRECISION};

use crate::measures::{Counts, Dimension};
use crate::window::{
    decompose_with, minutes_from_raw, Granularity, Retention, Segment, Source, Window,
};

/// Default database when the client names none.
const DEFAULT_DATABASE: &str = "badgepulse";

/// Label value that collects orgs and issuers beyond the label limits.
pub const OTHER_LABEL: &str = "__other__";

/// Which rows a query covers: an org (or every org when `org` is `None`,
/// admin keys only), optionally narrowed to an issuer and/or badge class.
/// Produced by `auth::resolve`, which guarantees the ids are valid and in
/// the API key's scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Filter {
    pub org: Option<String>,
    pub issuer: Option<String>,
    pub badge_class: Option<String>,
}

/// The events a query covers in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Period {
    /// Every event ever: `rollup_day` without a time condition (every event
    /// lands in a day bucket, today's included).
    AllTime,
    /// Events with `occurred_at` in a window, as decomposed by
    /// [`crate::window::decompose_with`]: each segment is read from its
    /// source.
    Segments(Vec<Segment>),
}

impl Period {
    /// `window` decomposed down from `coarsest` with rollup `retention`.
    pub fn window(window: Window, coarsest: Source, retention: Retention) -> Period {
        Period::Segments(decompose_with(window, coarsest, retention))
    }
}

/// A bind value.
#[derive(Debug, Clone)]
enum Arg {
    Str(String),
    U32(u32),
    U64(u64),
}

/// SQL text with `?` placeholders and their values, in order.
#[derive(Debug, Default)]
struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    /// Appends literal SQL, which must not contain a bind placeholder.
    fn push(&mut self, literal: &str) -> &mut Self {
        assert!(
            !literal.contains('?'),
            "literal SQL must not contain '?': {literal}"
        );
        self.text.push_str(literal);
        self
    }

    fn str(&mut self, v: &str) -> &mut Self {
        self.text.push('?');
        self.args.push(Arg::Str(v.to_owned()));
        self
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.text.push('?');
        self.args.push(Arg::U32(v));
        self
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.text.push('?');
        self.args.push(Arg::U64(v));
        self
    }

    /// `toDateTime(?, 'UTC')`.
    fn time(&mut self, epoch_secs: u32) -> &mut Self {
        self.push("toDateTime(").u32(epoch_secs).push(", 'UTC')")
    }

    fn build(self, client: &Client) -> Query {
        let mut q = client.query(&self.text);
        for arg in self.args {
            q = match arg {
                Arg::Str(s) => q.bind(s),
                Arg::U32(v) => q.bind(v),
                Arg::U64(v) => q.bind(v),
            };
        }
        q
    }
}

/// `db.table`, with the database quoted unless it is a plain identifier.
fn table(client: &Client, name: &str) -> String {
    let db = client.database().unwrap_or(DEFAULT_DATABASE);
    let plain = !db.is_empty()
        && db.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !db.as_bytes()[0].is_ascii_digit();
    if plain {
        format!("{db}.{name}")
    } else {
        format!("`{}`.{name}", db.replace('\\', "\\\\").replace('`', "\\`"))
    }
}

/// Conditions joined by `WHERE … AND …`; nothing when there are none.
struct Conditions {
    first: bool,
}

impl Conditions {
    fn new() -> Self {
        Conditions { first: true }
    }

    /// Starts the next condition.
    fn and<'s>(&mut self, sql: &'s mut Sql) -> &'s mut Sql {
        sql.push(if self.first { " WHERE " } else { " AND " });
        self.first = false;
        sql
    }
}

/// Appends ` WHERE …` for `filter`; nothing when it has no condition.
fn push_where(sql: &mut Sql, filter: &Filter) {
    push_filter(sql, &mut Conditions::new(), filter);
}

/// The `org_id`/`issuer_id`/`badge_class_id` conditions of `filter`.
fn push_filter(sql: &mut Sql, c: &mut Conditions, filter: &Filter) {
    if let Some(org) = &filter.org {
        c.and(sql).push("org_id = ").str(org);
    }
    if let Some(issuer) = &filter.issuer {
        c.and(sql).push("issuer_id = ").str(issuer);
    }
    if let Some(badge_class) = &filter.badge_class {
        c.and(sql).push("badge_class_id = ").str(badge_class);
    }
}

/// The event types of the schema (`events.type`).
const EVENT_TYPES: [&str; 6] = [
    "badge.awarded",
    "badge.accepted",
    "badge.shared",
    "badge.viewed",
    "badge.revoked",
    "badge_class.upserted",
];

/// Which derived tables a state branch reads, and so which state types
/// its raw-events edges must compute.
#[derive(Debug, Clone, Copy)]
enum Family {
    /// `rollup_*`: keyed by distribution value and country, with exact
    /// distinct states. Read by the distributions only.
    Rollup,
    /// `scope_*` and `scope_total`: a few rows per scope and bucket, with
    /// sketched distinct states. `per_class` reads the badge-class rows
    /// (one per class); otherwise the rows of the filter's own level.
    Scope { per_class: bool },
}

impl Family {
    /// The columns every state branch yields after its keys, in this order.
    fn state_columns(self) -> &'static str {
        match self {
            Family::Rollup => "event_type, events, assertions, viewers",
            Family::Scope { .. } => "event_type, events, assertions, viewers, classes",
        }
    }

    /// The same states computed from `events` rows.
    fn raw_states(self) -> String {
        match self {
            Family::Rollup => {
                "countState() AS events, uniqExactState(assertion_id) AS assertions, \
                 uniqExactIfState(viewer_key, viewer_key != 0) AS viewers"
                    .to_owned()
            }
            Family::Scope { .. } => scope_states(),
        }
    }

    fn table(self, source: Option<Source>) -> &'static str {
        match (self, source) {
            (Family::Rollup, None) => "rollup_day",
            (Family::Rollup, Some(Source::Day)) => "rollup_day",
            (Family::Rollup, Some(Source::Hour)) => "rollup_hour",
            (Family::Rollup, Some(Source::Minute)) => "rollup_minute",
            (Family::Scope { .. }, None) => SCOPE_TOTAL,
            (Family::Scope { .. }, Some(Source::Day)) => "scope_day",
            (Family::Scope { .. }, Some(Source::Hour)) => "scope_hour",
            (Family::Scope { .. }, Some(Source::Minute)) => {
                unreachable!("scope periods have no minute pieces (minutes_from_raw)")
            }
            (_, Some(Source::Raw)) => "events",
        }
    }

    /// The row conditions of `filter` in this family's tables: plain
    /// columns for `rollup_*`; for `scope_*` also the scope level, so
    /// that every event is read once (an org reads its total rows, an
    /// issuer its issuer rows, a badge class its class rows).
    fn push_filter(self, sql: &mut Sql, c: &mut Conditions, filter: &Filter) {
        let Family::Scope { per_class } = self else {
            return push_filter(sql, c, filter);
        };
        if let Some(org) = &filter.org {
            c.and(sql).push("org_id = ").str(org);
        }
        match &filter.issuer {
            Some(issuer) => c.and(sql).push("scope_issuer_id = ").str(issuer),
            None if per_class || filter.badge_class.is_some() => {
                c.and(sql).push("scope_issuer_id != ''")
            }
            None => c.and(sql).push("scope_issuer_id = ''"),
        };
        match &filter.badge_class {
            Some(class) => c.and(sql).push("scope_badge_class_id = ").str(class),
            None if per_class => c.and(sql).push("scope_badge_class_id != ''"),
            None => c.and(sql).push("scope_badge_class_id = ''"),
        };
    }
}

/// The grouping columns of the state branches: the select expressions
/// over a derived table and over raw `events` (both yielding the same
/// names and types), and the names to group by.
struct Keys<'a> {
    rollup: &'a str,
    raw: &'a str,
    names: &'a str,
}

impl<'a> Keys<'a> {
    /// Plain columns present in rollups and `events` alike.
    fn columns(names: &'a str) -> Keys<'a> {
        Keys {
            rollup: names,
            raw: names,
            names,
        }
    }
}

/// One `SELECT` yielding aggregate states of `segment` (or of all time,
/// when `segment` is `None`) with the grouping columns `keys`, optionally
/// only of one event type.
fn push_state_branch(
    sql: &mut Sql,
    client: &Client,
    family: Family,
    keys: &Keys,
    filter: &Filter,
    segment: Option<Segment>,
    event_type: Option<&'static str>,
) {
    let source = segment.map(|s| s.source);
    let raw = source == Some(Source::Raw);
    sql.push("SELECT ");
    if raw {
        sql.push(keys.raw)
            .push(", type AS event_type, ")
            .push(&family.raw_states());
    } else {
        sql.push(keys.rollup)
            .push(", ")
            .push(family.state_columns());
    }
    sql.push(" FROM ")
        .push(&table(client, family.table(source)));
    let mut c = Conditions::new();
    if raw {
        push_filter(sql, &mut c, filter);
    } else {
        family.push_filter(sql, &mut c, filter);
    }
    if let Some(kind) = event_type {
        debug_assert!(EVENT_TYPES.contains(&kind), "{kind}");
        let column = if raw { "type" } else { "event_type" };
        c.and(sql).push(column).push(" = '").push(kind).push("'");
    }
    if let Some(Segment { from, to, .. }) = segment {
        let column = if raw { "occurred_at" } else { "bucket" };
        c.and(sql).push(column).push(" >= ").time(from);
        sql.push(" AND ").push(column).push(" < ").time(to);
    }
    if raw {
        sql.push(" GROUP BY ").push(keys.names).push(", event_type");
    }
}

/// `(branch UNION ALL branch …)`: the aggregate states of `period` for
/// `filter`, with the grouping columns `keys`.
fn push_states(
    sql: &mut Sql,
    client: &Client,
    family: Family,
    keys: &Keys,
    filter: &Filter,
    period: &Period,
    event_type: Option<&'static str>,
) {
    sql.push("(");
    match period {
        Period::AllTime => push_state_branch(sql, client, family, keys, filter, None, event_type),
        Period::Segments(segments) => {
            assert!(!segments.is_empty(), "a window has at least one segment");
            let segments = match family {
                Family::Rollup => segments.clone(),
                Family::Scope { .. } => minutes_from_raw(segments),
            };
            for (n, segment) in segments.iter().enumerate() {
                if n > 0 {
                    sql.push(" UNION ALL ");
                }
                push_state_branch(
                    sql,
                    client,
                    family,
                    keys,
                    filter,
                    Some(*segment),
                    event_type,
                );
            }
        }
    }
    sql.push(")");
}

/// The distinct count of the sketch `column` (`assertions` or `viewers`
/// of a `scope_*` table) over the rows of `event_type`.
fn sketch_merge(column: &str, event_type: &str) -> String {
    format!("uniqCombinedIfMergeIf({SKETCH_PRECISION})({column}, event_type = '{event_type}')")
}

/// The merged measures of SPEC §7 over `scope_*` states, in the field
/// order of [`crate::measures::Counts`].
fn count_columns() -> String {
    format!(
        "{} AS awarded, {} AS accepted, {} AS shared, \
         countMergeIf(events, event_type = 'badge.shared') AS shares, \
         countMergeIf(events, event_type = 'badge.viewed') AS views, \
         {} AS unique_viewers, {} AS revoked, \
         uniqCombinedMerge({SKETCH_PRECISION})(classes) AS badge_classes",
        sketch_merge("assertions", "badge.awarded"),
        sketch_merge("assertions", "badge.accepted"),
        sketch_merge("assertions", "badge.shared"),
        sketch_merge("viewers", "badge.viewed"),
        sketch_merge("assertions", "badge.revoked"),
    )
}

/// One row of [`crate::measures::Counts`] for `filter` and `period`.
pub fn measure_counts(client: &Client, filter: &Filter, period: &Period) -> Query {
    let mut sql = Sql::default();
    sql.push("SELECT ").push(&count_columns()).push(" FROM ");
    push_states(
        &mut sql,
        client,
        Family::Scope { per_class: false },
        &Keys::columns("org_id"),
        filter,
        period,
        None,
    );
    sql.build(client)
}

/// The counts of one badge class: a row of [`class_counts`].
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct ClassCounts {
    pub org_id: String,
    pub badge_class_id: String,
    pub awarded: u64,
    pub accepted: u64,
    pub shared: u64,
    pub shares: u64,
    pub views: u64,
    pub unique_viewers: u64,
    pub revoked: u64,
    pub badge_classes: u64,
}

impl ClassCounts {
    pub fn counts(&self) -> Counts {
        Counts {
            awarded: self.awarded,
            accepted: self.accepted,
            shared: self.shared,
            shares: self.shares,
            views: self.views,
            unique_viewers: self.unique_viewers,
            revoked: self.revoked,
            badge_classes: self.badge_classes,
        }
    }
}

/// The counts of every badge class with events in `period` (rows of
/// [`ClassCounts`], by org and badge class).
pub fn class_counts(client: &Client, filter: &Filter, period: &Period) -> Query {
    let mut sql = Sql::default();
    sql.push("SELECT org_id, badge_class_id, ")
        .push(&count_columns())
        .push(" FROM ");
    push_states(
        &mut sql,
        client,
        Family::Scope { per_class: true },
        &Keys {
            rollup: "org_id, scope_badge_class_id AS badge_class_id",
            raw: "org_id, badge_class_id",
            names: "org_id, badge_class_id",
        },
        filter,
        period,
        None,
    );
    sql.push(" GROUP BY org_id, badge_class_id ORDER BY org_id, badge_class_id");
    sql.build(client)
}

/// The latest metadata of one badge class: a row of [`badge_classes`].
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct BadgeClassRow {
    pub org_id: String,
    pub badge_class_id: String,
    pub name: String,
    pub skills_aligned: u8,
    pub in_pathway: u8,
    pub in_catalog: u8,
    pub attribute_keys: Vec<String>,
    pub attribute_values: Vec<u8>,
}

/// The latest metadata (`argMax` by `updated_at`, which is what
/// `badge_classes FINAL` keeps) of every badge class in `filter` that was
/// ever upserted: rows of [`BadgeClassRow`].
pub fn badge_classes(client: &Client, filter: &Filter) -> Query {
    let mut sql = Sql::default();
    sql.push(
        "SELECT org_id, badge_class_id, argMax(name, updated_at) AS latest_name, \
         argMax(skills_aligned, updated_at) AS latest_skills_aligned, \
         argMax(in_pathway, updated_at) AS latest_in_pathway, \
         argMax(in_catalog, updated_at) AS latest_in_catalog, \
         argMax(attribute_keys, updated_at) AS latest_attribute_keys, \
         argMax(attribute_values, updated_at) AS latest_attribute_values FROM ",
    );
    sql.push(&table(client, "badge_classes"));
    push_where(&mut sql, filter);
    sql.push(" GROUP BY org_id, badge_class_id ORDER BY org_id, badge_class_id");
    sql.build(client)
}

/// One value of a distribution: a row of [`distribution`].
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct DistributionRow {
    pub value: String,
    pub count: u64,
}

/// The counts of `dimension` in `period` (rows of [`DistributionRow`]),
/// by count descending, then value.
pub fn distribution(
    client: &Client,
    filter: &Filter,
    period: &Period,
    dimension: Dimension,
) -> Query {
    let keys = match dimension {
        Dimension::AwardMethod => Keys {
            rollup: "dim_value AS value",
            raw: "toString(award_method) AS value",
            names: "value",
        },
        Dimension::ShareChannel => Keys {
            rollup: "dim_value AS value",
            raw: "toString(share_channel) AS value",
            names: "value",
        },
        Dimension::ViewSource => Keys {
            rollup: "dim_value AS value",
            raw: "toString(view_source) AS value",
            names: "value",
        },
        Dimension::ViewCountry => Keys {
            rollup: "country AS value",
            raw: "country AS value",
            names: "value",
        },
    };
    let measure = if dimension.counts_assertions() {
        "uniqExactMerge(assertions)"
    } else {
        "countMerge(events)"
    };
    let mut sql = Sql::default();
    sql.push("SELECT value, ").push(measure).push(" AS n FROM ");
    push_states(
        &mut sql,
        client,
        Family::Rollup,
        &keys,
        filter,
        period,
        Some(dimension.event_type()),
    );
    sql.push(" GROUP BY value ORDER BY n DESC, value");
    sql.build(client)
}

/// The counts of one trend bucket: a row of [`trend_counts`].
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct TrendRow {
    /// Bucket start, epoch seconds.
    pub t: u32,
    pub awarded: u64,
    pub accepted: u64,
    pub shared: u64,
    pub shares: u64,
    pub views: u64,
    pub unique_viewers: u64,
    pub revoked: u64,
    pub badge_classes: u64,
}

impl TrendRow {
    pub fn counts(&self) -> Counts {
        Counts {
            awarded: self.awarded,
            accepted: self.accepted,
            shared: self.shared,
            shares: self.shares,
            views: self.views,
            unique_viewers: self.unique_viewers,
            revoked: self.revoked,
            badge_classes: self.badge_classes,
        }
    }
}

/// `granularity`'s bucket start of the DateTime column `column`, as
/// `UInt32` epoch seconds.
fn bucket_expr(granularity: Granularity, column: &str) -> String {
    match granularity {
        Granularity::Minute => format!("toUInt32(toStartOfMinute({column}))"),
        Granularity::Hour => format!("toUInt32(toStartOfHour({column}))"),
        Granularity::Day => format!("toUInt32(toStartOfDay({column}))"),
        // Dates are day numbers.
        Granularity::Week => format!("toUInt32(toUInt32(toMonday({column})) * 86400)"),
        Granularity::Month => format!("toUInt32(toUInt32(toStartOfMonth({column})) * 86400)"),
    }
}

/// The counts per `granularity` bucket of `period` (rows of [`TrendRow`]
/// for the buckets that have events, by time). `period` must be
/// decomposed down from `granularity.source()` so that every segment's
/// buckets nest inside trend buckets; raw edges count only the seconds of
/// the window.
pub fn trend_counts(
    client: &Client,
    filter: &Filter,
    period: &Period,
    granularity: Granularity,
) -> Query {
    if let Period::Segments(segments) = period {
        debug_assert!(segments
            .iter()
            .all(|s| s.source.step() <= granularity.source().step()));
    }
    let rollup = format!("{} AS t", bucket_expr(granularity, "bucket"));
    let raw = format!("{} AS t", bucket_expr(granularity, "occurred_at"));
    let keys = Keys {
        rollup: &rollup,
        raw: &raw,
        names: "t",
    };
    let mut sql = Sql::default();
    sql.push("SELECT t, ").push(&count_columns()).push(" FROM ");
    push_states(
        &mut sql,
        client,
        Family::Scope { per_class: false },
        &keys,
        filter,
        period,
        None,
    );
    sql.push(" GROUP BY t ORDER BY t");
    sql.build(client)
}

/// The lifecycle of a cohort (SPEC §7.6): the row of [`lifecycle`].
#[derive(Debug, Clone, Default, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct LifecycleRow {
    /// Assertions first awarded in the window.
    pub awarded: u64,
    /// … of which accepted.
    pub accepted: u64,
    /// … of which accepted and shared.
    pub shared: u64,
    /// … of which accepted, shared and viewed.
    pub viewed: u64,
    /// Assertions with an award and an accept time, and the median of
    /// first accept − first award (seconds; 0 when there are none).
    pub award_to_accept_n: u64,
    pub award_to_accept_secs: f64,
    /// Assertions with an accept and a share time; median first share −
    /// first accept.
    pub accept_to_share_n: u64,
    pub accept_to_share_secs: f64,
    /// Assertions with a share and a view time; median first view − first
    /// share.
    pub share_to_view_n: u64,
    pub share_to_view_secs: f64,
}

/// `length(d) AS n, median of the sorted array d AS m` (0 when empty:
/// index 1 of an empty array is the default value).
fn push_median(sql: &mut Sql, array: &str, n: &str, m: &str) {
    sql.push("length(")
        .push(array)
        .push(") AS ")
        .push(n)
        .push(", ");
    sql.push("(arrayElement(")
        .push(array)
        .push(", greatest(1, intDiv(length(")
        .push(array)
        .push(") + 1, 2))) + arrayElement(")
        .push(array)
        .push(", greatest(1, intDiv(length(")
        .push(array)
        .push(") + 2, 2)))) / 2 AS ")
        .push(m);
}

/// The grouping key of one assertion in `assertion_lifecycle`: a 64-bit
/// hash of its four key columns, which ClickHouse groups by almost twice
/// as fast as the strings (measured: 84 → 47 ms for 137,000 rows). Two
/// assertions share a hash with probability about n² / 2⁶⁵ (3 in a
/// million for 10 million assertions).
const ASSERTION_KEY: &str = "cityHash64(org_id, issuer_id, badge_class_id, assertion_id)";

/// The lifecycle of the assertions of `filter` first awarded in `window`
/// (one [`LifecycleRow`]). Presence of an event is tested with its count
/// (`minIfMerge` yields 1970-01-01 for "never").
pub fn lifecycle(client: &Client, filter: &Filter, window: Window) -> Query {
    let mut sql = Sql::default();
    sql.push("SELECT awarded, accepted, shared, viewed, ");
    push_median(&mut sql, "d1", "award_to_accept_n", "award_to_accept_secs");
    sql.push(", ");
    push_median(&mut sql, "d2", "accept_to_share_n", "accept_to_share_secs");
    sql.push(", ");
    push_median(&mut sql, "d3", "share_to_view_n", "share_to_view_secs");
    sql.push(
        " FROM (SELECT count() AS awarded, countIf(ac_n > 0) AS accepted, \
         countIf(ac_n > 0 AND sh_n > 0) AS shared, \
         countIf(ac_n > 0 AND sh_n > 0 AND vw_n > 0) AS viewed, \
         arraySort(groupArrayIf(toInt64(ac) - toInt64(aw), ac_n > 0)) AS d1, \
         arraySort(groupArrayIf(toInt64(sh) - toInt64(ac), ac_n > 0 AND sh_n > 0)) AS d2, \
         arraySort(groupArrayIf(toInt64(vw) - toInt64(sh), ac_n > 0 AND sh_n > 0 AND vw_n > 0)) AS d3 \
         FROM (SELECT minIfMerge(first_awarded) AS aw, minIfMerge(first_accepted) AS ac, \
         minIfMerge(first_shared) AS sh, minIfMerge(first_viewed) AS vw, \
         countIfMerge(awarded) AS aw_n, countIfMerge(accepted) AS ac_n, \
         countIfMerge(shares) AS sh_n, countIfMerge(views) AS vw_n FROM ",
    );
    sql.push(&table(client, "assertion_lifecycle"));
    push_where(&mut sql, filter);
    sql.push(" GROUP BY ").push(ASSERTION_KEY).push(")");
    sql.push(" WHERE aw_n > 0 AND aw >= ")
        .time(window.from())
        .push(" AND aw < ")
        .time(window.to())
        .push(")");
    sql.build(client)
}

/// Where annotations are written.
pub const ANNOTATIONS_TABLE: &str = "annotations";

/// An annotation (program update shown on trend charts): a row of the
/// `annotations` table, as inserted and as read by [`annotations`].
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Serialize, serde::Deserialize)]
pub struct AnnotationRow {
    pub id: String,
    pub org_id: String,
    /// `''`: the whole org.
    pub issuer_id: String,
    /// `''`: every badge class.
    pub badge_class_id: String,
    /// Epoch seconds.
    pub at: u32,
    pub title: String,
    pub text: String,
    /// Epoch seconds.
    pub created_at: u32,
}

/// The annotations of `filter` with `at` in `window`, by time, at most
/// `limit` (rows of [`AnnotationRow`]).
///
/// An annotation is in scope when it belongs to the org and everything it
/// names matches the scope: with an issuer in `filter`, annotations of
/// the whole org or of that issuer; with a badge class, annotations of
/// every badge class or of that one, and when no issuer is given either
/// not tied to an issuer or tied to that badge class. An org (or admin)
/// scope sees all of its org's annotations.
pub fn annotations(client: &Client, filter: &Filter, window: Window, limit: u64) -> Query {
    let mut sql = Sql::default();
    sql.push(
        "SELECT id, org_id, issuer_id, badge_class_id, toUInt32(at) AS at_secs, title, text, \
         toUInt32(created_at) AS created_secs FROM ",
    );
    sql.push(&table(client, ANNOTATIONS_TABLE));
    let mut c = Conditions::new();
    if let Some(org) = &filter.org {
        c.and(&mut sql).push("org_id = ").str(org);
    }
    if let Some(issuer) = &filter.issuer {
        c.and(&mut sql)
            .push("(issuer_id = '' OR issuer_id = ")
            .str(issuer)
            .push(")");
    }
    if let Some(badge_class) = &filter.badge_class {
        c.and(&mut sql)
            .push("(badge_class_id = '' OR badge_class_id = ")
            .str(badge_class)
            .push(")");
        if filter.issuer.is_none() {
            c.and(&mut sql)
                .push("(issuer_id = '' OR badge_class_id = ")
                .str(badge_class)
                .push(")");
        }
    }
    c.and(&mut sql).push("at >= ").time(window.from());
    sql.push(" AND at < ").time(window.to());
    sql.push(" ORDER BY at, id LIMIT ").u64(limit);
    sql.build(client)
}
/// All-time counts of one (`org_id`, `issuer_id`) label pair for
/// `/metrics`, after folding: the columns of [`IssuerTotals`].
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct IssuerTotals {
    pub org_id: String,
    pub issuer_id: String,
    pub awarded: u64,
    pub accepted: u64,
    pub shared: u64,
    pub shares: u64,
    pub views: u64,
    pub unique_viewers: u64,
}

/// `(SELECT org_id FROM scope_total … LIMIT max_orgs)`: the `max_orgs`
/// orgs with the most events of all time (ties by `org_id`). Every
/// `/metrics` query folds the other orgs into [`OTHER_LABEL`] with this
/// same set.
fn push_top_orgs(sql: &mut Sql, client: &Client, max_orgs: u64) {
    sql.push("(SELECT org_id FROM ")
        .push(&table(client, SCOPE_TOTAL));
    sql.push(" WHERE scope_issuer_id = '' AND scope_badge_class_id = ''");
    sql.push(" GROUP BY org_id ORDER BY countMerge(events) DESC, org_id LIMIT ")
        .u64(max_orgs)
        .push(")");
}

/// `if(org_id IN (top orgs), org_id, '__other__')`.
fn push_org_label(sql: &mut Sql, client: &Client, max_orgs: u64) {
    sql.push("if(org_id IN ");
    push_top_orgs(sql, client, max_orgs);
    sql.push(", org_id, '").push(OTHER_LABEL).push("')");
}

/// All-time counts per (org, issuer) for `/metrics`, with label
/// cardinality bounded in SQL: orgs beyond the `max_orgs` most active
/// (by event count) become `__other__`, and (org, issuer) pairs beyond the
/// `max_issuers` most active pairs of the kept orgs get issuer
/// `__other__`. Issuers folded within an org merge states, so distinct
/// counts stay exact; folded orgs add up their per-org distinct counts, so
/// equal assertion ids (or viewer keys) of two orgs are never merged.
pub fn issuer_totals(client: &Client, max_orgs: u64, max_issuers: u64) -> Query {
    let totals = table(client, SCOPE_TOTAL);
    let issuer_rows = " WHERE scope_issuer_id != '' AND scope_badge_class_id = ''";
    let mut sql = Sql::default();
    sql.push(
        "SELECT org, issuer, sum(aw) AS awarded, sum(ac) AS accepted, sum(sh) AS shared, \
         sum(sh_n) AS shares, sum(vw_n) AS views, sum(uv) AS unique_viewers FROM (SELECT org_id, ",
    );
    push_org_label(&mut sql, client, max_orgs);
    sql.push(" AS org, ");
    sql.push("if((org_id, scope_issuer_id) IN (SELECT org_id, scope_issuer_id FROM ")
        .push(&totals)
        .push(issuer_rows);
    sql.push(" AND org_id IN ");
    push_top_orgs(&mut sql, client, max_orgs);
    sql.push(
        " GROUP BY org_id, scope_issuer_id ORDER BY countMerge(events) DESC, org_id, scope_issuer_id LIMIT ",
    )
    .u64(max_issuers);
    sql.push("), scope_issuer_id, '")
        .push(OTHER_LABEL)
        .push("') AS issuer, ");
    sql.push(&format!(
        "{} AS aw, {} AS ac, {} AS sh, \
         countMergeIf(events, event_type = 'badge.shared') AS sh_n, \
         countMergeIf(events, event_type = 'badge.viewed') AS vw_n, {} AS uv FROM ",
        sketch_merge("assertions", "badge.awarded"),
        sketch_merge("assertions", "badge.accepted"),
        sketch_merge("assertions", "badge.shared"),
        sketch_merge("viewers", "badge.viewed"),
    ));
    sql.push(&totals)
        .push(issuer_rows)
        .push(" GROUP BY org_id, org, issuer) GROUP BY org, issuer ORDER BY org, issuer");
    sql.build(client)
}

/// All-time count of one distribution value of one org label for
/// `/metrics`: a row of [`dimension_totals`].
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct DimensionTotals {
    pub org_id: String,
    /// `badge.awarded` (award method), `badge.shared` (share channel) or
    /// `badge.viewed` (view source).
    pub event_type: String,
    /// The award method, channel or source (a closed set).
    pub value: String,
    /// As in `/api/v1/distribution`: distinct awarded assertions for award
    /// methods, events for channels and sources.
    pub count: u64,
}

/// All-time award methods, share channels and view sources per org for
/// `/metrics` (rows of [`DimensionTotals`], by org, type, value), orgs
/// beyond the `max_orgs` most active folded into `__other__` by adding up
/// their per-org counts.
pub fn dimension_totals(client: &Client, max_orgs: u64) -> Query {
    let mut sql = Sql::default();
    sql.push("SELECT ");
    push_org_label(&mut sql, client, max_orgs);
    sql.push(
        " AS org, ty, value, sum(n) AS count FROM (SELECT org_id, toString(event_type) AS ty, \
         dim_value AS value, if(event_type = 'badge.awarded', uniqExactMerge(assertions), \
         countMerge(events)) AS n FROM ",
    );
    sql.push(&table(client, "rollup_day"));
    sql.push(
        " WHERE event_type IN ('badge.awarded', 'badge.shared', 'badge.viewed') \
         GROUP BY org_id, event_type, dim_value) GROUP BY org, ty, value ORDER BY org, ty, value",
    );
    sql.build(client)
}

/// All-time lifecycle stage counts of one org label for `/metrics`: a row
/// of [`lifecycle_totals`].
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct LifecycleTotals {
    pub org_id: String,
    /// Assertions with a `badge.awarded`.
    pub awarded: u64,
    /// … and a `badge.accepted`.
    pub accepted: u64,
    /// … and a `badge.shared`.
    pub shared: u64,
    /// … and a `badge.viewed`.
    pub viewed: u64,
}

/// All-time lifecycle stages per org for `/metrics` (rows of
/// [`LifecycleTotals`], by org): SPEC §7.6 nesting over every assertion
/// ever awarded, orgs beyond the `max_orgs` most active folded into
/// `__other__`.
pub fn lifecycle_totals(client: &Client, max_orgs: u64) -> Query {
    let mut sql = Sql::default();
    sql.push("SELECT ");
    push_org_label(&mut sql, client, max_orgs);
    sql.push(
        " AS org, sum(s1) AS awarded, sum(s2) AS accepted, sum(s3) AS shared, sum(s4) AS viewed \
         FROM (SELECT org_id, countIf(aw_n > 0) AS s1, countIf(aw_n > 0 AND ac_n > 0) AS s2, \
         countIf(aw_n > 0 AND ac_n > 0 AND sh_n > 0) AS s3, \
         countIf(aw_n > 0 AND ac_n > 0 AND sh_n > 0 AND vw_n > 0) AS s4 \
         FROM (SELECT org_id, countIfMerge(awarded) AS aw_n, countIfMerge(accepted) AS ac_n, \
         countIfMerge(shares) AS sh_n, countIfMerge(views) AS vw_n FROM ",
    );
    sql.push(&table(client, "assertion_lifecycle"));
    sql.push(" GROUP BY org_id, ").push(ASSERTION_KEY).push(
        ") GROUP BY org_id) \
         GROUP BY org ORDER BY org",
    );
    sql.build(client)
}

/// How many of the tables the exporter reads exist (readiness: the count
/// must equal [`REQUIRED_TABLES`]`.len()`).
pub fn tables_present(client: &Client) -> Query {
    let db = client.database().unwrap_or(DEFAULT_DATABASE);
    let mut sql = Sql::default();
    sql.push("SELECT toUInt64(count()) FROM system.tables WHERE database = ")
        .str(db);
    sql.push(" AND name IN (");
    for (n, name) in REQUIRED_TABLES.iter().enumerate() {
        if n > 0 {
            sql.push(", ");
        }
        sql.str(name);
    }
    sql.push(")");
    sql.build(client)
}

/// The tables the exporter reads.
pub const REQUIRED_TABLES: [&str; 10] = [
    "events",
    "rollup_minute",
    "rollup_hour",
    "rollup_day",
    "scope_hour",
    "scope_day",
    SCOPE_TOTAL,
    "assertion_lifecycle",
    "badge_classes",
    ANNOTATIONS_TABLE,
];

/// A window cutting through day, hour and minute boundaries:
/// 2024-03-09T22:58:30Z to 2024-03-12T01:02:15Z.
pub const SAMPLE_WINDOW: (u32, u32) = (1_710_025_110, 1_710_205_335);

/// A window cutting through day, hour and minute boundaries around the
/// compatibility test's data (2026-03-01 to 2026-03-03):
/// 2026-02-28T22:58:30Z to 2026-03-03T01:02:15Z.
pub const DATA_WINDOW: (u32, u32) = (1_772_319_510, 1_772_499_735);

/// Every query the exporter can issue, built with representative
/// parameters (each scope kind, all-time and windows through every source,
/// every granularity and dimension, rollups kept and expired), named for
/// test output. Used by the compatibility tests that run each statement
/// on ClickHouse 18.16 and on current ClickHouse (chDB).
pub fn sample_queries(client: &Client) -> Vec<(String, Query)> {
    let id = |s: &str| Some(s.to_owned());
    let scopes = [
        ("all_orgs", Filter::default()),
        (
            "org",
            Filter {
                org: id("acme"),
                ..Filter::default()
            },
        ),
        (
            "issuer",
            Filter {
                org: id("acme"),
                issuer: id("i1"),
                badge_class: None,
            },
        ),
        (
            "badge",
            Filter {
                org: id("acme"),
                issuer: None,
                badge_class: id("rust"),
            },
        ),
        (
            "issuer_badge",
            Filter {
                org: id("acme"),
                issuer: id("i1"),
                badge_class: id("rust"),
            },
        ),
        (
            "quoting",
            Filter {
                org: id("o'rg\\x"),
                ..Filter::default()
            },
        ),
    ];
    let kept = Retention::KEEP_ALL;
    // Every minute and hour bucket expired: those pieces come from `events`.
    let expired = Retention {
        minute_from: u32::MAX,
        hour_from: u32::MAX,
    };
    let cross = Window::new(SAMPLE_WINDOW.0, SAMPLE_WINDOW.1).expect("valid sample window");
    let data = Window::new(DATA_WINDOW.0, DATA_WINDOW.1).expect("valid data window");
    let day = Source::Day;
    let periods = [
        ("all_time", Period::AllTime),
        ("window", Period::window(cross, day, kept)),
        (
            "previous_window",
            Period::window(cross.previous().expect("after the epoch"), day, kept),
        ),
        // Inside one minute: raw events only.
        (
            "seconds",
            Period::window(
                Window::new(1_710_025_110, 1_710_025_140).expect("valid"),
                day,
                kept,
            ),
        ),
        // Whole days only.
        (
            "days",
            Period::window(
                Window::new(1_709_251_200, 1_711_929_600).expect("valid"),
                day,
                kept,
            ),
        ),
        ("data", Period::window(data, day, kept)),
        ("data_expired", Period::window(data, day, expired)),
    ];
    let mut out = Vec::new();
    for (scope_name, filter) in &scopes {
        for (period_name, period) in &periods {
            out.push((
                format!("measure_counts.{scope_name}.{period_name}"),
                measure_counts(client, filter, period),
            ));
        }
        for (period_name, period) in [
            ("data", Period::window(data, day, kept)),
            ("data_expired", Period::window(data, day, expired)),
        ] {
            out.push((
                format!("class_counts.{scope_name}.{period_name}"),
                class_counts(client, filter, &period),
            ));
        }
        out.push((
            format!("badge_classes.{scope_name}"),
            badge_classes(client, filter),
        ));
        for dimension in Dimension::ALL {
            out.push((
                format!("distribution.{}.{scope_name}", dimension.as_str()),
                distribution(client, filter, &Period::window(data, day, kept), dimension),
            ));
        }
        for granularity in Granularity::ALL {
            for (retention_name, retention) in [("kept", kept), ("expired", expired)] {
                out.push((
                    format!(
                        "trend_counts.{}.{scope_name}.{retention_name}",
                        granularity.as_str()
                    ),
                    trend_counts(
                        client,
                        filter,
                        &Period::window(data, granularity.source(), retention),
                        granularity,
                    ),
                ));
            }
        }
        out.push((
            format!("lifecycle.{scope_name}"),
            lifecycle(client, filter, data),
        ));
        out.push((
            format!("annotations.{scope_name}"),
            annotations(client, filter, data, 1000),
        ));
    }
    out.push(("issuer_totals".into(), issuer_totals(client, 100, 500)));
    out.push((
        "issuer_totals.tight_limits".into(),
        issuer_totals(client, 1, 1),
    ));
    out.push(("dimension_totals".into(), dimension_totals(client, 100)));
    out.push((
        "dimension_totals.tight_limits".into(),
        dimension_totals(client, 1),
    ));
    out.push(("lifecycle_totals".into(), lifecycle_totals(client, 100)));
    out.push((
        "lifecycle_totals.tight_limits".into(),
        lifecycle_totals(client, 1),
    ));
    out.push(("tables_present".into(), tables_present(client)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::default().with_database("bp_test")
    }

    fn text(q: &Query) -> String {
        q.sql_display().to_string()
    }

    #[test]
    fn all_time_reads_the_org_rows_of_scope_total_only() {
        let f = Filter {
            org: Some("acme".into()),
            ..Filter::default()
        };
        let sql = text(&measure_counts(&client(), &f, &Period::AllTime));
        assert!(
            sql.contains("FROM bp_test.scope_total WHERE org_id = 'acme' AND scope_issuer_id = '' AND scope_badge_class_id = '')"),
            "{sql}"
        );
        assert!(
            !sql.contains("UNION ALL") && !sql.contains("bucket"),
            "{sql}"
        );
    }

    #[test]
    fn windows_union_every_source() {
        let w = Window::new(SAMPLE_WINDOW.0, SAMPLE_WINDOW.1).unwrap();
        let f = Filter {
            org: Some("acme".into()),
            issuer: Some("i1".into()),
            badge_class: None,
        };
        let sql = text(&measure_counts(
            &client(),
            &f,
            &Period::window(w, Source::Day, Retention::KEEP_ALL),
        ));
        // Raw edges up to the hours (no minute scope table), two hour
        // pieces, the days.
        assert_eq!(sql.matches(" UNION ALL ").count(), 4, "{sql}");
        for t in ["scope_day", "scope_hour", "events"] {
            assert!(
                sql.contains(&format!("FROM bp_test.{t} WHERE")),
                "{t}: {sql}"
            );
        }
        // The issuer's own rows of the scope tables, and its events.
        assert_eq!(
            sql.matches(
                "org_id = 'acme' AND scope_issuer_id = 'i1' AND scope_badge_class_id = '' AND "
            )
            .count(),
            3,
            "{sql}"
        );
        assert_eq!(
            sql.matches("org_id = 'acme' AND issuer_id = 'i1' AND ")
                .count(),
            2,
            "{sql}"
        );
        assert!(sql.contains("bucket >= toDateTime(1710028800, 'UTC') AND bucket < toDateTime(1710201600, 'UTC')"), "{sql}");
        assert!(sql.contains("occurred_at >= toDateTime(1710025110, 'UTC') AND occurred_at < toDateTime(1710025200, 'UTC')"), "{sql}");
        assert!(!sql.contains('?'), "{sql}");
    }

    #[test]
    fn user_input_is_escaped() {
        let f = Filter {
            org: Some("x' OR 1=1 --".into()),
            ..Filter::default()
        };
        let sql = text(&measure_counts(&client(), &f, &Period::AllTime));
        assert!(sql.contains(r"org_id = 'x\' OR 1=1 --'"), "{sql}");
    }

    #[test]
    fn admin_all_orgs_has_no_org_condition() {
        let sql = text(&measure_counts(
            &client(),
            &Filter::default(),
            &Period::AllTime,
        ));
        assert!(!sql.contains("org_id ="), "{sql}");
        assert!(
            sql.contains("WHERE scope_issuer_id = '' AND scope_badge_class_id = ''"),
            "{sql}"
        );
    }

    #[test]
    fn database_is_quoted_when_needed() {
        let c = Client::default().with_database("my-db");
        assert_eq!(table(&c, "events"), "`my-db`.events");
        assert_eq!(table(&Client::default(), "events"), "badgepulse.events");
    }

    #[test]
    fn issuer_totals_binds_limits() {
        let sql = text(&issuer_totals(&client(), 3, 7));
        assert_eq!(sql.matches("LIMIT 3)").count(), 2, "{sql}");
        assert!(sql.contains("LIMIT 7)"), "{sql}");
    }

    #[test]
    fn org_totals_fold_with_the_same_top_orgs() {
        let top = "(SELECT org_id FROM bp_test.scope_total \
                   WHERE scope_issuer_id = '' AND scope_badge_class_id = '' GROUP BY org_id \
                   ORDER BY countMerge(events) DESC, org_id LIMIT 3)";
        for sql in [
            text(&dimension_totals(&client(), 3)),
            text(&lifecycle_totals(&client(), 3)),
        ] {
            assert!(
                sql.starts_with(&format!(
                    "SELECT if(org_id IN {top}, org_id, '__other__') AS org"
                )),
                "{sql}"
            );
        }
        let sql = text(&lifecycle_totals(&client(), 3));
        assert!(
            sql.contains("countIf(aw_n > 0 AND ac_n > 0 AND sh_n > 0 AND vw_n > 0) AS s4"),
            "{sql}"
        );
        // Folded orgs add up per-org distinct counts rather than merging
        // states across orgs.
        let sql = text(&issuer_totals(&client(), 3, 7));
        assert!(
            sql.contains(" GROUP BY org_id, org, issuer) GROUP BY org, issuer"),
            "{sql}"
        );
    }

    #[test]
    fn samples_are_complete_and_bound() {
        let samples = sample_queries(&client());
        assert!(samples.len() >= 30);
        let mut names = std::collections::HashSet::new();
        for (name, q) in &samples {
            assert!(names.insert(name.clone()), "duplicate sample name {name}");
            let sql = text(q);
            assert!(!sql.contains('?'), "{name}: unbound: {sql}");
        }
    }

    fn sample_window() -> Window {
        Window::new(SAMPLE_WINDOW.0, SAMPLE_WINDOW.1).unwrap()
    }

    #[test]
    fn trends_never_read_coarser_buckets_than_their_granularity() {
        let f = Filter {
            org: Some("acme".into()),
            ..Filter::default()
        };
        for g in Granularity::ALL {
            let period = Period::window(sample_window(), g.source(), Retention::KEEP_ALL);
            let sql = text(&trend_counts(&client(), &f, &period, g));
            let reads = |t: &str| sql.contains(&format!("FROM bp_test.{t} "));
            match g {
                Granularity::Minute => {
                    assert!(!reads("scope_hour") && !reads("scope_day"), "{sql}")
                }
                Granularity::Hour => assert!(!reads("scope_day") && reads("scope_hour"), "{sql}"),
                _ => assert!(reads("scope_day"), "{sql}"),
            }
            assert!(sql.ends_with(" GROUP BY t ORDER BY t"), "{sql}");
        }
        let period = Period::window(sample_window(), Source::Day, Retention::KEEP_ALL);
        let sql = text(&trend_counts(&client(), &f, &period, Granularity::Week));
        assert!(
            sql.contains("toUInt32(toUInt32(toMonday(bucket)) * 86400) AS t"),
            "{sql}"
        );
        assert!(
            sql.contains("toUInt32(toUInt32(toMonday(occurred_at)) * 86400) AS t"),
            "{sql}"
        );
        assert!(sql.contains("GROUP BY t, event_type"), "{sql}");
    }

    #[test]
    fn distribution_reads_one_event_type() {
        let period = Period::window(sample_window(), Source::Day, Retention::KEEP_ALL);
        let sql = text(&distribution(
            &client(),
            &Filter::default(),
            &period,
            Dimension::ShareChannel,
        ));
        assert_eq!(
            sql.matches("WHERE event_type = 'badge.shared'").count(),
            5,
            "{sql}"
        );
        assert_eq!(
            sql.matches("WHERE type = 'badge.shared'").count(),
            2,
            "{sql}"
        );
        assert!(sql.contains("toString(share_channel) AS value"), "{sql}");
        assert!(
            sql.starts_with("SELECT value, countMerge(events) AS n"),
            "{sql}"
        );
        let sql = text(&distribution(
            &client(),
            &Filter::default(),
            &period,
            Dimension::AwardMethod,
        ));
        assert!(
            sql.starts_with("SELECT value, uniqExactMerge(assertions) AS n"),
            "{sql}"
        );
    }

    #[test]
    fn annotation_scopes() {
        let w = sample_window();
        let f = |issuer: Option<&str>, badge: Option<&str>| Filter {
            org: Some("acme".into()),
            issuer: issuer.map(Into::into),
            badge_class: badge.map(Into::into),
        };
        let sql = text(&annotations(&client(), &f(None, None), w, 10));
        assert!(sql.contains("WHERE org_id = 'acme' AND at >= "), "{sql}");
        assert!(sql.ends_with("ORDER BY at, id LIMIT 10"), "{sql}");
        let sql = text(&annotations(&client(), &f(Some("i1"), None), w, 10));
        assert!(
            sql.contains("AND (issuer_id = '' OR issuer_id = 'i1') AND at"),
            "{sql}"
        );
        let sql = text(&annotations(&client(), &f(None, Some("b1")), w, 10));
        assert!(sql.contains("AND (badge_class_id = '' OR badge_class_id = 'b1') AND (issuer_id = '' OR badge_class_id = 'b1') AND at"), "{sql}");
        let sql = text(&annotations(&client(), &f(Some("i1"), Some("b1")), w, 10));
        assert!(!sql.contains("(issuer_id = '' OR badge_class_id"), "{sql}");
        let sql = text(&annotations(&client(), &Filter::default(), w, 10));
        assert!(sql.contains(" WHERE at >= "), "{sql}");
    }

    #[test]
    fn lifecycle_cohort_is_by_first_award() {
        let sql = text(&lifecycle(&client(), &Filter::default(), sample_window()));
        assert!(sql.contains(
            "WHERE aw_n > 0 AND aw >= toDateTime(1710025110, 'UTC') AND aw < toDateTime(1710205335, 'UTC')"
        ), "{sql}");
        assert!(
            sql.contains("FROM bp_test.assertion_lifecycle GROUP BY cityHash64(org_id, issuer_id, badge_class_id, assertion_id))"),
            "{sql}"
        );
    }
}
