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

use crate::window::{decompose, Segment, Source, Window};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Every event ever: `rollup_day` without a time condition (every event
    /// lands in a day bucket, today's included).
    AllTime,
    /// Events with `occurred_at` in the window.
    Window(Window),
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

/// Appends ` WHERE …` for `filter` and, if given, `column` in
/// `[from, to)`; nothing when there is no condition.
fn push_where(sql: &mut Sql, filter: &Filter, time: Option<(&str, u32, u32)>) {
    let mut first = true;
    let mut and = |sql: &mut Sql| {
        sql.push(if first { " WHERE " } else { " AND " });
        first = false;
    };
    if let Some(org) = &filter.org {
        and(sql);
        sql.push("org_id = ").str(org);
    }
    if let Some(issuer) = &filter.issuer {
        and(sql);
        sql.push("issuer_id = ").str(issuer);
    }
    if let Some(badge_class) = &filter.badge_class {
        and(sql);
        sql.push("badge_class_id = ").str(badge_class);
    }
    if let Some((column, from, to)) = time {
        and(sql);
        sql.push(column).push(" >= ").time(from);
        sql.push(" AND ").push(column).push(" < ").time(to);
    }
}

/// The columns every state branch yields, in this order: the grouping
/// columns a caller asks for, then `event_type`, `events`, `assertions`,
/// `viewers`.
const STATE_COLUMNS: &str = "event_type, events, assertions, viewers";

/// One `SELECT` yielding aggregate states of `segment` (or of all time,
/// when `segment` is `None`) with the grouping columns `keys`.
fn push_state_branch(
    sql: &mut Sql,
    client: &Client,
    keys: &str,
    filter: &Filter,
    segment: Option<Segment>,
) {
    match segment {
        Some(Segment {
            source: Source::Raw,
            from,
            to,
        }) => {
            sql.push("SELECT ").push(keys).push(
                ", type AS event_type, countState() AS events, uniqExactState(assertion_id) AS assertions, \
                 uniqExactIfState(viewer_key, viewer_key != 0) AS viewers FROM ",
            );
            sql.push(&table(client, "events"));
            push_where(sql, filter, Some(("occurred_at", from, to)));
            sql.push(" GROUP BY ").push(keys).push(", event_type");
        }
        Some(Segment { source, from, to }) => {
            sql.push("SELECT ")
                .push(keys)
                .push(", ")
                .push(STATE_COLUMNS)
                .push(" FROM ");
            sql.push(&table(client, rollup_table(source)));
            push_where(sql, filter, Some(("bucket", from, to)));
        }
        None => {
            sql.push("SELECT ")
                .push(keys)
                .push(", ")
                .push(STATE_COLUMNS)
                .push(" FROM ");
            sql.push(&table(client, "rollup_day"));
            push_where(sql, filter, None);
        }
    }
}

fn rollup_table(source: Source) -> &'static str {
    match source {
        Source::Day => "rollup_day",
        Source::Hour => "rollup_hour",
        Source::Minute => "rollup_minute",
        Source::Raw => "events",
    }
}

/// `(branch UNION ALL branch …)`: the aggregate states of `period` for
/// `filter`, with the grouping columns `keys`.
fn push_states(sql: &mut Sql, client: &Client, keys: &str, filter: &Filter, period: Period) {
    sql.push("(");
    match period {
        Period::AllTime => push_state_branch(sql, client, keys, filter, None),
        Period::Window(window) => {
            for (n, segment) in decompose(window).into_iter().enumerate() {
                if n > 0 {
                    sql.push(" UNION ALL ");
                }
                push_state_branch(sql, client, keys, filter, Some(segment));
            }
        }
    }
    sql.push(")");
}

/// The merged measures of SPEC §7, in the field order of
/// [`crate::measures::Counts`].
const COUNT_COLUMNS: &str = "\
uniqExactMergeIf(assertions, event_type = 'badge.awarded') AS awarded, \
uniqExactMergeIf(assertions, event_type = 'badge.accepted') AS accepted, \
uniqExactMergeIf(assertions, event_type = 'badge.shared') AS shared, \
countMergeIf(events, event_type = 'badge.shared') AS shares, \
countMergeIf(events, event_type = 'badge.viewed') AS views, \
uniqExactIfMergeIf(viewers, event_type = 'badge.viewed') AS unique_viewers, \
uniqExactMergeIf(assertions, event_type = 'badge.revoked') AS revoked, \
uniqExact(org_id, badge_class_id) AS badge_classes";

/// One row of [`crate::measures::Counts`] for `filter` and `period`.
pub fn measure_counts(client: &Client, filter: &Filter, period: Period) -> Query {
    let mut sql = Sql::default();
    sql.push("SELECT ").push(COUNT_COLUMNS).push(" FROM ");
    push_states(&mut sql, client, "org_id, badge_class_id", filter, period);
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

/// All-time counts per (org, issuer) for `/metrics`, with label
/// cardinality bounded in SQL: orgs beyond the `max_orgs` most active
/// (by event count) become `__other__`, and (org, issuer) pairs beyond the
/// `max_issuers` most active pairs of the kept orgs get issuer
/// `__other__`. Folding merges states, so distinct counts stay exact.
pub fn issuer_totals(client: &Client, max_orgs: u64, max_issuers: u64) -> Query {
    let day = table(client, "rollup_day");
    let top_orgs = |sql: &mut Sql| {
        sql.push("(SELECT org_id FROM ").push(&day);
        sql.push(" GROUP BY org_id ORDER BY countMerge(events) DESC, org_id LIMIT ")
            .u64(max_orgs)
            .push(")");
    };
    let mut sql = Sql::default();
    sql.push("SELECT if(org_id IN ");
    top_orgs(&mut sql);
    sql.push(", org_id, '")
        .push(OTHER_LABEL)
        .push("') AS org, ");
    sql.push("if((org_id, issuer_id) IN (SELECT org_id, issuer_id FROM ")
        .push(&day);
    sql.push(" WHERE org_id IN ");
    top_orgs(&mut sql);
    sql.push(
        " GROUP BY org_id, issuer_id ORDER BY countMerge(events) DESC, org_id, issuer_id LIMIT ",
    )
    .u64(max_issuers);
    sql.push("), issuer_id, '")
        .push(OTHER_LABEL)
        .push("') AS issuer, ");
    sql.push(
        "uniqExactMergeIf(assertions, event_type = 'badge.awarded') AS awarded, \
         uniqExactMergeIf(assertions, event_type = 'badge.accepted') AS accepted, \
         uniqExactMergeIf(assertions, event_type = 'badge.shared') AS shared, \
         countMergeIf(events, event_type = 'badge.shared') AS shares, \
         countMergeIf(events, event_type = 'badge.viewed') AS views, \
         uniqExactIfMergeIf(viewers, event_type = 'badge.viewed') AS unique_viewers FROM ",
    );
    sql.push(&day)
        .push(" GROUP BY org, issuer ORDER BY org, issuer");
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
pub const REQUIRED_TABLES: [&str; 4] = ["events", "rollup_minute", "rollup_hour", "rollup_day"];

/// A window cutting through day, hour and minute boundaries:
/// 2024-03-09T22:58:30Z to 2024-03-12T01:02:15Z.
pub const SAMPLE_WINDOW: (u32, u32) = (1_710_025_110, 1_710_205_335);

/// Every query the exporter can issue, built with representative
/// parameters (each scope kind, all-time and windows through every source),
/// named for test output. Used by the compatibility tests that run each
/// statement on ClickHouse 18.16 and on current ClickHouse (chDB).
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
                issuer: id("acme-academy"),
                badge_class: None,
            },
        ),
        (
            "badge",
            Filter {
                org: id("acme"),
                issuer: None,
                badge_class: id("rust-101"),
            },
        ),
        (
            "issuer_badge",
            Filter {
                org: id("acme"),
                issuer: id("acme-academy"),
                badge_class: id("rust-101"),
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
    let cross = Window::new(SAMPLE_WINDOW.0, SAMPLE_WINDOW.1).expect("valid sample window");
    let periods = [
        ("all_time", Period::AllTime),
        ("window", Period::Window(cross)),
        (
            "previous_window",
            Period::Window(cross.previous().expect("after the epoch")),
        ),
        // Inside one minute: raw events only.
        (
            "seconds",
            Period::Window(Window::new(1_710_025_110, 1_710_025_140).expect("valid")),
        ),
        // Whole days only.
        (
            "days",
            Period::Window(Window::new(1_709_251_200, 1_711_929_600).expect("valid")),
        ),
    ];
    let mut out = Vec::new();
    for (scope_name, filter) in &scopes {
        for (period_name, period) in &periods {
            out.push((
                format!("measure_counts.{scope_name}.{period_name}"),
                measure_counts(client, filter, *period),
            ));
        }
    }
    out.push(("issuer_totals".into(), issuer_totals(client, 100, 500)));
    out.push((
        "issuer_totals.tight_limits".into(),
        issuer_totals(client, 1, 1),
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
    fn all_time_reads_rollup_day_only() {
        let f = Filter {
            org: Some("acme".into()),
            ..Filter::default()
        };
        let sql = text(&measure_counts(&client(), &f, Period::AllTime));
        assert!(
            sql.contains("FROM bp_test.rollup_day WHERE org_id = 'acme')"),
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
        let sql = text(&measure_counts(&client(), &f, Period::Window(w)));
        assert_eq!(sql.matches(" UNION ALL ").count(), 6, "{sql}");
        for t in ["rollup_day", "rollup_hour", "rollup_minute", "events"] {
            assert!(
                sql.contains(&format!("FROM bp_test.{t} WHERE")),
                "{t}: {sql}"
            );
        }
        assert_eq!(
            sql.matches("org_id = 'acme' AND issuer_id = 'i1' AND ")
                .count(),
            7,
            "{sql}"
        );
        assert!(sql.contains("bucket >= toDateTime(1710028800, 'UTC') AND bucket < toDateTime(1710201600, 'UTC')"), "{sql}");
        assert!(sql.contains("occurred_at >= toDateTime(1710025110, 'UTC') AND occurred_at < toDateTime(1710025140, 'UTC')"), "{sql}");
        assert!(!sql.contains('?'), "{sql}");
    }

    #[test]
    fn user_input_is_escaped() {
        let f = Filter {
            org: Some("x' OR 1=1 --".into()),
            ..Filter::default()
        };
        let sql = text(&measure_counts(&client(), &f, Period::AllTime));
        assert!(sql.contains(r"org_id = 'x\' OR 1=1 --'"), "{sql}");
    }

    #[test]
    fn admin_all_orgs_has_no_org_condition() {
        let sql = text(&measure_counts(
            &client(),
            &Filter::default(),
            Period::AllTime,
        ));
        assert!(!sql.contains("WHERE"), "{sql}");
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
}
