//! Shutdown: one token, cancelled on SIGTERM or Ctrl-C, that every loop of
//! a service `select!`s on (mini-redis `shutdown.rs`).

use tokio_util::sync::CancellationToken;

/// A token cancelled when the process receives SIGTERM or Ctrl-C.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutdown requested");
        cancel.cancel();
    });
    token
}

/// Runs `attempt` until it succeeds, every `pause`, logging each failure
/// as "`what` failed"; `None` once `shutdown` is cancelled. For a
/// dependency that may still be starting (ClickHouse answering, a NATS
/// cluster electing its JetStream leader).
pub async fn retry_until_shutdown<T, E, F, Fut>(
    what: &str,
    pause: std::time::Duration,
    shutdown: &CancellationToken,
    mut attempt: F,
) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    loop {
        match attempt().await {
            Ok(value) => return Some(value),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?pause, "{what} failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}
