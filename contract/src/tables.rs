//! ClickHouse names and parameters that the aggregator (which writes the
//! tables) and the exporter (which reads them) must agree on. The DDL
//! itself lives in `badgepulse_aggregator::schema`.

/// The precision `K` of the `uniqCombined(K)` distinct-count states in the
/// `scope_*` tables. With `K = 18` a state keeps an exact set of 32-bit
/// hashes up to well past 10,000 values (measured on ClickHouse 18.16 and
/// current releases) and becomes a HyperLogLog of 2^18 registers beyond
/// (standard error 0.2 %), which is SPEC §7's "exact up to 10,000, within
/// 2 % beyond". Readers must merge with the same `K`.
pub const SKETCH_PRECISION: u8 = 18;

/// All-time measures per scope (no time bucket).
pub const SCOPE_TOTAL: &str = "scope_total";

/// The aggregate states of a `scope_*` row, computed from `events`
/// columns: the aggregator's materialised views and the exporter's
/// raw-events window edges compute them alike, so that `…Merge` over both
/// is exact. Yields `events`, `assertions`, `viewers` and `classes`.
pub fn scope_states() -> String {
    let k = SKETCH_PRECISION;
    format!(
        "countState() AS events, \
         uniqCombinedIfState({k})(assertion_id, type IN ('badge.awarded', 'badge.accepted', 'badge.shared', 'badge.revoked')) AS assertions, \
         uniqCombinedIfState({k})(viewer_key, viewer_key != 0) AS viewers, \
         uniqCombinedState({k})(org_id, badge_class_id) AS classes"
    )
}
