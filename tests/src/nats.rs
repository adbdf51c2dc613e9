//! NATS fixtures: a JetStream server, a three-node cluster, and reading a
//! stream's stored messages.

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;
use crate::process::{kill, system_binary, terminate};

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
