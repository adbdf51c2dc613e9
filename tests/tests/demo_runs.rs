//! What `scripts/demo.sh` relies on, with the binaries it runs: two demo
//! runs (`badgepulse-loadgen demo --run NAME`) into one pipeline and one
//! database each pass `badgepulse-loadgen check` against their own ledger,
//! the first one still after the second has added its traffic, and an
//! event the ledger does not know in a run's org makes its check exit
//! non-zero, naming what differs.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use badgepulse_loadgen::Ledger;
use badgepulse_tests::{
    eventually, start_services, workspace_bin, ClickHouse, Nats, Service, StackConfig, StackPorts,
};
use serde_json::json;

const DB: &str = "e2e_demo_runs";
const TOKEN: &str = "demo-runs-token";
const PIXEL_KEY: &str = "demo-runs-pixel-key-0123456789";
const API_KEY: &str = "demo-runs-api-key";

struct Stack {
    _nats: Nats,
    ch: ClickHouse,
    ports: StackPorts,
    _services: Vec<Service>,
}

/// Runs `badgepulse-loadgen` with `args`; its output.
fn loadgen(args: &[&str]) -> Output {
    Command::new(workspace_bin("badgepulse-loadgen"))
        .args(args)
        .output()
        .expect("badgepulse-loadgen runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `demo --run run`, as `scripts/demo.sh` runs it; the ledger it wrote.
fn demo(stack: &Stack, run: &str, ledger: &Path) -> Ledger {
    let out = loadgen(&[
        "demo",
        "--ingest",
        &stack.ports.ingest_url(),
        "--ingest-admin",
        &stack.ports.ingest_admin_url(),
        "--token",
        TOKEN,
        "--kid",
        "k1",
        "--key",
        PIXEL_KEY,
        "--seed",
        "42",
        "--run",
        run,
        "--ledger",
        ledger.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "demo --run {run}: {}", text(&out));
    serde_json::from_slice(&std::fs::read(ledger).unwrap()).unwrap()
}

/// `check` of `ledger`, as `scripts/demo.sh` runs it.
fn check(stack: &Stack, ledger: &Path) -> Output {
    loadgen(&[
        "check",
        "--ledger",
        ledger.to_str().unwrap(),
        "--exporter",
        &stack.ports.exporter_url(),
        "--api-key",
        API_KEY,
        "--clickhouse",
        &stack.ch.url(),
        "--database",
        DB,
    ])
}

/// Waits up to 2 minutes for the check of `ledger` to pass (the aggregator
/// writes in batches, the exporter recomputes after the change notice).
async fn passes(stack: &Stack, ledger: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = check(stack, ledger);
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} does not check out: {}",
            ledger.display(),
            text(&out)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_checks_its_own_traffic_and_a_difference_fails() {
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let ports = StackPorts::free();
    let config = StackConfig::new(&nats.url(), &ch.url(), DB, ports)
        .open_pipeline(TOKEN, PIXEL_KEY, API_KEY)
        .toml();
    let services = start_services(&config, &ports.all()).await;
    let stack = Stack {
        _nats: nats,
        ch,
        ports,
        _services: services,
    };
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("a.json"), dir.path().join("b.json"));

    let a = demo(&stack, "a", &first);
    passes(&stack, &first).await;
    let b = demo(&stack, "b", &second);
    passes(&stack, &second).await;
    // The second run added the same traffic to orgs of its own: the first
    // run's check still holds, at once.
    let orgs = |l: &Ledger| l.orgs.iter().map(|o| o.org_id.clone()).collect::<Vec<_>>();
    assert!(orgs(&a).iter().all(|o| !orgs(&b).contains(o)));
    let out = check(&stack, &first);
    assert!(out.status.success(), "run a after run b: {}", text(&out));

    // One award the ledger of run a does not know, in its first org.
    let org = &a.orgs[0];
    let issuer = &org.issuers[0];
    let event = json!({
        "event_id": "not-in-the-ledger",
        "type": "badge.awarded",
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "org_id": org.org_id,
        "issuer_id": issuer.issuer_id,
        "badge_class_id": issuer.classes[0].badge_class_id,
        "assertion_id": "not-in-the-ledger",
        "award_method": "manual",
    });
    let r = reqwest::Client::new()
        .post(format!("{}/v1/events", stack.ports.ingest_url()))
        .bearer_auth(TOKEN)
        .json(&json!({ "events": [event] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let stored = format!("SELECT count() FROM {DB}.events WHERE event_id = 'not-in-the-ledger'");
    eventually(
        Duration::from_secs(60),
        "the extra award stored",
        || async { (stack.ch.number(&stored).await == 1).then_some(()) },
    )
    .await;
    // ClickHouse's rows differ at once; the exporter's KPIs of the org once
    // it has recomputed them. Every check fails meanwhile.
    let named = format!("{} awarded: got", org.org_id);
    eventually(Duration::from_secs(30), &named, || {
        let out = check(&stack, &first);
        assert!(!out.status.success(), "a difference passed: {}", text(&out));
        let found = text(&out).contains(&named);
        async move { found.then_some(()) }
    })
    .await;
    // Run b's orgs are untouched.
    let out = check(&stack, &second);
    assert!(out.status.success(), "run b: {}", text(&out));
}
