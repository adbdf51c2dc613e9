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
