//! Pipeline metrics of the aggregator (`badgepulse_aggregator_…`), in a
//! registry owned by the process and passed explicitly, beside the build
//! and process metrics of `badgepulse_runtime::metrics`.

use badgepulse_runtime::metrics::register_process_metrics;
use prometheus::Encoder;
use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry,
};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub batches: IntCounter,
    pub messages: IntCounter,
    pub events_written: IntCounter,
    pub duplicates: IntCounter,
    pub dead_letters: IntCounter,
    pub recoveries: IntCounterVec,
    pub compactions: IntCounterVec,
    pub seals: IntCounterVec,
    pub change_notices: IntCounterVec,
    pub clickhouse_errors: IntCounter,
    pub nats_errors: IntCounter,
    pub batch_messages: Histogram,
    pub batch_events: Histogram,
    pub flush_seconds: Histogram,
    pub fetch_seconds: Histogram,
    pub consumer_pending: IntGaugeVec,
    pub consumer_ack_pending: IntGaugeVec,
    pub consumer_redelivered: IntGaugeVec,
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
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(format!("badgepulse_aggregator_{name}"), help)
                .expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(
                HistogramOpts::new(format!("badgepulse_aggregator_{name}"), help).buckets(buckets),
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(
                Opts::new(format!("badgepulse_aggregator_{name}"), help),
                &["partition"],
            )
            .expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let recoveries = IntCounterVec::new(
            Opts::new(
                "badgepulse_aggregator_recoveries_total",
                "Tables recomputed from events after a partial batch, by table",
            ),
            &["table"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(recoveries.clone()))
            .expect("unique metric");
        let compactions = IntCounterVec::new(
            Opts::new(
                "badgepulse_aggregator_compactions_total",
                "Runs of the scope_total compaction, by outcome (ok, failed)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(compactions.clone()))
            .expect("unique metric");
        let seals = IntCounterVec::new(
            Opts::new(
                "badgepulse_aggregator_seals_total",
                "Seal statements: one per org day whose unique viewers were sealed (counted exactly from events), one per run of up to 100 award days whose lifecycle was sealed; by outcome (ok, failed)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(seals.clone()))
            .expect("unique metric");
        let change_notices = IntCounterVec::new(
            Opts::new(
                "badgepulse_aggregator_change_notices_total",
                "Change notices published after commits for the exporters' result caches, by kind (spans, everything) and outcome (sent, failed)",
            ),
            &["kind", "outcome"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(change_notices.clone()))
            .expect("unique metric");
        Metrics {
            compactions,
            seals,
            change_notices,
            batches: counter("batches_total", "Batches written to ClickHouse and acked"),
            messages: counter("messages_total", "JetStream messages processed"),
            events_written: counter("events_written_total", "Rows written to the events table"),
            duplicates: counter(
                "duplicates_total",
                "Events skipped because their event_id was already stored",
            ),
            dead_letters: counter(
                "dead_letters_total",
                "Messages moved to the dead-letter stream",
            ),
            clickhouse_errors: counter(
                "clickhouse_errors_total",
                "Failed ClickHouse statements (retried)",
            ),
            nats_errors: counter(
                "nats_errors_total",
                "Failed JetStream fetches, acks or dead-letter publishes",
            ),
            batch_messages: histogram(
                "batch_messages",
                "Messages per batch",
                exponential_buckets(1.0, 4.0, 9).expect("valid"),
            ),
            batch_events: histogram(
                "batch_events",
                "Events per batch",
                exponential_buckets(1.0, 4.0, 11).expect("valid"),
            ),
            flush_seconds: histogram(
                "flush_duration_seconds",
                "Time to write one batch to ClickHouse",
                exponential_buckets(0.001, 2.0, 16).expect("valid"),
            ),
            fetch_seconds: histogram(
                "fetch_duration_seconds",
                "Time one pull from JetStream took, waiting for messages included",
                exponential_buckets(0.001, 2.0, 16).expect("valid"),
            ),
            consumer_pending: gauge(
                "consumer_pending",
                "Messages in the stream not yet delivered to the consumer",
            ),
            consumer_ack_pending: gauge(
                "consumer_ack_pending",
                "Messages delivered but not yet acked",
            ),
            consumer_redelivered: gauge(
                "consumer_redelivered",
                "Messages redelivered and not yet acked",
            ),
            recoveries,
            registry,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
