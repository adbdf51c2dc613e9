//! What the binaries write where:
//! - `services_log_json_lines_on_stderr_only`: the three services started
//!   with `[log] format = "json"` (and `level`, no `RUST_LOG`) write only
//!   JSON lines to stderr, each with `timestamp`, `level`, `target`,
//!   `message` and the event's own fields, and nothing to stdout, through
//!   start, traffic and a SIGTERM drain;
//! - `subcommands_print_to_stdout_only`: `sign-url`, `print-schema`,
//!   `print-queries`, `print-measures` and `hash-key` print their output,
//!   and only it, to stdout, whatever the logs do;
//! - `config_file_from_the_environment`: `BADGEPULSE_CONFIG` names the
//!   config file when `--config` is not given, for every service binary,
//!   and `--config` wins.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use badgepulse_tests::{
    sha256_hex, workspace_bin, ClickHouse, Nats, Service, StackConfig, StackPorts,
};
use serde_json::Value;

const API_KEY: &str = "output-test-key";

/// Every line of `text` parsed as a JSON log line, with its mandatory
/// keys checked; panics naming the first line that is not one.
fn json_lines(what: &str, text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{what}: not a JSON line ({e}): {line}"));
            for key in ["timestamp", "level", "target", "message"] {
                assert!(v[key].is_string(), "{what}: no string {key:?} in {line}");
            }
            assert!(
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&v["level"].as_str().unwrap()),
                "{what}: level of {line}"
            );
            v
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_log_json_lines_on_stderr_only() {
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let ports = StackPorts::free();
    // `level` applies (no RUST_LOG): debug lines of the services' own
    // crates appear, while a dependency's debug lines do not.
    let config = StackConfig::new(&nats.url(), &ch.url(), "e2e_service_output", ports)
        .api_key(API_KEY, "admin")
        .toml()
        + "[log]\nformat = \"json\"\nlevel = \"info,badgepulse_aggregator=debug,badgepulse_exporter=debug,badgepulse_ingest=debug,badgepulse_runtime=debug\"\n";
    let mut services = [
        ("aggregator", ports.aggregator),
        ("ingest", ports.ingest_admin),
        ("exporter", ports.exporter_admin),
    ]
    .map(|(name, port)| {
        (
            Service::start_apart(&format!("badgepulse-{name}"), &config, &[]),
            port,
        )
    });
    for (svc, port) in &services {
        badgepulse_tests::wait_http(
            &format!("http://127.0.0.1:{port}/readyz"),
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", svc.log_text()));
    }
    // Some traffic: a refused pixel, an API answer and an unknown route.
    let http = reqwest::Client::new();
    let r = http
        .get(format!(
            "{}/p.gif?o=acme&i=i&b=b&a=a&kid=k1&sig=00",
            ports.ingest_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}/api/v1/scopes", ports.exporter_url()))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (svc, _) in &mut services {
        assert!(svc.stop(), "{} exits 0 on SIGTERM", svc.name);
    }
    for (svc, _) in &services {
        let what = &svc.name;
        assert_eq!(svc.stdout_text(), "", "{what} writes nothing to stdout");
        let lines = json_lines(what, &svc.log_text());
        assert!(lines.len() >= 2, "{what}: {} log lines", lines.len());
        // Each service logs its start with structured fields beside the
        // message, and its stop.
        let started = lines
            .iter()
            .find(|l| l["fields"].is_null() && l.get("admin").is_some())
            .unwrap_or_else(|| panic!("{what}: no start line with an `admin` field"));
        assert!(started["target"]
            .as_str()
            .unwrap()
            .starts_with("badgepulse_"));
        assert!(
            lines
                .iter()
                .any(|l| l["message"].as_str().is_some_and(|m| m.contains("stopped"))),
            "{what}: no stop line"
        );
        assert!(
            lines.iter().all(|l| l["level"] != "DEBUG"
                || l["target"].as_str().unwrap().starts_with("badgepulse_")),
            "{what}: log.level lets through a dependency's debug line"
        );
    }
}

/// Runs `bin args…` with `env` and `stdin`; its output.
fn run(bin: &str, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(workspace_bin(bin))
        .args(args)
        .env_remove("BADGEPULSE_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A config file in `dir` with a pixel key, JSON logs and `database`.
fn config_file(dir: &std::path::Path, name: &str, public_url: &str, database: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[log]\nformat = \"json\"\n[clickhouse]\ndatabase = \"{database}\"\n\
             [ingest]\npublic_url = \"{public_url}\"\n[ingest.pixel_keys]\nk1 = \"output-test-pixel-key-0123456789\"\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

const SIGN_URL: [&str; 9] = [
    "sign-url",
    "--org",
    "acme",
    "--issuer",
    "i1",
    "--badge-class",
    "b1",
    "--assertion",
    "a1",
];

#[test]
fn subcommands_print_to_stdout_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "c.toml", "https://px.example", "output_db");
    // Logs as verbose as they get, in JSON: none of it may reach stdout.
    let loud = [("RUST_LOG", "trace")];
    let text = |o: &Output| String::from_utf8(o.stdout.clone()).unwrap();
    let stderr_is_json = |what: &str, o: &Output| {
        json_lines(what, &String::from_utf8_lossy(&o.stderr));
    };

    let mut args = vec!["--config", &config];
    args.extend(SIGN_URL);
    let out = run("badgepulse-ingest", &args, &loud, "");
    stderr_is_json("sign-url", &out);
    let lines: Vec<String> = text(&out).lines().map(str::to_owned).collect();
    assert_eq!(
        lines.len(),
        2,
        "sign-url prints the URL and the snippet: {lines:?}"
    );
    assert!(
        lines[0].starts_with("https://px.example/p.gif?"),
        "{lines:?}"
    );
    assert!(lines[1].starts_with("<img "), "{lines:?}");

    let out = run(
        "badgepulse-aggregator",
        &["--config", &config, "print-schema"],
        &loud,
        "",
    );
    stderr_is_json("print-schema", &out);
    let schema = text(&out);
    assert!(schema.contains("CREATE TABLE"), "{schema}");
    assert!(schema.contains("output_db"), "the config's database");
    assert!(
        !schema.lines().any(|l| l.starts_with('{')),
        "a log line in the schema"
    );

    let out = run(
        "badgepulse-exporter",
        &["--config", &config, "print-queries"],
        &loud,
        "",
    );
    stderr_is_json("print-queries", &out);
    let queries = text(&out);
    assert!(queries.starts_with("-- "), "{queries}");
    assert!(
        queries.contains("output_db.scope_total"),
        "the config's database"
    );

    let out = run("badgepulse-exporter", &["print-measures"], &loud, "");
    let measures: Value = serde_json::from_slice(&out.stdout).expect("print-measures is JSON");
    assert!(measures["derived"].is_array());

    let out = run("badgepulse-exporter", &["hash-key"], &loud, "abc\n");
    assert_eq!(text(&out), format!("{}\n", sha256_hex("abc")));
}

#[test]
fn config_file_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let from_env = config_file(dir.path(), "env.toml", "https://env.example", "env_db");
    let given = config_file(
        dir.path(),
        "given.toml",
        "https://given.example",
        "given_db",
    );
    let env = [("BADGEPULSE_CONFIG", from_env.as_str())];
    let stdout = |o: Output| String::from_utf8(o.stdout).unwrap();

    let out = stdout(run("badgepulse-ingest", &SIGN_URL, &env, ""));
    assert!(out.starts_with("https://env.example/p.gif?"), "{out}");
    let mut args = vec!["--config", given.as_str()];
    args.extend(SIGN_URL);
    let out = stdout(run("badgepulse-ingest", &args, &env, ""));
    assert!(
        out.starts_with("https://given.example/p.gif?"),
        "--config wins: {out}"
    );

    let out = stdout(run("badgepulse-aggregator", &["print-schema"], &env, ""));
    assert!(
        out.contains("env_db.") && !out.contains("given_db"),
        "aggregator"
    );
    let out = stdout(run(
        "badgepulse-aggregator",
        &["print-schema", "--config", &given],
        &env,
        "",
    ));
    assert!(
        out.contains("given_db.") && !out.contains("env_db"),
        "aggregator, --config wins"
    );

    let out = stdout(run("badgepulse-exporter", &["print-queries"], &env, ""));
    assert!(out.contains("env_db.scope_total"), "exporter");

    // A missing file is an error naming it.
    let missing = dir.path().join("missing.toml");
    let out = Command::new(workspace_bin("badgepulse-ingest"))
        .args(SIGN_URL)
        .env("BADGEPULSE_CONFIG", &missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.toml"), "{err}");
}
