//! The distribution insights (SPEC §7.2): counts by award method, share
//! channel, view source or country, from the org's `rollup_*` rows (an
//! issuer or badge class from `events`).

use clickhouse::query::Query;
use clickhouse::Client;

use badgepulse_contract::tables::rollup_count;

use super::sql::{push_states, Family, Keys, Sql};
use crate::model::measures::Dimension;
use crate::model::scope::Filter;
use crate::model::tiers::Period;

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
    let raw = match dimension {
        Dimension::AwardMethod => "toString(award_method) AS value",
        Dimension::ShareChannel => "toString(share_channel) AS value",
        Dimension::ViewSource => "toString(view_source) AS value",
        Dimension::ViewCountry => "country AS value",
    };
    let keys = Keys {
        rollup: "value",
        raw,
        names: "value",
    };
    let mut sql = Sql::default();
    sql.push("SELECT value, ")
        .push(&rollup_count(dimension.as_str()))
        .push(" AS n FROM ");
    push_states(
        &mut sql,
        client,
        Family::Rollup(dimension),
        &keys,
        filter,
        period,
    );
    sql.push(" GROUP BY value ORDER BY n DESC, value");
    sql.build(client)
}
