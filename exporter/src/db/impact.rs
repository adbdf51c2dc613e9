//! The impact of a program update (SPEC §7.7): the annotation, if the
//! scope may see it, and the acceptance and sharing of the cohorts
//! awarded before and after it. The window measures (views per share,
//! awards and views per day) are the ordinary counts of `counts.rs`.

use clickhouse::query::Query;
use clickhouse::Client;

use super::annotations::{push_select, push_visible};
use super::lifecycle::push_cohort;
use super::sql::{Conditions, Sql};
use crate::model::impact::Windows;
use crate::model::scope::Filter;

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
/// counts as within the horizon.
pub fn cohorts(client: &Client, filter: &Filter, windows: &Windows, horizon: u32) -> Option<Query> {
    let awards = windows.cohorts()?;
    let horizon_secs = u64::from(horizon) * 86_400;
    let mut sql = Sql::default();
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
    push_cohort(&mut sql, client, filter, awards);
    sql.push(")");
    Some(sql.build(client))
}
