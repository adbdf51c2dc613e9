//! Award cohorts (SPEC §7.9): the assertions first awarded in a window,
//! counted per cohort (the week or month of the first award, UTC) and per
//! period in which they reached a stage.

use clickhouse::query::Query;
use clickhouse::Client;

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
/// cohort and period.
pub fn reach_counts(
    client: &Client,
    filter: &Filter,
    window: Window,
    granularity: Granularity,
    stage: Stage,
) -> Query {
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
    let mut sql = Sql::default();
    sql.push("SELECT cohort, reached, if(reached = 1, ")
        .push(&period_start(granularity, "toDateTime(reached_at, 'UTC')"))
        .push(", toUInt32(0)) AS period, count() AS n FROM (SELECT ")
        .push(&period_start(granularity, "aw"))
        .push(" AS cohort, toUInt8(")
        .push(present)
        .push(") AS reached, ")
        .push(at)
        .push(" AS reached_at FROM ");
    push_cohort(&mut sql, client, filter, window);
    sql.push(") GROUP BY cohort, reached, period ORDER BY cohort, reached, period");
    sql.build(client)
}
