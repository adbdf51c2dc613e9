//! `badgepulse-loadgen`: the command line over the library. Parses
//! arguments, makes the plan, sends it, writes the ledger and prints a
//! summary. Exits non-zero, naming the cause, when ingest did not take the
//! traffic as a correct ingest would.

use std::path::PathBuf;

use anyhow::Context;
use badgepulse_loadgen::{is_valid_run, plan_run, send, Ledger, Pipeline, Target, MAX_SCALE};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "badgepulse-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate seeded badge traffic, send it to ingest and write the ledger
    /// of what the pipeline must report for it.
    Demo(DemoArgs),
    /// Compare a running pipeline with a ledger written by `demo`: every
    /// org's all-time KPIs from the exporter and, with --clickhouse, the
    /// rows of `events` by type. Exits non-zero listing every difference.
    Check(CheckArgs),
}

#[derive(clap::Args)]
struct CheckArgs {
    /// The ledger JSON written by `demo --ledger`.
    #[arg(long)]
    ledger: PathBuf,
    /// Base URL of badgepulse-exporter.
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    exporter: String,
    /// API key whose scope covers every org of the ledger.
    #[arg(long)]
    api_key: String,
    /// ClickHouse HTTP URL, to check the `events` table too.
    #[arg(long)]
    clickhouse: Option<String>,
    /// The database with `events`.
    #[arg(long, default_value = "badgepulse")]
    database: String,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Base URL of badgepulse-ingest.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    ingest: String,
    /// Bearer token for POST /v1/events (must be allowed to write every org).
    #[arg(long, required_unless_present = "dry_run")]
    token: Option<String>,
    /// Pixel key id, as in ingest's [ingest.pixel_keys].
    #[arg(long, default_value = "k1")]
    kid: String,
    /// The pixel key named by --kid.
    #[arg(long, required_unless_present = "dry_run")]
    key: Option<String>,
    /// Seed of the generator: the same seed gives the same traffic.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Name of this run (up to 20 letters and digits): its orgs are named
    /// `<org>-<run>` and its event ids carry it, so that a run adds fresh
    /// orgs beside those of earlier runs and its ledger describes exactly
    /// them (`scripts/demo.sh` names each run by its start time).
    #[arg(long, default_value = "", value_parser = run_name)]
    run: String,
    /// Multiplies the number of assertions (1 gives a few thousand events).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SCALE)))]
    scale: u32,
    /// Platform events are spread over this many days before now.
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// Write the ledger (expected numbers) to this JSON file.
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// Start at most this many requests per second (a steady rate);
    /// default: as fast as --concurrency allows.
    #[arg(long)]
    rate: Option<f64>,
    /// Base URL of ingest's admin listener, whose /metrics counters are
    /// compared with the ledger.
    #[arg(long, default_value = "http://127.0.0.1:8083")]
    ingest_admin: String,
    /// Do not compare ingest's /metrics counters with the ledger (needed
    /// when other traffic reaches the same ingest).
    #[arg(long)]
    no_metrics_check: bool,
    /// Only make the plan and write the ledger; send nothing.
    #[arg(long)]
    dry_run: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = match Cli::parse().command {
        Command::Demo(args) => args,
        Command::Check(args) => return check(args).await,
    };
    let plan = plan_run(
        args.seed,
        args.scale,
        chrono::Utc::now(),
        args.days,
        &args.run,
    );
    let t = &plan.ledger.traffic;
    if !args.dry_run {
        let target = Target {
            ingest: args.ingest.clone(),
            token: args.token.clone().expect("required by clap"),
            kid: args.kid.clone(),
            key: args.key.clone().expect("required by clap"),
            concurrency: args.concurrency as usize,
            metrics: (!args.no_metrics_check).then(|| args.ingest_admin.clone()),
            rate: args.rate,
        };
        let report = send(&plan, &target)
            .await
            .with_context(|| format!("sending seed {} to {}", args.seed, args.ingest))?;
        // The summary is this tool's output, not a log line.
        println!(
            "sent {} platform events in {} requests: {} accepted, {} duplicates ({} resent on purpose), 0 rejected",
            report.events_sent,
            report.event_requests,
            report.events_accepted,
            report.events_duplicates,
            t.duplicates_resent
        );
        println!(
            "sent {} view pixels, {} view beacons, {} share pixels, {} share beacons; {} of them bots",
            report.view_pixels, report.view_posts, report.share_pixels, report.share_posts, report.bot_hits
        );
        if report.events_duplicates != t.duplicates_resent {
            println!(
                "note: ingest reported {} duplicates, {} were resent on purpose (events already stored by an earlier run count as duplicates)",
                report.events_duplicates, t.duplicates_resent
            );
        }
        match &report.ingest {
            Some(_) => println!("ingest counters match the ledger"),
            None => println!("ingest counters not checked (--no-metrics-check)"),
        }
        println!("took {:.1}s", report.elapsed_secs);
    }
    let totals = &plan.ledger.totals;
    println!(
        "expected: {} awarded, {} accepted, {} shared, {} shares, {} views, {} unique viewers, {} revoked, {} badge classes",
        totals.awarded,
        totals.accepted,
        totals.shared,
        totals.shares,
        totals.views,
        totals.unique_viewers,
        totals.revoked,
        totals.badge_classes
    );
    if let Some(path) = &args.ledger {
        let json = serde_json::to_vec_pretty(&plan.ledger).expect("the ledger serialises");
        std::fs::write(path, json)
            .with_context(|| format!("writing the ledger to {}", path.display()))?;
        println!("ledger written to {}", path.display());
    }
    Ok(())
}

/// `--run`: letters and digits only (it becomes part of ids).
fn run_name(s: &str) -> Result<String, String> {
    if is_valid_run(s) {
        Ok(s.to_owned())
    } else {
        Err("at most 20 ASCII letters and digits".into())
    }
}

async fn check(args: CheckArgs) -> anyhow::Result<()> {
    let text = std::fs::read(&args.ledger)
        .with_context(|| format!("reading the ledger {}", args.ledger.display()))?;
    let ledger: Ledger = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a ledger", args.ledger.display()))?;
    let pipeline = Pipeline {
        exporter: args.exporter,
        api_key: args.api_key,
        clickhouse: args.clickhouse.map(|url| (url, args.database)),
    };
    let differences = badgepulse_loadgen::check(&ledger, &pipeline).await?;
    if differences.is_empty() {
        println!(
            "the pipeline equals the ledger: {} orgs' all-time KPIs{}",
            ledger.orgs.len(),
            if pipeline.clickhouse.is_some() {
                " and every event type's rows in ClickHouse"
            } else {
                ""
            }
        );
        Ok(())
    } else {
        anyhow::bail!(
            "the pipeline differs from the ledger:\n  - {}",
            differences.join("\n  - ")
        )
    }
}
