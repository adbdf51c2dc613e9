//! Exactly-once through crashes: a seeded ground-truth ledger of 200,000+
//! events goes through the aggregator while it is SIGKILLed at 20+ random
//! moments (several of them exactly between insert and ack), NATS restarts
//! once and ClickHouse restarts once. Every table must then equal the
//! ledger exactly, `events` must hold no duplicate, nothing may be pending.
//! A second test checks that two instances on disjoint partitions give the
//! same totals as one.

use std::time::Duration;

use async_nats::jetstream;
use badgepulse_contract::event::{encode_payload, AwardMethod, EventType};
use badgepulse_contract::subject::STREAM;
use badgepulse_tests::workload::{
    all_events_stored, base_event, check_tables, crash_env, dead_letters, drained, end_run,
    ensure_streams, platform_message, publish, workload,
};
use badgepulse_tests::{eventually, free_port, wait_http, ClickHouse, Nats, Service};
use rand::rngs::StdRng;
use rand::SeedableRng;

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
         partitions = [{}]\nconsumer_prefix = \"agg-{db}\"\nack_wait_secs = 10\nwrite_timeout_secs = 30\n",
        nats.url(),
        ch.url(),
        owned.join(", ")
    )
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
        let crash_env = crash_env(wave, "2");
        let mut agg = Service::start_with_env("badgepulse-aggregator", &config, &[], &crash_env);
        if wave == 8 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            nats.restart().await;
        }
        if wave == 15 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            ch.restart().await;
        }
        if end_run(&mut agg, wave, &mut rng, 200..1_500).await {
            crashes_between_write_and_ack += 1;
        }
        kills += 1;
    }
    assert!(kills >= 20, "{kills} kills");
    assert!(
        crashes_between_write_and_ack >= 3,
        "only {crashes_between_write_and_ack} crashes between write and ack"
    );

    // A final, undisturbed run finishes the stream; its batches are
    // logged, for the story of a failure.
    let admin = free_port();
    let _agg = Service::start_with_env(
        "badgepulse-aggregator",
        &aggregator_config(&nats, &ch, db, 1, &[], admin),
        &[],
        &[("RUST_LOG", "info,badgepulse_aggregator=debug")],
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
    all_events_stored(&ch, &nats, db, 1, &w, Duration::from_secs(300)).await;
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

/// Regression (found by `clickhouse_shards`): a write cut after `events`
/// and before the lookup tables (the recovery path writes `events` first),
/// then a batch reaching further than the cut one. Its new messages were
/// looked up in an `event_ids` and an `assertion_awards` that lacked the
/// cut batch, so a resent event was stored twice and an accept missed its
/// award. Simulated by deleting the lookup rows of the last messages
/// between two runs: the next run must bring both tables up to `events`
/// before it looks anything up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_after_a_cut_write_see_every_stored_event() {
    lookups_after_a_cut("cut", &["event_ids", "assertion_awards"]).await;
}

/// The same with `event_ids` whole and `assertion_awards` cut, as when the
/// views fill in another order than 18.16's (current releases need not
/// keep it): the award lookup must still be brought up to `events`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_see_every_award_whatever_order_the_views_filled_in() {
    lookups_after_a_cut("cutawards", &["assertion_awards"]).await;
}

/// The lookup rows of `cut` tables lost for the last five of ten awards,
/// then a resend of a cut award and an accept of another.
async fn lookups_after_a_cut(db: &str, cut: &[&str]) {
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let js = jetstream::new(nats.client().await);
    ensure_streams(&js).await;
    let day = 86_400;
    let t0 = (chrono::Utc::now().timestamp() / day - 3) * day + 3_600;
    let award = |n: usize, t: i64| {
        let mut e = base_event(
            format!("aw-{n}"),
            EventType::Awarded,
            "acme",
            n,
            &format!("as-{n}"),
            t,
        );
        e.award_method = Some(AwardMethod::ALL[0]);
        e
    };
    let first: Vec<_> = (0..10).map(|n| award(n, t0 + n as i64)).collect();
    let msgs: Vec<_> = first
        .iter()
        .map(|e| platform_message(e, &e.event_id, 1))
        .collect();
    publish(&js, &msgs).await;
    let config = aggregator_config(&nats, &ch, db, 1, &[], free_port());
    let agg = Service::start("badgepulse-aggregator", &config, &[]);
    drained(&nats, db, 1).await;
    drop(agg);
    // The lookup rows of the last five messages are gone, as after a cut.
    for table in cut {
        ch.query(&format!("ALTER TABLE {db}.{table} DELETE WHERE seq > 5"))
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(30), "the deletes done", || async {
        (ch.number(&format!(
            "SELECT count() FROM system.mutations WHERE database = '{db}' AND NOT is_done"
        ))
        .await
            == 0)
            .then_some(())
    })
    .await;
    for table in cut {
        assert_eq!(
            ch.number(&format!("SELECT count() FROM {db}.{table}"))
                .await,
            5,
            "{table} cut"
        );
    }
    // A resend of a cut event under a new message id, and an accept, a day
    // later, of a cut award.
    let accept = base_event(
        "ac-8".into(),
        EventType::Accepted,
        "acme",
        8,
        "as-8",
        t0 + day,
    );
    let more = [
        platform_message(&first[7], "resend-aw-7", 1),
        platform_message(&accept, "ac-8", 1),
    ];
    publish(&js, &more).await;
    let _agg = Service::start("badgepulse-aggregator", &config, &[]);
    drained(&nats, db, 1).await;
    let count = |sql: String| {
        let ch = &ch;
        async move { ch.number(&sql).await }
    };
    assert_eq!(count(format!("SELECT count() FROM {db}.events")).await, 11);
    assert_eq!(
        count(format!(
            "SELECT uniqExact(org_id, event_id) FROM {db}.events"
        ))
        .await,
        11,
        "the resent award stored twice"
    );
    assert_eq!(
        count(format!("SELECT count() FROM {db}.event_ids")).await,
        11
    );
    assert_eq!(
        count(format!("SELECT count() FROM {db}.assertion_awards")).await,
        10
    );
    assert_eq!(
        count(format!(
            "SELECT toUInt64(toDate(awarded_on) = toDate(toDateTime({}))) FROM {db}.events WHERE event_id = 'ac-8'",
            t0 + 8
        ))
        .await,
        1,
        "the accept filed under its assertion's award day"
    );
}

/// A write cut between the views of one insert, followed by seals, with
/// the views filling in an order ClickHouse 18.16 does not use but
/// current releases may: the touches first (`view_days`,
/// `lifecycle_touches`), then nothing else (their views re-created under
/// names that sort first, and a view that fails on accepts right after
/// them). A batch of accepts and a view then leaves touches of their
/// sealed days with nothing behind them, and every retry fails (a table
/// is away) while the seal job runs each second: had it sealed the days
/// then, the seals would be as recent as the touches without their rows,
/// and no later change would reseal them. It must leave them alone until
/// a batch is written again, then seal the accepts and the viewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_write_is_not_sealed_before_it_is_recovered() {
    let db = "cutseal";
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let js = jetstream::new(nats.client().await);
    ensure_streams(&js).await;
    let day = 86_400;
    let d0 = chrono::Utc::now().timestamp() / day - 3;
    let t0 = d0 * day + 3_600;
    let event = |id: &str, kind: EventType, n: usize, t: i64| {
        base_event(id.into(), kind, "acme", n, &format!("as-{n}"), t)
    };
    let view = |id: &str, n: usize, key: u64| {
        let mut e = event(id, EventType::Viewed, n, t0 + day + 100);
        e.viewer_key = Some(key);
        e
    };
    // Seq 1-10: ten awards on day d0; 11: a view of one on d0 + 1.
    let mut first: Vec<_> = (0..10)
        .map(|n| {
            let mut e = event(&format!("aw-{n}"), EventType::Awarded, n, t0 + n as i64);
            e.award_method = Some(AwardMethod::ALL[0]);
            e
        })
        .collect();
    first.push(view("vw-41", 9, 41));
    let msgs: Vec<_> = first
        .iter()
        .map(|e| platform_message(e, &e.event_id, 1))
        .collect();
    publish(&js, &msgs).await;
    let config = format!(
        "{}seal_interval_secs = 1\n",
        aggregator_config(&nats, &ch, db, 1, &[], free_port())
    );
    let _agg = Service::start("badgepulse-aggregator", &config, &[]);
    drained(&nats, db, 1).await;
    let row = |sql: String| {
        let ch = &ch;
        async move {
            let row = ch.query(&sql).await.unwrap();
            row.trim()
                .split('\t')
                .map(|v| v.parse().unwrap())
                .collect::<Vec<u64>>()
        }
    };
    // The seal of the award day: sealed_seq, awarded, accepted.
    let seal = || {
        row(format!(
            "SELECT max(sealed_seq), argMax(awarded, sealed_seq), argMax(accepted, sealed_seq) \
             FROM {db}.lifecycle_days WHERE org_id = 'acme' AND day = toDate({})",
            d0 * day
        ))
    };
    // The seal of the view day: sealed_seq, distinct viewers.
    let viewers = || {
        row(format!(
            "SELECT max(sealed_seq), argMax(unique_viewers, sealed_seq) FROM {db}.viewer_days \
             WHERE org_id = 'acme' AND scope_issuer_id = '' AND scope_badge_class_id = '' \
             AND bucket = toDateTime({}, 'UTC')",
            (d0 + 1) * day
        ))
    };
    eventually(Duration::from_secs(60), "both days sealed", || async {
        (seal().await == [11, 10, 0] && viewers().await == [11, 1]).then_some(())
    })
    .await;
    let definition = |name: &str| {
        let ch = &ch;
        let name = name.to_owned();
        async move {
            ch.query(&format!("SHOW CREATE TABLE {db}.{name} FORMAT TSVRaw"))
                .await
                .unwrap()
                .trim()
                .to_owned()
        }
    };
    let minutes_mv = definition("rollup_minute_mv").await;
    let touches_mv = definition("lifecycle_touches_mv").await;
    let view_days_mv = definition("view_days_mv").await;
    for sql in [
        format!("DROP TABLE {db}.lifecycle_touches_mv"),
        touches_mv.replace(
            &format!("{db}.lifecycle_touches_mv"),
            &format!("{db}.a_lifecycle_touches_mv"),
        ),
        format!("DROP TABLE {db}.view_days_mv"),
        view_days_mv.replace(
            &format!("{db}.view_days_mv"),
            &format!("{db}.a_k_view_days_mv"),
        ),
        format!("CREATE TABLE {db}.cut_sink (x UInt8) ENGINE = Null"),
        format!(
            "CREATE MATERIALIZED VIEW {db}.a_m_cut_mv TO {db}.cut_sink AS \
             SELECT throwIf(type = 'badge.accepted') AS x FROM {db}.events_input"
        ),
        // Every retry fails: it reads the marks of every table first. The
        // seal jobs read `events` and the lifecycle tables, all there.
        format!("DROP TABLE {db}.rollup_minute_mv"),
        format!("RENAME TABLE {db}.rollup_minute TO {db}.rollup_minute_away"),
    ] {
        ch.query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // Seq 12-16: accepts of five awards on d0 + 1, the first message with
    // a second viewer's view of the same day (one insert).
    let mut cut: Vec<_> = (0..5)
        .map(|n| {
            let e = event(
                &format!("ac-{n}"),
                EventType::Accepted,
                n,
                t0 + day + n as i64,
            );
            platform_message(&e, &e.event_id, 1)
        })
        .collect();
    cut[0].payload = encode_payload(&[
        event("ac-0", EventType::Accepted, 0, t0 + day),
        view("vw-42", 0, 42),
    ]);
    publish(&js, &cut).await;
    let touch = |table: &str| {
        row(format!(
            "SELECT maxMerge(max_seq) FROM {db}.{table} WHERE org_id = 'acme'"
        ))
    };
    eventually(
        Duration::from_secs(60),
        "the cut write's touches",
        || async {
            (touch("lifecycle_touches").await == [16] && touch("view_days").await == [12])
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        row(format!(
            "SELECT countIfMerge(accepted) FROM {db}.assertion_lifecycle"
        ))
        .await,
        [0],
        "the cut left the accepts out"
    );
    // Five seal passes with both days' touches past their seals.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        seal().await,
        [11, 10, 0],
        "award day sealed before its write was recovered"
    );
    assert_eq!(
        viewers().await,
        [11, 1],
        "view day sealed before its write was recovered"
    );
    for sql in [
        format!("RENAME TABLE {db}.rollup_minute_away TO {db}.rollup_minute"),
        minutes_mv,
        format!("DROP TABLE {db}.a_m_cut_mv"),
    ] {
        ch.query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    drained(&nats, db, 1).await;
    eventually(
        Duration::from_secs(60),
        "the accepts and the viewer sealed",
        || async { (seal().await == [16, 10, 5] && viewers().await == [12, 2]).then_some(()) },
    )
    .await;
    assert_eq!(row(format!("SELECT count() FROM {db}.events")).await, [17]);
    assert_eq!(
        row(format!(
            "SELECT countIfMerge(accepted) FROM {db}.assertion_lifecycle"
        ))
        .await,
        [5],
        "each accept counted once"
    );
}
