//! The badgepulse services as processes: started from the workspace's
//! binaries with a config file, and a whole stack's ports and config.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::{kill, terminate};
use crate::{free_port, sha256_hex, wait_http, ClickHouse, Nats};

/// A workspace binary of the same profile as the running executable:
/// next to it (a bin in `target/<profile>/`) or one level up (a test in
/// `target/<profile>/deps/`).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().expect("executable in a directory");
    let candidates = [
        dir.join(name),
        dir.parent().map(|d| d.join(name)).unwrap_or_default(),
    ];
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!(
            "{name} is missing next to {}: build the workspace binaries first (cargo build --workspace --bins)",
            exe.display()
        )
    })
}

/// How much of a service's log a failing test prints.
const LOG_TAIL_LINES: usize = 300;

/// A running badgepulse binary; SIGKILLed on drop unless stopped first.
pub struct Service {
    pub name: String,
    child: Option<Child>,
    /// What it wrote to stderr (its log), and to stdout unless
    /// [`Service::stdout`] is given.
    pub log: PathBuf,
    /// What it wrote to stdout, when kept apart from the log.
    pub stdout: Option<PathBuf>,
    _dir: TempDir,
}

impl Service {
    /// Starts `bin` with `config` (TOML) and extra arguments.
    pub fn start(bin: &str, config: &str, args: &[&str]) -> Service {
        Self::start_with_env(bin, config, args, &[])
    }

    /// Like [`Service::start`], with extra environment variables.
    pub fn start_with_env(bin: &str, config: &str, args: &[&str], env: &[(&str, &str)]) -> Service {
        Self::spawn(bin, config, args, env, false)
    }

    /// Like [`Service::start`], with stdout and stderr in files of their
    /// own and the log level left to the config (no `RUST_LOG`).
    pub fn start_apart(bin: &str, config: &str, args: &[&str]) -> Service {
        Self::spawn(bin, config, args, &[], true)
    }

    fn spawn(bin: &str, config: &str, args: &[&str], env: &[(&str, &str)], apart: bool) -> Service {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("config.toml");
        fs::write(&config_path, config).expect("config file");
        let log = dir.path().join("service.log");
        let err = fs::File::create(&log).expect("log file");
        let stdout = apart.then(|| dir.path().join("stdout"));
        let out = match &stdout {
            Some(path) => fs::File::create(path).expect("stdout file"),
            None => err.try_clone().expect("log file"),
        };
        let mut command = Command::new(workspace_bin(bin));
        command.arg("--config").arg(&config_path).args(args);
        if apart {
            command.env_remove("RUST_LOG");
        } else {
            command.env("RUST_LOG", "info");
        }
        let child = command
            .envs(env.iter().copied())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        Service {
            name: bin.to_owned(),
            child: Some(child),
            log,
            stdout,
            _dir: dir,
        }
    }

    /// What it wrote to stdout, if kept apart ([`Service::start_apart`]).
    pub fn stdout_text(&self) -> String {
        self.stdout
            .as_ref()
            .map(|p| fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit; returns whether it exited 0.
    pub fn stop(&mut self) -> bool {
        terminate(&mut self.child, Duration::from_secs(30)).is_some_and(|s| s.success())
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!(
                "--- log of {}, last {} of {} lines ---\n{}",
                self.name,
                tail.len(),
                lines.len(),
                tail.join("\n")
            );
        }
        kill(&mut self.child);
    }
}

/// A running ingest: the service, its public base URL (pixels, events)
/// and its admin base URL (`/healthz`, `/readyz`, `/metrics`).
pub struct Ingest {
    pub svc: Service,
    pub url: String,
    pub admin: String,
}

/// Starts badgepulse-ingest with `config`, which binds it to
/// `127.0.0.1:port` and its admin listener to `127.0.0.1:admin_port`, and
/// waits until it is ready.
pub async fn start_ingest(config: &str, port: u16, admin_port: u16) -> Ingest {
    let svc = Service::start("badgepulse-ingest", config, &[]);
    let admin = format!("http://127.0.0.1:{admin_port}");
    wait_http(&format!("{admin}/readyz"), Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", svc.log_text()));
    Ingest {
        svc,
        url: format!("http://127.0.0.1:{port}"),
        admin,
    }
}

/// Starts aggregator, ingest and exporter with one `config` and waits until
/// each answers `/readyz` on its admin port (`ready_ports`, any order). The
/// services come back in that order: aggregator, ingest, exporter.
pub async fn start_services(config: &str, ready_ports: &[u16]) -> Vec<Service> {
    start_services_split(config, config, ready_ports).await
}

/// [`start_services`] with the aggregator on a config of its own (e.g. one
/// that reaches ClickHouse through a proxy).
pub async fn start_services_split(
    aggregator_config: &str,
    config: &str,
    ready_ports: &[u16],
) -> Vec<Service> {
    let services = vec![
        Service::start("badgepulse-aggregator", aggregator_config, &[]),
        Service::start("badgepulse-ingest", config, &[]),
        Service::start("badgepulse-exporter", config, &[]),
    ];
    for port in ready_ports {
        wait_http(
            &format!("http://127.0.0.1:{port}/readyz"),
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    services
}

/// The HTTP ports of the three services: the public listeners of ingest
/// and the exporter, and every service's admin listener (`/healthz`,
/// `/readyz`, `/metrics`).
#[derive(Debug, Clone, Copy)]
pub struct StackPorts {
    pub ingest: u16,
    pub ingest_admin: u16,
    pub aggregator: u16,
    pub exporter: u16,
    pub exporter_admin: u16,
}

impl StackPorts {
    /// Five ports that were free a moment ago.
    pub fn free() -> StackPorts {
        StackPorts {
            ingest: free_port(),
            ingest_admin: free_port(),
            aggregator: free_port(),
            exporter: free_port(),
            exporter_admin: free_port(),
        }
    }

    /// The admin ports of ingest, the aggregator and the exporter: what
    /// [`start_services`] waits on.
    pub fn all(&self) -> [u16; 3] {
        [self.ingest_admin, self.aggregator, self.exporter_admin]
    }

    /// Base URLs: ingest's public, ingest's admin, the aggregator's admin,
    /// the exporter's API and the exporter's admin listener.
    pub fn ingest_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ingest)
    }

    pub fn ingest_admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ingest_admin)
    }

    pub fn aggregator_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.aggregator)
    }

    pub fn exporter_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.exporter)
    }

    pub fn exporter_admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.exporter_admin)
    }
}

/// `[ingest]` keys of a deployment behind a proxy (Cloudflare-style
/// country header), as most end-to-end tests configure it.
pub const INGEST_BEHIND_PROXY: &str = "platform_hosts = [\"badges.example.org\"]
trusted_proxies = [\"127.0.0.1/32\"]
country_header = \"CF-IPCountry\"
";

/// The one config file of the three services in an end-to-end test: NATS,
/// ClickHouse and the three binds, plus whatever a test adds. Tokens and
/// API keys are given in plain text and written as their SHA-256.
#[derive(Debug, Clone)]
pub struct StackConfig {
    nats_url: String,
    clickhouse_url: String,
    database: String,
    ports: StackPorts,
    ingest: String,
    pixel_keys: Vec<(String, String)>,
    tokens: Vec<(String, Vec<String>)>,
    aggregator: String,
    exporter: String,
    api_keys: Vec<(String, String)>,
}

impl StackConfig {
    /// `[clickhouse] database = database` on `clickhouse_url`; nothing but
    /// the binds in the services' sections yet.
    pub fn new(nats_url: &str, clickhouse_url: &str, database: &str, ports: StackPorts) -> Self {
        StackConfig {
            nats_url: nats_url.to_owned(),
            clickhouse_url: clickhouse_url.to_owned(),
            database: database.to_owned(),
            ports,
            ingest: String::new(),
            pixel_keys: Vec::new(),
            tokens: Vec::new(),
            aggregator: String::new(),
            exporter: String::new(),
            api_keys: Vec::new(),
        }
    }

    /// [`StackConfig::new`] for traffic from every side: ingest behind a
    /// proxy ([`INGEST_BEHIND_PROXY`]) with the pixel key `k1` and a
    /// `token` for every org, the aggregator flushing every 100 ms, the
    /// business metrics refreshed every second, and an admin `api_key`.
    pub fn open_pipeline(self, token: &str, pixel_key: &str, api_key: &str) -> Self {
        self.ingest(INGEST_BEHIND_PROXY)
            .pixel_key("k1", pixel_key)
            .token(token, &["*"])
            .aggregator("flush_interval_ms = 100")
            .exporter("refresh_interval_secs = 1")
            .api_key(api_key, "admin")
    }

    /// Appends `key = value` lines to `[ingest]`.
    pub fn ingest(mut self, toml: &str) -> Self {
        push_lines(&mut self.ingest, toml);
        self
    }

    /// Adds `kid = "key"` to `[ingest.pixel_keys]`.
    pub fn pixel_key(mut self, kid: &str, key: &str) -> Self {
        self.pixel_keys.push((kid.to_owned(), key.to_owned()));
        self
    }

    /// Adds an `[[ingest.tokens]]` entry for the plain-text `token`.
    pub fn token(mut self, token: &str, orgs: &[&str]) -> Self {
        self.tokens.push((
            token.to_owned(),
            orgs.iter().map(|o| (*o).to_owned()).collect(),
        ));
        self
    }

    /// Appends `key = value` lines to `[aggregator]`.
    pub fn aggregator(mut self, toml: &str) -> Self {
        push_lines(&mut self.aggregator, toml);
        self
    }

    /// Appends `key = value` lines to `[exporter]`.
    pub fn exporter(mut self, toml: &str) -> Self {
        push_lines(&mut self.exporter, toml);
        self
    }

    /// Adds an `[[exporter.api_keys]]` entry for the plain-text `key`.
    pub fn api_key(mut self, key: &str, scope: &str) -> Self {
        self.api_keys.push((key.to_owned(), scope.to_owned()));
        self
    }

    /// [`StackConfig::api_key`] for each `(key, scope)`.
    pub fn api_keys(self, keys: &[(&str, &str)]) -> Self {
        keys.iter()
            .fold(self, |config, (key, scope)| config.api_key(key, scope))
    }

    /// The same config with another ClickHouse URL (e.g. a proxy's).
    pub fn with_clickhouse_url(&self, url: &str) -> Self {
        StackConfig {
            clickhouse_url: url.to_owned(),
            ..self.clone()
        }
    }

    /// The config file's text.
    pub fn toml(&self) -> String {
        let StackPorts {
            ingest,
            ingest_admin,
            aggregator,
            exporter,
            exporter_admin,
        } = self.ports;
        let mut t = format!(
            "[nats]\nurl = \"{}\"\n[clickhouse]\nurl = \"{}\"\ndatabase = \"{}\"\n\
             [ingest]\nbind = \"127.0.0.1:{ingest}\"\nadmin_bind = \"127.0.0.1:{ingest_admin}\"\n{}",
            self.nats_url, self.clickhouse_url, self.database, self.ingest
        );
        if !self.pixel_keys.is_empty() {
            t.push_str("[ingest.pixel_keys]\n");
            for (kid, key) in &self.pixel_keys {
                t.push_str(&format!("{kid} = \"{key}\"\n"));
            }
        }
        for (token, orgs) in &self.tokens {
            let orgs: Vec<String> = orgs.iter().map(|o| format!("\"{o}\"")).collect();
            t.push_str(&format!(
                "[[ingest.tokens]]\nsha256 = \"{}\"\norgs = [{}]\n",
                sha256_hex(token),
                orgs.join(", ")
            ));
        }
        // Seals every second unless the test sets its own interval.
        let seal = if self.aggregator.contains("seal_interval_secs") {
            ""
        } else {
            "seal_interval_secs = 1\n"
        };
        t.push_str(&format!(
            "[aggregator]\nadmin_bind = \"127.0.0.1:{aggregator}\"\n{seal}{}",
            self.aggregator
        ));
        t.push_str(&format!(
            "[exporter]\nbind = \"127.0.0.1:{exporter}\"\nadmin_bind = \"127.0.0.1:{exporter_admin}\"\n{}",
            self.exporter
        ));
        for (key, scope) in &self.api_keys {
            t.push_str(&format!(
                "[[exporter.api_keys]]\nsha256 = \"{}\"\nscope = \"{scope}\"\n",
                sha256_hex(key)
            ));
        }
        t
    }
}

/// Appends `toml` to `section`, ending it with a newline.
fn push_lines(section: &mut String, toml: &str) {
    section.push_str(toml);
    if !section.is_empty() && !section.ends_with('\n') {
        section.push('\n');
    }
}

/// A whole stack of an end-to-end test: NATS, ClickHouse and the three
/// services on the config `configure` makes of [`StackConfig::new`] for
/// `database`; dropping it stops the services, then the servers.
pub struct Stack {
    _services: Vec<Service>,
    pub nats: Nats,
    pub ch: ClickHouse,
    pub ports: StackPorts,
}

impl Stack {
    pub async fn start(
        database: &str,
        configure: impl FnOnce(StackConfig) -> StackConfig,
    ) -> Stack {
        let nats = Nats::start().await;
        let ch = ClickHouse::start().await;
        let ports = StackPorts::free();
        let config = configure(StackConfig::new(&nats.url(), &ch.url(), database, ports));
        let services = start_services(&config.toml(), &ports.all()).await;
        Stack {
            _services: services,
            nats,
            ch,
            ports,
        }
    }

    /// Posts `events` to ingest's `/v1/events` with `token`, 900 to a
    /// request, and asserts that ingest accepted every one.
    pub async fn send_events(&self, token: &str, events: &[serde_json::Value]) {
        let http = reqwest::Client::new();
        for chunk in events.chunks(900) {
            let r = http
                .post(format!("{}/v1/events", self.ports.ingest_url()))
                .bearer_auth(token)
                .json(&serde_json::json!({ "events": chunk }))
                .send()
                .await
                .expect("ingest answers");
            assert_eq!(r.status(), 200);
            let answer: serde_json::Value = r.json().await.expect("a JSON answer");
            assert_eq!(answer["accepted"], chunk.len(), "{answer}");
        }
    }
}
