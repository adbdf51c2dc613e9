//! The fault matrix of issue 8 at reduced size, under load, against the
//! real binaries, NATS and ClickHouse 18.16:
//! - the network between the aggregator and ClickHouse cut (a local TCP
//!   proxy that drops every connection and refuses new ones for a while);
//! - the aggregator's connections to ClickHouse lost silently (the proxy
//!   stops forwarding without closing anything: requests in flight never
//!   get an answer);
//! - ClickHouse made read-only for a while;
//! - ClickHouse's disk filled for a while (its data directory on a small
//!   tmpfs, filled with a file);
//! - ingest SIGKILLed mid-traffic and restarted; the exporter SIGKILLed
//!   and restarted.
//!
//! Each checks what the user saw and that nothing acknowledged was lost
//! or counted twice: ClickHouse holds exactly the ledger's events, once,
//! and the exporter's all-time overview of every org equals the ledger.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use badgepulse_loadgen::{check, plan, send, Pipeline, Plan, Target};
use badgepulse_tests::{
    eventually, metric_value, scrape, start_services_split, wait_http, ClickHouse, Nats, Service,
    StackConfig, StackPorts,
};
use chrono::Utc;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

const TOKEN: &str = "faults-platform-token";
const API_KEY: &str = "faults-api-key";
const PIXEL_KEY: &str = "faults-pixel-key-0123456789";

/// A TCP proxy to `upstream` that can cut the network: drop every open
/// connection and refuse new ones until restored; or freeze it: stop
/// forwarding on every open connection for good, without closing it (as
/// when a peer vanishes without a reset), and hold new ones unanswered
/// until thawed.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    frozen: tokio::sync::watch::Sender<bool>,
    open: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let (frozen, thawed) = tokio::sync::watch::channel(false);
        let open: Arc<Mutex<Vec<AbortHandle>>> = Default::default();
        let accept = {
            let (cut, open) = (cut.clone(), open.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    if cut.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let mut frozen = thawed.clone();
                    let task = tokio::spawn(async move {
                        let frozen_now = *frozen.borrow();
                        if frozen_now {
                            // Held open, never answered.
                            let _held = client;
                            return std::future::pending().await;
                        }
                        if let Ok(mut server) = TcpStream::connect(&upstream).await {
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = async { frozen.wait_for(|f| *f).await.is_ok() } => {
                                    // Both sides stay open, silent for good.
                                    std::future::pending::<()>().await;
                                }
                            }
                        }
                    });
                    open.lock().unwrap().push(task.abort_handle());
                }
            })
            .abort_handle()
        };
        Proxy {
            port,
            cut,
            frozen,
            open,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for conn in self.open.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// New connections are forwarded again; the frozen ones stay silent.
    fn thaw(&self) {
        self.frozen.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

struct Stack {
    nats: Nats,
    ch: ClickHouse,
    ports: StackPorts,
    config: String,
    services: Vec<Service>,
    _proxy: Option<Proxy>,
}

fn config(nats: &Nats, clickhouse_url: &str, ports: StackPorts) -> StackConfig {
    StackConfig::new(&nats.url(), clickhouse_url, "faults", ports)
        .open_pipeline(TOKEN, PIXEL_KEY, API_KEY)
        .ingest("rate_limit_per_minute = 1000000000")
        // A batch whose requests get no answer is given up after 5 s.
        .aggregator("write_timeout_secs = 5")
}

/// NATS, ClickHouse and the three services; with `proxied`, the
/// aggregator reaches ClickHouse through a [`Proxy`].
async fn stack(proxied: bool) -> (Stack, Option<Arc<Proxy>>) {
    stack_on(ClickHouse::start().await, proxied).await
}

/// [`stack`] on a given ClickHouse server.
async fn stack_on(ch: ClickHouse, proxied: bool) -> (Stack, Option<Arc<Proxy>>) {
    let nats = Nats::start().await;
    let ports = StackPorts::free();
    let config = config(&nats, &ch.url(), ports);
    let proxy = if proxied {
        Some(Arc::new(
            Proxy::start(ch.url().trim_start_matches("http://").to_owned()).await,
        ))
    } else {
        None
    };
    let aggregator_config = match &proxy {
        Some(p) => config.with_clickhouse_url(&p.url()).toml(),
        None => config.toml(),
    };
    let config = config.toml();
    let services = start_services_split(&aggregator_config, &config, &ports.all()).await;
    (
        Stack {
            nats,
            ch,
            ports,
            config,
            services,
            _proxy: None,
        },
        proxy,
    )
}

fn target(stack: &Stack) -> Target {
    Target {
        ingest: stack.ports.ingest_url(),
        token: TOKEN.into(),
        kid: "k1".into(),
        key: PIXEL_KEY.into(),
        concurrency: 8,
        metrics: Some(stack.ports.ingest_admin_url()),
        // About 10 s of traffic for a scale-1 plan.
        rate: Some(100.0),
    }
}

async fn clickhouse_errors(stack: &Stack) -> f64 {
    let m = scrape(&format!(
        "http://127.0.0.1:{}/metrics",
        stack.ports.aggregator
    ))
    .await;
    metric_value(&m, "badgepulse_aggregator_clickhouse_errors_total", &[])
}

async fn overview(stack: &Stack, org: &str) -> Value {
    reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/api/v1/overview?org={org}",
            stack.ports.exporter
        ))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits up to `within` for `expected` events in `faults.events`, then
/// checks there are exactly that many and none twice.
async fn events_exactly_once(stack: &Stack, expected: u64, within: Duration) {
    eventually(
        within,
        &format!("{expected} events in ClickHouse"),
        || async {
            (stack.ch.number("SELECT count() FROM faults.events").await >= expected).then_some(())
        },
    )
    .await;
    assert_eq!(
        stack.ch.number("SELECT count() FROM faults.events").await,
        expected
    );
    assert_eq!(
        stack
            .ch
            .number("SELECT count() - uniqExact(org_id, event_id) FROM faults.events")
            .await,
        0
    );
}

/// Every event of the ledger in ClickHouse exactly once, and the exporter's
/// all-time KPIs of every org equal to the ledger.
async fn check_ledger(stack: &Stack, plan: &Plan) {
    let expected: u64 = plan.ledger.traffic.events_by_type.values().sum();
    events_exactly_once(stack, expected, Duration::from_secs(120)).await;
    let pipeline = Pipeline {
        exporter: format!("http://127.0.0.1:{}", stack.ports.exporter),
        api_key: API_KEY.into(),
        clickhouse: Some((stack.ch.url(), "faults".into())),
    };
    // After a fault the rollups can trail `events` by the recovery of the
    // last batch: allow them a few seconds to catch up.
    let mut differences = Vec::new();
    for _ in 0..30 {
        differences = check(&plan.ledger, &pipeline).await.unwrap();
        if differences.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("the pipeline differs from the ledger: {differences:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_to_clickhouse_cut_for_a_while_loses_nothing() {
    let (stack, proxy) = stack(true).await;
    let proxy = proxy.unwrap();
    let plan = plan(31, 1, Utc::now(), 5);
    let target = target(&stack);
    let fault = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.cut();
        // The aggregator notices (its writes fail) while ingest keeps
        // taking traffic: the events wait in the stream.
        eventually(
            Duration::from_secs(30),
            "aggregator ClickHouse errors",
            || async { (clickhouse_errors(&stack).await > 0.0).then_some(()) },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        proxy.restore();
    };
    let (report, ()) = tokio::join!(send(&plan, &target), fault);
    let report = report.expect("every request answered as a healthy ingest would");
    assert!(report.ingest.is_some(), "ingest counters checked");
    check_ledger(&stack, &plan).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_clickhouse_lost_silently_lose_nothing() {
    let (stack, proxy) = stack(true).await;
    let proxy = proxy.unwrap();
    let plan = plan(37, 1, Utc::now(), 5);
    let target = target(&stack);
    let fault = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.freeze();
        // Requests in flight and new ones get no answer: only the
        // aggregator's deadline (write_timeout_secs) turns that into an
        // error and a retry; without it the partition would wait for good.
        eventually(
            Duration::from_secs(30),
            "aggregator ClickHouse errors (timeouts)",
            || async { (clickhouse_errors(&stack).await > 0.0).then_some(()) },
        )
        .await;
        proxy.thaw();
    };
    let (report, ()) = tokio::join!(send(&plan, &target), fault);
    let report = report.expect("every request answered as a healthy ingest would");
    assert!(report.ingest.is_some(), "ingest counters checked");
    check_ledger(&stack, &plan).await;
    let log = stack.services[0].log_text();
    assert!(
        log.contains("no end within 5 s") || log.contains("no answer within 5 s"),
        "the timeout is logged: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_read_only_for_a_while_loses_nothing() {
    let (stack, _) = stack(false).await;
    let plan = plan(32, 1, Utc::now(), 5);
    let target = target(&stack);
    let fault = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        stack.ch.set_read_only(true);
        eventually(
            Duration::from_secs(30),
            "aggregator writes refused by the read-only server",
            || async { (clickhouse_errors(&stack).await > 0.0).then_some(()) },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        stack.ch.set_read_only(false);
    };
    let (report, ()) = tokio::join!(send(&plan, &target), fault);
    report.expect("every request answered as a healthy ingest would");
    let log = &stack.services[0];
    check_ledger(&stack, &plan).await;
    assert!(
        log.log_text().contains("readonly"),
        "the aggregator logged why its writes failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_exporter_sigkilled_and_restarted_lose_nothing_answered() {
    let (mut stack, _) = stack(false).await;
    let url = format!("http://127.0.0.1:{}/v1/events", stack.ports.ingest);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let batches = 30;
    let per_batch = 50;
    let mut answered_200 = 0;
    for b in 0..batches {
        let events: Vec<Value> = (0..per_batch)
            .map(|i| {
                let n = b * per_batch + i;
                json!({"event_id": format!("k-{n}"), "type": "badge.awarded", "occurred_at": now,
                       "org_id": "acme", "issuer_id": "i1", "badge_class_id": "b1",
                       "assertion_id": format!("a-{n}"), "award_method": "api"})
            })
            .collect();
        if b == 10 {
            // SIGKILL mid-traffic: the client's next attempt meets the dead
            // port, then ingest restarts on the same port.
            stack.services[1].kill();
            let dead = http
                .post(&url)
                .bearer_auth(TOKEN)
                .json(&json!({ "events": events }))
                .send()
                .await;
            assert!(dead.is_err(), "a killed ingest answered: {dead:?}");
            stack.services[1] = Service::start("badgepulse-ingest", &stack.config, &[]);
        }
        // Like a platform client: resend until ingest answers 200.
        loop {
            match http
                .post(&url)
                .bearer_auth(TOKEN)
                .json(&json!({ "events": events }))
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => {
                    answered_200 += 1;
                    break;
                }
                Ok(r) => panic!("unexpected {}: {}", r.status(), r.text().await.unwrap()),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    assert_eq!(answered_200, batches);
    // Every event answered 200 is in ClickHouse, once.
    let expected = (batches * per_batch) as u64;
    events_exactly_once(&stack, expected, Duration::from_secs(60)).await;

    // The exporter keeps no state: SIGKILLed and restarted, it answers the same.
    let before = eventually(
        Duration::from_secs(30),
        "awarded in the overview",
        || async {
            let o = overview(&stack, "acme").await;
            (o["kpis"]["awarded"] == expected).then_some(o["kpis"].clone())
        },
    )
    .await;
    stack.services[2].kill();
    stack.services[2] = Service::start("badgepulse-exporter", &stack.config, &[]);
    wait_http(
        &format!("{}/readyz", stack.ports.exporter_admin_url()),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(overview(&stack, "acme").await["kpis"], before);
    let _ = &stack.nats;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_disk_full_for_a_while_loses_nothing() {
    let ch = ClickHouse::start_on_small_disk(128)
        .await
        .expect("a tmpfs for ClickHouse's data (the tests run as root)");
    let filler = ch.data_dir().join("filler");
    let (stack, _) = stack_on(ch, false).await;
    let plan = plan(33, 1, Utc::now(), 5);
    let target = target(&stack);
    let fault = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Fill the disk: write until the filesystem refuses.
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        while std::io::Write::write_all(&mut file, &chunk).is_ok() {
            written += 1;
        }
        assert!(written > 0, "nothing written before the disk was full");
        eventually(
            Duration::from_secs(30),
            "aggregator writes refused on a full disk",
            || async { (clickhouse_errors(&stack).await > 0.0).then_some(()) },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(file);
        std::fs::remove_file(&filler).unwrap();
    };
    let (report, ()) = tokio::join!(send(&plan, &target), fault);
    report.expect("ingest answers as usual while ClickHouse's disk is full");
    check_ledger(&stack, &plan).await;
    assert!(
        stack.services[0].log_text().contains("No space left")
            || stack.services[0].log_text().contains("Cannot write"),
        "the aggregator logged why its writes failed"
    );
}
