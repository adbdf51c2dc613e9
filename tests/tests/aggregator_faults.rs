//! Exactly-once through crashes: a seeded ground-truth ledger of 200,000+
//! events goes through the aggregator while it is SIGKILLed at 20+ random
//! moments (several of them exactly between insert and ack), NATS restarts
//! once and ClickHouse restarts once. Every table must then equal the
//! ledger exactly, `events` must hold no duplicate, nothing may be pending.
//! A second test checks that two instances on disjoint partitions give the
//! same totals as one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use badgepulse_contract::event::{
    encode_payload, AwardMethod, Event, EventType, ShareChannel, ViewSource,
};
use badgepulse_contract::subject::{
    event_subject, partition_of, BEACON_HEADER, DEAD_LETTER_STREAM, STREAM,
};
use badgepulse_tests::{eventually, free_port, wait_http, ClickHouse, Nats, Service};
use chrono::{TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A message to publish: subject, message id, beacon flag, payload.
struct Msg {
    subject: String,
    id: String,
    beacons: bool,
    payload: Vec<u8>,
}

/// What the tables must hold, per event type.
#[derive(Default, Debug, Clone, PartialEq)]
struct TypeTotals {
    events: u64,
    assertions: u64,
    viewers: u64,
}

struct Workload {
    messages: Vec<Msg>,
    distinct_events: u64,
    /// The (org, UTC day) pairs with views that have a viewer key.
    view_days: u64,
    per_type: BTreeMap<&'static str, TypeTotals>,
    lifecycle_assertions: u64,
    garbage: u64,
}

fn base_event(
    id: String,
    kind: EventType,
    org: &str,
    badge: usize,
    assertion: &str,
    t: i64,
) -> Event {
    let when = Utc.timestamp_opt(t, 0).unwrap();
    Event {
        event_id: id,
        kind,
        occurred_at: when,
        received_at: when,
        org_id: org.into(),
        issuer_id: format!("{org}-iss{}", badge % 3),
        badge_class_id: format!("{org}-b{badge}"),
        assertion_id: assertion.into(),
        award_method: None,
        channel: None,
        source: None,
        country: None,
        viewer_key: None,
        badge_class: None,
    }
}

/// A seeded workload: platform events one per message (some resent under a
/// new message id, as after JetStream's window), beacon views in batches,
/// and a few undecodable messages.
fn workload(seed: u64, assertions: usize, partitions: u16) -> Workload {
    let mut rng = StdRng::seed_from_u64(seed);
    let orgs = ["acme", "globex", "initech", "umbrella"];
    let start = Utc::now().timestamp() - 3 * 86_400;
    let mut events: Vec<Event> = Vec::new();
    let mut beacon_views: Vec<Event> = Vec::new();
    for n in 0..assertions {
        let org = orgs[n % orgs.len()];
        let badge = rng.gen_range(0..12);
        let a = format!("as-{n}");
        let t0 = start + rng.gen_range(0..2 * 86_400);
        let mut e = base_event(format!("aw-{n}"), EventType::Awarded, org, badge, &a, t0);
        e.award_method = Some(AwardMethod::ALL[rng.gen_range(0..AwardMethod::ALL.len())]);
        events.push(e);
        if rng.gen_bool(0.6) {
            events.push(base_event(
                format!("ac-{n}"),
                EventType::Accepted,
                org,
                badge,
                &a,
                t0 + 3_600,
            ));
            for s in 0..rng.gen_range(0..3) {
                let mut e = base_event(
                    format!("sh-{n}-{s}"),
                    EventType::Shared,
                    org,
                    badge,
                    &a,
                    t0 + 7_200 + s,
                );
                e.channel = Some(ShareChannel::ALL[rng.gen_range(0..ShareChannel::ALL.len())]);
                events.push(e);
            }
        }
        if rng.gen_bool(0.02) {
            events.push(base_event(
                format!("rv-{n}"),
                EventType::Revoked,
                org,
                badge,
                &a,
                t0 + 9_000,
            ));
        }
        for v in 0..rng.gen_range(0..15) {
            let mut e = base_event(
                format!("vw-{n}-{v}"),
                EventType::Viewed,
                org,
                badge,
                &a,
                t0 + 10_000 + v * 60,
            );
            e.source = Some(ViewSource::ALL[rng.gen_range(0..ViewSource::ALL.len())]);
            if rng.gen_bool(0.9) {
                e.viewer_key = Some(rng.gen_range(1..5_000));
                e.country = Some("DE".into());
            }
            beacon_views.push(e);
        }
    }

    // Ground truth from the distinct events.
    // Per type: events, distinct (org, assertion), distinct (org, viewer).
    type Truth = (u64, HashSet<(String, String)>, HashSet<(String, u64)>);
    let mut per_type: BTreeMap<&'static str, Truth> = BTreeMap::new();
    let mut lifecycle: HashSet<(String, String)> = HashSet::new();
    let mut view_days: HashSet<(String, i64)> = HashSet::new();
    for e in events.iter().chain(&beacon_views) {
        let entry = per_type.entry(e.kind.as_str()).or_default();
        entry.0 += 1;
        entry.1.insert((e.org_id.clone(), e.assertion_id.clone()));
        if let Some(k) = e.viewer_key {
            entry.2.insert((e.org_id.clone(), k));
            view_days.insert((e.org_id.clone(), e.occurred_at.timestamp() / 86_400));
        }
        lifecycle.insert((e.org_id.clone(), e.assertion_id.clone()));
    }
    let distinct_events = (events.len() + beacon_views.len()) as u64;

    let mut messages = Vec::new();
    for e in &events {
        let subject = event_subject(partition_of(&e.org_id, partitions), e.kind);
        let payload = encode_payload(std::slice::from_ref(e));
        messages.push(Msg {
            subject: subject.clone(),
            id: e.event_id.clone(),
            beacons: false,
            payload: payload.clone(),
        });
        if rng.gen_bool(0.02) {
            // The platform resends after JetStream's duplicate window: new message id.
            messages.push(Msg {
                subject,
                id: format!("resend-{}", e.event_id),
                beacons: false,
                payload,
            });
        }
    }
    let mut by_partition: HashMap<u16, Vec<Event>> = HashMap::new();
    for v in beacon_views {
        by_partition
            .entry(partition_of(&v.org_id, partitions))
            .or_default()
            .push(v);
    }
    for (p, views) in by_partition {
        for (i, chunk) in views.chunks(200).enumerate() {
            messages.push(Msg {
                subject: event_subject(p, EventType::Viewed),
                id: format!("batch-{p}-{i}"),
                beacons: true,
                payload: encode_payload(chunk),
            });
        }
    }
    let garbage = 7;
    for g in 0..garbage {
        messages.push(Msg {
            subject: event_subject(0, EventType::Viewed),
            id: format!("garbage-{g}"),
            beacons: false,
            payload: format!("{{\"this is\": \"not an event {g}\"}}").into_bytes(),
        });
    }
    // Interleave platform events, beacon batches and garbage like live traffic.
    for i in (1..messages.len()).rev() {
        let j = rng.gen_range(0..=i);
        messages.swap(i, j);
    }
    Workload {
        messages,
        distinct_events,
        view_days: view_days.len() as u64,
        per_type: per_type
            .into_iter()
            .map(|(k, (events, a, v))| {
                (
                    k,
                    TypeTotals {
                        events,
                        assertions: a.len() as u64,
                        viewers: v.len() as u64,
                    },
                )
            })
            .collect(),
        lifecycle_assertions: lifecycle.len() as u64,
        garbage,
    }
}

async fn publish(js: &jetstream::Context, msgs: &[Msg]) {
    for chunk in msgs.chunks(500) {
        let mut acks = Vec::with_capacity(chunk.len());
        for m in chunk {
            let mut p = PublishMessage::build()
                .payload(m.payload.clone().into())
                .message_id(&m.id);
            if m.beacons {
                p = p.header(BEACON_HEADER, "1");
            }
            acks.push(
                js.send_publish(m.subject.clone(), p)
                    .await
                    .expect("publish"),
            );
        }
        for a in acks {
            a.await.expect("PubAck");
        }
    }
}

async fn ensure_streams(js: &jetstream::Context) {
    let layout = badgepulse_contract::subject::StreamLayout::default();
    js.get_or_create_stream(badgepulse_contract::subject::stream_config(layout))
        .await
        .unwrap();
    js.get_or_create_stream(badgepulse_contract::subject::dead_letter_stream_config(
        layout,
    ))
    .await
    .unwrap();
}

fn aggregator_config(
    nats: &Nats,
    ch: &ClickHouse,
    db: &str,
    partitions: u16,
    owned: &[u16],
    admin: u16,
) -> String {
    let owned: Vec<String> = owned.iter().map(u16::to_string).collect();
    format!(
        "[nats]\nurl = \"{}\"\npartitions = {partitions}\n[clickhouse]\nurl = \"{}\"\ndatabase = \"{db}\"\n\
         [aggregator]\nadmin_bind = \"127.0.0.1:{admin}\"\nflush_interval_ms = 100\nbatch_max_messages = 2000\n\
         partitions = [{}]\nconsumer_prefix = \"agg-{db}\"\nack_wait_secs = 10\n",
        nats.url(),
        ch.url(),
        owned.join(", ")
    )
}

/// Waits until every consumer of `db` has nothing pending or unacked.
async fn drained(nats: &Nats, db: &str, partitions: u16) {
    let client = nats.client().await;
    let js = jetstream::new(client);
    eventually(Duration::from_secs(300), "consumers drained", || async {
        let stream = js.get_stream(STREAM).await.ok()?;
        for p in 0..partitions {
            let mut c: jetstream::consumer::PullConsumer =
                stream.get_consumer(&format!("agg-{db}-{p}")).await.ok()?;
            let info = c.info().await.ok()?;
            if info.num_pending > 0 || info.num_ack_pending > 0 {
                return None;
            }
        }
        Some(())
    })
    .await;
}

async fn check_tables(ch: &ClickHouse, db: &str, w: &Workload) {
    assert_eq!(
        ch.number(&format!("SELECT count() FROM {db}.events")).await,
        w.distinct_events,
        "events rows"
    );
    assert_eq!(
        ch.number(&format!(
            "SELECT count() - uniqExact(org_id, event_id) FROM {db}.events"
        ))
        .await,
        0,
        "duplicates in events"
    );
    assert_eq!(
        ch.number(&format!(
            "SELECT count() + 1000000000 * (count() - uniqExact(org_id, event_id)) FROM {db}.event_ids"
        ))
        .await,
        w.distinct_events,
        "event_ids rows, without duplicates"
    );
    // Every award, share and view in each distribution rollup once per
    // dimension; award methods count distinct assertions (sketches, per
    // org, within SPEC §7's tolerance).
    let n = |k: &str| w.per_type.get(k).map_or(0, |t| t.events);
    for table in ["rollup_minute", "rollup_hour", "rollup_day", "rollup_total"] {
        let out = ch
            .query(&format!(
                "SELECT toString(dimension), sum(n), sum(a) FROM (SELECT dimension, org_id, countMerge(events) AS n, \
                 uniqCombinedIfMerge(18)(assertions) AS a FROM {db}.{table} GROUP BY dimension, org_id) \
                 GROUP BY dimension ORDER BY dimension"
            ))
            .await
            .unwrap();
        let awarded = w.per_type.get("badge.awarded").map_or(0, |t| t.assertions);
        let rows: Vec<Vec<u64>> = out
            .lines()
            .map(|l| l.split('\t').skip(1).map(|v| v.parse().unwrap()).collect())
            .collect();
        let names: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
        assert_eq!(
            names,
            [
                "award_method",
                "share_channel",
                "view_source",
                "view_country"
            ],
            "{table}"
        );
        assert_eq!(rows[0][0], n("badge.awarded"), "{table} awards");
        assert!(
            rows[0][1].abs_diff(awarded) <= awarded / 50,
            "{table} awarded assertions {} vs {awarded}",
            rows[0][1]
        );
        assert_eq!(rows[1][0], n("badge.shared"), "{table} shares");
        assert_eq!(rows[2][0], n("badge.viewed"), "{table} views by source");
        assert_eq!(rows[3][0], n("badge.viewed"), "{table} views by country");
    }
    assert_eq!(
        ch.number(&format!(
            "SELECT count() FROM (SELECT org_id, bucket FROM {db}.view_days GROUP BY org_id, bucket)"
        ))
        .await,
        w.view_days,
        "view_days: one row per org and day with keyed views"
    );
    let lifecycle = ch
        .query(&format!(
            "SELECT count(), sum(aw), sum(ac), sum(sh), sum(vw), sum(rv) FROM (SELECT org_id, assertion_id, countIfMerge(awarded) AS aw, \
             countIfMerge(accepted) AS ac, countIfMerge(shares) AS sh, countIfMerge(views) AS vw, countIfMerge(revoked) AS rv \
             FROM {db}.assertion_lifecycle GROUP BY org_id, assertion_id)"
        ))
        .await
        .unwrap();
    assert_eq!(
        lifecycle.trim(),
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            w.lifecycle_assertions,
            n("badge.awarded"),
            n("badge.accepted"),
            n("badge.shared"),
            n("badge.viewed"),
            n("badge.revoked")
        ),
        "assertion_lifecycle"
    );
    check_scope_tables(ch, db, w).await;
}

/// The `scope_*` tables: at every level (summed over issuers and badge
/// classes), the numbers of events, shares and views are exact (a batch
/// counted twice or lost would show); distinct assertions per org,
/// summed, are within SPEC §7's tolerance of the sketches.
async fn check_scope_tables(ch: &ClickHouse, db: &str, w: &Workload) {
    let n = |k: &str| w.per_type.get(k).map_or(0, |t| t.events);
    let distinct = |k: &str| w.per_type.get(k).map_or(0, |t| t.assertions);
    for table in ["scope_hour", "scope_day", "scope_month", "scope_total"] {
        for (level, condition) in [
            ("org", "scope_issuer_id = '' AND scope_badge_class_id = ''"),
            (
                "issuer",
                "scope_issuer_id != '' AND scope_badge_class_id = ''",
            ),
            ("badge class", "scope_badge_class_id != ''"),
        ] {
            let out = ch
                .query(&format!(
                    "SELECT count(), sum(e), sum(sh), sum(vw), sum(aw), sum(ac), sum(sd), sum(rv) FROM (SELECT org_id, \
                     countMerge(events) AS e, countIfMerge(shares) AS sh, countIfMerge(views) AS vw, \
                     uniqCombinedIfMerge(18)(awarded) AS aw, uniqCombinedIfMerge(18)(accepted) AS ac, \
                     uniqCombinedIfMerge(18)(shared) AS sd, uniqCombinedIfMerge(18)(revoked) AS rv \
                     FROM {db}.{table} WHERE {condition} GROUP BY org_id)"
                ))
                .await
                .unwrap();
            let got: Vec<u64> = out.trim().split('\t').map(|v| v.parse().unwrap()).collect();
            if table == "scope_hour" && level != "org" {
                assert_eq!(got[0], 0, "{table} holds org rows only");
                continue;
            }
            assert_eq!(got[1], w.distinct_events, "{table} {level} events");
            assert_eq!(got[2], n("badge.shared"), "{table} {level} shares");
            assert_eq!(got[3], n("badge.viewed"), "{table} {level} views");
            if level == "org" {
                for (i, kind) in [
                    "badge.awarded",
                    "badge.accepted",
                    "badge.shared",
                    "badge.revoked",
                ]
                .iter()
                .enumerate()
                {
                    let want = distinct(kind);
                    assert!(
                        got[4 + i].abs_diff(want) <= want / 50,
                        "{table} {level} {kind} assertions {} vs {want}",
                        got[4 + i]
                    );
                }
            }
        }
    }
}

async fn dead_letters(nats: &Nats) -> u64 {
    let js = jetstream::new(nats.client().await);
    let mut s = js.get_stream(DEAD_LETTER_STREAM).await.unwrap();
    s.info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_and_restarts_lose_nothing_and_count_nothing_twice() {
    let db = "faults";
    let mut nats = Nats::start().await;
    let mut ch = ClickHouse::start().await;
    let w = workload(20261128, 23_000, 1);
    assert!(
        w.distinct_events >= 200_000,
        "ledger has only {} events",
        w.distinct_events
    );
    let js = jetstream::new(nats.client().await);
    ensure_streams(&js).await;

    let mut rng = StdRng::seed_from_u64(7);
    let waves = 22;
    let per_wave = w.messages.len().div_ceil(waves);
    let mut kills = 0;
    let mut crashes_between_write_and_ack = 0;
    for (wave, msgs) in w.messages.chunks(per_wave).enumerate() {
        let js = jetstream::new(nats.client().await);
        publish(&js, msgs).await;
        let admin = free_port();
        let config = aggregator_config(&nats, &ch, db, 1, &[], admin);
        // Every third run aborts right after a write, before its ack.
        let crash_env = if wave % 3 == 1 {
            vec![("BADGEPULSE_TEST_CRASH_AFTER_WRITES", "2")]
        } else {
            vec![]
        };
        let mut agg = Service::start_with_env("badgepulse-aggregator", &config, &[], &crash_env);
        if wave == 8 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            nats.restart().await;
        }
        if wave == 15 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            ch.restart().await;
        }
        if crash_env.is_empty() {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(200..1_500))).await;
        } else if agg.wait_for_exit(Duration::from_secs(60)).await.is_some() {
            assert!(
                agg.log_text().contains("aborting between write and ack"),
                "{}",
                agg.log_text()
            );
            crashes_between_write_and_ack += 1;
        } else {
            let log = agg.log_text();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            eprintln!(
                "wave {wave}: no crash within 60 s; log tail (newest first):\n{}",
                tail.join("\n")
            );
        }
        agg.kill();
        kills += 1;
    }
    assert!(kills >= 20, "{kills} kills");
    assert!(
        crashes_between_write_and_ack >= 3,
        "only {crashes_between_write_and_ack} crashes between write and ack"
    );

    // A final, undisturbed run finishes the stream.
    let admin = free_port();
    let _agg = Service::start(
        "badgepulse-aggregator",
        &aggregator_config(&nats, &ch, db, 1, &[], admin),
        &[],
    );
    wait_http(
        &format!("http://127.0.0.1:{admin}/readyz"),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    // Until the final instance has recreated its consumer, `drained` could
    // read the killed instance's consumer; so first wait for the rows (a
    // real loss times out here), then for nothing pending.
    let count = format!("SELECT count() FROM {db}.events");
    eventually(
        Duration::from_secs(300),
        "every ledger event in ClickHouse",
        || async { (ch.number(&count).await >= w.distinct_events).then_some(()) },
    )
    .await;
    drained(&nats, db, 1).await;
    check_tables(&ch, db, &w).await;
    assert_eq!(
        dead_letters(&nats).await,
        w.garbage,
        "every undecodable message dead-lettered once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_disjoint_partitions_equal_one() {
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let w = workload(42, 3_000, 2);
    let js = jetstream::new(nats.client().await);
    ensure_streams(&js).await;
    publish(&js, &w.messages).await;

    let (a1, a2, a3) = (free_port(), free_port(), free_port());
    let _p0 = Service::start(
        "badgepulse-aggregator",
        &aggregator_config(&nats, &ch, "split", 2, &[0], a1),
        &[],
    );
    let _p1 = Service::start(
        "badgepulse-aggregator",
        &aggregator_config(&nats, &ch, "split", 2, &[1], a2),
        &[],
    );
    let _all = Service::start(
        "badgepulse-aggregator",
        &aggregator_config(&nats, &ch, "single", 2, &[], a3),
        &[],
    );
    drained(&nats, "split", 2).await;
    drained(&nats, "single", 2).await;
    check_tables(&ch, "split", &w).await;
    check_tables(&ch, "single", &w).await;
    let totals = |db: &'static str| {
        let ch = &ch;
        async move {
            ch.query(&format!(
                "SELECT org_id, scope_issuer_id, scope_badge_class_id, bucket, countMerge(events), countIfMerge(views), \
                 uniqCombinedIfMerge(18)(awarded), uniqCombinedIfMerge(18)(shared) \
                 FROM {db}.scope_day GROUP BY org_id, scope_issuer_id, scope_badge_class_id, bucket \
                 ORDER BY org_id, scope_issuer_id, scope_badge_class_id, bucket"
            ))
            .await
            .unwrap()
        }
    };
    let split = totals("split").await;
    assert!(split.lines().count() > 100);
    assert_eq!(
        split,
        totals("single").await,
        "per-bucket scope rows differ between two instances and one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_replays_the_stream_into_a_fresh_database() {
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let w = workload(99, 400, 1);
    let js = jetstream::new(nats.client().await);
    ensure_streams(&js).await;
    publish(&js, &w.messages).await;
    let admin = free_port();
    let config = aggregator_config(&nats, &ch, "live", 1, &[], admin);
    let live = Service::start("badgepulse-aggregator", &config, &[]);
    drained(&nats, "live", 1).await;
    check_tables(&ch, "live", &w).await;
    drop(live);

    let mut rebuild = Service::start(
        "badgepulse-aggregator",
        &config,
        &["rebuild", "--database", "rebuilt"],
    );
    let status = rebuild
        .wait_for_exit(Duration::from_secs(120))
        .await
        .expect("rebuild finishes by itself");
    assert!(status.success(), "{}", rebuild.log_text());
    check_tables(&ch, "rebuilt", &w).await;
    // Its consumers are gone; the live one remains.
    let stream = js.get_stream(STREAM).await.unwrap();
    assert!(stream
        .get_consumer::<jetstream::consumer::pull::Config>("agg-live-rebuild-rebuilt-0")
        .await
        .is_err());
    assert!(stream
        .get_consumer::<jetstream::consumer::pull::Config>("agg-live-0")
        .await
        .is_ok());
    // A second rebuild into an existing database is refused, naming it.
    let mut again = Service::start(
        "badgepulse-aggregator",
        &config,
        &["rebuild", "--database", "rebuilt"],
    );
    let status = again
        .wait_for_exit(Duration::from_secs(30))
        .await
        .expect("exits");
    assert!(!status.success());
    assert!(
        again
            .log_text()
            .contains("--database rebuilt: the database already exists"),
        "{}",
        again.log_text()
    );
}

/// Regression: a pull that reaches `batch_max_bytes` ends with a 409
/// status after some messages; those messages are the batch (dropping them
/// stalled the consumer, found by the benchmark).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_ending_at_the_byte_budget_still_make_progress() {
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let w = workload(5, 2_000, 1);
    let js = jetstream::new(nats.client().await);
    ensure_streams(&js).await;
    publish(&js, &w.messages).await;
    let admin = free_port();
    let config =
        aggregator_config(&nats, &ch, "budget", 1, &[], admin) + "batch_max_bytes = 1048576\n";
    let _agg = Service::start("badgepulse-aggregator", &config, &[]);
    drained(&nats, "budget", 1).await;
    check_tables(&ch, "budget", &w).await;
}

/// A derived table added by a later schema migration starts empty; the
/// consumers fill it from `events` on their first batch. Simulated by
/// emptying the scope tables of a running deployment between two halves
/// of a workload: afterwards every table holds the whole workload once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_derived_tables_are_filled_from_events() {
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let w = workload(17, 300, 2);
    let js = jetstream::new(nats.client().await);
    ensure_streams(&js).await;
    let half = w.messages.len() / 2;
    publish(&js, &w.messages[..half]).await;
    let admin = free_port();
    let config = aggregator_config(&nats, &ch, "filled", 2, &[], admin);
    let first = Service::start("badgepulse-aggregator", &config, &[]);
    drained(&nats, "filled", 2).await;
    drop(first);
    for table in ["scope_hour", "scope_day", "scope_total"] {
        ch.query(&format!("TRUNCATE TABLE filled.{table}"))
            .await
            .unwrap();
    }
    let _second = Service::start("badgepulse-aggregator", &config, &[]);
    publish(&js, &w.messages[half..]).await;
    drained(&nats, "filled", 2).await;
    check_tables(&ch, "filled", &w).await;
}
