//! One import run: the inputs read on a thread of their own into numbered
//! batches, at most `concurrency` batches in flight, and the checkpoint and
//! rejects file advanced over the contiguous prefix of answered batches.
//! Or a dry run: every record checked with the contract, nothing sent.
//!
//! Order of the items (fixed, so batch numbers survive a restart): the
//! NDJSON and CSV inputs in the order given, then the Open Badges inputs
//! (their badge classes' upserts first, then each file's records).
//! Invariants: a batch's rejects are written only once every earlier batch
//! was answered, and the checkpoint never records a batch as done before
//! its rejects are in the file; so a run killed anywhere and resumed lists
//! each reject once and sends each event at least once.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::batch::{Batch, Batcher, MAX_BODY};
use crate::checkpoint::{fingerprint, Checkpoint, Counts};
use crate::input::{self, Check, Format, Input, InputError, Reject};
use crate::openbadges::{self, Catalog};
use crate::progress::Progress;
use crate::rejects::RejectsFile;
use crate::send::{Answer, Fatal, Sender};

/// How often the checkpoint is written at most (and at the end). Each
/// write fsyncs, which on ext4 also flushes what NATS wrote meanwhile when
/// both share a disk: every 250 ms that cost the import 5 to 10 % of its
/// rate (bench/import.sh). A restart resends at most this much.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// How many answered batches per unit of concurrency may wait for an
/// earlier batch that is still retrying before no new batch is sent.
const AHEAD: usize = 8;

/// A validated run configuration (built by `main.rs` from the command line).
#[derive(Debug, Clone)]
pub struct Config {
    pub inputs: Vec<Input>,
    /// The inputs as given on the command line: the rejects file's `file`.
    pub names: Vec<String>,
    pub url: String,
    pub token: String,
    pub org: Option<String>,
    pub batch_size: usize,
    pub concurrency: usize,
    pub checkpoint: PathBuf,
    pub rejects: PathBuf,
    pub tags_as_attributes: bool,
    /// Discard an existing checkpoint and start over.
    pub fresh: bool,
    /// Check every record with the contract's validation and write the
    /// rejects file; send nothing, keep no checkpoint.
    pub dry_run: bool,
    pub timeout: Duration,
}

impl Config {
    /// What decides the batches besides the files (see `fingerprint`).
    fn batch_options(&self) -> String {
        let formats: Vec<&str> = self.inputs.iter().map(|i| i.format.name()).collect();
        format!(
            "mapping v1\nformats {}\nbatch_size {}\nmax_body {MAX_BODY}\norg {:?}\ntags_as_attributes {}\n",
            formats.join(","),
            self.batch_size,
            self.org,
            self.tags_as_attributes
        )
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every batch was answered.
    Complete,
    /// The checkpoint says a previous run completed; nothing was sent.
    AlreadyComplete,
    /// `--dry-run`: every record read and checked, nothing sent.
    Checked,
    /// SIGINT or SIGTERM: the checkpoint holds the done prefix.
    Interrupted,
    /// An answer or error that retrying cannot change; the checkpoint holds
    /// the done prefix.
    Fatal(String),
}

#[derive(Debug, Clone)]
pub struct Report {
    pub end: End,
    /// For the whole import, this run and the ones it resumed.
    pub counts: Counts,
    /// Records done in this run, and how long it took.
    pub done_now: u64,
    pub elapsed: Duration,
    pub rejects: PathBuf,
    pub checkpoint: PathBuf,
}

/// Errors before anything was sent.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error("checkpoint {0}: written for other inputs or options (the files changed, or --format, --batch-size, --org or --tags-as-attributes differ); run with --fresh to start over (a re-import is idempotent)")]
    OtherRun(String),
    #[error("rejects file {path}: {source}")]
    Rejects {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Fatal(#[from] Fatal),
}

/// What one batch came to.
struct Done {
    rejects: Vec<Reject>,
    counts: Counts,
}

/// Runs the import; `progress` draws on `bar` when `terminal`.
pub async fn run(
    cfg: Config,
    bar: indicatif::ProgressBar,
    terminal: bool,
) -> Result<Report, StartError> {
    if cfg.dry_run {
        return dry_run(cfg, bar, terminal).await;
    }
    let started = Instant::now();
    let paths: Vec<PathBuf> = cfg.inputs.iter().map(|i| i.path.clone()).collect();
    let fp = fingerprint(&paths, &cfg.batch_options()).map_err(|e| {
        StartError::Input(InputError::Invalid {
            path: "inputs".into(),
            message: e.to_string(),
        })
    })?;
    let existing = if cfg.fresh {
        None
    } else {
        Checkpoint::load(&cfg.checkpoint)?
    };
    let report = |end: End, counts: Counts, done_now: u64| Report {
        end,
        counts,
        done_now,
        elapsed: started.elapsed(),
        rejects: cfg.rejects.clone(),
        checkpoint: cfg.checkpoint.clone(),
    };
    let rejects_error = |source| StartError::Rejects {
        path: cfg.rejects.display().to_string(),
        source,
    };
    let (mut cp, mut rejects) = match existing {
        Some(cp) if cp.fingerprint != fp => {
            return Err(StartError::OtherRun(cfg.checkpoint.display().to_string()))
        }
        Some(cp) if cp.complete => return Ok(report(End::AlreadyComplete, cp.counts, 0)),
        Some(cp) => {
            tracing::info!(
                checkpoint = %cfg.checkpoint.display(),
                next_batch = cp.next_batch,
                done = cp.counts.read,
                "resuming"
            );
            let rejects =
                RejectsFile::resume(&cfg.rejects, cp.rejects_len).map_err(rejects_error)?;
            (cp, rejects)
        }
        None => {
            let mut rejects = RejectsFile::create(&cfg.rejects).map_err(rejects_error)?;
            let mut cp = Checkpoint::new(fp, Utc::now());
            cp.rejects_len = rejects.sync().map_err(rejects_error)?;
            cp.save(&cfg.checkpoint)?;
            (cp, rejects)
        }
    };

    // The first pass (Open Badges) and the record count, off the runtime.
    let plan = {
        let cfg = cfg.clone();
        let started_at = cp.started_at;
        tokio::task::spawn_blocking(move || Plan::new(cfg, started_at))
            .await
            .expect("the planning thread does not panic")?
    };
    let mut progress = Progress::new(bar, terminal, plan.total, cp.counts.read);
    let sender = Sender::new(&cfg.url, &cfg.token, cfg.timeout, Default::default())?;

    let (tx, mut rx) = mpsc::channel::<Result<Batch, InputError>>(cfg.concurrency * 2);
    let skip = cp.next_batch;
    std::thread::Builder::new()
        .name("read-inputs".into())
        .spawn(move || plan.produce(skip, Check::Syntax, &tx))
        .expect("spawning the input thread");

    let mut inflight: JoinSet<(u64, Result<Done, Fatal>)> = JoinSet::new();
    let mut answered: BTreeMap<u64, Done> = BTreeMap::new();
    let mut input_done = false;
    let mut saver = Saver::new(&cfg, &rejects).map_err(rejects_error)?;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let start_read = cp.counts.read;

    let end = loop {
        if input_done && inflight.is_empty() {
            break End::Complete;
        }
        let mut ready: Option<(u64, Done)> = None;
        tokio::select! {
            _ = &mut shutdown => break End::Interrupted,
            Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                let (index, outcome) = joined.expect("a send task does not panic");
                match outcome {
                    Ok(done) => ready = Some((index, done)),
                    Err(Fatal(e)) => break End::Fatal(e),
                }
            }
            // Bounded: at most `concurrency` in flight, and answered
            // batches wait for an earlier one at most `AHEAD` times that.
            msg = rx.recv(), if !input_done
                && inflight.len() < cfg.concurrency
                && answered.len() < cfg.concurrency * AHEAD => match msg {
                None => input_done = true,
                Some(Err(e)) => break End::Fatal(e.to_string()),
                Some(Ok(batch)) if batch.events.is_empty() => {
                    ready = Some((batch.index, done_without_sending(batch)));
                }
                Some(Ok(batch)) => {
                    let sender = sender.clone();
                    inflight.spawn(async move {
                        let index = batch.index;
                        (index, send_batch(&sender, batch).await)
                    });
                }
            },
        }
        if let Some((index, done)) = ready {
            answered.insert(index, done);
            let mut advanced = false;
            while let Some(mut done) = answered.remove(&cp.next_batch) {
                rejects
                    .append(&mut done.rejects, &cfg.names)
                    .map_err(rejects_error)?;
                cp.counts.add(&done.counts);
                cp.next_batch += 1;
                advanced = true;
            }
            if advanced {
                progress.set(cp.counts.read);
                cp.rejects_len = rejects.written();
                saver.offer(&cp).await?;
            }
        }
    };
    // Batches still in flight are dropped: they are sent again on resume.
    inflight.abort_all();
    saver.finish().await?;
    cp.complete = end == End::Complete;
    save(&mut cp, &mut rejects, &cfg)?;
    progress.finish();
    Ok(report(end, cp.counts, cp.counts.read - start_read))
}

/// Writes the checkpoint in the background, at most every
/// [`CHECKPOINT_EVERY`] and one write at a time, so that an fsync never
/// holds up the dispatch of batches. Each write syncs the rejects file
/// first, so the length it records is durable before the checkpoint that
/// names it is renamed into place.
struct Saver {
    path: PathBuf,
    rejects_path: PathBuf,
    rejects: Arc<File>,
    pending: Option<tokio::task::JoinHandle<Result<(), StartError>>>,
    last: Instant,
}

impl Saver {
    fn new(cfg: &Config, rejects: &RejectsFile) -> std::io::Result<Saver> {
        Ok(Saver {
            path: cfg.checkpoint.clone(),
            rejects_path: cfg.rejects.clone(),
            rejects: Arc::new(rejects.sync_handle()?),
            pending: None,
            last: Instant::now(),
        })
    }

    /// Starts writing `cp` unless a write is under way or one started
    /// less than [`CHECKPOINT_EVERY`] ago.
    async fn offer(&mut self, cp: &Checkpoint) -> Result<(), StartError> {
        if self.pending.as_ref().is_some_and(|p| !p.is_finished())
            || self.last.elapsed() < CHECKPOINT_EVERY
        {
            return Ok(());
        }
        self.finish().await?;
        let (cp, path, rejects_path) = (cp.clone(), self.path.clone(), self.rejects_path.clone());
        let rejects = self.rejects.clone();
        self.last = Instant::now();
        self.pending = Some(tokio::task::spawn_blocking(move || {
            rejects.sync_data().map_err(|source| StartError::Rejects {
                path: rejects_path.display().to_string(),
                source,
            })?;
            cp.save(&path)?;
            Ok(())
        }));
        Ok(())
    }

    /// Waits for the write under way, if any.
    async fn finish(&mut self) -> Result<(), StartError> {
        match self.pending.take() {
            Some(p) => p.await.expect("a checkpoint write does not panic"),
            None => Ok(()),
        }
    }
}

/// `--dry-run`: every record read and checked with the contract's
/// validation, the rejects file written, nothing sent, no checkpoint.
async fn dry_run(
    cfg: Config,
    bar: indicatif::ProgressBar,
    terminal: bool,
) -> Result<Report, StartError> {
    let started = Instant::now();
    let rejects_error = |source| StartError::Rejects {
        path: cfg.rejects.display().to_string(),
        source,
    };
    let mut rejects = RejectsFile::create(&cfg.rejects).map_err(rejects_error)?;
    let plan = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || Plan::new(cfg, Utc::now()))
            .await
            .expect("the planning thread does not panic")?
    };
    let mut progress = Progress::new(bar, terminal, plan.total, 0);
    let (tx, mut rx) = mpsc::channel::<Result<Batch, InputError>>(4);
    std::thread::Builder::new()
        .name("read-inputs".into())
        .spawn(move || plan.produce(0, Check::Contract, &tx))
        .expect("spawning the input thread");
    let mut counts = Counts::default();
    while let Some(batch) = rx.recv().await {
        let mut batch = batch?;
        counts.read += batch.items();
        counts.rejected += batch.rejects.len() as u64;
        rejects
            .append(&mut batch.rejects, &cfg.names)
            .map_err(rejects_error)?;
        progress.set(counts.read);
    }
    rejects.sync().map_err(rejects_error)?;
    progress.finish();
    Ok(Report {
        end: End::Checked,
        counts,
        done_now: counts.read,
        elapsed: started.elapsed(),
        rejects: cfg.rejects.clone(),
        checkpoint: cfg.checkpoint.clone(),
    })
}

fn save(cp: &mut Checkpoint, rejects: &mut RejectsFile, cfg: &Config) -> Result<(), StartError> {
    cp.rejects_len = rejects.sync().map_err(|source| StartError::Rejects {
        path: rejects.path().display().to_string(),
        source,
    })?;
    cp.save(&cfg.checkpoint)?;
    Ok(())
}

fn done_without_sending(batch: Batch) -> Done {
    Done {
        counts: Counts {
            read: batch.items(),
            rejected: batch.rejects.len() as u64,
            ..Counts::default()
        },
        rejects: batch.rejects,
    }
}

async fn send_batch(sender: &Sender, mut batch: Batch) -> Result<Done, Fatal> {
    let body = Bytes::from(std::mem::take(&mut batch.body));
    let answer: Answer = sender.send(batch.index, body).await?;
    let events = batch.events.len() as u64;
    let mut rejects = batch.rejects;
    let local = rejects.len() as u64;
    for r in &answer.rejected {
        let (origin, event_id) = batch.events.get(r.index).ok_or_else(|| {
            Fatal(format!(
                "batch {}: the server rejected index {} of {events} events",
                batch.index, r.index
            ))
        })?;
        rejects.push(Reject {
            origin: *origin,
            event_id: r.event_id.clone().or_else(|| event_id.clone()),
            error: r.error.clone(),
        });
    }
    let counted = answer.accepted + answer.duplicates + answer.rejected.len() as u64;
    if counted != events {
        tracing::warn!(
            batch = batch.index,
            events,
            accepted = answer.accepted,
            duplicates = answer.duplicates,
            rejected = answer.rejected.len(),
            "the answer does not account for every event sent"
        );
    }
    Ok(Done {
        counts: Counts {
            read: events + local,
            sent: events,
            accepted: answer.accepted,
            duplicates: answer.duplicates,
            rejected: rejects.len() as u64,
        },
        rejects,
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// What the input thread reads: the inputs in their order and the first
/// pass of the Open Badges ones.
struct Plan {
    cfg: Config,
    catalog: Option<Catalog>,
    ob: openbadges::Options,
    total: u64,
}

impl Plan {
    fn new(cfg: Config, started_at: chrono::DateTime<Utc>) -> Result<Plan, InputError> {
        let mut total = 0;
        for i in &cfg.inputs {
            total += match i.format {
                Format::Ndjson => input::count_ndjson(&i.path)?,
                Format::Csv => input::count_csv(&i.path)?,
                Format::Openbadges => 0,
            };
        }
        let ob_inputs: Vec<(usize, &Input)> = cfg
            .inputs
            .iter()
            .enumerate()
            .filter(|(_, i)| i.format == Format::Openbadges)
            .collect();
        let catalog = if ob_inputs.is_empty() {
            None
        } else {
            let c = Catalog::read(&ob_inputs)?;
            tracing::info!(
                badge_classes = c.classes(),
                assertions = c.assertions,
                credentials = c.credentials,
                issuers = c.issuers,
                other_objects = c.skipped,
                "read the Open Badges inputs"
            );
            total += c.items;
            Some(c)
        };
        let ob = openbadges::Options {
            org: cfg.org.clone().unwrap_or_default(),
            tags_as_attributes: cfg.tags_as_attributes,
            started_at,
        };
        Ok(Plan {
            cfg,
            catalog,
            ob,
            total,
        })
    }

    /// Sends every batch from number `skip` on; stops early when the
    /// receiver is gone.
    fn produce(self, skip: u64, check: Check, tx: &mpsc::Sender<Result<Batch, InputError>>) {
        let mut batcher = Batcher::new(self.cfg.batch_size, MAX_BODY);
        let result = (|| {
            let mut emit = |item| {
                for batch in batcher.push(item) {
                    if batch.index >= skip {
                        tx.blocking_send(Ok(batch))
                            .map_err(|_| InputError::Stopped)?;
                    }
                }
                Ok(())
            };
            for (index, i) in self.cfg.inputs.iter().enumerate() {
                match i.format {
                    Format::Ndjson => input::read_ndjson(i, index, check, &mut emit)?,
                    Format::Csv => input::read_csv(i, index, check, &mut emit)?,
                    Format::Openbadges => {}
                }
            }
            if let Some(catalog) = &self.catalog {
                let ob_inputs: Vec<(usize, &Input)> = self
                    .cfg
                    .inputs
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| i.format == Format::Openbadges)
                    .collect();
                openbadges::emit(&ob_inputs, catalog, &self.ob, check, &mut emit)?;
            }
            if let Some(batch) = batcher.close() {
                if batch.index >= skip {
                    tx.blocking_send(Ok(batch))
                        .map_err(|_| InputError::Stopped)?;
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) | Err(InputError::Stopped) => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> Config {
        let input = dir.join("h.ndjson");
        std::fs::write(&input, "{\"event_id\":\"e1\"}\n").unwrap();
        Config {
            inputs: vec![Input {
                path: input.clone(),
                format: Format::Ndjson,
            }],
            names: vec!["h.ndjson".into()],
            // Nothing listens there: these runs must end before sending.
            url: "http://127.0.0.1:9".into(),
            token: "t".into(),
            org: None,
            batch_size: 1000,
            concurrency: 4,
            checkpoint: dir.join("run.checkpoint"),
            rejects: dir.join("rejects.csv"),
            tags_as_attributes: false,
            fresh: false,
            dry_run: false,
            timeout: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn a_checkpoint_of_other_inputs_or_options_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        Checkpoint::new("another import".into(), Utc::now())
            .save(&cfg.checkpoint)
            .unwrap();
        let err = run(cfg, indicatif::ProgressBar::hidden(), false)
            .await
            .unwrap_err();
        assert!(matches!(err, StartError::OtherRun(_)), "{err}");
        assert!(err.to_string().contains("--fresh"), "{err}");
    }

    #[tokio::test]
    async fn a_completed_import_is_not_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let paths = vec![cfg.inputs[0].path.clone()];
        let mut cp = Checkpoint::new(
            fingerprint(&paths, &cfg.batch_options()).unwrap(),
            Utc::now(),
        );
        cp.complete = true;
        cp.counts.read = 1;
        cp.counts.rejected = 1;
        cp.save(&cfg.checkpoint).unwrap();
        let report = run(cfg.clone(), indicatif::ProgressBar::hidden(), false)
            .await
            .unwrap();
        assert_eq!(report.end, End::AlreadyComplete);
        assert_eq!(report.counts, cp.counts);
        // Another batch size makes other batches: not this checkpoint's.
        let other = Config {
            batch_size: 500,
            ..cfg
        };
        let err = run(other, indicatif::ProgressBar::hidden(), false)
            .await
            .unwrap_err();
        assert!(matches!(err, StartError::OtherRun(_)), "{err}");
    }
}
