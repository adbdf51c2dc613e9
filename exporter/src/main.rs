//! badgepulse-exporter: serves badge analytics from ClickHouse. Wiring
//! only: the logic lives in the `badgepulse_exporter` library.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use badgepulse_contract::tables::{rollup_count, rollup_states, scope_measures, DIMENSIONS};
use badgepulse_exporter::analytics::{Analytics, Settings};
use badgepulse_exporter::business_metrics;
use badgepulse_exporter::config::Config;
use badgepulse_exporter::db::samples::sample_queries;
use badgepulse_exporter::db::store::{self, Store};
use badgepulse_exporter::freshness::cache::QueryCache;
use badgepulse_exporter::freshness::change_feed::ChangeFeed;
use badgepulse_exporter::freshness::kept_answers::{KeptAnswers, KeptSettings};
use badgepulse_exporter::freshness::reader::Reader;
use badgepulse_exporter::http::auth::ApiKeys;
use badgepulse_exporter::http::{self, AppState};
use badgepulse_exporter::model::benchmark::Rules;
use badgepulse_exporter::model::measures::DERIVED;
use badgepulse_exporter::telemetry::Metrics;
use badgepulse_runtime::keys::hash_key;
use badgepulse_runtime::settings::ConfigFile;
use badgepulse_runtime::{logging, ops, server, signals};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "badgepulse-exporter", version, about)]
struct Cli {
    #[command(flatten)]
    config: ConfigFile,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and /metrics (the default).
    Run,
    /// Read API keys from stdin, one a line, and print the SHA-256 to put
    /// in `[[exporter.api_keys]] sha256`.
    HashKey,
    /// Print every SQL statement the exporter can issue (with sample
    /// parameters), each preceded by `-- name` and followed by a `;` line.
    PrintQueries,
    /// Print the SPEC §7 measures as ClickHouse SQL (JSON): the derived
    /// measures over count columns named `{p}NAME`, the counts over rollup
    /// states with `{c}` for an extra condition. `grafana/generate.py`
    /// builds the dashboards from it (grafana/measures.json).
    PrintMeasures,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let load = || -> anyhow::Result<Config> {
        let config = Config::load(cli.config.path())?;
        logging::init(&config.log).map_err(anyhow::Error::msg)?;
        Ok(config)
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::HashKey => {
            logging::init_default().map_err(anyhow::Error::msg)?;
            let mut out = std::io::stdout().lock();
            for line in std::io::stdin().lock().lines() {
                let line = line.context("reading stdin")?;
                if !line.is_empty() {
                    print_or_stop(writeln!(out, "{}", hash_key(&line)))?;
                }
            }
            Ok(())
        }
        Command::PrintQueries => {
            let config = load()?;
            let mut out = std::io::stdout().lock();
            for (name, query) in sample_queries(&store::client(&config.clickhouse)) {
                if !print_or_stop(writeln!(out, "-- {name}\n{}\n;", query.sql_display()))? {
                    break;
                }
            }
            Ok(())
        }
        Command::PrintMeasures => {
            logging::init_default().map_err(anyhow::Error::msg)?;
            let mut out = std::io::stdout().lock();
            print_or_stop(writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&measures_json())?
            ))?;
            Ok(())
        }
        Command::Run => run(load()?).await,
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let e = &config.exporter;
    let metrics = Metrics::new();
    let store = Store::new(
        store::client(&config.clickhouse),
        metrics.clone(),
        Duration::from_secs(e.query_timeout_secs),
    );
    let keys = ApiKeys::from_config(&e.api_keys).map_err(anyhow::Error::msg)?;
    if e.api_keys.is_empty() {
        tracing::warn!(
            "no [[exporter.api_keys]] configured: every /api/v1 request will be refused"
        );
    }
    let shutdown = signals::shutdown_token();
    let settings = Settings::from_config(e);
    let (analytics, feed_task) = if e.cache_max_bytes == 0 {
        tracing::info!("result cache off (exporter.cache_max_bytes = 0)");
        (Analytics::new(Reader::new(store.clone()), settings), None)
    } else {
        let cache = Arc::new(QueryCache::new(
            e.cache_max_bytes,
            Duration::from_secs(e.cache_max_age_secs),
            metrics.clone(),
        ));
        let replica_grace = (!config.clickhouse.cluster.is_empty()
            && e.cache_replica_grace_secs > 0)
            .then(|| Duration::from_secs(e.cache_replica_grace_secs));
        let (feed, task) = ChangeFeed::follow(
            &config.nats,
            cache.clone(),
            metrics.clone(),
            replica_grace,
            shutdown.clone(),
        )
        .await
        .with_context(|| format!("following change notices at {}", config.nats.url))?;
        let kept = KeptAnswers::start(
            cache.clone(),
            KeptSettings {
                max_staleness: Duration::from_millis(e.cache_max_staleness_ms),
                live_window: Duration::from_secs(e.cache_live_window_secs),
                keep_warm: Duration::from_secs(e.cache_keep_warm_secs),
                refresh_concurrency: e.cache_refresh_concurrency,
            },
            metrics.clone(),
        );
        let reader = Reader::new(store.clone()).with_cache(cache, feed);
        (
            Analytics::new(reader, settings).with_kept_answers(kept),
            Some(task),
        )
    };

    let refresher = tokio::spawn(business_metrics::refresh_loop(
        store.clone(),
        metrics.clone(),
        Duration::from_secs(e.refresh_interval_secs),
        e.max_label_orgs,
        e.max_label_issuers,
        Rules {
            min_awarded: e.min_awarded,
            min_peers: e.benchmark_min_peers,
        },
        shutdown.clone(),
    ));

    let listener =
        server::bind(e.bind).with_context(|| format!("binding exporter.bind {}", e.bind))?;
    let header_read_timeout = Duration::from_secs(e.header_read_timeout_secs);
    let admin = {
        let (ready, rendered) = (store.clone(), metrics.clone());
        ops::spawn(
            "exporter.admin_bind",
            e.admin_bind,
            ops::router(
                move || {
                    let store = ready.clone();
                    async move { store.ready().await.map_err(|e| e.to_string()) }
                },
                move || rendered.render(),
            ),
            header_read_timeout,
            shutdown.clone().cancelled_owned(),
        )
        .map_err(anyhow::Error::msg)?
    };
    let state = Arc::new(AppState {
        analytics,
        keys,
        metrics,
        body_timeout: header_read_timeout,
    });
    tracing::info!(bind = %e.bind, admin = %e.admin_bind, database = %config.clickhouse.database, "exporter running");
    server::serve(
        listener,
        http::router(state),
        header_read_timeout,
        shutdown.cancelled(),
        // Queries and chart drawing take turns across the worker threads.
        server::Threads::Runtime,
    )
    .await
    .context("starting the HTTP server")?;
    shutdown.cancel();
    admin.await??;
    refresher.await?;
    if let Some(task) = feed_task {
        task.await?;
    }
    tracing::info!("exporter stopped");
    Ok(())
}

/// The measures as SQL templates, `[name, sql]` pairs in SPEC §7 order.
fn measures_json() -> serde_json::Value {
    let derived: Vec<(&str, String)> = DERIVED
        .iter()
        .map(|(name, expr)| (*name, expr.sql(&|count: &str| format!("{{p}}{count}"))))
        .collect();
    // `…Merge(col)` as `…MergeIf(col, 1{c})`: `{c}` is an extra
    // condition (` AND cur`) or nothing.
    let measures = scope_measures();
    let counts: Vec<(&str, String)> = measures
        .iter()
        .filter(|(name, _, _)| *name != "classes")
        .map(|(name, _, merge)| {
            let conditional = merge
                .replacen("Merge", "MergeIf", 1)
                .replace(&format!("({name})"), &format!("({name}, 1{{c}})"));
            (*name, conditional)
        })
        .collect();
    // The same states computed from `events` rows, for raw pieces.
    let states: Vec<(&str, &str)> = measures
        .iter()
        .map(|(name, state, _)| (*name, state.as_str()))
        .collect();
    // Per distribution dimension: the `events` value, the event type that
    // carries it, the rollup states computed from `events` and the count
    // merged from them.
    let distributions: Vec<serde_json::Value> = DIMENSIONS
        .iter()
        .map(|(name, _, value, event_type)| {
            let is_award_method = if *name == "award_method" { "1" } else { "0" };
            serde_json::json!({
                "dimension": name,
                "value": value,
                "event_type": event_type,
                "states": rollup_states(is_award_method),
                "count": rollup_count(name),
            })
        })
        .collect();
    serde_json::json!({
        "counts": counts,
        "states": states,
        "derived": derived,
        "distributions": distributions,
    })
}

/// `Ok(true)` if written, `Ok(false)` if the reader went away (`| head`).
fn print_or_stop(r: std::io::Result<()>) -> anyhow::Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing stdout"),
    }
}
