//! The checkpoint: how far an import got, so that a run killed at any
//! moment continues where it was, neither losing nor duplicating an event.
//!
//! It records `next_batch`, the first batch not yet answered such that
//! every earlier one was answered `200` (a contiguous prefix: batches run
//! concurrently and finish out of order), the rejects file's length once
//! the rejects of exactly those batches were written, and the counts so
//! far. A resumed run truncates the rejects file to that length and sends
//! again from `next_batch`; a batch sent twice is idempotent on the server
//! by `event_id`. The file is replaced atomically (temporary file, fsync,
//! rename, fsync of the directory). It belongs to one set of inputs and
//! options ([`fingerprint`]).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Format version of the checkpoint file.
const VERSION: u32 = 1;

/// What the batches answered so far account for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Records read: events and unreadable records.
    pub read: u64,
    /// Events sent (answered `200`).
    pub sent: u64,
    pub accepted: u64,
    pub duplicates: u64,
    /// Local and server rejects: the rows of the rejects file.
    pub rejected: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.read += other.read;
        self.sent += other.sent;
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub version: u32,
    /// [`fingerprint`] of the inputs and options.
    pub fingerprint: String,
    /// The first run's start: `occurred_at` of upserts without awards.
    pub started_at: DateTime<Utc>,
    /// Every batch below this one was answered `200` and its rejects written.
    pub next_batch: u64,
    /// The rejects file's length in bytes at `next_batch`.
    pub rejects_len: u64,
    pub counts: Counts,
    /// Every batch was answered.
    pub complete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "checkpoint {path}: not a checkpoint of this importer ({message}); delete it to start over"
    )]
    Corrupt { path: String, message: String },
}

impl Checkpoint {
    pub fn new(fingerprint: String, started_at: DateTime<Utc>) -> Checkpoint {
        Checkpoint {
            version: VERSION,
            fingerprint,
            started_at,
            next_batch: 0,
            rejects_len: 0,
            counts: Counts::default(),
            complete: false,
        }
    }

    /// The checkpoint at `path`, or `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        let text = match fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(path, e)),
        };
        let cp: Checkpoint =
            serde_json::from_slice(&text).map_err(|e| CheckpointError::Corrupt {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        if cp.version != VERSION {
            return Err(CheckpointError::Corrupt {
                path: path.display().to_string(),
                message: format!("version {} (this importer writes {VERSION})", cp.version),
            });
        }
        Ok(Some(cp))
    }

    /// Replaces the file at `path` atomically and durably.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let tmp = temp_path(path);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            serde_json::to_writer_pretty(&mut f, self)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            File::open(dir)?.sync_all()
        };
        write().map_err(|e| io_error(path, e))
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn io_error(path: &Path, source: std::io::Error) -> CheckpointError {
    CheckpointError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// SHA-256 (hex) of what decides the batches: each input's absolute path,
/// size and modification time, and `options` (format, batch size, org…).
/// Concurrency, URL and token are not in it: they may change between a
/// run and its resumption.
pub fn fingerprint(inputs: &[PathBuf], options: &str) -> std::io::Result<String> {
    let mut h = Sha256::new();
    h.update(format!("badgepulse-import checkpoint v{VERSION}\n"));
    for p in inputs {
        let meta = fs::metadata(p)?;
        let abs = fs::canonicalize(p)?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        h.update(format!("{}\n{}\n{mtime}\n", abs.display(), meta.len()));
    }
    h.update(options);
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.checkpoint");
        assert_eq!(Checkpoint::load(&path).unwrap(), None);
        let mut cp = Checkpoint::new("f".into(), "2026-01-01T00:00:00Z".parse().unwrap());
        cp.next_batch = 7;
        cp.rejects_len = 120;
        cp.counts.read = 7000;
        cp.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), Some(cp.clone()));
        cp.next_batch = 8;
        cp.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap().unwrap().next_batch, 8);
        assert!(!temp_path(&path).exists());
        fs::write(&path, "{}").unwrap();
        assert!(matches!(
            Checkpoint::load(&path),
            Err(CheckpointError::Corrupt { .. })
        ));
    }

    #[test]
    fn fingerprint_follows_size_and_options() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.ndjson");
        fs::write(&a, "x\n").unwrap();
        let f1 = fingerprint(std::slice::from_ref(&a), "batch=1000").unwrap();
        assert_eq!(
            f1,
            fingerprint(std::slice::from_ref(&a), "batch=1000").unwrap()
        );
        assert_ne!(
            f1,
            fingerprint(std::slice::from_ref(&a), "batch=500").unwrap()
        );
        fs::write(&a, "x\ny\n").unwrap();
        assert_ne!(f1, fingerprint(&[a], "batch=1000").unwrap());
    }
}
