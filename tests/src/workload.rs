//! The fault tests' seeded workload and its ground truth: raw stream
//! messages (platform events one per message, some resent under a new
//! message id as after JetStream's duplicate window; beacon views in
//! batches; a few undecodable messages) and what every table must then
//! hold, computed here from the distinct events, independently of the
//! aggregator. `aggregator_faults` and `clickhouse_shards` send it through
//! SIGKILLs and restarts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use badgepulse_contract::event::{
    encode_payload, AwardMethod, Event, EventType, ShareChannel, ViewSource,
};
use badgepulse_contract::subject::{
    event_subject, partition_of, BEACON_HEADER, DEAD_LETTER_STREAM, STREAM,
};
use chrono::{TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{eventually, ClickHouse, Nats, Service};

/// A message to publish: subject, message id, beacon flag, payload.
pub struct Msg {
    pub subject: String,
    pub id: String,
    pub beacons: bool,
    pub payload: Vec<u8>,
}

/// What the tables must hold, per event type.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct TypeTotals {
    pub events: u64,
    pub assertions: u64,
    pub viewers: u64,
}

pub struct Workload {
    pub messages: Vec<Msg>,
    pub distinct_events: u64,
    /// The (org, UTC day) pairs with views that have a viewer key.
    pub view_days: u64,
    pub per_type: BTreeMap<&'static str, TypeTotals>,
    /// The all-time KPIs of each org (SPEC §7).
    pub per_org: BTreeMap<String, OrgTotals>,
    pub lifecycle_assertions: u64,
    pub garbage: u64,
}

/// An org's all-time KPIs as the overview states them.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct OrgTotals {
    /// Distinct assertions with an award, accept, share, revocation.
    pub awarded: u64,
    pub accepted: u64,
    pub shared: u64,
    pub revoked: u64,
    /// Share and view events.
    pub shares: u64,
    pub views: u64,
    /// Distinct viewer keys per UTC day (keys are salted per day, SPEC
    /// §4), summed over days.
    pub unique_viewers: u64,
    /// Badge classes with any event.
    pub badge_classes: u64,
}

/// An event of `org` at `t` (epoch seconds) on badge class `badge` of
/// issuer `badge % 3`, with nothing type-specific.
pub fn base_event(
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
pub fn workload(seed: u64, assertions: usize, partitions: u16) -> Workload {
    let mut rng = StdRng::seed_from_u64(seed);
    let orgs = ["acme", "globex", "initech", "umbrella"];
    // Awards over the two UTC days before today, every later event at
    // most about three hours after its award: every event lies on a closed
    // day whatever the time of the run, so the seal jobs seal them all.
    let today = Utc::now().timestamp().div_euclid(86_400) * 86_400;
    let start = today - 3 * 86_400;
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
    let per_org = org_totals(events.iter().chain(&beacon_views));

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
        per_org,
        lifecycle_assertions: lifecycle.len() as u64,
        garbage,
    }
}

/// Each org's [`OrgTotals`], from the distinct events.
fn org_totals<'a>(events: impl Iterator<Item = &'a Event>) -> BTreeMap<String, OrgTotals> {
    #[derive(Default)]
    struct Sets {
        assertions: BTreeMap<&'static str, HashSet<String>>,
        viewers: HashSet<(i64, u64)>,
        classes: HashSet<String>,
        totals: OrgTotals,
    }
    let mut orgs: BTreeMap<String, Sets> = BTreeMap::new();
    for e in events {
        let org = orgs.entry(e.org_id.clone()).or_default();
        org.assertions
            .entry(e.kind.as_str())
            .or_default()
            .insert(e.assertion_id.clone());
        org.classes.insert(e.badge_class_id.clone());
        match e.kind {
            EventType::Shared => org.totals.shares += 1,
            EventType::Viewed => org.totals.views += 1,
            _ => {}
        }
        if let Some(key) = e.viewer_key {
            org.viewers
                .insert((e.occurred_at.timestamp().div_euclid(86_400), key));
        }
    }
    orgs.into_iter()
        .map(|(org, sets)| {
            let distinct = |kind: EventType| {
                sets.assertions
                    .get(kind.as_str())
                    .map_or(0, |a| a.len() as u64)
            };
            let totals = OrgTotals {
                awarded: distinct(EventType::Awarded),
                accepted: distinct(EventType::Accepted),
                shared: distinct(EventType::Shared),
                revoked: distinct(EventType::Revoked),
                unique_viewers: sets.viewers.len() as u64,
                badge_classes: sets.classes.len() as u64,
                ..sets.totals
            };
            (org, totals)
        })
        .collect()
}

/// The message of one platform event on its partition's subject.
pub fn platform_message(e: &Event, id: &str, partitions: u16) -> Msg {
    Msg {
        subject: event_subject(partition_of(&e.org_id, partitions), e.kind),
        id: id.to_owned(),
        beacons: false,
        payload: encode_payload(std::slice::from_ref(e)),
    }
}

pub async fn publish(js: &jetstream::Context, msgs: &[Msg]) {
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

pub async fn ensure_streams(js: &jetstream::Context) {
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

/// Waits until every consumer of `db` has nothing pending or unacked.
/// Waits up to `timeout` until `db.events` on `ch` holds every distinct
/// event of `w`; on timeout the panic says how far it got: rows, distinct
/// rows, and each partition's consumer (pending, ack pending, ack floor)
/// against the stream's last sequence, which tells a stalled aggregator
/// from a lost event.
pub async fn all_events_stored(
    ch: &ClickHouse,
    nats: &Nats,
    db: &str,
    partitions: u16,
    w: &Workload,
    timeout: Duration,
) {
    let count = format!("SELECT count() FROM {db}.events");
    let deadline = std::time::Instant::now() + timeout;
    while ch.number(&count).await < w.distinct_events {
        if std::time::Instant::now() > deadline {
            let distinct = ch
                .number(&format!(
                    "SELECT uniqExact(org_id, event_id) FROM {db}.events"
                ))
                .await;
            let js = jetstream::new(nats.client().await);
            let mut consumers = Vec::new();
            if let Ok(mut stream) = js.get_stream(STREAM).await {
                let last = stream.info().await.map(|i| i.state.last_sequence);
                consumers.push(format!("stream last seq {last:?}"));
                for p in 0..partitions {
                    let c: Result<jetstream::consumer::PullConsumer, _> =
                        stream.get_consumer(&format!("agg-{db}-{p}")).await;
                    consumers.push(match c {
                        Ok(mut c) => match c.info().await {
                            Ok(i) => format!(
                                "partition {p}: pending {}, ack pending {}, ack floor {}",
                                i.num_pending, i.num_ack_pending, i.ack_floor.stream_sequence
                            ),
                            Err(e) => format!("partition {p}: {e}"),
                        },
                        Err(e) => format!("partition {p}: {e}"),
                    });
                }
            }
            panic!(
                "after {timeout:?}, {db}.events holds {} rows ({distinct} distinct) of {} events; {}",
                ch.number(&count).await,
                w.distinct_events,
                consumers.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn drained(nats: &Nats, db: &str, partitions: u16) {
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

pub async fn check_tables(ch: &ClickHouse, db: &str, w: &Workload) {
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
pub async fn check_scope_tables(ch: &ClickHouse, db: &str, w: &Workload) {
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

pub async fn dead_letters(nats: &Nats) -> u64 {
    let js = jetstream::new(nats.client().await);
    let mut s = js.get_stream(DEAD_LETTER_STREAM).await.unwrap();
    s.info().await.unwrap().state.messages
}

/// The environment of run `wave` of the aggregator: every third run
/// aborts right after its `writes`-th write, before its ack.
pub fn crash_env(wave: usize, writes: &'static str) -> Vec<(&'static str, &'static str)> {
    if crash_planned(wave) {
        vec![("BADGEPULSE_TEST_CRASH_AFTER_WRITES", writes)]
    } else {
        vec![]
    }
}

fn crash_planned(wave: usize) -> bool {
    wave % 3 == 1
}

/// Ends run `wave` of the aggregator, started with [`crash_env`]: a run
/// without a planned crash is SIGKILLed after a random `pause_ms`; one with
/// it is awaited (60 s at most) and must have aborted between a write and
/// its ack. True if it did.
pub async fn end_run(
    agg: &mut Service,
    wave: usize,
    rng: &mut StdRng,
    pause_ms: Range<u64>,
) -> bool {
    let mut aborted = false;
    if !crash_planned(wave) {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(pause_ms))).await;
    } else if agg.wait_for_exit(Duration::from_secs(60)).await.is_some() {
        assert!(
            agg.log_text().contains("aborting between write and ack"),
            "{}",
            agg.log_text()
        );
        aborted = true;
    } else {
        let log = agg.log_text();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        eprintln!(
            "wave {wave}: no crash within 60 s; log tail (newest first):\n{}",
            tail.join("\n")
        );
    }
    agg.kill();
    aborted
}
