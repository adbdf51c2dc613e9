//! Timing (SPEC §7.8): the cohort first awarded in a window, counted per
//! UTC slot of `model::timing::slot_secs` seconds (the model places each
//! slot in its local weekday and hour). An org-wide cohort adds up the
//! quarter hours of its whole award days (`award_days`) and counts the
//! pieces of a day at the window's ends from their assertions.

use badgepulse_contract::tables::{AWARD_SLOT_SECS, SLOT_MEASURES};
use clickhouse::query::Query;
use clickhouse::Client;

use super::award_days::{push_award_days, AwardDays, Unsealed};
use super::lifecycle::push_cohort;
use super::sql::Sql;
use crate::model::scope::Filter;
use crate::model::timing::WITHIN;
use crate::model::window::Window;

/// The assertions of `filter` first awarded in `window`, per slot of
/// `slot_secs` seconds that has any: rows of
/// [`SlotCounts`](crate::model::timing::SlotCounts), by slot. `unsealed`:
/// the award days not sealed, listed for an org-wide `filter`
/// ([`super::award_days::unsealed`]).
pub fn slot_counts(
    client: &Client,
    filter: &Filter,
    window: Window,
    slot_secs: u32,
    unsealed: Option<&Unsealed>,
) -> Query {
    let split = window.whole_days();
    let sealed = split
        .days
        .filter(|_| slot_secs.is_multiple_of(AWARD_SLOT_SECS))
        .and_then(|days| AwardDays::of(filter, days, unsealed));
    let mut sql = Sql::default();
    match sealed {
        None => {
            push_counted_slots(&mut sql, client, filter, window, slot_secs);
            sql.push(" ORDER BY slot");
        }
        Some(days) => {
            sql.push("SELECT slot, sum(n_awarded) AS n_awarded, sum(n_accepted) AS n_accepted");
            for (name, _) in WITHIN {
                sql.push(&format!(", sum(within_{name}) AS within_{name}"));
            }
            sql.push(" FROM (");
            push_sealed_slots(&mut sql, client, &days, slot_secs);
            for piece in split.pieces() {
                sql.push(" UNION ALL ");
                push_counted_slots(&mut sql, client, filter, piece, slot_secs);
            }
            sql.push(") GROUP BY slot ORDER BY slot");
        }
    }
    sql.build(client)
}

/// `SELECT slot, n_awarded, n_accepted, within_… FROM …`: the slots of
/// `window` counted from its assertions.
fn push_counted_slots(
    sql: &mut Sql,
    client: &Client,
    filter: &Filter,
    window: Window,
    slot_secs: u32,
) {
    sql.push("SELECT toUInt32(intDiv(toUInt32(aw), ")
        .u32(slot_secs)
        .push(")) AS slot, count() AS n_awarded, countIf(ac_n > 0) AS n_accepted");
    for (name, secs) in WITHIN {
        sql.push(&format!(
            ", countIf(ac_n > 0 AND toInt64(ac) - toInt64(aw) <= {secs}) AS within_{name}"
        ));
    }
    sql.push(" FROM ");
    push_cohort(sql, client, filter, window);
    sql.push(" GROUP BY slot");
}

/// The same columns from the quarter hours of the award days `days`
/// (`slot_keys`: quarter hour × 8 + measure, the measures in
/// `n_awarded, n_accepted, within_…` order).
fn push_sealed_slots(sql: &mut Sql, client: &Client, days: &AwardDays, slot_secs: u32) {
    sql.push(&format!(
        "SELECT toUInt32(intDiv(toUInt32(day) * 86400 + intDiv(k, {SLOT_MEASURES}) * {AWARD_SLOT_SECS}, "
    ))
    .u32(slot_secs)
    .push(&format!(
        ")) AS slot, sumIf(n, k % {SLOT_MEASURES} = 0) AS n_awarded, sumIf(n, k % {SLOT_MEASURES} = 1) AS n_accepted"
    ));
    for (m, (name, _)) in WITHIN.iter().enumerate() {
        sql.push(&format!(
            ", sumIf(n, k % {SLOT_MEASURES} = {}) AS within_{name}",
            m + 2
        ));
    }
    sql.push(" FROM ");
    push_award_days(sql, client, days, "slot_keys, slot_counts");
    sql.push(" ARRAY JOIN slot_keys AS k, slot_counts AS n GROUP BY slot");
}
