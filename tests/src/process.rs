//! Child processes of the fixtures: where a system binary is, and how to
//! stop one (SIGTERM with a deadline, or SIGKILL).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Sends SIGTERM and waits up to `timeout` for the exit; SIGKILL after.
pub fn terminate(child: &mut Option<Child>, timeout: Duration) -> Option<std::process::ExitStatus> {
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
