//! Pipeline metrics of ingest (`badgepulse_ingest_…`), in a registry owned
//! by the process and passed explicitly, beside the build, process and
//! request-duration metrics of `badgepulse_runtime::metrics`. Label values
//! come from closed sets.

use std::time::Instant;

use badgepulse_runtime::metrics::{register_process_metrics, HttpDurations};
use prometheus::Encoder;
use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, Opts, Registry,
};

/// Outcomes of a pixel or beacon, the `outcome` label. Each beacon taken
/// in is counted once as `accepted` or as one of the refusals; `dropped`
/// (buffer overflow, or given up at shutdown) and `duplicate` come later
/// for beacons already counted as `accepted`: `duplicate` counts those of
/// a batch whose retry JetStream recognised by its message id as already
/// stored (the first attempt's PubAck was lost), so they are stored once.
pub const BEACON_OUTCOMES: [&str; 7] = [
    "accepted",
    "bot",
    "bad_signature",
    "invalid",
    "rate_limited",
    "dropped",
    "duplicate",
];

/// Routes, the `route` label of `badgepulse_ingest_http_requests_total`
/// and `badgepulse_ingest_http_request_duration_seconds` (anything else is
/// [`OTHER_ROUTE`]).
pub const ROUTES: [&str; 5] = [
    "/p.gif",
    "/s.gif",
    "/v1/beacon",
    "/v1/events",
    "/v1/share.js",
];

/// The `route` label of a request that matched none of [`ROUTES`].
pub const OTHER_ROUTE: &str = "other";

#[derive(Clone)]
pub struct Metrics {
    /// Pre-resolved `beacons_total` series: `[kind][outcome]` (kind 0 = view,
    /// 1 = share; outcome as in `BEACON_OUTCOMES`), off the label hash on
    /// the pixel's hot path.
    beacon_series: Vec<IntCounter>,
    /// Pre-resolved `http_requests_total{route, status="200"|"204"}`.
    ok_requests: Vec<[IntCounter; 2]>,
    /// Pre-resolved `http_request_duration_seconds{route, status_class="2xx"}`.
    ok_durations: Vec<Histogram>,
    pub durations: HttpDurations,
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub beacons: IntCounterVec,
    pub bots: IntCounterVec,
    pub events: IntCounterVec,
    pub publish_seconds: HistogramVec,
    pub publish_failures: IntCounterVec,
    pub buffer_depth: IntGauge,
    /// Platform events published and awaiting their PubAcks.
    pub events_in_flight: IntGauge,
    pub batch_size: Histogram,
    pub salt_fallbacks: IntCounter,
}

impl Metrics {
    /// Every metric in the Prometheus text format (the admin `/metrics`).
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding of gathered metrics");
        buf
    }

    pub fn new() -> Self {
        let registry = Registry::new();
        register_process_metrics(&registry);
        let durations = HttpDurations::register(&registry, "ingest");
        durations.declare(ROUTES.into_iter().chain([OTHER_ROUTE]));
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c =
                IntCounterVec::new(Opts::new(format!("badgepulse_ingest_{name}"), help), labels)
                    .expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let http_requests = counter_vec(
            "http_requests_total",
            "HTTP requests by route and status",
            &["route", "status"],
        );
        let beacons = counter_vec(
            "beacons_total",
            "Pixel and beacon hits by kind (view, share) and outcome",
            &["kind", "outcome"],
        );
        let bots = counter_vec(
            "bots_total",
            "Beacons dropped as bots, by family",
            &["family"],
        );
        let events = counter_vec(
            "events_total",
            "Platform events by outcome (accepted, duplicate, rejected)",
            &["outcome"],
        );
        let publish_failures = counter_vec(
            "publish_failures_total",
            "Failed JetStream publishes by kind (event, beacon_batch)",
            &["kind"],
        );
        let publish_seconds = HistogramVec::new(
            HistogramOpts::new(
                "badgepulse_ingest_publish_duration_seconds",
                "Publish to PubAck latency by kind",
            )
            .buckets(exponential_buckets(0.0001, 2.0, 16).expect("valid")),
            &["kind"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(publish_seconds.clone()))
            .expect("unique metric");
        let events_in_flight = IntGauge::new(
            "badgepulse_ingest_events_in_flight",
            "Platform events of /v1/events requests awaiting their PubAcks",
        )
        .expect("valid metric");
        registry
            .register(Box::new(events_in_flight.clone()))
            .expect("unique metric");
        let buffer_depth = IntGauge::new(
            "badgepulse_ingest_buffer_depth",
            "Beacons waiting to be published",
        )
        .expect("valid metric");
        registry
            .register(Box::new(buffer_depth.clone()))
            .expect("unique metric");
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "badgepulse_ingest_batch_size",
                "Beacons per JetStream message",
            )
            .buckets(exponential_buckets(1.0, 2.0, 13).expect("valid")),
        )
        .expect("valid metric");
        registry
            .register(Box::new(batch_size.clone()))
            .expect("unique metric");
        let salt_fallbacks = IntCounter::new(
            "badgepulse_ingest_salt_fallbacks_total",
            "Times the shared daily salt was unavailable and a local stand-in was used",
        )
        .expect("valid metric");
        registry
            .register(Box::new(salt_fallbacks.clone()))
            .expect("unique metric");
        // Pre-create the closed label sets so every series exists from the start.
        for kind in ["view", "share"] {
            for outcome in BEACON_OUTCOMES {
                beacons.with_label_values(&[kind, outcome]);
            }
        }
        for outcome in ["accepted", "duplicate", "rejected"] {
            events.with_label_values(&[outcome]);
        }
        for kind in ["event", "beacon_batch"] {
            publish_failures.with_label_values(&[kind]);
        }
        let mut beacon_series = Vec::new();
        for kind in ["view", "share"] {
            for outcome in BEACON_OUTCOMES {
                beacon_series.push(beacons.with_label_values(&[kind, outcome]));
            }
        }
        let ok_requests = ROUTES
            .iter()
            .map(|r| {
                [
                    http_requests.with_label_values(&[r, "200"]),
                    http_requests.with_label_values(&[r, "204"]),
                ]
            })
            .collect();
        let ok_durations = ROUTES.iter().map(|r| durations.series(r, 200)).collect();
        Metrics {
            beacon_series,
            ok_requests,
            ok_durations,
            durations,
            registry,
            http_requests,
            beacons,
            bots,
            events,
            publish_seconds,
            publish_failures,
            buffer_depth,
            events_in_flight,
            batch_size,
            salt_fallbacks,
        }
    }
}

impl Metrics {
    /// Counts one beacon of `kind` ("view" or "share") with `outcome`.
    pub fn count_beacon(&self, kind: &str, outcome: &str) {
        let k = usize::from(kind == "share");
        match BEACON_OUTCOMES.iter().position(|o| *o == outcome) {
            Some(o) => self.beacon_series[k * BEACON_OUTCOMES.len() + o].inc(),
            None => self.beacons.with_label_values(&[kind, outcome]).inc(),
        }
    }

    /// Counts `n` beacons of `kind` with `outcome`.
    pub fn count_beacons(&self, kind: &str, outcome: &str, n: u64) {
        self.beacons.with_label_values(&[kind, outcome]).inc_by(n);
    }

    /// Counts one HTTP request by route and status, and the time since
    /// `started`.
    pub fn count_request(&self, route: &str, status: u16, started: Instant) {
        let position = ROUTES.iter().position(|r| *r == route);
        let cached = position.and_then(|i| match status {
            200 => Some(&self.ok_requests[i][0]),
            204 => Some(&self.ok_requests[i][1]),
            _ => None,
        });
        match cached {
            Some(c) => c.inc(),
            None => self
                .http_requests
                .with_label_values(&[route, &status.to_string()])
                .inc(),
        }
        let elapsed = started.elapsed();
        match position {
            Some(i) if (200..300).contains(&status) => {
                self.ok_durations[i].observe(elapsed.as_secs_f64())
            }
            _ => self.durations.observe(route, status, elapsed),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
