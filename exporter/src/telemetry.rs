//! The exporter's own Prometheus metrics (`badgepulse_exporter_…`: HTTP,
//! queries, the result cache, change notices), the build and process
//! metrics of `badgepulse_runtime::metrics`, and the registry of business
//! metrics that `business_metrics.rs` replaces on each refresh; rendered
//! together on the admin listener's `/metrics`.
//!
//! Imports nothing of the crate: every layer may count into it.

use std::sync::{Arc, RwLock};

use badgepulse_runtime::metrics::{register_process_metrics, HttpDurations};
use prometheus::{
    exponential_buckets, Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, Opts, Registry, TextEncoder,
};

/// Pipeline metrics plus the cached business metrics.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// HTTP responses by matched route and status code.
    pub http_requests: IntCounterVec,
    /// HTTP answer times by matched route and status class
    /// (`badgepulse_exporter_http_request_duration_seconds`).
    pub http_durations: HttpDurations,
    /// ClickHouse query latency by query name (a closed set).
    pub query_seconds: HistogramVec,
    /// Failed ClickHouse queries by query name.
    pub query_errors: IntCounterVec,
    /// Failed refreshes of the business metrics.
    pub refresh_errors: IntCounter,
    /// Unix time of the last successful refresh.
    pub last_refresh: Gauge,
    /// Result-cache lookups by result: hit, miss, bypass (`Cache-Control:
    /// no-cache`), off (not following change notices).
    pub cache_lookups: IntCounterVec,
    /// Entries dropped from the result cache by reason: change, everything,
    /// gap (notices missed), age, size.
    pub cache_evictions: IntCounterVec,
    pub cache_refreshes: IntCounterVec,
    pub cache_entries: IntGauge,
    /// Estimated memory of the cached results.
    pub cache_bytes: IntGauge,
    /// 1 while the cache follows the change notices (and so serves).
    pub cache_following: IntGauge,
    /// Change notices received, by outcome: applied, malformed.
    pub change_notices: IntCounterVec,
    business: Arc<RwLock<Registry>>,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        register_process_metrics(&registry);
        let http_durations = HttpDurations::register(&registry, "exporter");
        let http_requests = IntCounterVec::new(
            Opts::new(
                "badgepulse_exporter_http_requests_total",
                "HTTP responses by route and status",
            ),
            &["route", "status"],
        )
        .expect("valid metric");
        let query_seconds = HistogramVec::new(
            HistogramOpts::new(
                "badgepulse_exporter_query_duration_seconds",
                "ClickHouse query latency by query",
            )
            .buckets(exponential_buckets(0.001, 2.0, 16).expect("valid buckets")),
            &["query"],
        )
        .expect("valid metric");
        let query_errors = IntCounterVec::new(
            Opts::new(
                "badgepulse_exporter_query_errors_total",
                "Failed or timed-out ClickHouse queries by query",
            ),
            &["query"],
        )
        .expect("valid metric");
        let refresh_errors = IntCounter::new(
            "badgepulse_exporter_refresh_errors_total",
            "Failed refreshes of the business metrics (the previous values stay served)",
        )
        .expect("valid metric");
        let last_refresh = Gauge::new(
            "badgepulse_exporter_last_refresh_timestamp_seconds",
            "Unix time of the last successful refresh of the business metrics",
        )
        .expect("valid metric");
        let cache_lookups = IntCounterVec::new(
            Opts::new(
                "badgepulse_exporter_cache_lookups_total",
                "Result-cache lookups by result (hit; stale: an answer served while it is recomputed; miss; bypass: Cache-Control no-cache; off: not following change notices)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let cache_evictions = IntCounterVec::new(
            Opts::new(
                "badgepulse_exporter_cache_evictions_total",
                "Result-cache entries dropped, by reason (change, everything, gap, age, size)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let cache_refreshes = IntCounterVec::new(
            Opts::new(
                "badgepulse_exporter_cache_refreshes_total",
                "Background recomputations of kept answers, by outcome (ok; unstored: not following the notices or over the memory budget; error)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let cache_entries = IntGauge::new(
            "badgepulse_exporter_cache_entries",
            "Query results in the result cache",
        )
        .expect("valid metric");
        let cache_bytes = IntGauge::new(
            "badgepulse_exporter_cache_bytes",
            "Estimated memory of the query results in the result cache",
        )
        .expect("valid metric");
        let cache_following = IntGauge::new(
            "badgepulse_exporter_cache_following",
            "1 while the result cache follows the change notices on NATS (and so serves results), else 0",
        )
        .expect("valid metric");
        let change_notices = IntCounterVec::new(
            Opts::new(
                "badgepulse_exporter_change_notices_total",
                "Change notices received from NATS, by outcome (applied, malformed)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        // Every series of the closed label sets exists from the start.
        for result in ["hit", "stale", "miss", "bypass", "off"] {
            cache_lookups.with_label_values(&[result]);
        }
        for outcome in ["ok", "unstored", "error"] {
            cache_refreshes.with_label_values(&[outcome]);
        }
        for reason in ["change", "everything", "gap", "age", "size"] {
            cache_evictions.with_label_values(&[reason]);
        }
        for outcome in ["applied", "malformed"] {
            change_notices.with_label_values(&[outcome]);
        }
        for c in [
            Box::new(cache_lookups.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(cache_evictions.clone()),
            Box::new(cache_refreshes.clone()),
            Box::new(cache_entries.clone()),
            Box::new(cache_bytes.clone()),
            Box::new(cache_following.clone()),
            Box::new(change_notices.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        registry
            .register(Box::new(http_requests.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(query_seconds.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(query_errors.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(refresh_errors.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(last_refresh.clone()))
            .expect("unique metric");
        Metrics {
            registry,
            http_requests,
            http_durations,
            query_seconds,
            query_errors,
            refresh_errors,
            last_refresh,
            cache_lookups,
            cache_evictions,
            cache_refreshes,
            cache_entries,
            cache_bytes,
            cache_following,
            change_notices,
            business: Arc::new(RwLock::new(Registry::new())),
        }
    }

    /// Counts one answer of `route` with `status`, and the time since
    /// `started`.
    pub fn count_request(&self, route: &str, status: u16, started: std::time::Instant) {
        self.http_requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.http_durations
            .observe(route, status, started.elapsed());
    }

    /// Replaces the cached business metrics.
    pub fn set_business(&self, registry: Registry) {
        *self.business.write().unwrap_or_else(|e| e.into_inner()) = registry;
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> Vec<u8> {
        let mut families = self.registry.gather();
        families.extend(
            self.business
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .gather(),
        );
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut buf)
            .expect("text encoding of gathered metrics");
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
