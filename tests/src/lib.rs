//! Test fixtures: the real NATS, ClickHouse and Prometheus binaries and the
//! badgepulse services, each started on free loopback ports with its own
//! temporary data directory and stopped in `Drop`.
//!
//! Binaries of the workspace are looked up next to the test executable
//! (`target/<profile>/`); `scripts/test.sh` builds them before `cargo test`.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A port that was free a moment ago, below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`) and never handed out before by this
/// process.
///
/// Outside the ephemeral range, because the services connect out (to NATS,
/// ClickHouse) before they bind their own ports: an ephemeral port the
/// kernel just handed back as "free" could be taken as the source port of
/// such a connection in between, and the bind then fails (seen in CI).
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, RandomState};
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (low, high) = (10_000u16, ephemeral_low.max(11_000));
    let random = RandomState::new();
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    for attempt in 0u64..10_000 {
        let port = low + (random.hash_one(attempt) % u64::from(high - low)) as u16;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// Polls `url` until it answers 2xx or `timeout` passes.
pub async fn wait_http(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("{url} not ready after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Sends SIGTERM and waits up to `timeout` for the exit; SIGKILL after.
fn terminate(child: &mut Option<Child>, timeout: Duration) -> Option<std::process::ExitStatus> {
    let mut c = child.take()?;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(c.id().to_string())
        .status();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = c.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    c.wait().ok()
}

/// Finds a system binary in the usual places (Debian puts servers in /usr/sbin).
pub fn system_binary(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not found: run deploy/local/install.sh");
}

/// A JetStream-enabled nats-server.
pub struct Nats {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl Nats {
    pub async fn start() -> Nats {
        let mut nats = Nats {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        nats.spawn().await;
        nats
    }

    async fn spawn(&mut self) {
        let log = fs::File::create(self.dir.path().join("nats.log")).expect("log file");
        let child = Command::new(system_binary("nats-server"))
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(self.dir.path().join("js"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server (SIGTERM) keeping its data.
    pub fn stop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }

    /// Starts it again on the same port and data.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connecting to test NATS")
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A ClickHouse server (the Debian 18.16 package).
/// A second ClickHouse user of every test server, whose password reads
/// as a number (a config loader that typed it would send `7`).
pub const NUMERIC_USER: &str = "numeric_secret";
pub const NUMERIC_PASSWORD: &str = "007";

pub struct ClickHouse {
    pub http_port: u16,
    /// Native protocol port (`clickhouse-client --port`).
    pub tcp_port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// Whether `data/` is a tmpfs this fixture mounted.
    mounted: bool,
}

impl ClickHouse {
    pub async fn start() -> ClickHouse {
        Self::start_configured(free_port(), free_port(), "").await
    }

    /// Starts a server on the given ports with `extra` XML inside the
    /// top-level element (cluster, ZooKeeper, macros…).
    pub async fn start_configured(http_port: u16, tcp_port: u16, extra: &str) -> ClickHouse {
        let mut ch = Self::configure(http_port, tcp_port, extra);
        ch.spawn().await;
        ch
    }

    /// Starts a server whose data directory is a tmpfs of `mib` MiB, so a
    /// test can fill its disk ([`ClickHouse::data_dir`]). Needs the
    /// privilege to mount (root); the tmpfs is unmounted on drop.
    pub async fn start_on_small_disk(mib: u32) -> anyhow::Result<ClickHouse> {
        let mut ch = Self::configure(free_port(), free_port(), "");
        let data = ch.data_dir();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&data)
            .status()?;
        anyhow::ensure!(
            status.success(),
            "mount -t tmpfs on {} failed",
            data.display()
        );
        ch.mounted = true;
        ch.spawn().await;
        Ok(ch)
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn configure(http_port: u16, tcp_port: u16, extra: &str) -> ClickHouse {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display();
        for sub in ["data", "tmp", "user_files", "log", "format_schemas"] {
            fs::create_dir_all(dir.path().join(sub)).expect("ClickHouse dirs");
        }
        fs::write(
            dir.path().join("config.xml"),
            format!(
                r#"<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{d}/log/server.log</log><errorlog>{d}/log/server.err.log</errorlog></logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mark_cache_size>268435456</mark_cache_size>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <format_schema_path>{d}/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
{extra}
</yandex>
"#
            ),
        )
        .expect("config.xml");
        fs::write(
            dir.path().join("users.xml"),
            format!(
                r#"<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default>
        <{NUMERIC_USER}><password>{NUMERIC_PASSWORD}</password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></{NUMERIC_USER}></users>
    <quotas><default></default></quotas>
</yandex>
"#
            ),
        )
        .expect("users.xml");
        ClickHouse {
            http_port,
            tcp_port,
            dir,
            child: None,
            mounted: false,
        }
    }

    async fn spawn(&mut self) {
        let log = fs::File::create(self.dir.path().join("log/stdout.log")).expect("log file");
        let child = Command::new(system_binary("clickhouse-server"))
            .arg(format!(
                "--config-file={}",
                self.dir.path().join("config.xml").display()
            ))
            .current_dir(self.dir.path())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("starting clickhouse-server");
        self.child = Some(child);
        wait_http(&format!("{}/ping", self.url()), Duration::from_secs(60))
            .await
            .expect("ClickHouse did not start");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Makes the `default` user read-only (`readonly = 1`: SELECTs only) or
    /// writable again by rewriting `users.xml`; the server reloads it by
    /// itself within seconds, without a restart.
    pub fn set_read_only(&self, read_only: bool) {
        let users = self.dir.path().join("users.xml");
        let text = fs::read_to_string(&users).expect("users.xml");
        let (from, to) = if read_only {
            (
                "<default><max_memory_usage>",
                "<default><readonly>1</readonly><max_memory_usage>",
            )
        } else {
            (
                "<default><readonly>1</readonly><max_memory_usage>",
                "<default><max_memory_usage>",
            )
        };
        fs::write(&users, text.replacen(from, to, 1)).expect("users.xml");
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(30));
    }

    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Runs one statement over HTTP; returns the body (TSV) or the server's error.
    pub async fn query(&self, sql: &str) -> anyhow::Result<String> {
        let r = reqwest::Client::new()
            .post(self.url())
            .body(sql.to_owned())
            .send()
            .await?;
        let status = r.status();
        let body = r.text().await?;
        if !status.is_success() {
            anyhow::bail!("{}", body.trim());
        }
        Ok(body)
    }

    /// Runs a query expected to return one number.
    pub async fn number(&self, sql: &str) -> u64 {
        let out = self
            .query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        out.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{sql}: {out:?} is not a number: {e}"))
    }
}

impl ClickHouse {
    /// Waits until database `db` holds `n` events in `events` and in the
    /// last table the materialised views fill (`scope_total`, whose org
    /// rows count each event once): one insert reaches the tables one
    /// after the other, so `events` alone can be complete while the
    /// derived tables are not yet.
    pub async fn wait_for_events(&self, db: &str, n: u64, within: Duration) {
        eventually(within, &format!("{n} events in every table"), || async {
            let events = self
                .number(&format!("SELECT count() FROM {db}.events"))
                .await;
            let derived = self
                .number(&format!(
                    "SELECT countMerge(events) FROM {db}.scope_total WHERE scope_issuer_id = ''"
                ))
                .await;
            (events == n && derived == n).then_some(())
        })
        .await
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        kill(&mut self.child);
        if self.mounted {
            let _ = Command::new("umount").arg(self.data_dir()).status();
        }
    }
}

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

/// A running badgepulse binary; SIGKILLed on drop unless stopped first.
pub struct Service {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
    _dir: TempDir,
}

impl Service {
    /// Starts `bin` with `config` (TOML) and extra arguments.
    pub fn start(bin: &str, config: &str, args: &[&str]) -> Service {
        Self::start_with_env(bin, config, args, &[])
    }

    /// Like [`Service::start`], with extra environment variables.
    pub fn start_with_env(bin: &str, config: &str, args: &[&str], env: &[(&str, &str)]) -> Service {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("config.toml");
        fs::write(&config_path, config).expect("config file");
        let log = dir.path().join("service.log");
        let out = fs::File::create(&log).expect("log file");
        let child = Command::new(workspace_bin(bin))
            .arg("--config")
            .arg(&config_path)
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        Service {
            name: bin.to_owned(),
            child: Some(child),
            log,
            _dir: dir,
        }
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
            eprintln!("--- log of {} ---\n{}", self.name, self.log_text());
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
        t.push_str(&format!(
            "[aggregator]\nadmin_bind = \"127.0.0.1:{aggregator}\"\n{}",
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

/// Lowercase hex SHA-256, as configured for tokens and API keys.
pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// One message read back from a JetStream stream.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub subject: String,
    pub msg_id: Option<String>,
    pub beacons: bool,
    pub payload: Vec<u8>,
    /// Every header as `name: value` lines.
    pub headers: String,
}

/// Every message currently in `stream`, in order, read with an ephemeral
/// pull consumer (the stream is not changed). Panics on any failure; see
/// [`try_stream_messages`] to retry instead.
pub async fn stream_messages(nats: &async_nats::Client, stream: &str) -> Vec<StoredMessage> {
    try_stream_messages(nats, stream)
        .await
        .unwrap_or_else(|e| panic!("reading stream {stream}: {e}"))
}

/// [`stream_messages`], with an error instead of a panic (e.g. while a
/// NATS cluster elects a new leader).
pub async fn try_stream_messages(
    nats: &async_nats::Client,
    stream: &str,
) -> anyhow::Result<Vec<StoredMessage>> {
    use futures::StreamExt;
    let js = async_nats::jetstream::new(nats.clone());
    let mut stream_handle = js
        .get_stream(stream)
        .await
        .map_err(|e| anyhow::anyhow!("stream: {e}"))?;
    let total = stream_handle
        .info()
        .await
        .map_err(|e| anyhow::anyhow!("stream info: {e}"))?
        .state
        .messages as usize;
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream_handle
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("ephemeral consumer: {e}"))?;
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("fetch: {e}"))?;
        let before = out.len();
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| anyhow::anyhow!("message: {e}"))?;
            let header = |name: &str| {
                m.headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.to_string())
            };
            out.push(StoredMessage {
                subject: m.subject.to_string(),
                msg_id: header("Nats-Msg-Id"),
                beacons: header(badgepulse_contract::subject::BEACON_HEADER).is_some(),
                payload: m.payload.to_vec(),
                headers: m
                    .headers
                    .iter()
                    .flat_map(|h| h.iter())
                    .flat_map(|(name, values)| values.iter().map(move |v| format!("{name}: {v}\n")))
                    .collect(),
            });
        }
        anyhow::ensure!(
            out.len() > before,
            "stream {stream} has {total} messages but only {} could be read",
            out.len()
        );
    }
    Ok(out)
}

/// Every event in the stream's messages (beacon messages carry several).
pub fn stream_events(messages: &[StoredMessage]) -> Vec<badgepulse_contract::event::Event> {
    messages
        .iter()
        .flat_map(|m| {
            badgepulse_contract::event::decode_payload(&m.payload).expect("decodable payload")
        })
        .collect()
}

/// The value of the sample `name{labels…}` in Prometheus text output
/// (labels given must all match; others are ignored). 0 when absent.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

/// Fetches `url` (a `/metrics` endpoint) as text.
pub async fn scrape(url: &str) -> String {
    reqwest::get(url)
        .await
        .expect("metrics endpoint")
        .text()
        .await
        .expect("metrics text")
}

/// A Prometheus server (the Debian package) scraping `jobs` every second,
/// with `rule_files` evaluated every second.
pub struct Prometheus {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl Prometheus {
    /// `jobs`: (job name, `host:port`) pairs; `rule_files`: paths of rule files.
    pub async fn start(jobs: &[(&str, &str)], rule_files: &[&Path]) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        // JSON strings are YAML strings: no quoting issues with paths.
        let quote = |s: &str| serde_json::Value::from(s).to_string();
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n",
        );
        for f in rule_files {
            config.push_str(&format!("  - {}\n", quote(&f.display().to_string())));
        }
        config.push_str("scrape_configs:\n");
        for (job, target) in jobs {
            config.push_str(&format!(
                "  - job_name: {}\n    static_configs:\n      - targets: [{}]\n",
                quote(job),
                quote(target)
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        fs::write(&config_path, config).expect("prometheus.yml");
        let log = fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(system_binary("prometheus"))
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .current_dir(dir.path())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        let prometheus = Prometheus {
            port,
            dir,
            child: Some(child),
        };
        if let Err(e) = wait_http(
            &format!("{}/-/ready", prometheus.url()),
            Duration::from_secs(60),
        )
        .await
        {
            panic!("{e}\n--- prometheus log ---\n{}", prometheus.log_text());
        }
        prometheus
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An instant query (`/api/v1/query`): the `data` object
    /// (`resultType`, `result`), or the server's error.
    pub async fn query(&self, expr: &str) -> anyhow::Result<serde_json::Value> {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/query", self.url()))
            .form(&[("query", expr)])
            .send()
            .await?;
        let body: serde_json::Value = r.json().await?;
        if body["status"] != "success" {
            anyhow::bail!(
                "{}: {}",
                body["errorType"].as_str().unwrap_or("error"),
                body["error"].as_str().unwrap_or("no error message")
            );
        }
        Ok(body["data"].clone())
    }

    /// `GET /api/v1/<path>`: the `data` of a successful answer.
    pub async fn api(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let body: serde_json::Value = reqwest::get(format!("{}/api/v1/{path}", self.url()))
            .await?
            .json()
            .await?;
        if body["status"] != "success" {
            anyhow::bail!("{path}: {body}");
        }
        Ok(body["data"].clone())
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- log of prometheus ---\n{}", self.log_text());
        }
        kill(&mut self.child);
    }
}

/// A 3-node (or n-node) NATS cluster with JetStream on loopback.
pub struct NatsCluster {
    pub ports: Vec<u16>,
    cluster_ports: Vec<u16>,
    dir: TempDir,
    children: Vec<Option<Child>>,
}

impl NatsCluster {
    pub async fn start(nodes: usize) -> NatsCluster {
        let mut c = NatsCluster {
            ports: (0..nodes).map(|_| free_port()).collect(),
            cluster_ports: (0..nodes).map(|_| free_port()).collect(),
            dir: tempfile::tempdir().expect("temp dir"),
            children: (0..nodes).map(|_| None).collect(),
        };
        for n in 0..nodes {
            c.spawn(n);
        }
        for p in c.ports.clone() {
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
                assert!(Instant::now() < deadline, "nats node on {p} did not start");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        c
    }

    fn spawn(&mut self, n: usize) {
        let routes: Vec<String> = self
            .cluster_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let store = self.dir.path().join(format!("n{n}"));
        let conf = self.dir.path().join(format!("n{n}.conf"));
        fs::write(
            &conf,
            format!(
                "server_name: n{n}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: \"{}\" }}\ncluster {{\n  name: badgepulse\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                self.ports[n],
                store.display(),
                self.cluster_ports[n],
                routes.join(", ")
            ),
        )
        .expect("nats config");
        let log = fs::File::create(self.dir.path().join(format!("n{n}.log"))).expect("log");
        self.children[n] = Some(
            Command::new(system_binary("nats-server"))
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("starting nats-server"),
        );
    }

    /// All nodes' URLs, comma separated (as `[nats] url` takes them).
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILLs node `n`.
    pub fn kill(&mut self, n: usize) {
        kill(&mut self.children[n]);
    }

    /// Starts node `n` again on its port and data.
    pub fn restart(&mut self, n: usize) {
        kill(&mut self.children[n]);
        self.spawn(n);
    }

    pub async fn client(&self) -> async_nats::Client {
        let addrs: Vec<async_nats::ServerAddr> = self
            .ports
            .iter()
            .map(|p| {
                format!("nats://127.0.0.1:{p}")
                    .parse()
                    .expect("valid address")
            })
            .collect();
        async_nats::connect(addrs)
            .await
            .expect("connecting to the test NATS cluster")
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            kill(c);
        }
    }
}

/// A standalone ZooKeeper (Debian package `zookeeper`) for replicated
/// ClickHouse tables.
pub struct ZooKeeper {
    pub port: u16,
    _dir: TempDir,
    child: Option<Child>,
}

impl ZooKeeper {
    pub async fn start() -> ZooKeeper {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let cfg = dir.path().join("zoo.cfg");
        fs::write(
            &cfg,
            format!(
                "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=ruok\n",
                dir.path().join("data").display()
            ),
        )
        .expect("zoo.cfg");
        let script = Path::new("/usr/share/zookeeper/bin/zkServer.sh");
        assert!(
            script.exists(),
            "ZooKeeper missing: run deploy/local/install.sh"
        );
        let log = fs::File::create(dir.path().join("zookeeper.log")).expect("log");
        let child = Command::new(script)
            .arg("start-foreground")
            .arg(&cfg)
            .env("ZOO_LOG_DIR", dir.path())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting ZooKeeper");
        let zk = ZooKeeper {
            port,
            _dir: dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                // Whatever else might hold the port must not hang the wait.
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut answer = String::new();
                if s.write_all(b"ruok").is_ok()
                    && s.read_to_string(&mut answer).is_ok()
                    && answer == "imok"
                {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "ZooKeeper did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        zk
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// ClickHouse 18.16 replicas of one shard, cluster `name`, coordinated by
/// `zk`: what `[clickhouse] cluster = "name"` expects.
pub async fn clickhouse_replicas(zk: &ZooKeeper, name: &str, replicas: usize) -> Vec<ClickHouse> {
    let ports: Vec<(u16, u16, u16)> = (0..replicas)
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let replica_xml: String = ports
        .iter()
        .map(|(_, tcp, _)| format!("<replica><host>127.0.0.1</host><port>{tcp}</port></replica>"))
        .collect();
    let mut nodes = Vec::new();
    for (n, (http, tcp, interserver)) in ports.iter().enumerate() {
        let extra = format!(
            "<interserver_http_port>{interserver}</interserver_http_port>\n<interserver_http_host>127.0.0.1</interserver_http_host>\n\
             <zookeeper><node><host>127.0.0.1</host><port>{zk}</port></node></zookeeper>\n\
             <remote_servers><{name}><shard><internal_replication>true</internal_replication>{replica_xml}</shard></{name}></remote_servers>\n\
             <macros><shard>01</shard><replica>r{n}</replica></macros>\n\
             <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>",
            zk = zk.port
        );
        nodes.push(ClickHouse::start_configured(*http, *tcp, &extra).await);
    }
    nodes
}

/// Runs headless Chromium (Debian package `chromium`) with `profile` as
/// its user data directory, `args`, then `url`; its stdout.
pub async fn chromium(profile: &Path, args: &[&str], url: &str) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                &format!("--user-data-dir={}", profile.display()),
            ])
            .args(args)
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finished within 90 s")
    .expect("chromium runs (Debian package chromium, deploy/local/install.sh)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
