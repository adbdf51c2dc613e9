//! The impact of a program update (SPEC §7.7): the annotation, if the
//! scope may see it, and the acceptance and sharing of the cohorts
//! awarded before and after it. The window measures (views per share,
//! awards and views per day) are the ordinary counts of `counts.rs`.

use clickhouse::query::Query;
use clickhouse::Client;

use super::annotations::{push_select, push_visible};
use super::award_days::{push_award_days, AwardDays, Unsealed};
use super::lifecycle::push_cohort;
use super::sql::{merged, push_states, Conditions, Family, Keys, Measures, Sql};
use crate::model::impact::Windows;
use crate::model::scope::Filter;
use crate::model::tiers::Period;
use crate::model::window::{DaySplit, Window};

/// The annotation `id` if it is in scope of `filter` (the visibility of
/// `annotations::annotations`, any `at`): zero or one
/// [`AnnotationRow`](super::annotations::AnnotationRow).
pub fn annotation(client: &Client, filter: &Filter, id: &str) -> Query {
    let mut sql = Sql::default();
    push_select(&mut sql, client);
    let mut c = Conditions::new();
    c.and(&mut sql).push("id = ").str(id);
    push_visible(&mut sql, &mut c, filter);
    sql.push(" ORDER BY created_at, id LIMIT 1");
    sql.build(client)
}

/// The two cohorts of an impact: a row of [`cohorts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct ImpactCohorts {
    /// Assertions first awarded in the before window, at least
    /// `horizon` days before now.
    pub before_awarded: u64,
    /// … of which accepted within `horizon` days of the award.
    pub before_accepted: u64,
    /// … of which also shared within `horizon` days of the award.
    pub before_shared: u64,
    pub after_awarded: u64,
    pub after_accepted: u64,
    pub after_shared: u64,
}

/// The cohorts of `windows` for `filter` with a horizon of `horizon`
/// days: one [`ImpactCohorts`]; `None` when no award can be in them (see
/// [`Windows::cohorts`]). An accept or share recorded before the award
/// counts as within the horizon. An org-wide scope adds up the accept
/// and share delays of the whole award days of each window
/// (`award_days`, in whole days: an accept within `horizon` days is one
/// at most `horizon` whole days after the award) and counts the pieces of
/// a day (at the windows' ends, and the day of the annotation) from
/// their assertions. `unsealed`: the award days not sealed, listed for an
/// org-wide `filter` ([`super::award_days::unsealed`]).
pub fn cohorts(
    client: &Client,
    filter: &Filter,
    windows: &Windows,
    horizon: u32,
    unsealed: Option<&Unsealed>,
) -> Option<Query> {
    let awards = windows.cohorts()?;
    let part = |(from, to): (u32, u32)| {
        Window::new(from.max(awards.from()), to.min(awards.to())).map(|w| w.whole_days())
    };
    let (before, after) = (part(windows.before), part(windows.after));
    let whole = |split: Option<DaySplit>| split.and_then(|s| s.days);
    let span = match (whole(before), whole(after)) {
        (Some(b), Some(a)) => Some((b.0.min(a.0), b.1.max(a.1))),
        (b, a) => b.or(a),
    };
    let mut sql = Sql::default();
    match span.and_then(|days| AwardDays::of(filter, days, unsealed)) {
        None => push_counted(&mut sql, client, filter, windows, horizon, awards),
        Some(days) => {
            sql.push("SELECT ");
            let columns: Vec<String> = ["before", "after"]
                .iter()
                .flat_map(|w| ["awarded", "accepted", "shared"].map(|m| format!("{w}_{m}")))
                .map(|c| format!("sum({c}) AS {c}"))
                .collect();
            sql.push(&columns.join(", ")).push(" FROM (");
            push_sealed(
                &mut sql,
                client,
                &days,
                (whole(before), whole(after)),
                horizon,
            );
            // The pieces on either side of the annotation are one day:
            // read as one.
            let mut pieces: Vec<Window> = Vec::new();
            for piece in [before, after]
                .into_iter()
                .flatten()
                .flat_map(|s| s.pieces())
            {
                match pieces.last_mut() {
                    Some(last) if last.to() == piece.from() => {
                        *last = Window::new(last.from(), piece.to()).expect("touching pieces");
                    }
                    _ => pieces.push(piece),
                }
            }
            for piece in pieces {
                sql.push(" UNION ALL ");
                push_counted(&mut sql, client, filter, windows, horizon, piece);
            }
            sql.push(")");
        }
    }
    Some(sql.build(client))
}

/// `SELECT before_awarded, …, after_shared`: the cohorts' assertions
/// first awarded in `awards`, counted from their rows.
fn push_counted(
    sql: &mut Sql,
    client: &Client,
    filter: &Filter,
    windows: &Windows,
    horizon: u32,
    awards: Window,
) {
    let horizon_secs = u64::from(horizon) * 86_400;
    sql.push(
        "SELECT countIf(in_before) AS before_awarded, countIf(in_before AND acc) AS before_accepted, \
         countIf(in_before AND acc AND shr) AS before_shared, countIf(in_after) AS after_awarded, \
         countIf(in_after AND acc) AS after_accepted, countIf(in_after AND acc AND shr) AS after_shared \
         FROM (SELECT aw >= ",
    );
    sql.time(windows.before.0)
        .push(" AND aw < ")
        .time(windows.before.1)
        .push(" AS in_before, aw >= ")
        .time(windows.after.0)
        .push(" AND aw < ")
        .time(windows.after.1)
        .push(" AS in_after, ac_n > 0 AND toInt64(ac) - toInt64(aw) <= ")
        .u64(horizon_secs)
        .push(" AS acc, sh_n > 0 AND toInt64(sh) - toInt64(aw) <= ")
        .u64(horizon_secs)
        .push(" AS shr FROM ");
    push_cohort(sql, client, filter, awards);
    sql.push(")");
}

/// UTC day numbers `[first, end)`.
type Days = (u32, u32);

/// The same from the award days `days`: a day counts in the cohort whose
/// whole days (`(before, after)`, UTC day numbers) hold it, its accepts
/// and shares by their delays (`delay_keys`: whole days × 2, + 1 for
/// accepted and shared).
fn push_sealed(
    sql: &mut Sql,
    client: &Client,
    days: &AwardDays,
    (before, after): (Option<Days>, Option<Days>),
    horizon: u32,
) {
    let within = |kind: u32| {
        format!(
            "arraySum(arrayMap((k, c) -> if(k % 2 = {kind} AND intDiv(k, 2) <= {horizon}, c, 0), delay_keys, delay_counts))"
        )
    };
    let held = |sql: &mut Sql, range: Option<Days>| match range {
        Some((first, end)) => {
            sql.push("toUInt32(day) >= ")
                .u32(first)
                .push(" AND toUInt32(day) < ")
                .u32(end);
        }
        None => {
            sql.push("0");
        }
    };
    sql.push(
        "SELECT sumIf(awarded, b) AS before_awarded, sumIf(acc, b) AS before_accepted, \
         sumIf(shr, b) AS before_shared, sumIf(awarded, a) AS after_awarded, sumIf(acc, a) AS after_accepted, \
         sumIf(shr, a) AS after_shared FROM (SELECT ",
    );
    held(sql, before);
    sql.push(" AS b, ");
    held(sql, after);
    sql.push(&format!(
        " AS a, awarded, {} AS acc, {} AS shr FROM ",
        within(0),
        within(1)
    ));
    push_award_days(sql, client, days, "awarded, delay_keys, delay_counts");
    sql.push(")");
}

/// The SPEC §7 counts the impact compares of its two windows (awards,
/// shares, views): a row of [`window_counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct WindowCounts {
    pub before_awarded: u64,
    pub before_shares: u64,
    pub before_views: u64,
    pub after_awarded: u64,
    pub after_shares: u64,
    pub after_views: u64,
}

/// The measures of [`window_counts`]: those of SPEC §7.7 that are counted
/// over the window rather than per cohort.
const WINDOW_MEASURE_NAMES: &[&str] = &["awarded", "shares", "views"];
const WINDOW_MEASURES: Measures = Measures::Only(WINDOW_MEASURE_NAMES);

/// The awards, shares and views of `filter` over the periods of the
/// before and the after window (either may be empty), in one statement:
/// one [`WindowCounts`]; `None` when both are empty. The states of both
/// windows are read as every window count reads them (`counts.rs`) and
/// merged per window; the other measures are neither read nor merged.
pub fn window_counts(
    client: &Client,
    filter: &Filter,
    before: Option<&Period>,
    after: Option<&Period>,
) -> Option<Query> {
    if before.is_none() && after.is_none() {
        return None;
    }
    let mut sql = Sql::default();
    let mut columns = Vec::new();
    for (side, name) in [(0, "before"), (1, "after")] {
        for measure in WINDOW_MEASURE_NAMES {
            columns.push(format!(
                "sumIf({measure}, side = {side}) AS {name}_{measure}"
            ));
        }
    }
    sql.push("SELECT ")
        .push(&columns.join(", "))
        .push(" FROM (SELECT side, ")
        .push(&merged(WINDOW_MEASURES))
        .push(" FROM (");
    // `materialize`: a constant column breaks a union of shards' answers
    // on ClickHouse 18.16 (see `benchmark::peer_counts`).
    let sides = [
        ("materialize(toUInt8(0)) AS side", before),
        ("materialize(toUInt8(1)) AS side", after),
    ];
    let mut first = true;
    for (side, period) in sides {
        let Some(period) = period else { continue };
        if !first {
            sql.push(" UNION ALL ");
        }
        first = false;
        let keys = Keys {
            rollup: side,
            raw: side,
            names: "side",
        };
        sql.push("SELECT * FROM ");
        push_states(
            &mut sql,
            client,
            Family::Scope {
                per_class: false,
                measures: WINDOW_MEASURES,
            },
            &keys,
            filter,
            period,
        );
    }
    sql.push(") GROUP BY side)");
    Some(sql.build(client))
}
