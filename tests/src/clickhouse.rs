//! ClickHouse fixtures: a private 18.16 server on free ports (optionally on
//! a small tmpfs, to fill its disk), and the shards and replicas of a
//! cluster.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use badgepulse_aggregator::store::Store;
use badgepulse_runtime::settings::ClickHouseConfig;
use tempfile::TempDir;

use crate::process::{kill, system_binary, terminate};
use crate::zookeeper::ZooKeeper;
use crate::{eventually, free_port, wait_http};

/// A second ClickHouse user of every test server, whose password reads
/// as a number (a config loader that typed it would send `7`).
pub const NUMERIC_USER: &str = "numeric_secret";
pub const NUMERIC_PASSWORD: &str = "007";

/// A ClickHouse server (the Debian 18.16 package).
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

    /// `extra` configuration of [`ClickHouse::start_configured`] for a
    /// `system.query_log` flushed every 300 ms.
    pub const QUERY_LOG: &'static str = "<query_log><database>system</database><table>query_log</table><flush_interval_milliseconds>300</flush_interval_milliseconds></query_log>";

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

    /// Logs every query of every user to `system.query_log` (which the
    /// server must have been configured with, see [`ClickHouse::QUERY_LOG`]), by
    /// rewriting `users.xml`; the server reloads it within seconds.
    pub fn log_queries(&self) {
        // The server notices the change by the file's modification time,
        // in whole seconds: not within the second it was written.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let users = self.dir.path().join("users.xml");
        let text = fs::read_to_string(&users).expect("users.xml");
        let (from, to) = (
            "<default><max_memory_usage>",
            "<default><log_queries>1</log_queries><max_memory_usage>",
        );
        fs::write(&users, text.replacen(from, to, 1)).expect("users.xml");
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(30));
    }

    /// SIGKILL, as a crash; [`ClickHouse::restart`] starts it again on
    /// the same data.
    pub fn kill(&mut self) {
        kill(&mut self.child);
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

    /// Seals every award day of database `db` with the aggregator's own
    /// statements (`Store::lifecycle_days_to_seal`, `seal_lifecycle_days`),
    /// as its seal job does; the number of org days sealed.
    pub async fn seal_every_award_day(&self, db: &str) -> usize {
        let store = Store::new(&ClickHouseConfig {
            url: self.url(),
            database: db.into(),
            ..Default::default()
        });
        let mut sealed = 0;
        for partition in store.partitions_held().await.unwrap() {
            loop {
                let days = store.lifecycle_days_to_seal(partition, 100).await.unwrap();
                if days.is_empty() {
                    break;
                }
                store.seal_lifecycle_days(partition, &days).await.unwrap();
                sealed += days.len();
            }
        }
        sealed
    }
}

impl ClickHouse {
    /// The blocks that INSERTs through the `Distributed` tables of `db` left
    /// queued on this node for another shard: 18.16 keeps each as a `.bin`
    /// file under the table's directory until it is delivered (it has no
    /// `system.distribution_queue`). Empty when nothing is pending.
    pub async fn distributed_queue(&self, db: &str) -> Vec<PathBuf> {
        let tables = self
            .query(&format!(
                "SELECT name FROM system.tables WHERE database = '{db}' AND engine = 'Distributed'"
            ))
            .await
            .expect("list the Distributed tables");
        let mut pending = Vec::new();
        let mut dirs: Vec<PathBuf> = tables
            .lines()
            .map(|table| self.data_dir().join("data").join(db).join(table))
            .collect();
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "bin") {
                    pending.push(path);
                }
            }
        }
        pending
    }

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
        if std::thread::panicking() {
            // What the server said last, for a test that failed on it.
            for name in ["server.err.log", "stdout.log"] {
                let text =
                    fs::read_to_string(self.dir.path().join("log").join(name)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!(
                    "--- {name} of ClickHouse on port {}, last lines ---\n{}",
                    self.http_port,
                    lines[lines.len().saturating_sub(20)..].join("\n")
                );
            }
        }
        kill(&mut self.child);
        if self.mounted {
            let _ = Command::new("umount").arg(self.data_dir()).status();
        }
    }
}

/// `config.xml` lines that have a server delete merged-away parts after 10
/// s instead of 8 minutes: a test's many small inserts leave tens of
/// thousands of files, and deleting them with the data directory at the
/// end of the test takes longer than the test (40 s seen on a busy disk).
pub const SHORT_LIVED_PARTS: &str =
    "<merge_tree><old_parts_lifetime>10</old_parts_lifetime></merge_tree>";

/// [`SHORT_LIVED_PARTS`] for a node of a cluster, which also retries
/// activating its replicated tables every 2 s instead of 60: a node
/// restarted after a SIGKILL finds its previous ZooKeeper session still
/// alive ("Replica appears to be already active") until it expires, and
/// 18.16 holds the server's start-up until every table is active.
const CLUSTER_NODE_MERGE_TREE: &str = "<merge_tree><old_parts_lifetime>10</old_parts_lifetime>\
    <zookeeper_session_expiration_check_period>2</zookeeper_session_expiration_check_period></merge_tree>";

/// ClickHouse 18.16 replicas of one shard, cluster `name`, coordinated by
/// `zk`: what `[clickhouse] cluster = "name"` expects.
pub async fn clickhouse_replicas(zk: &ZooKeeper, name: &str, replicas: usize) -> Vec<ClickHouse> {
    clickhouse_shards(zk, name, 1, replicas)
        .await
        .pop()
        .expect("one shard")
}

/// A cluster `name` of `shards` × `replicas` ClickHouse 18.16 servers
/// coordinated by `zk`, each shard of weight 1 with internal replication
/// (the `Replicated*` tables copy the data): `[shard][replica]`, shard
/// `s` (from 0) being `shard_num` s + 1 and macro `{shard}` 0`s+1`.
pub async fn clickhouse_shards(
    zk: &ZooKeeper,
    name: &str,
    shards: usize,
    replicas: usize,
) -> Vec<Vec<ClickHouse>> {
    let ports: Vec<Vec<(u16, u16, u16)>> = (0..shards)
        .map(|_| {
            (0..replicas)
                .map(|_| (free_port(), free_port(), free_port()))
                .collect()
        })
        .collect();
    let shard_xml: String = ports
        .iter()
        .map(|shard| {
            let replica_xml: String = shard
                .iter()
                .map(|(_, tcp, _)| {
                    format!("<replica><host>127.0.0.1</host><port>{tcp}</port></replica>")
                })
                .collect();
            format!("<shard><internal_replication>true</internal_replication>{replica_xml}</shard>")
        })
        .collect();
    let mut nodes = Vec::new();
    for (s, shard) in ports.iter().enumerate() {
        let mut shard_nodes = Vec::new();
        for (n, (http, tcp, interserver)) in shard.iter().enumerate() {
            let extra = format!(
                "<interserver_http_port>{interserver}</interserver_http_port>\n<interserver_http_host>127.0.0.1</interserver_http_host>\n\
                 <zookeeper><node><host>127.0.0.1</host><port>{zk}</port></node></zookeeper>\n\
                 <remote_servers><{name}>{shard_xml}</{name}></remote_servers>\n\
                 <macros><shard>{:02}</shard><replica>r{n}</replica></macros>\n\
                 <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>\n\
                 {CLUSTER_NODE_MERGE_TREE}",
                s + 1,
                zk = zk.port
            );
            shard_nodes.push(ClickHouse::start_configured(*http, *tcp, &extra).await);
        }
        nodes.push(shard_nodes);
    }
    nodes
}
