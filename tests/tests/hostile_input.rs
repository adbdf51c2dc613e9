//! Hostile input against the running services (part of issue 8): a corpus
//! of malformed, oversized, deeply nested, wrong-type, wrong-charset and
//! injection inputs for every endpoint of ingest and the exporter. Nothing
//! may crash or answer 5xx, every rejection must name the problem, and
//! nothing may be stored but the one valid event sent alongside.
//!
//! Also hostile clients rather than input: slowloris connections, idle
//! keep-alive connections and oversized header blocks, over raw TCP.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use badgepulse_runtime::server::MAX_HEADER_BYTES;
use badgepulse_tests::{
    eventually, free_port, sha256_hex, start_services, wait_http, ClickHouse, Nats, Service,
    StackConfig, StackPorts,
};
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "hostile-token";
const API_KEY: &str = "hostile-api-key";
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

fn valid_event() -> Value {
    json!({"event_id": "the-only-valid-one", "type": "badge.awarded",
           "occurred_at": (Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true),
           "org_id": "acme", "issuer_id": "i1", "badge_class_id": "b1", "assertion_id": "a1"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_corpus_is_rejected_clearly_and_stores_nothing() {
    let nats = Nats::start().await;
    let ch = ClickHouse::start().await;
    let ports = StackPorts::free();
    let config = StackConfig::new(&nats.url(), &ch.url(), "hostile", ports)
        .pixel_key("k1", "hostile-pixel-key-01234")
        .token(TOKEN, &["acme"])
        .aggregator("flush_interval_ms = 100")
        .api_key(API_KEY, "org:acme")
        .toml();
    let _services = start_services(&config, &ports.all()).await;
    let ingest = format!("http://127.0.0.1:{}", ports.ingest);
    let exporter = format!("http://127.0.0.1:{}", ports.exporter);
    let http = reqwest::Client::new();

    // Pixels: always the GIF, whatever the query or headers.
    let long = "a".repeat(6000);
    let pixel_queries = [
        "".to_owned(),
        "o=%ff%fe&i=%00&b=%&a=%zz".to_owned(),
        "o=acme'%20OR%201=1--&i=i1&b=b1&a=a1&kid=k1&sig=00".to_owned(),
        format!("o={long}&i=i1&b=b1&a=a1&kid=k1&sig=00"),
        "o=acme&o=evil&i=i1&b=b1&a=a1&kid=k1&sig=zz".to_owned(),
        "kid=../../etc/passwd&sig=%0d%0aSet-Cookie:%20x=1".to_owned(),
        "o=%E2%80%AE&i=%F0%9F%98%80&b=b&a=a&kid=k1&sig=".to_owned(),
    ];
    for q in &pixel_queries {
        for path in ["p.gif", "s.gif"] {
            let r = http
                .get(format!("{ingest}/{path}?{q}"))
                .header("User-Agent", BROWSER)
                .header("Referer", format!("https://{long}.example/%00%7f"))
                .header("X-Forwarded-For", "not-an-ip, 999.1.1.1")
                .header("CF-IPCountry", "<script>")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}?{q}");
            assert!(r.headers().get("set-cookie").is_none());
            assert_eq!(r.bytes().await.unwrap().len(), 43);
        }
    }
    // sendBeacon: garbage bodies, always 204.
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for body in [
        "".to_owned(),
        "null".to_owned(),
        "{\"type\":\"view\",\"o\":{\"$gt\":\"\"}}".to_owned(),
        nested.clone(),
        "\u{feff}{\"type\":\"share\"}".to_owned(),
        "x".repeat(100_000),
    ] {
        let r = http
            .post(format!("{ingest}/v1/beacon"))
            .header("User-Agent", BROWSER)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    // Platform events: every malformed body is a 4xx naming the problem;
    // the one valid event beside bad ones is accepted.
    let post = |body: String| {
        http.post(format!("{ingest}/v1/events"))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    for (body, status, mentions) in [
        (nested.clone(), 400, "JSON"),
        ("{\"events\": {}}".to_owned(), 400, "events"),
        ("{\"events\": null}".to_owned(), 400, "events"),
        ("[]".to_owned(), 400, "events"),
        ("\u{0}\u{1}".to_owned(), 400, "JSON"),
        (
            format!("{{\"events\": [{}]}}", vec!["{}"; 1001].join(",")),
            413,
            "1000",
        ),
        (
            format!("{{\"events\": [], \"pad\": \"{}\"}}", "x".repeat(1_100_000)),
            413,
            "bytes",
        ),
    ] {
        let r = post(body).await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains(mentions), "{v}");
    }
    let mut bad: Vec<Value> = vec![
        json!({"event_id": 5, "type": "badge.awarded"}),
        json!({"event_id": "x'); DROP TABLE events; --", "type": "badge.awarded", "occurred_at": "2026-01-01T00:00:00Z", "org_id": "acme", "issuer_id": "i", "badge_class_id": "b", "assertion_id": "a"}),
        json!({"event_id": "e", "type": "badge.awarded", "occurred_at": "2026-01-01T00:00:00Z", "org_id": "acme\u{0}", "issuer_id": "i", "badge_class_id": "b", "assertion_id": "a"}),
        json!({"event_id": "e2", "type": "badge.awarded", "occurred_at": "9999-99-99", "org_id": "acme", "issuer_id": "i", "badge_class_id": "b", "assertion_id": "a"}),
        json!({"event_id": "e3", "type": "badge_class.upserted", "occurred_at": "2026-01-01T00:00:00Z", "org_id": "acme", "issuer_id": "i", "badge_class_id": "b", "name": "x".repeat(10_000)}),
        json!({"event_id": "e4", "type": "badge_class.upserted", "occurred_at": "2026-01-01T00:00:00Z", "org_id": "acme", "issuer_id": "i", "badge_class_id": "b", "name": "n", "skills": [[["deep"]]]}),
        json!({"event_id": "e5", "type": "badge.viewed", "occurred_at": "2026-01-01T00:00:00Z", "org_id": "acme", "issuer_id": "i", "badge_class_id": "b", "assertion_id": "a", "source": "search", "country": "ÄÖ"}),
        json!({"event_id": "e6", "type": "badge.awarded", "occurred_at": 1700000000, "org_id": "acme", "issuer_id": "i", "badge_class_id": "b", "assertion_id": "a"}),
        json!({"event_id": "e7", "type": "badge.awarded", "occurred_at": "2026-01-01T00:00:00Z", "org_id": "globex", "issuer_id": "i", "badge_class_id": "b", "assertion_id": "a"}),
        json!(null),
        json!([1, 2, 3]),
    ];
    let rejected_count = bad.len();
    bad.push(valid_event());
    let r = post(json!({ "events": bad }).to_string()).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 1, "{v}");
    let rejected = v["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), rejected_count, "{v}");
    for r in rejected {
        let e = r["error"].as_str().unwrap();
        let (field, message) = e
            .split_once(": ")
            .unwrap_or_else(|| panic!("error without a field: {e}"));
        assert!(!field.is_empty() && !message.is_empty(), "{e}");
    }

    // Exporter: injection attempts through every parameter are 400s naming
    // the parameter (or 403 when they name another org); nothing breaks.
    let injections = [
        "' OR 1=1 --",
        "acme'; DROP TABLE hostile.events; --",
        "acme\\",
        "%00",
        "acme) UNION SELECT 1 --",
    ];
    let mut checked = 0;
    for bad_value in injections {
        let enc: String = bad_value
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        for (endpoint, param) in [
            ("overview", "org"),
            ("overview", "issuer"),
            ("overview", "badge_class"),
            ("overview", "from"),
            ("overview", "to"),
            ("distribution?dimension=award_method&", "org"),
            ("distribution?", "dimension"),
            ("top-badges?", "sort"),
            ("top-badges?", "limit"),
            ("trends?", "metrics"),
            ("trends?", "granularity"),
            ("lifecycle", "from"),
            ("drivers", "to"),
            ("annotations", "org"),
        ] {
            let sep = if endpoint.ends_with('?') || endpoint.ends_with('&') {
                ""
            } else {
                "?"
            };
            let url = format!("{exporter}/api/v1/{endpoint}{sep}{param}={enc}");
            let r = http.get(&url).bearer_auth(API_KEY).send().await.unwrap();
            let status = r.status().as_u16();
            assert!(status == 400 || status == 403, "{url}: {status}");
            let v: Value = r.json().await.unwrap();
            let e = v["error"].as_str().unwrap_or_default();
            if status == 400 {
                assert!(e.contains(param), "{url}: error does not name {param}: {e}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 60);
    let r = http
        .get(format!("{exporter}/api/v1/overview?format=csv&org=acme"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Still alive, and only the valid event was stored.
    for url in [ports.ingest_admin_url(), ports.exporter_admin_url()] {
        assert_eq!(
            http.get(format!("{url}/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    eventually(
        Duration::from_secs(30),
        "the valid event stored",
        || async { (ch.number("SELECT count() FROM hostile.events").await == 1).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ch.number("SELECT count() FROM hostile.events").await, 1);
    assert_eq!(
        ch.query("SELECT event_id FROM hostile.events")
            .await
            .unwrap()
            .trim(),
        "the-only-valid-one"
    );
    assert!(
        ch.number(
            "SELECT count() FROM system.tables WHERE database = 'hostile' AND name = 'events'"
        )
        .await
            == 1
    );
}

/// `header_read_timeout_secs` of both services in the slow-client test.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// How late after `HEADER_TIMEOUT` a close may come (scheduling on a busy
/// two-core machine), and how early (timer granularity).
const LATE: Duration = Duration::from_secs(3);
const EARLY: Duration = Duration::from_millis(100);
/// Slow connections held open against each service at once.
const SLOW_CONNECTIONS: usize = 200;

/// A slowloris connection: when connecting began (the server's clock for
/// it cannot start earlier), when it was connected (nor much later) and
/// when the server closed it.
struct SlowConnection {
    connecting: Instant,
    connected: Instant,
    closed: Option<Instant>,
}

/// A request a public listener answers `200` without ClickHouse: its
/// address and its head (request line and headers, without the blank line
/// that ends them).
#[derive(Debug, Clone)]
struct Probe {
    addr: SocketAddr,
    head: String,
}

impl Probe {
    /// Ingest's share script.
    fn ingest(addr: SocketAddr) -> Probe {
        Probe {
            addr,
            head: "GET /v1/share.js HTTP/1.1\r\nHost: 127.0.0.1\r\n".into(),
        }
    }

    /// The exporter's OpenAPI document.
    fn exporter(addr: SocketAddr) -> Probe {
        Probe {
            addr,
            head: format!(
                "GET /api/v1/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
            ),
        }
    }
}

/// Opens a slowloris connection: a request line and the start of a header,
/// never finished.
async fn open_slow(probe: &Probe) -> (TcpStream, Instant, Instant) {
    let connecting = Instant::now();
    let mut s = TcpStream::connect(probe.addr).await.expect("connecting");
    let connected = Instant::now();
    s.write_all(format!("{}X-Slow: ", probe.head).as_bytes())
        .await
        .expect("sending the request line");
    (s, connecting, connected)
}

/// Keeps a slowloris connection going, one more header byte every 500 ms,
/// until the server closes it (EOF, reset or a failed write) or, if it
/// never does, `give_up` passes.
async fn drip(
    (mut s, connecting, connected): (TcpStream, Instant, Instant),
    give_up: Duration,
) -> SlowConnection {
    let mut drip = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_millis(500),
        Duration::from_millis(500),
    );
    let give_up = tokio::time::sleep(give_up);
    tokio::pin!(give_up);
    let mut buf = [0u8; 1024];
    let closed = loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => break Some(Instant::now()),
                Ok(_) => {} // a response before the close is allowed
            },
            _ = drip.tick() => {
                if s.write_all(b"a").await.is_err() {
                    break Some(Instant::now());
                }
            }
            () = &mut give_up => break None,
        }
    };
    SlowConnection {
        connecting,
        connected,
        closed,
    }
}

/// Opens `SLOW_CONNECTIONS` slowloris connections to `addr` one after the
/// other (a burst of simultaneous connects overflows the 128-connection
/// accept queue, and the kernel's retry a second later is not what is
/// measured here), sends `normal` (a URL on the same server) while they
/// are all open and dripping, and checks that it was answered before any of
/// them was closed and that each was closed `HEADER_TIMEOUT` after it
/// opened. Returns the normal request's latency and the latest close after
/// connecting.
async fn slowloris_against(probe: &Probe, normal: &str) -> (Duration, Duration) {
    let addr = probe.addr;
    let give_up = HEADER_TIMEOUT + LATE + LATE;
    let mut slow = Vec::with_capacity(SLOW_CONNECTIONS);
    for _ in 0..SLOW_CONNECTIONS {
        slow.push(tokio::spawn(drip(open_slow(probe).await, give_up)));
    }

    let sent = Instant::now();
    let r = reqwest::Client::new()
        .get(normal)
        .header("User-Agent", BROWSER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{normal}");
    assert!(!r.bytes().await.unwrap().is_empty());
    let answered = Instant::now();

    let mut latest = Duration::ZERO;
    for (n, task) in slow.into_iter().enumerate() {
        let c = task.await.unwrap();
        let closed = c.closed.unwrap_or_else(|| {
            panic!("slow connection {n} to {addr} still open after {give_up:?}")
        });
        let (earliest, after) = (closed - c.connecting, closed - c.connected);
        assert!(
            earliest + EARLY >= HEADER_TIMEOUT && after <= HEADER_TIMEOUT + LATE,
            "slow connection {n} to {addr} closed {after:?} after connecting \
             ({earliest:?} after starting to), not about {HEADER_TIMEOUT:?}"
        );
        assert!(
            answered < closed,
            "{normal} was answered only after slow connection {n} was closed"
        );
        latest = latest.max(after);
    }
    (answered - sent, latest)
}

/// Sends one complete request with keep-alive, reads the response, then
/// sends nothing: returns how long after sending the request the server
/// closed the connection (its clock starts once it has answered).
async fn idle_keep_alive(probe: &Probe) -> Duration {
    let addr = probe.addr;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let sent = Instant::now();
    s.write_all(format!("{}\r\n", probe.head).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await, 200, "{probe:?}");
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(HEADER_TIMEOUT + LATE, s.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("idle keep-alive connection to {addr} still open"))
        .unwrap_or(0);
    assert_eq!(n, 0, "unexpected bytes on an idle connection");
    sent.elapsed()
}

/// Reads one HTTP/1.1 response (`content-length`, or a `204`) from `s`, on
/// a connection that stays open; returns its status.
async fn read_response(s: &mut TcpStream) -> u16 {
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(HEADER_TIMEOUT, s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap_or(0);
        assert_ne!(n, 0, "connection closed after {response:?}");
        response.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&response[..head_end]).to_lowercase();
    let status: u16 = head[9..12].parse().expect("a status code");
    let length: usize = match head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        Some(n) => n.trim().parse().unwrap(),
        None if status == 204 => 0,
        None => panic!("no content-length in {head:?}"),
    };
    while response.len() < head_end + length {
        let n = s.read(&mut buf).await.unwrap();
        assert_ne!(n, 0, "connection closed mid-body");
        response.extend_from_slice(&buf[..n]);
    }
    status
}

/// Sends the probe with one more header of `header_len` bytes and
/// `Connection: close`, reading while writing; returns what the server sent
/// before closing (empty if it reset the connection first).
async fn request_with_header(probe: &Probe, header_len: usize) -> String {
    let addr = probe.addr;
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = s.into_split();
    let request = format!(
        "{}Connection: close\r\nX-Big: {}\r\n\r\n",
        probe.head,
        "b".repeat(header_len)
    );
    // The server may stop reading (and close) part-way: write errors are
    // expected then.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(request.as_bytes()).await;
        write
    });
    let mut response = Vec::new();
    let read_all = read.read_to_end(&mut response);
    // A reset after a 431 is fine: what was read before it is kept.
    let _ = tokio::time::timeout(HEADER_TIMEOUT + LATE, read_all)
        .await
        .unwrap_or_else(|_| panic!("{header_len}-byte header to {addr}: connection left open"));
    drop(writer.await.unwrap());
    String::from_utf8_lossy(&response).into_owned()
}

/// Issue 8, slow clients: against the real ingest and exporter binaries with
/// `header_read_timeout_secs = 2`, slowloris connections are closed at the
/// timeout while a normal request is answered, idle keep-alive connections
/// are closed too, oversized header blocks are refused, bodies over
/// ingest's limits are answered on a connection that stays usable, and a
/// slow connection holds SIGTERM's drain only until its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_oversized_clients_are_cut_off_while_others_are_served() {
    // The exporter's HTTP server needs no ClickHouse to answer its
    // OpenAPI document: nothing listens on the configured port.
    let nats = Nats::start().await;
    let ports = StackPorts::free();
    let (ingest_port, exporter_port, no_clickhouse) = (ports.ingest, ports.exporter, free_port());
    let (ingest_admin, exporter_admin) = (ports.ingest_admin, ports.exporter_admin);
    let timeout = HEADER_TIMEOUT.as_secs();
    let config = format!(
        "[nats]\nurl = \"{}\"\n[clickhouse]\nurl = \"http://127.0.0.1:{no_clickhouse}\"\n\
         [ingest]\nbind = \"127.0.0.1:{ingest_port}\"\nadmin_bind = \"127.0.0.1:{ingest_admin}\"\n\
         header_read_timeout_secs = {timeout}\n\
         [ingest.pixel_keys]\nk1 = \"slow-pixel-key-0123456\"\n\
         [[ingest.tokens]]\nsha256 = \"{}\"\norgs = [\"acme\"]\n\
         [exporter]\nbind = \"127.0.0.1:{exporter_port}\"\nadmin_bind = \"127.0.0.1:{exporter_admin}\"\n\
         header_read_timeout_secs = {timeout}\n\
         [[exporter.api_keys]]\nsha256 = \"{}\"\nscope = \"admin\"\n",
        nats.url(),
        sha256_hex(TOKEN),
        sha256_hex(API_KEY)
    );
    let mut ingest = Service::start("badgepulse-ingest", &config, &[]);
    let mut exporter = Service::start("badgepulse-exporter", &config, &[]);
    let ingest_addr: SocketAddr = ([127, 0, 0, 1], ingest_port).into();
    let exporter_addr: SocketAddr = ([127, 0, 0, 1], exporter_port).into();
    let (ingest_probe, exporter_probe) =
        (Probe::ingest(ingest_addr), Probe::exporter(exporter_addr));
    wait_http(
        &format!("{}/readyz", ports.ingest_admin_url()),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    wait_http(
        &format!("{}/healthz", ports.exporter_admin_url()),
        Duration::from_secs(60),
    )
    .await
    .unwrap();

    // Slowloris: every connection is closed at the timeout although bytes
    // keep arriving; a normal request meanwhile is answered.
    let (pixel_latency, ingest_latest) = slowloris_against(
        &ingest_probe,
        &format!("http://{ingest_addr}/p.gif?o=acme&i=i1&b=b1&a=a1&kid=k1&sig=00"),
    )
    .await;
    let (openapi_latency, exporter_latest) = slowloris_against(
        &exporter_probe,
        &format!("http://{exporter_addr}/api/v1/openapi.json?access_token={API_KEY}"),
    )
    .await;

    // Idle keep-alive connections are not held forever.
    let (ingest_idle, exporter_idle) = tokio::join!(
        idle_keep_alive(&ingest_probe),
        idle_keep_alive(&exporter_probe)
    );
    for (addr, idle) in [(ingest_addr, ingest_idle), (exporter_addr, exporter_idle)] {
        assert!(
            idle + EARLY >= HEADER_TIMEOUT && idle <= HEADER_TIMEOUT + LATE,
            "idle keep-alive connection to {addr} closed after {idle:?}"
        );
    }

    // Header blocks: under the limit answered, over it refused (431, or a
    // close without an answer), never buffered and served.
    let mut refusals = Vec::new();
    for probe in [&ingest_probe, &exporter_probe] {
        let addr = probe.addr;
        let ok = request_with_header(probe, MAX_HEADER_BYTES / 2).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{addr}: {ok:?}");
        let refused = request_with_header(probe, 100 << 10).await;
        assert!(
            refused.is_empty() || refused.starts_with("HTTP/1.1 431"),
            "{addr}: a 100 kB header got {refused:?}"
        );
        refusals.push(
            refused
                .lines()
                .next()
                .unwrap_or("closed, no answer")
                .to_owned(),
        );
        // Many moderate headers adding up past the limit count as one block.
        let s = TcpStream::connect(addr).await.unwrap();
        let (mut read, mut write) = s.into_split();
        let mut request = probe.head.clone();
        for n in 0..8 {
            request.push_str(&format!(
                "X-Part-{n}: {}\r\n",
                "p".repeat(MAX_HEADER_BYTES / 6)
            ));
        }
        request.push_str("\r\n");
        let writer = tokio::spawn(async move {
            let _ = write.write_all(request.as_bytes()).await;
            write
        });
        let mut response = Vec::new();
        let _ = tokio::time::timeout(HEADER_TIMEOUT + LATE, read.read_to_end(&mut response))
            .await
            .expect("connection left open");
        drop(writer.await.unwrap());
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.is_empty() || response.starts_with("HTTP/1.1 431"),
            "{addr}: headers adding up to {} bytes got {response:?}",
            8 * (MAX_HEADER_BYTES / 6)
        );
        refusals.push(
            response
                .lines()
                .next()
                .unwrap_or("closed, no answer")
                .to_owned(),
        );
    }

    // Bodies over ingest's limits: the answer arrives and the connection
    // stays usable, because the rest of the body is read, not left unread
    // (the kernel would then reset the connection, destroying the answer).
    let mut s = TcpStream::connect(ingest_addr).await.unwrap();
    let beacon = "x".repeat(100 << 10);
    let events = format!("{{\"events\": [], \"pad\": \"{}\"}}", "x".repeat(1_100_000));
    for (request, status) in [
        (
            format!(
                "POST /v1/beacon HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{beacon}",
                beacon.len()
            ),
            204,
        ),
        (
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{events}",
                events.len()
            ),
            413,
        ),
        (format!("{}\r\n", ingest_probe.head), 200),
    ] {
        let what = request.lines().next().unwrap().to_owned();
        s.write_all(request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{what}: ingest stopped reading: {e}"));
        assert_eq!(read_response(&mut s).await, status, "{what}");
    }

    // A body sent slowly after complete headers: both services answer 408
    // once the body has taken longer than the timeout, naming the key.
    let mut slow_bodies = Vec::new();
    for (addr, head, key) in [
        (
            ingest_addr,
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
            ),
            "ingest.header_read_timeout_secs",
        ),
        (
            exporter_addr,
            format!(
                "POST /api/v1/annotations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
            ),
            "exporter.header_read_timeout_secs",
        ),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let (mut read, mut write) = s.into_split();
        let dripping = tokio::spawn(async move {
            // One byte every 200 ms: it would take 200 s to finish.
            while write.write_all(b" ").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(HEADER_TIMEOUT + LATE, read.read(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{addr}: a slow body was waited for beyond the timeout"))
            .unwrap();
        let answered = started.elapsed();
        dripping.abort();
        let answer = String::from_utf8_lossy(&answer[..n]).to_string();
        assert!(answer.starts_with("HTTP/1.1 408"), "{addr}: {answer}");
        assert!(answer.contains(key), "{addr}: {answer}");
        assert!(
            answered + EARLY >= HEADER_TIMEOUT,
            "{addr}: answered after {answered:?}"
        );
        slow_bodies.push(answered);
    }

    // SIGTERM with a slow connection open: the drain waits for it at most
    // until its header timeout, then both services exit cleanly.
    let give_up = HEADER_TIMEOUT + LATE + LATE;
    let held = [
        tokio::spawn(drip(open_slow(&ingest_probe).await, give_up)),
        tokio::spawn(drip(open_slow(&exporter_probe).await, give_up)),
    ];
    let stopping = Instant::now();
    let (ingest_ok, exporter_ok) = tokio::join!(
        tokio::task::spawn_blocking(move || ingest.stop()),
        tokio::task::spawn_blocking(move || exporter.stop()),
    );
    let stopped = stopping.elapsed();
    assert!(ingest_ok.unwrap(), "ingest exits 0 on SIGTERM");
    assert!(exporter_ok.unwrap(), "the exporter exits 0 on SIGTERM");
    assert!(
        stopped <= HEADER_TIMEOUT + LATE,
        "SIGTERM took {stopped:?} with slow connections open"
    );
    for h in held {
        assert!(h.await.unwrap().closed.is_some());
    }

    eprintln!(
        "slow clients: {SLOW_CONNECTIONS} slowloris connections per service closed at most \
         {ingest_latest:?} (ingest) / {exporter_latest:?} (exporter) after connecting, timeout \
         {HEADER_TIMEOUT:?}; meanwhile /p.gif answered in {pixel_latency:?}, the OpenAPI \
         document in {openapi_latency:?}; idle keep-alive closed after {ingest_idle:?} / {exporter_idle:?}; \
         SIGTERM with slow connections open: {stopped:?}; oversized header blocks \
         (ingest one, ingest many, exporter one, exporter many): {refusals:?}; slow \
         bodies (ingest, exporter) answered 408 after {slow_bodies:?}"
    );
}
