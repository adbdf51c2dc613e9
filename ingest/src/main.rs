//! badgepulse-ingest: receives badge pixels, share beacons and platform
//! events, validates them and publishes them durably to NATS JetStream.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use badgepulse_contract::signing::{embed_snippet, pixel_url, PixelIds};
use badgepulse_contract::subject;
use badgepulse_runtime::settings::ConfigFile;
use badgepulse_runtime::{logging, ops, server, signals};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use badgepulse_ingest::beacons::{salt, Beacons};
use badgepulse_ingest::config::Config;
use badgepulse_ingest::http;
use badgepulse_ingest::metrics::Metrics;
use badgepulse_ingest::platform::Platform;
use badgepulse_ingest::publish::{self, BatcherConfig};

#[derive(Parser)]
#[command(name = "badgepulse-ingest", version, about)]
struct Cli {
    #[command(flatten)]
    config: ConfigFile,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Run,
    /// Print a signed view-pixel URL and the HTML snippet for a badge page.
    SignUrl {
        #[arg(long)]
        org: String,
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        badge_class: String,
        #[arg(long)]
        assertion: String,
        /// Key id from `[ingest.pixel_keys]`; default: the first one.
        #[arg(long)]
        kid: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.path())?;
    logging::init(&config.log).map_err(anyhow::Error::msg)?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(config).await,
        Command::SignUrl {
            org,
            issuer,
            badge_class,
            assertion,
            kid,
        } => {
            let (kid, key) = match kid {
                Some(k) => {
                    let key = config
                        .ingest
                        .pixel_keys
                        .get(&k)
                        .with_context(|| format!("no pixel key {k:?} in ingest.pixel_keys"))?;
                    (k, key.clone())
                }
                None => config
                    .ingest
                    .pixel_keys
                    .iter()
                    .next()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .context("ingest.pixel_keys is empty: configure a key first")?,
            };
            let ids = PixelIds {
                org_id: &org,
                issuer_id: &issuer,
                badge_class_id: &badge_class,
                assertion_id: &assertion,
            };
            for (field, v) in [
                ("--org", &org),
                ("--issuer", &issuer),
                ("--badge-class", &badge_class),
                ("--assertion", &assertion),
            ] {
                badgepulse_contract::event::check_id(field, v)?;
            }
            let base = &config.ingest.public_url;
            let out = format!(
                "{}\n{}\n",
                pixel_url(base, &kid, key.as_bytes(), &ids),
                embed_snippet(base, &kid, key.as_bytes(), &ids)
            );
            // A reader that stops early (`sign-url | head -1`) is not an error.
            match std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                written => Ok(written?),
            }
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let shutdown = signals::shutdown_token();

    let nats = async_nats::ConnectOptions::new()
        .name("badgepulse-ingest")
        .retry_on_initial_connect()
        .connect(config.nats.server_addrs().map_err(anyhow::Error::msg)?)
        .await
        .with_context(|| format!("connecting to NATS at {}", config.nats.url))?;
    let jetstream = async_nats::jetstream::new(nats.clone());
    // The stream may not be creatable yet (NATS still starting): keep trying
    // in the background; /readyz reports it.
    {
        let js = jetstream.clone();
        let nats_config = config.nats.clone();
        tokio::spawn(async move {
            loop {
                match js
                    .get_or_create_stream(subject::stream_config(subject::StreamLayout::new(
                        nats_config.replicas,
                        nats_config.duplicate_window_secs,
                    )))
                    .await
                {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "creating stream {}; retrying", subject::STREAM);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    let give_up = CancellationToken::new();
    let (queue, batcher) = publish::spawn_batcher(
        jetstream.clone(),
        BatcherConfig {
            capacity: config.ingest.buffer_capacity,
            max_beacons: config.ingest.batch_max_beacons,
            max_delay: Duration::from_millis(config.ingest.batch_max_delay_ms),
            max_inflight: config.ingest.max_inflight_batches,
            partitions: config.nats.partitions,
            duplicate_window: Duration::from_secs(config.nats.duplicate_window_secs),
        },
        metrics.clone(),
        give_up.clone(),
    );
    let salts = salt::Salts::new(
        jetstream.clone(),
        config.nats.replicas,
        metrics.salt_fallbacks.clone(),
    );
    let beacons = Beacons::new(config.ingest.clone(), salts, queue, metrics.clone());
    let platform = Platform::new(
        &config.ingest.tokens,
        jetstream.clone(),
        config.nats.partitions,
        Duration::from_millis(config.ingest.publish_timeout_ms),
        metrics.clone(),
    );
    let state = Arc::new(http::AppState::new(
        &config.ingest,
        beacons,
        platform,
        metrics.clone(),
    ));
    let listener = server::bind(config.ingest.bind)
        .with_context(|| format!("binding ingest.bind {}", config.ingest.bind))?;
    let header_read_timeout = Duration::from_secs(config.ingest.header_read_timeout_secs);
    // The admin listener outlives the public one: it reports the drain.
    let admin_shutdown = CancellationToken::new();
    let admin = {
        // Not the app state: the drain waits for its beacon queue to close.
        let (nats, jetstream, metrics) = (nats.clone(), jetstream.clone(), metrics.clone());
        ops::spawn(
            "ingest.admin_bind",
            config.ingest.admin_bind,
            ops::router(
                move || {
                    let (nats, jetstream) = (nats.clone(), jetstream.clone());
                    async move { publish::ready(&nats, &jetstream).await }
                },
                move || metrics.render(),
            ),
            header_read_timeout,
            admin_shutdown.clone().cancelled_owned(),
        )
        .map_err(anyhow::Error::msg)?
    };
    tracing::info!(bind = %config.ingest.bind, admin = %config.ingest.admin_bind, "ingest listening");
    // Requests carry ConnectInfo<SocketAddr>: handlers key beacons by the peer.
    server::serve(
        listener,
        http::router(state.clone()),
        header_read_timeout,
        shutdown.cancelled(),
        // Pixels are many short requests: threads that each keep their
        // connections wake no other thread per request.
        server::Threads::Dedicated(config.ingest.http_threads()),
    )
    .await
    .context("starting the HTTP server")?;

    // Drain: no more requests; publish what is buffered, within the deadline.
    tracing::info!("draining buffered beacons");
    drop(state);
    let drain = Duration::from_secs(config.ingest.drain_timeout_secs);
    let deadline = tokio::spawn(async move {
        tokio::time::sleep(drain).await;
        give_up.cancel();
    });
    batcher.await?;
    deadline.abort();
    // Bounded: with NATS gone, a flush would wait for it forever.
    let _ = tokio::time::timeout(Duration::from_secs(5), nats.flush()).await;
    admin_shutdown.cancel();
    admin.await??;
    tracing::info!("ingest stopped");
    Ok(())
}
