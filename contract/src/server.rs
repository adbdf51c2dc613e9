//! The HTTP server loop of ingest and the exporter: hyper's HTTP/1.1 with
//! the limits that `axum::serve` does not expose, so that slow or oversized
//! clients cannot hold a server (issue 8).
//!
//! - A request's header block must have arrived `header_read_timeout` after
//!   the server began waiting for it, or the connection is closed. The wait
//!   begins when a connection is accepted and again after each response on
//!   a kept-alive connection, so slowloris clients (headers one byte at a
//!   time) and idle keep-alive connections are both closed after it.
//! - The header block, request line included, may be at most
//!   [`MAX_HEADER_BYTES`]: beyond it the answer is `431` and the connection
//!   is closed, whatever arrived so far is dropped.
//! - Every connection has its own task: open slow connections never hold up
//!   the accept loop or other clients.
//! - Shutdown is `axum::serve(..).with_graceful_shutdown`'s: no new
//!   connections, idle ones closed, in-flight requests answered, then
//!   return. A half-sent header block holds shutdown for at most
//!   `header_read_timeout`.
//!
//! Every request carries `ConnectInfo<SocketAddr>` (the peer), as
//! `into_make_service_with_connect_info::<SocketAddr>()` would add it.
//!
//! Bodies are the handlers' business: ingest and the exporter read theirs
//! within the same timeout and answer `408` after it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower_service::Service;

/// Largest request header block accepted, request line included, bytes.
/// Browsers send a few kB; pixel URLs and `Referer`s of several kB must
/// still pass.
pub const MAX_HEADER_BYTES: usize = 32 << 10;

/// Default of the `header_read_timeout_secs` keys: how long a client has to
/// send a request's headers, seconds.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;

/// Longest `header_read_timeout_secs` that `validate()` accepts, seconds.
pub const MAX_HEADER_READ_TIMEOUT_SECS: u64 = 300;

/// Checks a `<section>.header_read_timeout_secs` value; the error names `key`.
pub fn validate_header_read_timeout(key: &str, secs: u64) -> Result<(), String> {
    if secs == 0 || secs > MAX_HEADER_READ_TIMEOUT_SECS {
        return Err(format!(
            "{key} must be between 1 and {MAX_HEADER_READ_TIMEOUT_SECS}"
        ));
    }
    Ok(())
}

/// Pending connections the kernel queues for [`bind`]'s listener (the
/// standard library asks for 128; a burst of slow clients can fill that).
/// The kernel caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with a [`LISTEN_BACKLOG`]-deep accept queue.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's bind does, so a restarted server can take its port at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES);
    let connections = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            router.clone().call(req)
        });
        let connection = connections.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Timeouts, oversized headers, resets: the client's doing.
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    tracing::debug!(
        connections = connections.count(),
        "no longer accepting; waiting for open connections"
    );
    connections.shutdown().await;
}

/// As `axum::serve`: errors of one connection are skipped; others (such as
/// running out of file descriptors) are logged and retried after a second,
/// rather than spinning.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
