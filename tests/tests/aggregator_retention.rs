//! Retention on a real ClickHouse: expired partitions of the rollup and
//! scope tables are dropped whole, coarser ones keep their data, and exactly-once recovery never
//! re-adds rows to what retention dropped (even though dropping lowers the
//! table's high-water mark).

use badgepulse_aggregator::config::AggregatorConfig;
use badgepulse_aggregator::retention::keep_from;
use badgepulse_aggregator::rows::EventRow;
use badgepulse_aggregator::store::Store;
use badgepulse_contract::event::{validate_platform_event, Event};
use badgepulse_contract::tables::Tier;
use badgepulse_runtime::settings::ClickHouseConfig;
use badgepulse_tests::ClickHouse;
use chrono::{Duration, SecondsFormat, Utc};
use serde_json::json;

fn awarded(id: &str, days_ago: i64) -> Event {
    let now = Utc::now();
    let at = (now - Duration::days(days_ago)).to_rfc3339_opts(SecondsFormat::Secs, true);
    validate_platform_event(
        &json!({"event_id": id, "type": "badge.awarded", "occurred_at": at, "org_id": "acme",
                "issuer_id": "i1", "badge_class_id": "b1", "assertion_id": id}),
        now,
    )
    .unwrap()
}

#[tokio::test]
async fn expired_partitions_are_dropped_and_never_recomputed() {
    let ch = ClickHouse::start().await;
    let store = Store::new(&ClickHouseConfig {
        url: ch.url(),
        database: "ret".into(),
        ..Default::default()
    });
    store.migrate().await.unwrap();
    // The backfill arrives last: the expired rows carry the highest sequences.
    let rows: Vec<EventRow> = [
        ("now", 0),
        ("two-days", 2),
        ("eight-days", 8),
        ("thirty-days", 30),
    ]
    .iter()
    .enumerate()
    .map(|(i, (id, days))| EventRow::new(&awarded(id, *days), 0, i as u64 + 1))
    .collect();
    store.ensure_staging(0).await.unwrap();
    store.write(0, "events_input", &rows).await.unwrap();
    let count = |table: &str| format!("SELECT countMerge(events) FROM ret.{table}");
    assert_eq!(ch.number(&count("rollup_minute")).await, 4);

    let config = AggregatorConfig::default();
    let now = Utc::now();
    let dropped = store.enforce_retention(&config, now).await.unwrap();
    let minute_dropped: Vec<&str> = dropped
        .iter()
        .filter(|(t, _)| t == "rollup_minute")
        .map(|(_, p)| p.as_str())
        .collect();
    assert_eq!(
        minute_dropped.len(),
        2,
        "the 8- and 30-day-old daily partitions: {dropped:?}"
    );
    assert!(
        dropped.iter().all(|(t, _)| t == "rollup_minute"),
        "hour (400 days), day and all time (forever) keep everything: {dropped:?}"
    );
    assert_eq!(ch.number(&count("rollup_minute")).await, 2);
    assert_eq!(ch.number(&count("rollup_hour")).await, 4);
    assert_eq!(ch.number(&count("rollup_day")).await, 4);
    // The scope tables count each event once per level (org, issuer,
    // badge class); the org rows hold each event once.
    let org_rows = |table: &str| format!("{} WHERE scope_issuer_id = ''", count(table));
    assert_eq!(ch.number(&org_rows("scope_hour")).await, 4);
    assert_eq!(ch.number(&org_rows("scope_day")).await, 4);
    assert_eq!(ch.number(&org_rows("scope_total")).await, 4);
    assert_eq!(
        ch.number("SELECT count() FROM ret.events").await,
        4,
        "raw events are kept forever"
    );

    // The minute rollup's mark fell to 2 (its rows with seq 3 and 4 are
    // gone); a restart would recompute (2, 4] — and must add nothing.
    let marks = store.marks(0).await.unwrap();
    assert_eq!(marks.derived["rollup_minute"], 2);
    assert_eq!(marks.derived["rollup_hour"], 4);
    let keep = keep_from(Tier::Minute, config.retention_minute_days, now)
        .unwrap()
        .timestamp() as u32;
    store.recover("rollup_minute", 0, 2, 4, keep).await.unwrap();
    assert_eq!(
        ch.number(&count("rollup_minute")).await,
        2,
        "recovery re-added expired buckets"
    );
    // With an hour retention of 1 day, both hour tables keep only the
    // months from yesterday's on, and recovery does not bring the rest
    // back.
    let short = AggregatorConfig {
        retention_hour_days: 1,
        ..AggregatorConfig::default()
    };
    store.enforce_retention(&short, now).await.unwrap();
    let keep_hours = keep_from(Tier::Hour, 1, now).unwrap();
    let kept = [0, 2, 8, 30]
        .iter()
        .filter(|days| now - Duration::days(**days) >= keep_hours)
        .count() as u64;
    assert_eq!(ch.number(&count("rollup_hour")).await, kept);
    assert_eq!(ch.number(&org_rows("scope_hour")).await, kept);
    let marks = store.marks(0).await.unwrap();
    let keep = keep_hours.timestamp() as u32;
    store
        .recover("scope_hour", 0, marks.derived["scope_hour"], 4, keep)
        .await
        .unwrap();
    assert_eq!(
        ch.number(&org_rows("scope_hour")).await,
        kept,
        "recovery re-added expired scope buckets"
    );
    // A second run finds nothing more to drop.
    assert!(store
        .enforce_retention(&short, now)
        .await
        .unwrap()
        .is_empty());
}

/// The aggregator's periodic compaction (`Store::compact_totals`) leaves
/// `scope_total` in one part and changes none of its numbers.
#[tokio::test]
async fn compaction_merges_scope_total_into_one_part() {
    let ch = ClickHouse::start().await;
    let store = Store::new(&ClickHouseConfig {
        url: ch.url(),
        database: "cmp".into(),
        ..Default::default()
    });
    store.migrate().await.unwrap();
    store.ensure_staging(0).await.unwrap();
    // Three writes, three parts: background merges are held off until
    // the parts are counted.
    ch.query("SYSTEM STOP MERGES cmp.scope_total")
        .await
        .unwrap();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        let row = EventRow::new(&awarded(id, i as i64), 0, i as u64 + 1);
        store.write(0, "events_input", &[row]).await.unwrap();
    }
    let parts = "SELECT count() FROM system.parts \
                 WHERE database = 'cmp' AND table = 'scope_total' AND active";
    assert_eq!(ch.number(parts).await, 3);
    let totals = "SELECT scope_issuer_id, scope_badge_class_id, countMerge(events), \
                  uniqCombinedIfMerge(18)(awarded), maxMerge(max_seq) FROM cmp.scope_total \
                  GROUP BY scope_issuer_id, scope_badge_class_id \
                  ORDER BY scope_issuer_id, scope_badge_class_id";
    let before = ch.query(totals).await.unwrap();
    assert_eq!(before, "\t\t3\t3\t3\ni1\t\t3\t3\t3\ni1\tb1\t3\t3\t3\n");
    ch.query("SYSTEM START MERGES cmp.scope_total")
        .await
        .unwrap();
    store.compact_totals().await.unwrap();
    assert_eq!(ch.number(parts).await, 1);
    assert_eq!(ch.query(totals).await.unwrap(), before);
}
