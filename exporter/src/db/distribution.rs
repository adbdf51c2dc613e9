//! The distribution insights (SPEC §7.2): counts by award method, share
//! channel, view source or country.

use clickhouse::query::Query;
use clickhouse::Client;

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
