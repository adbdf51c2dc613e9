//! Every DDL statement and every query the services issue runs on both
//! ClickHouse generations: the 18.16 server (Debian) and the current engine
//! in-process (PyPI chdb-core), on the same data, with the same results.
//! Nothing that only one of them accepts can ship.

use std::io::Write;
use std::process::{Command, Stdio};

use badgepulse_aggregator::rows::EventRow;
use badgepulse_aggregator::schema::Schema;
use badgepulse_aggregator::store::Store;
use badgepulse_contract::event::{
    validate_platform_event, AwardMethod, EventType, ShareChannel, ViewSource,
};
use badgepulse_runtime::settings::ClickHouseConfig;
use badgepulse_tests::ClickHouse;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

const DB: &str = "compat";

/// A ClickHouse string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn list(items: &[String]) -> String {
    format!(
        "[{}]",
        items.iter().map(|s| lit(s)).collect::<Vec<_>>().join(", ")
    )
}

fn enum_name<T: Copy>(all: &[T], name: fn(T) -> &'static str, value: i8) -> String {
    if value == 0 {
        "''".into()
    } else {
        lit(name(all[(value - 1) as usize]))
    }
}

/// `INSERT … VALUES` text for rows (enum values by name: 18.16 refuses numbers there).
fn insert_sql(table: &str, rows: &[EventRow]) -> String {
    let tuples: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, [{}], {}, {})",
                lit(&r.event_id),
                enum_name(EventType::ALL, EventType::as_str, r.kind),
                r.occurred_at,
                r.received_at,
                lit(&r.org_id),
                lit(&r.issuer_id),
                lit(&r.badge_class_id),
                lit(&r.assertion_id),
                enum_name(AwardMethod::ALL, AwardMethod::as_str, r.award_method),
                enum_name(ShareChannel::ALL, ShareChannel::as_str, r.share_channel),
                enum_name(ViewSource::ALL, ViewSource::as_str, r.view_source),
                lit(&r.country),
                r.viewer_key,
                lit(&r.badge_class_name),
                list(&r.skills),
                list(&r.pathways),
                list(&r.courses),
                list(&r.catalogs),
                list(&r.collections),
                list(&r.attribute_keys),
                r.attribute_values.iter().map(u8::to_string).collect::<Vec<_>>().join(", "),
                r.partition,
                r.seq,
            )
        })
        .collect();
    format!(
        "INSERT INTO {DB}.{table} (event_id, type, occurred_at, received_at, org_id, issuer_id, badge_class_id, assertion_id, \
         award_method, share_channel, view_source, country, viewer_key, badge_class_name, skills, pathways, courses, catalogs, \
         collections, attribute_keys, attribute_values, partition, seq) VALUES {}",
        tuples.join(", ")
    )
}

/// Events of every type over two orgs, crossing day and hour boundaries.
fn sample_rows() -> Vec<EventRow> {
    let now: DateTime<Utc> = "2026-03-10T12:00:00Z".parse().unwrap();
    let mut raw: Vec<Value> = vec![
        json!({"event_id":"u1","type":"badge_class.upserted","occurred_at":"2026-03-01T09:00:00Z",
        "org_id":"acme","issuer_id":"i1","badge_class_id":"rust","name":"Rust 101","skills":["rust"],"catalogs":["c"],
        "attributes":{"has_criteria":true,"has_expiry":false}}),
    ];
    for (n, (org, when)) in [
        ("acme", "2026-03-01T23:59:30Z"),
        ("acme", "2026-03-02T00:00:30Z"),
        ("globex", "2026-03-02T10:15:00Z"),
    ]
    .into_iter()
    .enumerate()
    {
        let a = format!("a{n}");
        raw.push(json!({"event_id":format!("aw{n}"),"type":"badge.awarded","occurred_at":when,"org_id":org,"issuer_id":"i1","badge_class_id":"rust","assertion_id":a,"award_method":"lms"}));
        raw.push(json!({"event_id":format!("ac{n}"),"type":"badge.accepted","occurred_at":when,"org_id":org,"issuer_id":"i1","badge_class_id":"rust","assertion_id":a}));
        raw.push(json!({"event_id":format!("sh{n}"),"type":"badge.shared","occurred_at":when,"org_id":org,"issuer_id":"i1","badge_class_id":"rust","assertion_id":a,"channel":"linkedin"}));
        raw.push(json!({"event_id":format!("vw{n}"),"type":"badge.viewed","occurred_at":when,"org_id":org,"issuer_id":"i1","badge_class_id":"rust","assertion_id":a,"source":"platform","country":"DE"}));
    }
    raw.push(json!({"event_id":"rv0","type":"badge.revoked","occurred_at":"2026-03-03T00:00:00Z","org_id":"acme","issuer_id":"i1","badge_class_id":"rust","assertion_id":"a0"}));
    let mut rows: Vec<EventRow> = raw
        .iter()
        .enumerate()
        .map(|(i, v)| {
            EventRow::new(
                &validate_platform_event(v, now).expect("valid sample"),
                0,
                i as u64 + 1,
            )
        })
        .collect();
    // Beacon views with viewer keys (two distinct viewers, one repeat).
    for (i, key) in [11u64, 12, 11].into_iter().enumerate() {
        let mut v = rows[4].clone();
        v.event_id = format!("beacon-{i}");
        v.view_source = 9;
        v.viewer_key = key;
        v.seq = 100 + i as u64;
        rows.push(v);
    }
    rows
}

/// An imported history (issue 20): `years` of awards and views of org
/// `history`, one day in five, all received now, with stream sequences
/// from `first_seq`. One INSERT block of it touches every day, month and
/// year it spans; current ClickHouse refuses a block that touches more
/// than 100 partitions of one table.
fn history_rows(years: i64, first_seq: u64) -> Vec<EventRow> {
    let now: DateTime<Utc> = "2026-03-10T12:00:00Z".parse().unwrap();
    let mut rows = Vec::new();
    for day in (0..years * 365).step_by(5) {
        let when = (now - chrono::Duration::days(day + 1)).to_rfc3339();
        for (kind, extra) in [
            ("badge.awarded", json!({"award_method": "bulk"})),
            (
                "badge.viewed",
                json!({"source": "linkedin", "country": "FR"}),
            ),
        ] {
            let mut v = json!({"event_id": format!("h{years}-{kind}-{day}"), "type": kind,
                "occurred_at": when, "org_id": "history", "issuer_id": "old", "badge_class_id": "legacy",
                "assertion_id": format!("h{day}")});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let seq = first_seq + rows.len() as u64;
            rows.push(EventRow::new(
                &validate_platform_event(&v, now).expect("valid history"),
                0,
                seq,
            ));
        }
    }
    rows
}

/// Runs the statements in chDB; returns (name, Ok(output) | Err(error)).
fn run_chdb(statements: &[(String, String)]) -> Vec<(String, Result<String, String>)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/chdb_run.py");
    let cwd = tempfile::tempdir().unwrap();
    let request = json!({"statements": statements.iter().map(|(n, s)| json!({"name": n, "sql": s})).collect::<Vec<_>>()});
    let mut child = Command::new("python3")
        .arg(script)
        .current_dir(cwd.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with chdb-core (deploy/local/install.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "chdb_run.py failed");
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).expect("chdb_run.py output");
    results
        .into_iter()
        .map(|r| {
            let name = r["name"].as_str().unwrap().to_owned();
            if r["ok"].as_bool().unwrap() {
                (name, Ok(r["output"].as_str().unwrap().to_owned()))
            } else {
                (name, Err(r["error"].as_str().unwrap().to_owned()))
            }
        })
        .collect()
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_owned).collect();
    v.sort();
    v
}

#[tokio::test]
async fn every_statement_runs_on_clickhouse_18_16_and_current() {
    let ch = ClickHouse::start().await;
    let cfg = ClickHouseConfig {
        url: ch.url(),
        database: DB.into(),
        ..Default::default()
    };
    let store = Store::new(&cfg);
    let schema = Schema::new(DB, "");

    // (name, sql, compare results?) in execution order.
    let mut statements: Vec<(String, String, bool)> = Vec::new();
    for (i, ddl) in schema.all_statements().into_iter().enumerate() {
        statements.push((format!("ddl #{i}"), ddl, false));
    }
    statements.push((
        "insert events_input".into(),
        insert_sql("events_input", &sample_rows()),
        false,
    ));
    // Histories of 3 and 15 years, each one INSERT through every view
    // (the recovery statements below then recompute them from `events`).
    for (years, first_seq) in [(3, 10_000), (15, 20_000)] {
        statements.push((
            format!("insert a {years}-year history"),
            insert_sql("events_input", &history_rows(years, first_seq)),
            false,
        ));
    }
    let queries: Vec<(String, String)> = store
        .sample_queries()
        .into_iter()
        .map(|(name, q)| (format!("aggregator {name}"), q.sql_display().to_string()))
        .collect();
    for (name, sql) in queries {
        statements.push((name, sql, true));
    }
    let exporter_client = clickhouse::Client::default()
        .with_url(ch.url())
        .with_database(DB);
    for (name, q) in badgepulse_exporter::db::samples::sample_queries(&exporter_client) {
        statements.push((
            format!("exporter {name}"),
            q.sql_display().to_string(),
            true,
        ));
    }
    // The analysts' example queries in docs/clickhouse.md.
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/clickhouse.md"
    ))
    .unwrap();
    let mut examples = 0;
    for (i, block) in doc.split("```sql\n").skip(1).enumerate() {
        let sql = block
            .split("```")
            .next()
            .unwrap()
            .replace("badgepulse.", &format!("{DB}."));
        statements.push((format!("docs/clickhouse.md example {i}"), sql, true));
        examples += 1;
    }
    assert!(examples >= 6, "examples in docs/clickhouse.md: {examples}");
    // The data must actually have landed everywhere for the comparison to mean something.
    for table in [
        "events",
        "event_ids",
        "rollup_minute",
        "rollup_hour",
        "rollup_day",
        "rollup_total",
        "scope_hour",
        "scope_day",
        "scope_month",
        "scope_total",
        "view_days",
        "assertion_lifecycle",
        "assertion_awards",
        "lifecycle_refiled",
        "badge_classes",
    ] {
        statements.push((
            format!("count {table}"),
            format!("SELECT count() FROM {DB}.{table}"),
            true,
        ));
    }
    // The re-lay's copy of one legacy month (with its join to each
    // assertion's first award), in a database of its own.
    let relaid = Schema::new("relaid", "");
    for (i, ddl) in relaid.all_statements().into_iter().enumerate() {
        statements.push((format!("relaid ddl #{i}"), ddl, false));
    }
    for (name, sql) in [
        (
            "legacy events",
            "CREATE TABLE relaid.events_v2 AS relaid.events".to_owned(),
        ),
        (
            "legacy rows",
            format!("INSERT INTO relaid.events_v2 SELECT * FROM {DB}.events"),
        ),
        (
            "copy_legacy_month",
            relaid.copy_legacy_month().replace(
                '?',
                "(SELECT min(toYYYYMM(occurred_at)) FROM relaid.events_v2)",
            ),
        ),
    ] {
        statements.push((name.to_owned(), sql, false));
    }
    for table in [
        "events",
        "assertion_awards",
        "lifecycle_refiled",
        "assertion_lifecycle",
    ] {
        statements.push((
            format!("relaid count {table}"),
            format!("SELECT count(), uniqExact(org_id, assertion_id) FROM relaid.{table}"),
            true,
        ));
    }

    let mut old = Vec::new();
    for (name, sql, _) in &statements {
        let out = ch
            .query(sql)
            .await
            .unwrap_or_else(|e| panic!("ClickHouse 18.16 refused {name}:\n{sql}\n{e}"));
        old.push(out);
    }
    let new = run_chdb(
        &statements
            .iter()
            .map(|(n, s, _)| (n.clone(), s.clone()))
            .collect::<Vec<_>>(),
    );
    assert_eq!(new.len(), statements.len());
    let mut compared = 0;
    for (((name, sql, compare), old_out), (_, new_out)) in statements.iter().zip(&old).zip(&new) {
        let new_out = new_out
            .as_ref()
            .unwrap_or_else(|e| panic!("current ClickHouse (chDB) refused {name}:\n{sql}\n{e}"));
        if *compare {
            assert_eq!(
                sorted_lines(old_out),
                sorted_lines(new_out),
                "{name} differs between 18.16 and current:\n{sql}"
            );
            compared += 1;
        }
    }
    assert!(compared >= 40, "only {compared} queries compared");
    // Sanity: the sample data reached every derived table on 18.16.
    assert_eq!(
        ch.number(&format!("SELECT count() FROM {DB}.events")).await,
        (sample_rows().len() + history_rows(3, 0).len() + history_rows(15, 0).len()) as u64
    );
    assert_eq!(
        ch.number(&format!("SELECT count() FROM {DB}.badge_classes"))
            .await,
        1
    );
}
