//! badgepulse-import end to end (issue 20), through the real ingest,
//! NATS, aggregator and ClickHouse:
//! - the fixtures of `import/testdata` (NDJSON, CSV, Open Badges 2.0 and
//!   3.0) give exactly the rows docs/import.md describes, the rejects file
//!   lists exactly the broken records, and a re-run is idempotent;
//! - a generated three-year history of 200,000 records (untracked
//!   channels and sources, resends, invalid lines) imported while the
//!   importer is SIGKILLed four times and restarted: ClickHouse holds
//!   every valid event exactly once, and the rejects file lists exactly
//!   the invalid lines, once each.
//!
//! The importer binary must be built (`cargo build -p badgepulse-import`;
//! `scripts/test.sh` builds every binary).

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use badgepulse_tests::{
    start_services, workspace_bin, ClickHouse, Nats, Service, StackConfig, StackPorts,
};
use chrono::{SecondsFormat, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const TOKEN: &str = "import-platform-token";

struct Stack {
    _nats: Nats,
    ch: ClickHouse,
    db: String,
    ingest_url: String,
    _services: Vec<Service>,
}

/// `aggregator`: extra `[aggregator]` keys.
async fn start_stack(db: &str, orgs: &[&str], aggregator: &str) -> Stack {
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let ports = StackPorts::free();
    let config = StackConfig::new(&nats.url(), &ch.url(), db, ports)
        .token(TOKEN, orgs)
        .aggregator(aggregator)
        .toml();
    let services = start_services(&config, &ports.all()).await;
    Stack {
        _nats: nats,
        ch,
        db: db.to_owned(),
        ingest_url: format!("http://127.0.0.1:{}", ports.ingest),
        _services: services,
    }
}

/// The importer's command line: `inputs`, then `args`; its output goes to
/// `log` (stderr) and is returned by [`finish`] (stdout).
fn importer(stack: &Stack, work: &Path, inputs: &[PathBuf], args: &[&str]) -> Command {
    let mut cmd = Command::new(workspace_bin("badgepulse-import"));
    cmd.args(inputs)
        .arg("--url")
        .arg(&stack.ingest_url)
        .arg("--checkpoint")
        .arg(work.join("run.checkpoint"))
        .arg("--rejects")
        .arg(work.join("rejects.csv"))
        .args(args)
        .env("BADGEPULSE_IMPORT_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to its end (at most `within`): exit code and stdout.
fn finish(mut cmd: Command, within: Duration) -> (i32, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting badgepulse-import");
    let deadline = Instant::now() + within;
    loop {
        if let Some(_status) = child.try_wait().expect("waiting for the importer") {
            let out = child.wait_with_output().expect("importer output");
            return (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("importer output");
            panic!(
                "the importer did not finish within {within:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The number after `name ` in the summary line (`accepted 12`).
fn summary_count(stdout: &str, name: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("badgepulse-import:"))
        .unwrap_or_else(|| panic!("no summary line in {stdout:?}"));
    let after = line
        .split(&format!(" {name} "))
        .nth(1)
        .unwrap_or_else(|| panic!("no {name} in {line:?}"));
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// `(file, line)` of each row of a rejects file (whose file names hold no
/// comma or quote), in file order.
fn reject_places(path: &Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(path).expect("rejects file");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("file,line,event_id,error"));
    lines
        .map(|l| {
            let mut cells = l.splitn(3, ',');
            let file = cells.next().unwrap().to_owned();
            let line = cells.next().unwrap().parse().expect("line number");
            (file, line)
        })
        .collect()
}

// The documented mapping (docs/import.md), written again here so the test
// checks the documentation, not the importer against itself.
fn hash16(parts: &[&str]) -> String {
    hex::encode(&Sha256::digest(parts.join("\n").as_bytes())[..16])
}
fn h(id: &str) -> String {
    format!("h:{}", hash16(&[id]))
}
fn ob(kind: &str, assertion: &str) -> String {
    format!("ob:{}", hash16(&[kind, assertion]))
}

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../import/testdata")
        .join(rel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_arrive_as_documented() {
    let stack = start_stack(
        "import_fixtures",
        &["acme", "eit"],
        "flush_interval_ms = 100",
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let names = [
        "events/history.ndjson",
        "events/classes.csv",
        "ob2/badgeclasses.json",
        "ob2/issuer.json",
        "ob2/assertions.ndjson",
        "ob2/broken.ndjson",
        "ob3/intro-sql.json",
        "ob3/no-id.json",
    ];
    let inputs: Vec<PathBuf> = names.iter().map(|n| testdata(n)).collect();
    let args = ["--org", "eit", "--tags-as-attributes"];
    let (code, stdout, stderr) = finish(
        importer(&stack, work.path(), &inputs, &args),
        Duration::from_secs(60),
    );
    assert_eq!(code, 1, "rejects exit 1\n{stdout}\n{stderr}");
    // Two invalid events are sent and refused by ingest (an unknown
    // channel and award method); the other rejects never leave.
    assert_eq!(summary_count(&stdout, "sent"), 20, "{stdout}");
    assert_eq!(summary_count(&stdout, "duplicates"), 1, "the resent award");
    assert_eq!(summary_count(&stdout, "rejected"), 7, "{stdout}");

    let rejects = work.path().join("rejects.csv");
    let name = |i: usize| inputs[i].display().to_string();
    assert_eq!(
        reject_places(&rejects),
        vec![
            (name(0), 6),
            (name(0), 8),
            (name(1), 4),
            (name(1), 5),
            (name(5), 1),
            (name(5), 2),
            (name(5), 3),
        ]
    );
    let rejects_text = std::fs::read_to_string(&rejects).unwrap();
    for error in [
        "channel: unknown value \"\"myspace\"\"",
        "line: not valid JSON",
        "award_method: unknown value \"\"pigeon\"\"",
        "attributes.has_video: \"\"maybe\"\" is not true or false",
        "badge: required",
        "is not in the import",
    ] {
        assert!(rejects_text.contains(error), "{error} in\n{rejects_text}");
    }

    let db = &stack.db;
    stack
        .ch
        .wait_for_events(db, 17, Duration::from_secs(60))
        .await;
    let rows = stack
        .ch
        .query(&format!(
            "SELECT if(startsWith(event_id, 'ob:') AND type = 'badge_class.upserted', '*', event_id), \
             type, toString(occurred_at), org_id, issuer_id, badge_class_id, assertion_id, \
             toString(award_method), toString(share_channel), toString(view_source), country \
             FROM {db}.events ORDER BY org_id, occurred_at, type, event_id"
        ))
        .await
        .unwrap();
    // The credential without id: its assertion id is a hash of its content.
    let no_id = rows
        .lines()
        .find(|l| l.contains("2025-02-01 08:30:00"))
        .and_then(|l| l.split('\t').nth(6))
        .expect("the credential without id")
        .to_owned();
    assert!(
        no_id.starts_with("h:") && no_id.len() == 34,
        "content id {no_id}"
    );

    let (iss, robotics, ethics) = (
        h("https://badges.example.edu/issuer.json"),
        h("https://badges.example.edu/classes/robotics-foundations.json"),
        h("https://badges.example.edu/classes/data-ethics.json"),
    );
    let lab = "urn:uuid:6b3e2c1a-9d4f-4e5b-8a7c-1f2e3d4c5b6a";
    let (sql_iss, sql) = (
        h("https://learn.example.com/issuers/42"),
        h("https://learn.example.com/achievements/intro-sql"),
    );
    let revoked = "urn:uuid:0f0b2f6e-3c1d-4b7a-9e8f-5a6b7c8d9e0f";
    let sql_cred = "urn:uuid:91537dba-56cb-11ec-bf63-0242ac130002";
    let row = |cells: &[&str]| cells.join("\t");
    let acme = |id: &str, t: &str, at: &str, a: &str, rest: &[&str]| {
        let mut c = vec![id, t, at, "acme", "acme-academy", "rust-101", a];
        c.extend_from_slice(rest);
        row(&c)
    };
    let eit = |id: &str, t: &str, at: &str, i: &str, b: &str, a: &str, m: &str| {
        row(&[id, t, at, "eit", i, b, a, m, "", "", ""])
    };
    let a1001 = h("https://badges.example.edu/assertions/1001");
    let a1003 = h("https://badges.example.edu/assertions/1003");
    let a1004 = h("https://badges.example.edu/assertions/1004");
    let expected = vec![
        acme(
            "hist-u-rust",
            "badge_class.upserted",
            "2023-10-01 00:00:00",
            "",
            &["", "", "", ""],
        ),
        acme(
            "hist-aw-1",
            "badge.awarded",
            "2023-11-02 08:00:00",
            "as-1",
            &["lms", "", "", ""],
        ),
        acme(
            "hist-ac-1",
            "badge.accepted",
            "2023-11-03 12:30:00",
            "as-1",
            &["", "", "", ""],
        ),
        acme(
            "hist-sh-1",
            "badge.shared",
            "2023-11-03 12:31:00",
            "as-1",
            &["", "other", "", ""],
        ),
        acme(
            "hist-vw-1",
            "badge.viewed",
            "2023-11-04 09:00:00",
            "as-1",
            &["", "", "other", "DE"],
        ),
        acme(
            "hist-aw-2",
            "badge.awarded",
            "2023-11-10 08:00:00",
            "as-2",
            &["bulk", "", "", ""],
        ),
        eit(
            &ob("badge.awarded", revoked),
            "badge.awarded",
            "2024-02-28 15:00:00",
            &iss,
            &robotics,
            revoked,
            "other",
        ),
        eit(
            &ob("badge.revoked", revoked),
            "badge.revoked",
            "2024-02-28 15:00:00",
            &iss,
            &robotics,
            revoked,
            "",
        ),
        eit(
            "*",
            "badge_class.upserted",
            "2024-02-28 15:00:00",
            &iss,
            &robotics,
            "",
            "",
        ),
        eit(
            &ob(
                "badge.awarded",
                "https://badges.example.edu/assertions/1001",
            ),
            "badge.awarded",
            "2024-03-04 09:15:00",
            &iss,
            &robotics,
            &a1001,
            "other",
        ),
        eit(
            &ob(
                "badge.awarded",
                "https://badges.example.edu/assertions/1003",
            ),
            "badge.awarded",
            "2024-05-10 00:00:00",
            &iss,
            lab,
            &a1003,
            "other",
        ),
        eit(
            "*",
            "badge_class.upserted",
            "2024-05-10 00:00:00",
            &iss,
            lab,
            "",
            "",
        ),
        eit(
            &ob(
                "badge.awarded",
                "https://badges.example.edu/assertions/1004",
            ),
            "badge.awarded",
            "2024-06-01 00:00:00",
            &iss,
            &ethics,
            &a1004,
            "other",
        ),
        eit(
            "*",
            "badge_class.upserted",
            "2024-06-01 00:00:00",
            &iss,
            &ethics,
            "",
            "",
        ),
        eit(
            &ob("badge.awarded", sql_cred),
            "badge.awarded",
            "2025-01-15 10:00:00",
            &sql_iss,
            &sql,
            sql_cred,
            "other",
        ),
        eit(
            "*",
            "badge_class.upserted",
            "2025-01-15 10:00:00",
            &sql_iss,
            &sql,
            "",
            "",
        ),
        eit(
            &ob("badge.awarded", &no_id),
            "badge.awarded",
            "2025-02-01 08:30:00",
            &sql_iss,
            &sql,
            &no_id,
            "other",
        ),
    ];
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(rows.lines().map(str::to_owned).collect()),
        sorted(expected)
    );

    let classes = stack
        .ch
        .query(&format!(
            "SELECT org_id, badge_class_id, issuer_id, name, skills, pathways, attribute_keys, attribute_values \
             FROM {db}.badge_classes FINAL ORDER BY org_id, badge_class_id"
        ))
        .await
        .unwrap();
    let mut expected_classes = vec![
        row(&[
            "acme",
            "rust-101",
            "acme-academy",
            "Rust 101, the basics",
            "['ownership','borrowing','traits']",
            "['backend-track']",
            "['has_video','peer_reviewed']",
            "[1,0]",
        ]),
        row(&[
            "eit",
            &robotics,
            &iss,
            "Robotics Foundations",
            "['Mechanical assembly','Control loops']",
            "[]",
            "['robots','stem_outreach']",
            "[1,1]",
        ]),
        row(&[
            "eit",
            lab,
            &iss,
            "Lab Safety",
            "['Hazard identification']",
            "[]",
            "[]",
            "[]",
        ]),
        row(&[
            "eit",
            &ethics,
            &iss,
            "Data Ethics",
            "['Responsible data use']",
            "[]",
            "['ethics']",
            "[1]",
        ]),
        row(&[
            "eit",
            &sql,
            &sql_iss,
            "Introduction to SQL",
            "['Relational databases','Query writing']",
            "[]",
            "['databases','sql']",
            "[1,1]",
        ]),
    ];
    expected_classes.sort();
    assert_eq!(
        sorted(classes.lines().map(str::to_owned).collect()),
        expected_classes
    );

    // A dry run knows the same rejects without sending.
    let dry_dir = tempfile::tempdir().unwrap();
    let mut dry = importer(&stack, dry_dir.path(), &inputs, &args);
    dry.arg("--dry-run");
    let (code, stdout, stderr) = finish(dry, Duration::from_secs(60));
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.contains("dry run"), "{stdout}");
    assert_eq!(summary_count(&stdout, "sent"), 0, "{stdout}");
    assert!(!dry_dir.path().join("run.checkpoint").exists());
    assert_eq!(
        std::fs::read_to_string(dry_dir.path().join("rejects.csv")).unwrap(),
        rejects_text
    );

    // Run again: the checkpoint says it is done; nothing is sent.
    let (code, stdout, _) = finish(
        importer(&stack, work.path(), &inputs, &args),
        Duration::from_secs(60),
    );
    assert_eq!(code, 1);
    assert!(stdout.contains("already complete"), "{stdout}");
    // From scratch: every event a duplicate, the same rejects file.
    let mut fresh = importer(&stack, work.path(), &inputs, &args);
    fresh.arg("--fresh");
    let (code, stdout, stderr) = finish(fresh, Duration::from_secs(60));
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(summary_count(&stdout, "accepted"), 0, "{stdout}");
    assert_eq!(summary_count(&stdout, "duplicates"), 18, "{stdout}");
    assert_eq!(summary_count(&stdout, "sent"), 20, "{stdout}");
    assert_eq!(std::fs::read_to_string(&rejects).unwrap(), rejects_text);
    assert_eq!(
        stack
            .ch
            .number(&format!("SELECT count() FROM {db}.events"))
            .await,
        17
    );
}

/// A generated history and what must come of it.
struct History {
    files: Vec<PathBuf>,
    /// `(org_id, event_id)` of every valid event, once.
    valid: BTreeSet<(String, String)>,
    /// `(file, line)` of every invalid record.
    invalid: BTreeSet<(String, u64)>,
    lines: u64,
}

const ORGS: [&str; 3] = ["northwind", "contoso", "fabrikam"];

/// `total` records over `files` NDJSON files, in time order over three
/// years up to a day ago: 1.5 % invalid (malformed JSON, unknown values,
/// bad ids, future or unreadable times, missing or unknown fields), 3 %
/// resends of an earlier line, the rest new events of every type, many
/// without the distribution value (never tracked).
fn generate(dir: &Path, total: usize, files: usize, seed: u64) -> History {
    use std::io::Write;
    let mut rng = StdRng::seed_from_u64(seed);
    let end = Utc::now().timestamp() - 86_400;
    let span = 3 * 365 * 86_400;
    let start = end - span;
    let mut history = History {
        files: Vec::new(),
        valid: BTreeSet::new(),
        invalid: BTreeSet::new(),
        lines: total as u64,
    };
    let mut recent: Vec<String> = Vec::new();
    let per_file = total / files;
    for f in 0..files {
        let path = dir.join(format!("history-{f}.ndjson"));
        let name = path.display().to_string();
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for n in 0..per_file {
            let i = f * per_file + n;
            let line_no = n as u64 + 1;
            let at = start + (i as i64 * span) / total as i64 + rng.gen_range(0..60);
            let at = Utc.timestamp_opt(at, 0).unwrap();
            let roll = rng.gen_range(0..1000);
            let line = if roll < 30 && !recent.is_empty() {
                recent[rng.gen_range(0..recent.len())].clone()
            } else {
                let org = ORGS[rng.gen_range(0..ORGS.len())];
                let class = rng.gen_range(0..30);
                let mut e = json!({
                    "event_id": format!("ev-{i}"),
                    "occurred_at": at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    "org_id": org,
                    "issuer_id": format!("{org}-iss{}", class % 4),
                    "badge_class_id": format!("{org}-b{class}"),
                    "assertion_id": format!("a{}", rng.gen_range(0..50_000)),
                });
                let kind = rng.gen_range(0..100);
                let t = match kind {
                    0..30 => "badge.awarded",
                    30..50 => "badge.accepted",
                    50..70 => "badge.shared",
                    70..95 => "badge.viewed",
                    95..97 => "badge.revoked",
                    _ => "badge_class.upserted",
                };
                e["type"] = json!(t);
                match t {
                    "badge.awarded" if rng.gen_bool(0.7) => {
                        e["award_method"] =
                            json!(["manual", "lms", "api", "bulk"][rng.gen_range(0..4)])
                    }
                    "badge.shared" if rng.gen_bool(0.5) => {
                        e["channel"] =
                            json!(["linkedin", "x", "email", "wallet"][rng.gen_range(0..4)])
                    }
                    "badge.viewed" => {
                        if rng.gen_bool(0.5) {
                            e["source"] =
                                json!(["linkedin", "direct", "search"][rng.gen_range(0..3)]);
                        }
                        if rng.gen_bool(0.3) {
                            e["country"] = json!("FR");
                        }
                    }
                    "badge_class.upserted" => {
                        e.as_object_mut().unwrap().remove("assertion_id");
                        e["name"] = json!(format!("Badge {class}"));
                        e["skills"] = json!(["skill-a", "skill-b"]);
                    }
                    _ => {}
                }
                if roll < 45 {
                    // Invalid, each in its own way; never an id of a valid event.
                    e["event_id"] = json!(format!("bad-{i}"));
                    let text = match roll % 7 {
                        0 => {
                            let s = e.to_string();
                            s[..s.len() / 2].to_owned()
                        }
                        1 => {
                            e["type"] = json!("badge.shared");
                            e["channel"] = json!("myspace");
                            e.to_string()
                        }
                        2 => {
                            e["org_id"] = json!("bad org");
                            e.to_string()
                        }
                        3 => {
                            e["occurred_at"] = json!((Utc::now() + chrono::Duration::days(1))
                                .to_rfc3339_opts(SecondsFormat::Secs, true));
                            e.to_string()
                        }
                        4 => {
                            e["type"] = json!("badge.accepted");
                            e.as_object_mut().unwrap().remove("assertion_id");
                            e.as_object_mut().unwrap().remove("name");
                            e.as_object_mut().unwrap().remove("skills");
                            e.to_string()
                        }
                        5 => {
                            e["colour"] = json!("red");
                            e.to_string()
                        }
                        _ => {
                            e["occurred_at"] = json!("yesterday");
                            e.to_string()
                        }
                    };
                    history.invalid.insert((name.clone(), line_no));
                    text
                } else {
                    history.valid.insert((org.to_owned(), format!("ev-{i}")));
                    let text = e.to_string();
                    if recent.len() < 3000 {
                        recent.push(text.clone());
                    } else {
                        let slot = rng.gen_range(0..recent.len());
                        recent[slot] = text.clone();
                    }
                    text
                }
            };
            writeln!(out, "{line}").unwrap();
        }
        out.flush().unwrap();
        history.files.push(path);
    }
    history
}

/// The checkpoint's `next_batch`, if the file is there.
fn next_batch(path: &Path) -> Option<u64> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice::<Value>(&text).ok()?["next_batch"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_imports_store_each_event_once() {
    let stack = start_stack("import_kills", &ORGS, "").await;
    let work = tempfile::tempdir().unwrap();
    let history = generate(work.path(), 200_000, 4, 20);
    assert!(history.invalid.len() > 2_000 && history.valid.len() > 180_000);
    let checkpoint = work.path().join("run.checkpoint");
    let args = ["--concurrency", "4"];
    let mut rng = StdRng::seed_from_u64(7);

    // 200 batches of 1,000 records: killed after 5, 50, 100 and 150 were
    // answered, each time a random moment later, mid-flight.
    let mut kills = 0;
    for threshold in [5u64, 50, 100, 150] {
        let mut child = importer(&stack, work.path(), &history.files, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting badgepulse-import");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the importer ended ({status}) before batch {threshold}");
            }
            if next_batch(&checkpoint).is_some_and(|b| b >= threshold) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no progress to batch {threshold}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..150)));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        kills += 1;
    }
    assert_eq!(kills, 4);
    let (code, stdout, stderr) = finish(
        importer(&stack, work.path(), &history.files, &args),
        Duration::from_secs(180),
    );
    assert_eq!(code, 1, "rejects exit 1\n{stdout}\n{stderr}");
    assert!(stderr.contains("resuming"), "{stderr}");
    assert_eq!(summary_count(&stdout, "read"), history.lines, "{stdout}");
    assert_eq!(
        summary_count(&stdout, "rejected"),
        history.invalid.len() as u64,
        "{stdout}"
    );

    // The rejects file: exactly the invalid lines, each once.
    let places = reject_places(&work.path().join("rejects.csv"));
    let unique: HashSet<&(String, u64)> = places.iter().collect();
    assert_eq!(unique.len(), places.len(), "a reject listed twice");
    let listed: BTreeSet<(String, u64)> = places.into_iter().collect();
    assert_eq!(listed, history.invalid);

    // ClickHouse: every valid event, once.
    let db = &stack.db;
    stack
        .ch
        .wait_for_events(db, history.valid.len() as u64, Duration::from_secs(180))
        .await;
    assert_eq!(
        stack
            .ch
            .number(&format!(
                "SELECT count() - uniqExact(org_id, event_id) FROM {db}.events"
            ))
            .await,
        0
    );
    let stored: BTreeSet<(String, String)> = stack
        .ch
        .query(&format!("SELECT org_id, event_id FROM {db}.events"))
        .await
        .unwrap()
        .lines()
        .map(|l| {
            let (org, id) = l.split_once('\t').unwrap();
            (org.to_owned(), id.to_owned())
        })
        .collect();
    assert_eq!(stored.len(), history.valid.len());
    assert!(
        stored == history.valid,
        "stored events differ from the ground truth"
    );
}
