//! The award days: what the cohort first awarded on each UTC day holds,
//! per org (`lifecycle_days`, argued in ARCHITECTURE.md). The aggregator
//! seals a day once its rows have settled; a day changed since its seal
//! (today's awards, late accepts, shares and views of older ones) is
//! counted from its `assertion_lifecycle` rows with the very same SQL
//! (`contract::tables::cohort_day_summaries`). So an org-wide cohort read
//! is bounded by org days and recent changes, not assertions, and exact
//! whether or not the aggregator has sealed yet. The `/metrics`
//! lifecycle and the org-wide timing, cohorts and impact read them.
//!
//! A read takes two statements: [`unsealed`] lists the days changed
//! since their seal, then the answer reads the sealed row of every other
//! day and counts the listed ones, named in its text. Naming the days
//! (instead of listing them inside the answer's statement, where the
//! count's SQL mentions them six times and ClickHouse lists them six
//! times) keeps the answer's cost to its rows. A day changed between the
//! two statements is read as sealed, as it was when listed.

use badgepulse_contract::tables::{
    cohort_day_summaries, unsealed_lifecycle_days, LIFECYCLE_DAYS, LIFECYCLE_TOUCHES,
    SUMMARY_COLUMNS,
};
use clickhouse::query::Query;
use clickhouse::Client;

use super::sql::{table, Sql};
use crate::model::scope::Filter;

/// The most unsealed days an answer names in its text; with more (right
/// after an upgrade, or with the aggregator's seals stopped) the answer
/// lists them itself.
pub const MAX_NAMED: usize = 1_000;

/// Stands for the bound org in SQL text built with the contract's
/// functions (see [`Sql::push_binding`]).
const ORG: &str = "\u{1}org\u{1}";

/// Stands for the named unsealed days (two bound arrays) in such text.
const NAMED: &str = "\u{1}named\u{1}";

/// One award day not sealed since its last change: a row of
/// [`unsealed`].
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct UnsealedDay {
    pub org_id: String,
    /// UTC day number.
    pub day: u32,
}

/// The award days changed since their seal of what an org-wide read
/// covers: named, or too many to name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsealed {
    Named(Vec<UnsealedDay>),
    TooMany,
}

impl Unsealed {
    /// The rows of [`unsealed`], at most [`MAX_NAMED`] + 1.
    pub fn from_rows(rows: Vec<UnsealedDay>) -> Unsealed {
        if rows.len() > MAX_NAMED {
            Unsealed::TooMany
        } else {
            Unsealed::Named(rows)
        }
    }
}

/// The award days of `org` (every org when `None`) changed since their
/// seal, at most [`MAX_NAMED`] + 1: rows of [`UnsealedDay`].
pub fn unsealed(client: &Client, org: Option<&str>) -> Query {
    let which = AwardDays {
        org,
        days: None,
        unsealed: &Unsealed::TooMany,
    };
    let mut sql = Sql::default();
    which.push_text(
        &mut sql,
        &format!(
            "SELECT org_id, toUInt32(day) AS day FROM ({}) ORDER BY org_id, day LIMIT {}",
            unsealed_lifecycle_days(
                &table(client, LIFECYCLE_TOUCHES),
                &table(client, LIFECYCLE_DAYS),
                &which.condition()
            ),
            MAX_NAMED + 1
        ),
    );
    sql.build(client)
}

/// Which award days to read: one org's or every org's, all of them or
/// the UTC day numbers `[first, end)`, and those of them not sealed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AwardDays<'a> {
    pub org: Option<&'a str>,
    pub days: Option<(u32, u32)>,
    pub unsealed: &'a Unsealed,
}

impl<'a> AwardDays<'a> {
    /// The award days of `filter`'s cohorts over `days`, if `filter`
    /// spans whole orgs (no issuer or badge class: the days are counted
    /// per org) and the reader listed their unsealed days.
    pub(crate) fn of(
        filter: &'a Filter,
        days: (u32, u32),
        unsealed: Option<&'a Unsealed>,
    ) -> Option<AwardDays<'a>> {
        unsealed
            .filter(|_| filter.org_wide())
            .map(|unsealed| AwardDays {
                org: filter.org.as_deref(),
                days: Some(days),
                unsealed,
            })
    }

    /// ` WHERE …` on `org_id` (as [`ORG`]) and `day`, or nothing.
    fn condition(&self) -> String {
        let mut conditions = Vec::new();
        if self.org.is_some() {
            conditions.push(format!("org_id = {ORG}"));
        }
        if let Some((first, end)) = self.days {
            let date = |day: u32| format!("toDate(toDateTime({}, 'UTC'))", u64::from(day) * 86_400);
            conditions.push(format!("day >= {} AND day < {}", date(first), date(end)));
        }
        if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        }
    }

    /// Appends `text`, binding the org for [`ORG`] and the named days
    /// (orgs, then day starts) for [`NAMED`].
    fn push_text(&self, sql: &mut Sql, text: &str) {
        for (n, piece) in text.split(NAMED).enumerate() {
            if n > 0 {
                if let Unsealed::Named(days) = self.unsealed {
                    sql.strs(days.iter().map(|d| d.org_id.clone()).collect())
                        .push(", ")
                        .u32s(days.iter().map(|d| d.day * 86_400).collect());
                }
            }
            match self.org {
                Some(org) => sql.push_binding(piece, ORG, org),
                None => sql.push(piece),
            };
        }
    }
}

/// `(SELECT org_id, day, columns… FROM …)`: one row per award day of
/// `which` that has any row, with `columns` (a `", "`-separated part of
/// `SUMMARY_COLUMNS`): the sealed row of a day sealed since its last
/// change, the counted one of an unsealed day. Only `columns` are read
/// from the sealed rows: ClickHouse 18.16 reads every column a subquery
/// names (the timing's quarter hours are most of a row, and the impact
/// does not need them).
pub(crate) fn push_award_days(sql: &mut Sql, client: &Client, which: &AwardDays, columns: &str) {
    let columns: Vec<&str> = columns.split(", ").collect();
    for column in &columns {
        assert!(
            SUMMARY_COLUMNS.split(", ").any(|c| c == *column),
            "{column} is not a column of lifecycle_days' summaries"
        );
    }
    let days = table(client, LIFECYCLE_DAYS);
    let condition = which.condition();
    let sealed: String = columns
        .iter()
        .map(|c| format!(", argMax({c}, sealed_seq) AS {c}"))
        .collect();
    let count = |unsealed: &str| {
        cohort_day_summaries(
            &table(client, "assertion_lifecycle"),
            &table(client, "lifecycle_refiled"),
            unsealed,
        )
    };
    let text = match which.unsealed {
        Unsealed::Named(named) if named.is_empty() => {
            format!("(SELECT org_id, day{sealed} FROM {days}{condition} GROUP BY org_id, day)")
        }
        Unsealed::Named(_) => {
            let listed = format!(
                "SELECT tupleElement(t, 1) AS org_id, toDate(toDateTime(tupleElement(t, 2), 'UTC')) AS day \
                 FROM (SELECT arrayJoin(arrayMap((o, d) -> (o, d), {NAMED})) AS t)"
            );
            let within = if condition.is_empty() {
                listed.clone()
            } else {
                format!("SELECT org_id, day FROM ({listed}){condition}")
            };
            let others = if condition.is_empty() {
                " WHERE "
            } else {
                " AND "
            };
            format!(
                "(SELECT org_id, day{sealed} FROM {days}{condition}{others}(org_id, day) NOT IN ({listed}) \
                 GROUP BY org_id, day UNION ALL SELECT org_id, day, {} FROM ({}))",
                columns.join(", "),
                count(&within)
            )
        }
        Unsealed::TooMany => {
            // One read of both tables picks each day's sealed or counted
            // columns: a seal or a batch landing while the statement runs
            // can leave a day uncounted once, never counted twice.
            let touches = table(client, LIFECYCLE_TOUCHES);
            let prefixed = |prefix: &str, alias: &str| -> String {
                columns
                    .iter()
                    .map(|c| format!(", {prefix}{c} AS {alias}{c}"))
                    .collect()
            };
            let chosen: String = columns
                .iter()
                .map(|c| format!(", if(sealed >= hi, sealed_{c}, counted_{c}) AS {c}"))
                .collect();
            let unsealed = format!(
                "SELECT org_id, day FROM ({})",
                unsealed_lifecycle_days(&touches, &days, &condition)
            );
            format!(
                "(SELECT org_id, day{chosen} FROM \
                 (SELECT org_id, day, hi, sealed{} FROM \
                 (SELECT org_id, day, maxMerge(max_seq) AS hi FROM {touches}{condition} GROUP BY org_id, day) AS t \
                 ANY LEFT JOIN (SELECT org_id, day, max(sealed_seq) AS sealed{} FROM {days}{condition} \
                 GROUP BY org_id, day) AS d USING org_id, day) AS m \
                 ANY LEFT JOIN (SELECT org_id, day{} FROM ({})) AS c USING org_id, day)",
                prefixed("sealed_", "sealed_"),
                sealed.replace(" AS ", " AS sealed_"),
                prefixed("", "counted_"),
                count(&unsealed),
            )
        }
    };
    which.push_text(sql, &text);
}
