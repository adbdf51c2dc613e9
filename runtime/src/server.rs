//! The HTTP server loop of ingest and the exporter: hyper's HTTP/1.1 with
//! the limits that `axum::serve` does not expose, so that slow or oversized
//! clients cannot hold a server (issue 8).
//!
//! - A connection that has neither started a request nor finished a
//!   response for `header_read_timeout`, and has none in flight, is
//!   closed. A per-connection watchdog checks this every
//!   `header_read_timeout`, so:
//!   - a new connection whose first header block has not arrived after
//!     `header_read_timeout` (a slowloris client, one header byte at a
//!     time) is closed then;
//!   - a kept-alive connection is closed after `header_read_timeout` to
//!     twice that without a new request, whether it is idle or dripping a
//!     header block;
//!   - a request is never cut while its handler runs or its response
//!     body is being written, however slow the client reads.
//!
//!   (hyper's own `header_read_timeout` arms and cancels a timer for every
//!   request, which cost ingest's pixel path 13 % of its throughput; the
//!   watchdog's one timer per connection costs nothing per request.)
//! - The header block, request line included, may be at most
//!   [`MAX_HEADER_BYTES`]: beyond it the answer is `431` and the connection
//!   is closed, whatever arrived so far is dropped.
//! - Every connection has its own task: open slow connections never hold up
//!   the accept loop or other clients. The task runs on the caller's
//!   runtime, or ([`Threads::Dedicated`]) on one of several threads that
//!   each run their own single-threaded runtime, nginx's worker model:
//!   ingest's pixel path spends about a sixth less CPU per request when no
//!   request wakes a second thread.
//! - Shutdown is `axum::serve(..).with_graceful_shutdown`'s: no new
//!   connections, idle ones closed, in-flight requests answered, then
//!   return. A half-sent header block holds shutdown until its watchdog
//!   closes it.
//!
//! Every request carries `ConnectInfo<SocketAddr>` (the peer), as
//! `into_make_service_with_connect_info::<SocketAddr>()` would add it.
//!
//! Bodies are the handlers' business: ingest and the exporter read theirs
//! within the same timeout and answer `408` after it.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
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

/// Which threads run the connections of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// The runtime that calls [`serve`]: handlers may take turns across
    /// its worker threads (the exporter's slow queries and chart drawing
    /// need that).
    Runtime,
    /// This many threads, each with its own single-threaded runtime; a
    /// connection stays on the thread it was handed to (round robin), so
    /// a request never wakes another thread. For many short requests
    /// (ingest's pixels); see `ARCHITECTURE.md`.
    Dedicated(usize),
}

/// The cores this process may use (cgroup CPU quotas included).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish and returns. Fails only when the threads of
/// [`Threads::Dedicated`] cannot be started.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
    threads: Threads,
) -> io::Result<()> {
    let mut builder = http1::Builder::new();
    builder.max_header_size(MAX_HEADER_BYTES);
    let connections = Connections {
        router,
        builder,
        header_read_timeout,
        stop: CancellationToken::new(),
    };
    let stop = connections.stop.clone();
    let mut shutdown = std::pin::pin!(shutdown);
    match threads {
        Threads::Runtime => {
            let mut open = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            open.spawn(connections.clone().serve(stream, peer));
                        }
                        Err(e) => accept_error(e).await,
                    },
                    Some(_) = open.join_next(), if !open.is_empty() => {}
                    () = &mut shutdown => break,
                }
            }
            drop(listener);
            tracing::debug!(
                connections = open.len(),
                "no longer accepting; waiting for open connections"
            );
            stop.cancel();
            while open.join_next().await.is_some() {}
        }
        Threads::Dedicated(n) => {
            let shards = (0..n.max(1))
                .map(|i| Shard::start(i, connections.clone()))
                .collect::<io::Result<Vec<_>>>()?;
            drop(connections);
            let mut next = 0;
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
                // Off this runtime's reactor, onto the shard's.
                match stream.into_std() {
                    Ok(stream) => {
                        let _ = shards[next].incoming.send((stream, peer));
                        next = (next + 1) % shards.len();
                    }
                    Err(e) => tracing::debug!(error = %e, "could not hand over a connection"),
                }
            }
            drop(listener);
            tracing::debug!("no longer accepting; waiting for open connections");
            stop.cancel();
            for shard in shards {
                shard.finish().await;
            }
        }
    }
    Ok(())
}

/// A connection as accepted, on its way to a shard.
type Accepted = (std::net::TcpStream, SocketAddr);

/// A thread of [`Threads::Dedicated`] and the way to hand it connections.
struct Shard {
    incoming: tokio::sync::mpsc::UnboundedSender<Accepted>,
    /// Sent when the thread's connections are all closed and its runtime,
    /// with every clone of the router, is dropped.
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Shard {
    fn start(index: usize, connections: Connections) -> io::Result<Self> {
        let (incoming, mut handed) = tokio::sync::mpsc::unbounded_channel::<Accepted>();
        let (finished, done) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("http-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let mut open = JoinSet::new();
                    loop {
                        tokio::select! {
                            next = handed.recv() => match next {
                                Some((stream, peer)) => match TcpStream::from_std(stream) {
                                    Ok(stream) => {
                                        open.spawn(connections.clone().serve(stream, peer));
                                    }
                                    Err(e) => tracing::debug!(error = %e, "could not take over a connection"),
                                },
                                None => break,
                            },
                            Some(_) = open.join_next(), if !open.is_empty() => {}
                        }
                    }
                    drop(connections);
                    while open.join_next().await.is_some() {}
                });
                drop(runtime);
                let _ = finished.send(());
            })?;
        Ok(Shard { incoming, done })
    }

    /// Closes the shard's intake and waits until its connections are done.
    async fn finish(self) {
        drop(self.incoming);
        let _ = self.done.await;
    }
}

/// What every connection is served with.
#[derive(Clone)]
struct Connections {
    router: Router,
    builder: http1::Builder,
    header_read_timeout: Duration,
    /// Cancelled at shutdown: each connection finishes the request in
    /// flight, if any, and closes.
    stop: CancellationToken,
}

impl Connections {
    /// Serves one connection until the client closes it, its watchdog
    /// closes it, or shutdown does once no request is in flight.
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        // As nginx's `tcp_nodelay`: a response is one write, sent at once.
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let seen = activity.clone();
        let router = self.router;
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            let in_flight = InFlight::start(&seen);
            let response = router.clone().call(req);
            async move {
                let response = response.await?;
                Ok::<_, Infallible>(response.map(|body| Tracked {
                    body,
                    _in_flight: in_flight,
                }))
            }
        });
        let connection = self.builder.serve_connection(TokioIo::new(stream), service);
        let mut connection = std::pin::pin!(connection);
        let watchdog = watchdog(&activity, self.header_read_timeout);
        let mut watchdog = std::pin::pin!(watchdog);
        let mut stopping = false;
        loop {
            tokio::select! {
                closed = connection.as_mut() => {
                    if let Err(e) = closed {
                        // Oversized headers, resets: the client's doing.
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                    return;
                }
                () = &mut watchdog => {
                    tracing::debug!("closed a connection without a request for the header read timeout");
                    return;
                }
                () = self.stop.cancelled(), if !stopping => {
                    // As hyper's GracefulShutdown: an idle connection
                    // closes now, a busy one after its response.
                    connection.as_mut().graceful_shutdown();
                    stopping = true;
                }
            }
        }
    }
}

/// What a connection's watchdog sees of it.
#[derive(Default)]
struct Activity {
    /// Requests started plus responses finished.
    events: AtomicU64,
    /// Requests whose response body hyper has not yet written or dropped.
    in_flight: AtomicUsize,
}

/// One request, from its start until its response body is gone.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.events.fetch_add(1, Ordering::Relaxed);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.events.fetch_add(1, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request in flight until hyper has
/// written it (or dropped it on a closed connection).
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    /// Never early: a body that says it has ended once its last frame is
    /// taken is dropped while hyper still writes that frame, which would
    /// leave a slow reader's response unguarded. hyper polls again once
    /// its write buffer has drained, and the inner body's `None` ends it.
    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Returns once a whole `period` has passed with no request started, no
/// response finished and none in flight: every `period`, from the
/// connection's start.
async fn watchdog(activity: &Activity, period: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = activity.events.load(Ordering::Relaxed);
    loop {
        ticks.tick().await;
        let now = activity.events.load(Ordering::Relaxed);
        if now == seen && activity.in_flight.load(Ordering::Relaxed) == 0 {
            return;
        }
        seen = now;
    }
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(400);
    /// A body far larger than the loopback socket buffers, so that hyper is
    /// still writing it while the client does not read.
    const BIG: usize = 48 << 20;

    async fn server() -> SocketAddr {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/small", get(|| async { "ok" }))
            .route("/big", get(|| async { vec![b'x'; BIG] }));
        tokio::spawn(serve(
            listener,
            router,
            TIMEOUT,
            std::future::pending(),
            Threads::Runtime,
        ));
        addr
    }

    /// Reads until the server closes; the bytes read.
    async fn read_to_close(s: &mut TcpStream) -> usize {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    }

    /// The body of a `Connection: close` GET of `path`.
    async fn get_body(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
    }

    /// Serves a router that names the serving thread and has a slow route;
    /// shuts down while a slow request is in flight: it is still answered,
    /// then `serve` returns and no new connection is taken.
    async fn serve_and_shut_down(threads: Threads) -> Vec<String> {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route(
                "/thread",
                get(|| async { std::thread::current().name().unwrap_or("").to_string() }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "done"
                }),
            );
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            router,
            TIMEOUT,
            stop.clone().cancelled_owned(),
            threads,
        ));
        let mut names = Vec::new();
        for _ in 0..4 {
            names.push(get_body(addr, "/thread").await);
        }
        let slow = tokio::spawn(get_body(addr, "/slow"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.cancel();
        assert_eq!(slow.await.unwrap(), "done", "{threads:?}");
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("serve returns once the in-flight request is answered")
            .unwrap()
            .unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "{threads:?}");
        names
    }

    #[tokio::test]
    async fn dedicated_threads_take_connections_in_turn_and_shut_down_gracefully() {
        let names = serve_and_shut_down(Threads::Dedicated(3)).await;
        assert_eq!(names, ["http-0", "http-1", "http-2", "http-0"]);
    }

    #[tokio::test]
    async fn the_runtime_serves_and_shuts_down_gracefully() {
        let names = serve_and_shut_down(Threads::Runtime).await;
        assert!(names.iter().all(|n| !n.starts_with("http-")), "{names:?}");
    }

    #[tokio::test]
    async fn a_slowly_read_response_is_not_cut() {
        let addr = server().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0u8; 1024];
        s.read_exact(&mut first).await.unwrap();
        // Not reading for several watchdog periods: the body is in flight.
        tokio::time::sleep(TIMEOUT * 5).await;
        let total = first.len() + read_to_close(&mut s).await;
        assert!(total > BIG, "read {total} bytes of a {BIG}-byte body");
    }

    #[tokio::test]
    async fn idle_and_slow_connections_are_closed_after_the_timeout() {
        let addr = server().await;
        // A kept-alive connection after one answer: closed after one to two
        // periods without a request.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 64];
        let n = idle.read(&mut answer).await.unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
        let answered = Instant::now();
        read_to_close(&mut idle).await;
        let idle_for = answered.elapsed();
        assert!(
            idle_for >= TIMEOUT && idle_for <= TIMEOUT * 2 + Duration::from_millis(300),
            "idle connection closed after {idle_for:?}"
        );
        // A header block that never completes on a new connection: closed
        // one period after the connection began, bytes still dripping.
        let started = Instant::now();
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /small HTTP/1.1\r\nX-A: ")
            .await
            .unwrap();
        let drip = async {
            loop {
                tokio::time::sleep(TIMEOUT / 8).await;
                if slow.write_all(b"a").await.is_err() {
                    break;
                }
            }
        };
        let closed = tokio::time::timeout(TIMEOUT * 4, drip).await;
        let open_for = started.elapsed();
        assert!(closed.is_ok(), "a dripping header block was kept open");
        assert!(
            open_for >= TIMEOUT && open_for <= TIMEOUT + Duration::from_millis(500),
            "slow connection closed after {open_for:?}"
        );
    }
}
