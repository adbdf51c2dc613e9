//! A ZooKeeper for replicated ClickHouse.

use std::fs;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;
use crate::process::kill;

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
