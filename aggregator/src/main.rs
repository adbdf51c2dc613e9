//! badgepulse-aggregator: consumes badge events from NATS JetStream and
//! writes raw events and rollups to ClickHouse exactly once.

use std::sync::Arc;

use anyhow::Context;
use badgepulse_contract::subject;
use badgepulse_runtime::settings::ConfigFile;
use badgepulse_runtime::{logging, ops, server, signals};
use clap::{Parser, Subcommand};

use badgepulse_aggregator::config::Config;
use badgepulse_aggregator::consume::{self, PartitionConsumer};
use badgepulse_aggregator::metrics::Metrics;
use badgepulse_aggregator::shards::Shards;
use badgepulse_aggregator::store::Store;
use badgepulse_aggregator::{admin, maintenance};

#[derive(Parser)]
#[command(name = "badgepulse-aggregator", version, about)]
struct Cli {
    #[command(flatten)]
    config: ConfigFile,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Consume and write (the default).
    Run,
    /// Apply pending schema migrations and exit.
    Migrate,
    /// Print every DDL statement of the schema, separated by `;` lines.
    PrintSchema,
    /// Replay the whole stream from its first message into a fresh
    /// database, then exit; point `clickhouse.database` at it to switch.
    Rebuild {
        /// The database to build (must not exist yet).
        #[arg(long)]
        database: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.path())?;
    logging::init(&config.log).map_err(anyhow::Error::msg)?;
    let store = Store::new(&config.clickhouse);
    match cli.command.unwrap_or(Command::Run) {
        Command::PrintSchema => {
            for stmt in store.schema.all_statements() {
                println!("{stmt}\n;");
            }
            Ok(())
        }
        Command::Migrate => {
            let applied = store.migrate().await?;
            tracing::info!(?applied, "schema up to date");
            Ok(())
        }
        Command::Run => run(config, store, false).await,
        Command::Rebuild { database } => {
            let mut config = config;
            let live = config.clickhouse.database.clone();
            config.clickhouse.database = database.clone();
            config.aggregator.consumer_prefix =
                format!("{}-rebuild-{database}", config.aggregator.consumer_prefix);
            config
                .validate()
                .map_err(|e| anyhow::anyhow!("--database: {e}"))?;
            anyhow::ensure!(
                database != live,
                "--database must differ from clickhouse.database ({live})"
            );
            let store = Store::new(&config.clickhouse);
            anyhow::ensure!(
                !store.database_exists().await?,
                "--database {database}: the database already exists; rebuild needs a fresh one"
            );
            run(config, store, true).await
        }
    }
}

/// Consumes until SIGTERM, or (`rebuild`) until every partition has caught
/// up with the stream, after which the rebuild's consumers are deleted.
async fn run(config: Config, store: Store, rebuild: bool) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let shutdown = signals::shutdown_token();

    // ClickHouse may still be starting, a NATS cluster still electing its
    // JetStream leader: each first step is retried until it answers.
    let retry = std::time::Duration::from_secs(2);
    if signals::retry_until_shutdown("schema migration", retry, &shutdown, || store.migrate())
        .await
        .is_none()
    {
        return Ok(());
    }
    // The node of each partition's shard; a wrong configuration or rows of
    // a partition on another shard stop the aggregator here.
    let shards =
        signals::retry_until_shutdown("finding the ClickHouse shards", retry, &shutdown, || {
            Shards::connect(&config)
        })
        .await;
    let Some(shards) = shards else {
        return Ok(());
    };
    let shards = shards.map_err(anyhow::Error::msg)?;

    let nats = async_nats::ConnectOptions::new()
        .name("badgepulse-aggregator")
        .retry_on_initial_connect()
        .connect(config.nats.server_addrs().map_err(anyhow::Error::msg)?)
        .await
        .with_context(|| format!("connecting to NATS at {}", config.nats.url))?;
    let jetstream = async_nats::jetstream::new(nats.clone());
    let layout =
        subject::StreamLayout::new(config.nats.replicas, config.nats.duplicate_window_secs);
    let stream = signals::retry_until_shutdown(
        "creating the JetStream streams",
        retry,
        &shutdown,
        || async {
            let events = jetstream
                .get_or_create_stream(subject::stream_config(layout))
                .await?;
            jetstream
                .get_or_create_stream(subject::dead_letter_stream_config(layout))
                .await?;
            Ok::<_, async_nats::Error>(events)
        },
    )
    .await;
    let Some(stream) = stream else {
        return Ok(());
    };

    let admin = ops::spawn(
        "aggregator.admin_bind",
        config.aggregator.admin_bind,
        admin::router(metrics.clone(), nats.clone(), shards.nodes().to_vec()),
        std::time::Duration::from_secs(server::DEFAULT_HEADER_READ_TIMEOUT_SECS),
        shutdown.clone().cancelled_owned(),
    )
    .map_err(anyhow::Error::msg)?;

    let batch_lock = Arc::new(tokio::sync::RwLock::new(()));
    let settled = consume::Settled::default();
    let retention = tokio::spawn(maintenance::retention(
        shards.clone(),
        config.aggregator.clone(),
        batch_lock.clone(),
        shutdown.clone(),
    ));
    let compaction = (config.aggregator.compact_interval_secs > 0).then(|| {
        tokio::spawn(maintenance::compaction(
            shards.clone(),
            std::time::Duration::from_secs(config.aggregator.compact_interval_secs),
            config.aggregator.write_timeout(),
            metrics.clone(),
            shutdown.clone(),
        ))
    });
    let sealing = tokio::spawn(maintenance::sealing(
        shards.clone(),
        std::time::Duration::from_secs(config.aggregator.seal_interval_secs),
        config.aggregator.write_timeout(),
        batch_lock.clone(),
        settled.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let mut tasks = Vec::new();
    for partition in config.owned_partitions() {
        let consumer = signals::retry_until_shutdown(
            &format!("opening the consumer of partition {partition}"),
            retry,
            &shutdown,
            || consume::open_consumer(&stream, &config.aggregator, partition),
        )
        .await;
        let Some(consumer) = consumer else {
            return Ok(());
        };
        let mut worker = PartitionConsumer::new(
            partition,
            stream.clone(),
            consumer,
            jetstream.clone(),
            shards.store(partition).clone(),
            config.aggregator.clone(),
            metrics.clone(),
            batch_lock.clone(),
        );
        worker.until_caught_up = rebuild;
        worker.settled = settled.clone();
        tasks.push(tokio::spawn(worker.run(shutdown.clone())));
    }
    tracing::info!(partitions = ?config.owned_partitions(), admin = %config.aggregator.admin_bind, "aggregator running");
    for t in tasks {
        t.await?;
    }
    if rebuild && !shutdown.is_cancelled() {
        for partition in config.owned_partitions() {
            let name = format!("{}-{partition}", config.aggregator.consumer_prefix);
            if let Err(e) = stream.delete_consumer(&name).await {
                tracing::warn!(consumer = name, error = %e, "could not delete the rebuild consumer");
            }
        }
        tracing::info!(database = config.clickhouse.database, "rebuild complete");
    }
    shutdown.cancel();
    admin.await??;
    retention.await?;
    sealing.await?;
    if let Some(compaction) = compaction {
        compaction.await?;
    }
    tracing::info!("aggregator stopped");
    Ok(())
}
