//! The peer benchmark (SPEC §7.10): the SPEC §7 counts of every org, or
//! of every (org, issuer) pair, over a window, from the `scope_*` tables
//! like every window count (`counts.rs`).

use clickhouse::query::Query;
use clickhouse::Client;

use super::sql::{merged, push_states, Family, Keys, Sql, RATE_MEASURES};
use crate::model::benchmark::Level;
use crate::model::scope::Filter;
use crate::model::tiers::Period;

/// The counts of every peer at `level` with events in `period` (those the
/// benchmarked rates need): rows of
/// [`PeerCounts`](crate::model::benchmark::PeerCounts), by org and
/// issuer. Orgs read their org rows; issuers are merged from their badge
/// classes' rows (states of disjoint sets of assertions, so the distinct
/// counts are those of the issuer).
pub fn peer_counts(client: &Client, level: Level, period: &Period) -> Query {
    let (family, keys) = match level {
        // `materialize`: over several shards ClickHouse 18.16 refuses a
        // constant column that the union of the shards' answers returns
        // ("non constant in source stream but must be constant in result").
        Level::Org => (
            Family::Scope {
                per_class: false,
                measures: RATE_MEASURES,
            },
            Keys {
                rollup: "org_id, materialize('') AS peer_issuer",
                raw: "org_id, materialize('') AS peer_issuer",
                names: "org_id, peer_issuer",
            },
        ),
        Level::Issuer => (
            Family::Scope {
                per_class: true,
                measures: RATE_MEASURES,
            },
            Keys {
                rollup: "org_id, scope_issuer_id AS peer_issuer",
                raw: "org_id, issuer_id AS peer_issuer",
                names: "org_id, peer_issuer",
            },
        ),
    };
    let mut sql = Sql::default();
    sql.push("SELECT org_id, peer_issuer, ")
        .push(&merged(RATE_MEASURES))
        .push(" FROM ");
    push_states(&mut sql, client, family, &keys, &Filter::default(), period);
    sql.push(" GROUP BY org_id, peer_issuer ORDER BY org_id, peer_issuer");
    sql.build(client)
}
