//! badgepulse-import: sends a platform's history (NDJSON or CSV of SPEC §3
//! events, Open Badges 2.0 and 3.0 exports) to ingest's `POST /v1/events`.
//!
//! Exit status: 0 when every record was stored (or, with `--dry-run`,
//! passed the checks), 1 when some were rejected
//! (listed in the rejects file), 2 on an error that stopped the run (bad
//! options, unreadable input, an answer such as 401), 130 when interrupted
//! by SIGINT or SIGTERM. A stopped run continues from its checkpoint when
//! started again with the same files and options.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use badgepulse_contract::event::check_id;
use badgepulse_import::input::{detect_format, Format, Input};
use badgepulse_import::progress::LogWriter;
use badgepulse_import::run::{self, Config, End, Report};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "badgepulse-import",
    version,
    about = "Import a platform's history into badgepulse through POST /v1/events (SPEC §12; docs/import.md)."
)]
struct Cli {
    /// Files to import, read in this order: NDJSON or CSV of SPEC §3 events,
    /// or Open Badges 2.0/3.0 JSON (one object, an array, or one per line).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Ingest's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Bearer token of `[[ingest.tokens]]` allowed to write the orgs imported.
    /// Required unless --dry-run.
    #[arg(long, env = "BADGEPULSE_IMPORT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// `org_id` of the Open Badges inputs (an export names no org); required
    /// when there are any.
    #[arg(long)]
    org: Option<String>,
    /// Format of every input; `auto` decides per file (`.csv` is CSV; a
    /// first line that is a SPEC §3 event is NDJSON; otherwise Open Badges).
    #[arg(long, value_enum, default_value = "auto")]
    format: FormatArg,
    /// Events per request (at most 1000; a request also stays within 1 MiB).
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Checkpoint file [default: FIRST_INPUT.badgepulse-import.checkpoint].
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Rejects file, CSV `file,line,event_id,error` [default:
    /// FIRST_INPUT.rejects.csv; with --dry-run FIRST_INPUT.dry-run.rejects.csv].
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Give each Open Badges tag to its badge class as an attribute
    /// (`attributes`, a driver of SPEC §7.5), keyed as docs/import.md says.
    #[arg(long)]
    tags_as_attributes: bool,
    /// Ignore an existing checkpoint and send everything again (the events
    /// already stored are duplicates).
    #[arg(long)]
    fresh: bool,
    /// Check every record with ingest's own validation and write the
    /// rejects file, without sending anything or touching the checkpoint.
    #[arg(long)]
    dry_run: bool,
    /// Seconds one request may take before it is sent again.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FormatArg {
    Auto,
    Ndjson,
    Csv,
    Openbadges,
}

impl Cli {
    /// Checks the options and resolves each input's format.
    fn config(self) -> Result<Config, String> {
        if !(1..=1000).contains(&self.batch_size) {
            return Err("--batch-size: must be 1 to 1000 (SPEC §4)".into());
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err("--concurrency: must be 1 to 256".into());
        }
        if self.timeout_secs == 0 {
            return Err("--timeout-secs: must be at least 1".into());
        }
        let token = match (self.token, self.dry_run) {
            (Some(t), _) if !t.is_empty() => t,
            (_, true) => String::new(),
            _ => {
                return Err(
                    "--token: required (or BADGEPULSE_IMPORT_TOKEN), unless --dry-run".into(),
                )
            }
        };
        if let Some(org) = &self.org {
            check_id("--org", org).map_err(|e| e.to_string())?;
        }
        let mut inputs = Vec::new();
        for path in &self.inputs {
            let format = match self.format {
                FormatArg::Auto => detect_format(path).map_err(|e| e.to_string())?,
                FormatArg::Ndjson => Format::Ndjson,
                FormatArg::Csv => Format::Csv,
                FormatArg::Openbadges => Format::Openbadges,
            };
            inputs.push(Input {
                path: path.clone(),
                format,
            });
        }
        if self.org.is_none() {
            if let Some(i) = inputs.iter().find(|i| i.format == Format::Openbadges) {
                return Err(format!(
                    "--org: required for Open Badges input ({} has no org; SPEC §12)",
                    i.path.display()
                ));
            }
        }
        let beside = |suffix: &str| {
            let mut p = self.inputs[0].clone().into_os_string();
            p.push(suffix);
            PathBuf::from(p)
        };
        Ok(Config {
            names: self
                .inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            checkpoint: self
                .checkpoint
                .unwrap_or_else(|| beside(".badgepulse-import.checkpoint")),
            // A dry run never overwrites the rejects file of an import.
            rejects: self.rejects.unwrap_or_else(|| {
                beside(if self.dry_run {
                    ".dry-run.rejects.csv"
                } else {
                    ".rejects.csv"
                })
            }),
            inputs,
            url: self.url,
            token,
            org: self.org,
            batch_size: self.batch_size,
            concurrency: self.concurrency,
            tags_as_attributes: self.tags_as_attributes,
            fresh: self.fresh,
            dry_run: self.dry_run,
            timeout: Duration::from_secs(self.timeout_secs),
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let terminal = std::io::stderr().is_terminal();
    let bar = if terminal {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(LogWriter(bar.clone()))
        .with_ansi(terminal)
        .init();
    let config = match Cli::parse().config() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    match run::run(config, bar, terminal).await {
        Ok(report) => {
            summary(&report);
            match &report.end {
                End::Fatal(e) => {
                    tracing::error!(checkpoint = %report.checkpoint.display(), "{e}");
                    ExitCode::from(2)
                }
                End::Interrupted => ExitCode::from(130),
                End::Complete | End::AlreadyComplete | End::Checked
                    if report.counts.rejected > 0 =>
                {
                    ExitCode::from(1)
                }
                End::Complete | End::AlreadyComplete | End::Checked => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(2)
        }
    }
}

/// The summary line on stdout: the whole import's counts, this run's time
/// and rate.
fn summary(r: &Report) {
    let state = match r.end {
        End::Complete => "complete",
        End::AlreadyComplete => "already complete (per the checkpoint; --fresh sends again)",
        End::Checked => "checked (dry run, nothing sent)",
        End::Interrupted => "interrupted (run again to continue)",
        End::Fatal(_) => "stopped (run again to continue once fixed)",
    };
    let secs = r.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        r.done_now as f64 / secs
    } else {
        0.0
    };
    let c = r.counts;
    let mut line = format!(
        "badgepulse-import: {state}: read {}, sent {}, accepted {}, duplicates {}, rejected {}; {:.1} s, {:.0} records/s",
        c.read, c.sent, c.accepted, c.duplicates, c.rejected, secs, rate
    );
    if c.rejected > 0 {
        line.push_str(&format!("; rejects in {}", r.rejects.display()));
    }
    let _ = writeln!(std::io::stdout(), "{line}");
}
