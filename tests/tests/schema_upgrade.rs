//! Migrating a populated database in place (issue 23): the aggregator's
//! `migrate` brings a database created by an earlier schema
//! (`tests/fixtures/schema_v2.sql` for layouts 1 and 2, re-laid from its
//! events; `tests/fixtures/schema_v3.sql` for layout 3, whose bucketed
//! scope tables are re-sorted by scope level; each printed by that
//! version) to the current layout, and every answer of the exporter is
//! then the one it gives on a database that received the same events in
//! the current layout from the start. A migration interrupted halfway
//! resumes and ends the same.

use std::time::Duration;

use badgepulse_aggregator::schema::migrations::{layout3_name, RESORTED_TABLES};
use badgepulse_aggregator::schema::{Schema, CURRENT_VERSION};
use badgepulse_aggregator::store::Store;
use badgepulse_runtime::settings::ClickHouseConfig;
use badgepulse_tests::{free_port, sha256_hex, wait_http, ClickHouse, Service};
use serde_json::Value;

const KEY: &str = "upgrade-admin-key";
const DAY: i64 = 86_400;

const LEGACY_SCHEMA: &str = include_str!("../fixtures/schema_v2.sql");
const LAYOUT3_SCHEMA: &str = include_str!("../fixtures/schema_v3.sql");
const LAYOUT5_SCHEMA: &str = include_str!("../fixtures/schema_v5.sql");

/// The statements of a printed `schema` for database `db`.
fn schema_statements(schema: &str, db: &str) -> Vec<String> {
    schema
        .split("\n;\n")
        .map(|s| {
            s.lines()
                .filter(|l| !l.starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .map(|s| s.trim().replace("badgepulse.", &format!("{db}.")))
        .map(|s| s.replace("EXISTS badgepulse", &format!("EXISTS {db}")))
        .filter(|s| !s.is_empty())
        .collect()
}

/// Four months of events of three orgs, as `VALUES` rows of `events_input`:
/// awards, accepts, shares, views (day-salted viewer keys, and platform
/// views without one), revokes and badge-class upserts, most received as
/// they occurred and some imported later (received now).
fn workload(now: i64) -> Vec<String> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut rows = Vec::new();
    let mut seq = 0u64;
    let mut row = |kind: &str,
                   at: i64,
                   received: i64,
                   org: u64,
                   class: u64,
                   assertion: u64,
                   extra: (&str, &str, &str, &str, u64)| {
        seq += 1;
        let (method, channel, source, country, key) = extra;
        let issuer = class % 2;
        format!(
            "('e{seq}', '{kind}', toDateTime({at}, 'UTC'), toDateTime({received}, 'UTC'), 'o{org}', 'o{org}-i{issuer}', \
             'o{org}-b{class}', 'a{org}-{assertion}', '{method}', '{channel}', '{source}', '{country}', {key}, \
             'Badge {class}', ['s'], [], [], [], [], ['stackable'], [{}], {org}, {seq})",
            class % 2
        )
    };
    for org in 0..3u64 {
        for class in 0..4u64 {
            rows.push(row(
                "badge_class.upserted",
                now - 400 * DAY,
                now - 400 * DAY,
                org,
                class,
                0,
                ("", "", "", "", 0),
            ));
        }
    }
    let methods = ["api", "bulk", "lms"];
    let channels = ["linkedin", "x", "email"];
    let sources = ["direct", "linkedin", "search"];
    let countries = ["DE", "FR", ""];
    let filed = |rows: &mut Vec<String>, from: usize, day: &str| {
        for r in &mut rows[from..] {
            r.pop();
            r.push_str(&format!(", {day})"));
        }
    };
    filed(&mut rows, 0, "toDate(0)");
    for assertion in 0..900u64 {
        let org = next(3);
        let class = next(4);
        let awarded = now - 120 * DAY + next(117 * DAY as u64) as i64;
        let first = rows.len();
        let imported = next(5) == 0;
        let received = |at: i64| if imported { now - 60 } else { at };
        let pick = |v: &[&'static str], n: u64| v[n as usize % v.len()];
        rows.push(row(
            "badge.awarded",
            awarded,
            received(awarded),
            org,
            class,
            assertion,
            (pick(&methods, next(3)), "", "", "", 0),
        ));
        if next(10) < 7 {
            let at = (awarded + next(5 * DAY as u64) as i64).min(now - 120);
            rows.push(row(
                "badge.accepted",
                at,
                received(at),
                org,
                class,
                assertion,
                ("", "", "", "", 0),
            ));
            for _ in 0..next(3) {
                let at = (at + next(10 * DAY as u64) as i64).min(now - 120);
                rows.push(row(
                    "badge.shared",
                    at,
                    received(at),
                    org,
                    class,
                    assertion,
                    ("", pick(&channels, next(3)), "", "", 0),
                ));
                for _ in 0..next(4) {
                    let at = (at + next(20 * DAY as u64) as i64).min(now - 120);
                    let key = if next(5) == 0 {
                        0
                    } else {
                        (at / DAY) as u64 * 1_000 + next(40) + 1
                    };
                    rows.push(row(
                        "badge.viewed",
                        at,
                        received(at),
                        org,
                        class,
                        assertion,
                        (
                            "",
                            "",
                            pick(&sources, next(3)),
                            pick(&countries, next(3)),
                            key,
                        ),
                    ));
                }
            }
        }
        if next(30) == 0 {
            let at = (awarded + next(30 * DAY as u64) as i64).min(now - 120);
            rows.push(row(
                "badge.revoked",
                at,
                received(at),
                org,
                class,
                assertion,
                ("", "", "", "", 0),
            ));
        }
        // Filed under its award day, as the aggregator files a history
        // that arrives in one batch.
        filed(
            &mut rows,
            first,
            &format!("toDate(toDateTime({awarded}, 'UTC'))"),
        );
    }
    rows
}

const COLUMNS: &str = "event_id, type, occurred_at, received_at, org_id, issuer_id, badge_class_id, assertion_id, \
    award_method, share_channel, view_source, country, viewer_key, badge_class_name, skills, pathways, courses, \
    catalogs, collections, attribute_keys, attribute_values, partition, seq";

/// One INSERT: each one writes a part per partition it touches. Each row
/// of the workload ends with its `awarded_on`, which layout 2 has not.
async fn insert(ch: &ClickHouse, db: &str, rows: &[String], version: u32) {
    let sql = if version <= 2 {
        let rows: Vec<String> = rows
            .iter()
            .map(|r| format!("{})", r.rsplit_once(", toDate(").expect("filed").0))
            .collect();
        format!(
            "INSERT INTO {db}.events_input ({COLUMNS}) VALUES {}",
            rows.join(", ")
        )
    } else {
        format!(
            "INSERT INTO {db}.events_input ({COLUMNS}, awarded_on) VALUES {}",
            rows.join(", ")
        )
    };
    ch.query(&sql).await.unwrap();
}

/// A legacy database holding `rows`, at schema version 2.
async fn legacy(ch: &ClickHouse, db: &str, rows: &[String]) {
    older(ch, db, rows, LEGACY_SCHEMA, 2).await;
}

/// A database of the printed `schema` at `version` holding `rows`.
async fn older(ch: &ClickHouse, db: &str, rows: &[String], schema: &str, version: u32) {
    for statement in schema_statements(schema, db) {
        ch.query(&statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let versions: Vec<String> = (1..=version)
        .map(|v| format!("({v}, 'v{v}', now())"))
        .collect();
    ch.query(&format!(
        "INSERT INTO {db}.schema_migrations (version, description, applied_at) VALUES {}",
        versions.join(", ")
    ))
    .await
    .unwrap();
    insert(ch, db, rows, version).await;
}

fn store(ch: &ClickHouse, db: &str) -> Store {
    Store::new(&ClickHouseConfig {
        url: ch.url(),
        database: db.into(),
        ..Default::default()
    })
}

/// An exporter on `db` without a result cache: its API base URL.
async fn exporter(ch: &ClickHouse, db: &str) -> (Service, String) {
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        "[clickhouse]\nurl = \"{}\"\ndatabase = \"{db}\"\n[exporter]\nbind = \"127.0.0.1:{port}\"\n\
         admin_bind = \"127.0.0.1:{admin}\"\ncache_max_bytes = 0\n\
         [[exporter.api_keys]]\nsha256 = \"{}\"\nscope = \"admin\"\n",
        ch.url(),
        sha256_hex(KEY)
    );
    let svc = Service::start("badgepulse-exporter", &config, &[]);
    wait_http(
        &format!("http://127.0.0.1:{admin}/readyz"),
        Duration::from_secs(60),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", svc.log_text()));
    (svc, format!("http://127.0.0.1:{port}"))
}

async fn get(http: &reqwest::Client, base: &str, path: &str) -> Value {
    let r = http
        .get(format!("{base}{path}"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Every analytics endpoint for several scopes and windows.
fn questions(now: i64) -> Vec<String> {
    let t = |s: i64| {
        chrono::DateTime::from_timestamp(s, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let windows = [
        format!("from={}&to={}", t(now - 30 * DAY + 3_777), t(now - 100)),
        format!(
            "from={}&to={}",
            t(now - 95 * DAY + 59),
            t(now - 3 * DAY - 1_234)
        ),
    ];
    let scopes = [
        "org=o0",
        "org=o1&issuer=o1-i1",
        "org=o2&badge_class=o2-b3",
        "",
    ];
    let mut out = Vec::new();
    for scope in scopes {
        for window in &windows {
            let q = format!("{scope}&{window}");
            out.push(format!("/api/v1/overview?{q}"));
            out.push(format!("/api/v1/top-badges?{q}&limit=50"));
            out.push(format!("/api/v1/drivers?{q}"));
            out.push(format!("/api/v1/lifecycle?{q}"));
            for d in [
                "award_method",
                "share_channel",
                "view_source",
                "view_country",
            ] {
                out.push(format!("/api/v1/distribution?{q}&dimension={d}"));
            }
            for g in ["day", "week", "month"] {
                out.push(format!(
                    "/api/v1/trends?{q}&granularity={g}&metrics=awarded,accepted,shared,views,unique_viewers,shares"
                ));
            }
            out.push(format!("/api/v1/timing?{q}&tz=Asia/Kolkata"));
            for stage in ["accepted", "viewed"] {
                out.push(format!(
                    "/api/v1/cohorts?{q}&granularity=week&stage={stage}"
                ));
            }
        }
        out.push(format!(
            "/api/v1/trends?{scope}&from={}&to={}&granularity=hour&metrics=awarded,views,unique_viewers",
            t(now - 5 * DAY + 1_000),
            t(now - 2 * DAY)
        ));
    }
    out
}

/// The answers of the exporter at `base`, each `(question, body)`.
async fn answers(base: &str, questions: &[String]) -> Vec<(String, Value)> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for q in questions {
        out.push((q.clone(), get(&http, base, q).await));
    }
    out
}

/// Every question of [`questions`] gets from an exporter on each of
/// `migrated` the answer an exporter on `fresh` gives.
async fn same_answers_as_fresh(ch: &ClickHouse, now: i64, migrated: &[&str]) {
    let (_fresh, fresh_api) = exporter(ch, "fresh").await;
    let questions = questions(now);
    let want = answers(&fresh_api, &questions).await;
    assert!(want.len() >= 100, "{} questions", want.len());
    for db in migrated {
        let (_svc, base) = exporter(ch, db).await;
        for ((q, want), (_, got)) in want.iter().zip(answers(&base, &questions).await) {
            assert_eq!(&got, want, "{db}: {q}");
        }
    }
}

/// Each org's award days with their last change, from `lifecycle_touches`.
fn touches(db: &str) -> String {
    format!(
        "SELECT org_id, day, partition, maxMerge(max_seq) FROM {db}.lifecycle_touches \
         GROUP BY org_id, day, partition ORDER BY org_id, day, partition"
    )
}

async fn tables(ch: &ClickHouse, db: &str) -> String {
    ch.query(&format!(
        "SELECT name FROM system.tables WHERE database = '{db}' AND name NOT LIKE '.%' ORDER BY name"
    ))
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_populated_database_is_relaid_in_place_with_the_same_answers() {
    let ch = ClickHouse::start().await;
    let now = chrono::Utc::now().timestamp() / 60 * 60;
    let rows = workload(now);
    assert!(rows.len() > 3_000, "{} events", rows.len());

    // The reference: layout 3 from the start.
    let fresh = store(&ch, "fresh");
    assert_eq!(fresh.migrate().await.unwrap(), Some(CURRENT_VERSION));
    insert(&ch, "fresh", &rows, CURRENT_VERSION).await;
    // A legacy database, re-laid at once.
    legacy(&ch, "relaid", &rows).await;
    let before = ch
        .query(
            "SELECT org_id, uniqCombinedIfMergeIf(18)(assertions, event_type = 'badge.awarded'), \
             countMergeIf(events, event_type = 'badge.viewed') FROM relaid.scope_total \
             WHERE scope_issuer_id = '' AND scope_badge_class_id = '' GROUP BY org_id ORDER BY org_id",
        )
        .await
        .unwrap();
    let relaid = store(&ch, "relaid");
    assert_eq!(relaid.migrate().await.unwrap(), Some(CURRENT_VERSION));
    assert_eq!(
        relaid.migrate().await.unwrap(),
        None,
        "a second migrate does nothing"
    );
    assert_eq!(tables(&ch, "relaid").await, tables(&ch, "fresh").await);
    let after = ch
        .query(
            "SELECT org_id, uniqCombinedIfMerge(18)(awarded), countIfMerge(views) FROM relaid.scope_total \
             WHERE scope_issuer_id = '' AND scope_badge_class_id = '' GROUP BY org_id ORDER BY org_id",
        )
        .await
        .unwrap();
    assert_eq!(
        after, before,
        "the analysts' all-time numbers, before and after"
    );
    assert_eq!(
        ch.query("SELECT version FROM relaid.schema_migrations ORDER BY version")
            .await
            .unwrap(),
        "1\n2\n6\n"
    );
    assert_eq!(
        ch.query(&touches("relaid")).await.unwrap(),
        ch.query(&touches("fresh")).await.unwrap(),
        "the history's award days, as the views fill them"
    );

    // A legacy database whose re-lay stopped after its renames, with part
    // of its copy done: the next migrate resumes and ends the same.
    legacy(&ch, "resumed", &rows).await;
    let schema = Schema::new("resumed", "");
    for statement in schema.drop_legacy_views() {
        ch.query(&statement).await.unwrap();
    }
    for table in badgepulse_aggregator::schema::migrations::RELAID_TABLES {
        for statement in schema.rename_to_legacy(table) {
            ch.query(&statement).await.unwrap();
        }
    }
    for statement in schema
        .table_statements()
        .into_iter()
        .chain(schema.relaid_view_statements())
    {
        ch.query(&statement).await.unwrap();
    }
    let first_month = ch
        .query("SELECT min(toYYYYMM(occurred_at)) FROM resumed.events_v2")
        .await
        .unwrap();
    ch.query(&schema.copy_legacy_month().replace('?', first_month.trim()))
        .await
        .unwrap();
    assert_eq!(
        store(&ch, "resumed").migrate().await.unwrap(),
        Some(CURRENT_VERSION)
    );
    assert_eq!(tables(&ch, "resumed").await, tables(&ch, "fresh").await);

    for db in ["relaid", "resumed"] {
        assert_eq!(
            ch.number(&format!(
                "SELECT count() + 1000000 * (count() - uniqExact(org_id, event_id)) FROM {db}.events"
            ))
            .await,
            rows.len() as u64,
            "{db}: every event once"
        );
    }
    same_answers_as_fresh(&ch, now, &["relaid", "resumed"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layout3_database_is_resorted_in_place_with_the_same_answers() {
    let ch = ClickHouse::start().await;
    let now = chrono::Utc::now().timestamp() / 60 * 60;
    let rows = workload(now);

    // The reference: the current layout from the start.
    let fresh = store(&ch, "fresh");
    assert_eq!(fresh.migrate().await.unwrap(), Some(CURRENT_VERSION));
    insert(&ch, "fresh", &rows, CURRENT_VERSION).await;

    // A layout-3 database, migrated at once.
    older(&ch, "resorted", &rows, LAYOUT3_SCHEMA, 3).await;
    let resorted = store(&ch, "resorted");
    assert_eq!(resorted.migrate().await.unwrap(), Some(CURRENT_VERSION));
    assert_eq!(
        resorted.migrate().await.unwrap(),
        None,
        "a second migrate does nothing"
    );

    // A layout-3 database whose migration stopped halfway: one table set
    // aside with part of its copy done, the others not begun.
    older(&ch, "resumed", &rows, LAYOUT3_SCHEMA, 3).await;
    let schema = Schema::new("resumed", "");
    let table = RESORTED_TABLES[1];
    for statement in schema.set_layout3_aside(table) {
        ch.query(&statement).await.unwrap();
    }
    for statement in schema.table_statements() {
        ch.query(&statement).await.unwrap();
    }
    let first = ch
        .query(&format!(
            "SELECT min(toYear(bucket)) FROM resumed.{}",
            layout3_name(table)
        ))
        .await
        .unwrap();
    ch.query(
        &schema
            .copy_layout3_partition(table)
            .replace('?', first.trim()),
    )
    .await
    .unwrap();
    assert_eq!(
        store(&ch, "resumed").migrate().await.unwrap(),
        Some(CURRENT_VERSION)
    );

    for db in ["resorted", "resumed"] {
        assert_eq!(tables(&ch, db).await, tables(&ch, "fresh").await, "{db}");
        for table in RESORTED_TABLES {
            let key = format!(
                "SELECT sorting_key FROM system.tables WHERE database = '{{}}' AND name = '{table}'"
            );
            assert_eq!(
                ch.query(&key.replace("{}", db)).await.unwrap(),
                ch.query(&key.replace("{}", "fresh")).await.unwrap(),
                "{db}.{table}: sorted as in the current layout"
            );
            let rows_of = |db: &str| {
                format!(
                    "SELECT scope_level, count(), countMerge(events), countIfMerge(views) \
                     FROM {db}.{table} GROUP BY scope_level ORDER BY scope_level"
                )
            };
            assert_eq!(
                ch.query(&rows_of(db)).await.unwrap(),
                ch.query(&rows_of("fresh")).await.unwrap(),
                "{db}.{table}: the same rows at every level"
            );
        }
        assert_eq!(
            ch.query(&format!(
                "SELECT version FROM {db}.schema_migrations ORDER BY version"
            ))
            .await
            .unwrap(),
            "1\n2\n3\n6\n"
        );
        let want = ch.query(&touches("fresh")).await.unwrap();
        assert!(want.lines().count() > 100, "{want}");
        assert_eq!(
            ch.query(&touches(db)).await.unwrap(),
            want,
            "{db}: every award day of the history counts as changed"
        );
    }
    same_answers_as_fresh(&ch, now, &["resorted", "resumed"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layout5_database_seals_its_award_days_anew_with_the_same_answers() {
    let ch = ClickHouse::start().await;
    let now = chrono::Utc::now().timestamp() / 60 * 60;
    let rows = workload(now);
    let fresh = store(&ch, "fresh");
    assert_eq!(fresh.migrate().await.unwrap(), Some(CURRENT_VERSION));
    insert(&ch, "fresh", &rows, CURRENT_VERSION).await;

    // A layout-5 database whose every award day was sealed with stage
    // counts only; the counts written here are wrong on purpose, so an
    // answer that read one would differ.
    older(&ch, "sealed5", &rows, LAYOUT5_SCHEMA, 5).await;
    ch.query(
        "INSERT INTO sealed5.lifecycle_days (org_id, day, partition, awarded, accepted, shared, viewed, sealed_seq) \
         SELECT org_id, day, partition, 1000, 1000, 1000, 1000, maxMerge(max_seq) FROM sealed5.lifecycle_touches \
         GROUP BY org_id, day, partition",
    )
    .await
    .unwrap();
    let stale = ch
        .number("SELECT count() FROM sealed5.lifecycle_days")
        .await;
    assert!(stale > 100, "{stale} stale seals");
    let migrated = store(&ch, "sealed5");
    assert_eq!(migrated.migrate().await.unwrap(), Some(CURRENT_VERSION));
    assert_eq!(migrated.migrate().await.unwrap(), None);
    assert_eq!(
        ch.number("SELECT count() FROM sealed5.lifecycle_days")
            .await,
        0,
        "the stage-only seals are gone"
    );
    assert_eq!(tables(&ch, "sealed5").await, tables(&ch, "fresh").await);
    let columns = |db: &str| {
        format!(
            "SELECT name, type FROM system.columns WHERE database = '{db}' AND table = 'lifecycle_days' ORDER BY name"
        )
    };
    assert_eq!(
        ch.query(&columns("sealed5")).await.unwrap(),
        ch.query(&columns("fresh")).await.unwrap()
    );
    assert_eq!(
        ch.query("SELECT version FROM sealed5.schema_migrations ORDER BY version")
            .await
            .unwrap(),
        "1\n2\n3\n4\n5\n6\n"
    );
    // Unsealed, every cohort is counted from its rows.
    same_answers_as_fresh(&ch, now, &["sealed5"]).await;
    // Sealed anew, the org-wide timing, cohorts and lifecycle read the
    // sealed days and still answer as the unsealed fresh database.
    let sealed = ch.seal_every_award_day("sealed5").await;
    assert_eq!(sealed as u64, stale, "every award day sealed again");
    let slots = ch
        .number("SELECT sum(length(slot_keys)) FROM sealed5.lifecycle_days")
        .await;
    assert!(slots > 0, "the seals hold the timing");
    same_answers_as_fresh(&ch, now, &["sealed5"]).await;
}
