//! Award cohorts (SPEC §7.9): the assertions first awarded in a window,
//! counted per cohort (the week or month of the first award, UTC) and per
//! period in which they reached a stage. An org-wide window adds up the
//! stage reach days of its whole award days (`award_days`) and counts the
//! pieces of a day at its ends from their assertions.

use clickhouse::query::Query;
use clickhouse::Client;

use super::award_days::{push_award_days, AwardDays, Unsealed};
use super::lifecycle::push_cohort;
use super::sql::Sql;
use crate::model::cohorts::Stage;
use crate::model::scope::Filter;
use crate::model::window::{Granularity, Window};

/// The start of `t`'s week (ISO, Monday) or month, as `UInt32` epoch
/// seconds.
fn period_start(granularity: Granularity, t: &str) -> String {
    match granularity {
        Granularity::Month => format!("toUInt32(toUInt32(toStartOfMonth({t})) * 86400)"),
        _ => format!("toUInt32(toUInt32(toMonday({t})) * 86400)"),
    }
}

/// The cohorts of `filter` first awarded in `window` by `granularity`
/// (week or month), each split by whether and in which period it reached
/// `stage` (its first event and every earlier stage's, the latest of
/// them): rows of [`ReachCounts`](crate::model::cohorts::ReachCounts), by
/// cohort and period. `unsealed`: the award days not sealed, listed for
/// an org-wide `filter` ([`super::award_days::unsealed`]).
pub fn reach_counts(
    client: &Client,
    filter: &Filter,
    window: Window,
    granularity: Granularity,
    stage: Stage,
    unsealed: Option<&Unsealed>,
) -> Query {
    let split = window.whole_days();
    let mut sql = Sql::default();
    sql.push("SELECT cohort, reached, period, sum(n) AS n FROM (");
    match split
        .days
        .and_then(|days| AwardDays::of(filter, days, unsealed))
    {
        None => push_counted_reach(&mut sql, client, filter, window, granularity, stage),
        Some(days) => {
            push_sealed_reach(&mut sql, client, &days, granularity, stage);
            for piece in split.pieces() {
                sql.push(" UNION ALL ");
                push_counted_reach(&mut sql, client, filter, piece, granularity, stage);
            }
        }
    }
    sql.push(") GROUP BY cohort, reached, period ORDER BY cohort, reached, period");
    sql.build(client)
}

/// `SELECT cohort, reached, period, n`: the assertions of `window`,
/// counted from their rows.
fn push_counted_reach(
    sql: &mut Sql,
    client: &Client,
    filter: &Filter,
    window: Window,
    granularity: Granularity,
    stage: Stage,
) {
    let (present, at) = match stage {
        Stage::Accepted => ("ac_n > 0", "toUInt32(ac)"),
        Stage::Shared => (
            "ac_n > 0 AND sh_n > 0",
            "greatest(toUInt32(ac), toUInt32(sh))",
        ),
        Stage::Viewed => (
            "ac_n > 0 AND sh_n > 0 AND vw_n > 0",
            "greatest(greatest(toUInt32(ac), toUInt32(sh)), toUInt32(vw))",
        ),
    };
    sql.push("SELECT cohort, reached, if(reached = 1, ")
        .push(&period_start(granularity, "toDateTime(reached_at, 'UTC')"))
        .push(", toUInt32(0)) AS period, count() AS n FROM (SELECT ")
        .push(&period_start(granularity, "aw"))
        .push(" AS cohort, toUInt8(")
        .push(present)
        .push(") AS reached, ")
        .push(at)
        .push(" AS reached_at FROM ");
    push_cohort(sql, client, filter, window);
    sql.push(") GROUP BY cohort, reached, period");
}

/// The same from the award days `days`: per day, the assertions that
/// reached `stage` per reach day (`reach_keys`: day number × 4 + stage)
/// and the rest of the day's awards, not reached.
fn push_sealed_reach(
    sql: &mut Sql,
    client: &Client,
    days: &AwardDays,
    granularity: Granularity,
    stage: Stage,
) {
    let number = match stage {
        Stage::Accepted => 1,
        Stage::Shared => 2,
        Stage::Viewed => 3,
    };
    let day_start = |day: &str| format!("toDateTime(toUInt32({day} * 86400), 'UTC')");
    sql.push(&format!(
        "SELECT cohort, tupleElement(e, 1) AS reached, tupleElement(e, 2) AS period, tupleElement(e, 3) AS n \
         FROM (SELECT {} AS cohort, \
         arrayFilter(p -> tupleElement(p, 1) % 4 = {number}, arrayMap((k, c) -> (k, c), reach_keys, reach_counts)) AS hit, \
         arrayConcat([(toUInt8(0), toUInt32(0), toUInt64(awarded - arraySum(arrayMap(p -> tupleElement(p, 2), hit))))], \
         arrayMap(p -> (toUInt8(1), {}, toUInt64(tupleElement(p, 2))), hit)) AS entries FROM ",
        period_start(granularity, &day_start("toUInt32(day)")),
        period_start(granularity, &day_start("intDiv(tupleElement(p, 1), 4)")),
    ));
    push_award_days(sql, client, days, "awarded, reach_keys, reach_counts");
    sql.push(") ARRAY JOIN entries AS e WHERE n > 0");
}
