//! Timing (SPEC §7.8): the cohort first awarded in a window, counted per
//! UTC slot of `model::timing::slot_secs` seconds (the model places each
//! slot in its local weekday and hour).

use clickhouse::query::Query;
use clickhouse::Client;

use super::lifecycle::push_cohort;
use super::sql::Sql;
use crate::model::scope::Filter;
use crate::model::timing::WITHIN;
use crate::model::window::Window;

/// The assertions of `filter` first awarded in `window`, per slot of
/// `slot_secs` seconds that has any: rows of
/// [`SlotCounts`](crate::model::timing::SlotCounts), by slot.
pub fn slot_counts(client: &Client, filter: &Filter, window: Window, slot_secs: u32) -> Query {
    let mut sql = Sql::default();
    sql.push("SELECT intDiv(toUInt32(aw), ")
        .u32(slot_secs)
        .push(") AS slot, count() AS n_awarded, countIf(ac_n > 0) AS n_accepted");
    for (name, secs) in WITHIN {
        sql.push(&format!(
            ", countIf(ac_n > 0 AND toInt64(ac) - toInt64(aw) <= {secs}) AS within_{name}"
        ));
    }
    sql.push(" FROM ");
    push_cohort(&mut sql, client, filter, window);
    sql.push(" GROUP BY slot ORDER BY slot");
    sql.build(client)
}
