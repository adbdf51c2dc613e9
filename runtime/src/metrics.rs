//! The metrics every service exposes beside its own, registered into the
//! service's registry:
//!
//! - `badgepulse_build_info{version,commit}` = 1: the crate version and the
//!   git commit it was built from (`build.rs`: `BADGEPULSE_COMMIT` at build
//!   time, else `git rev-parse HEAD`, else `unknown`, as in a Docker build,
//!   whose context has no `.git`);
//! - the process metrics every Prometheus client library exports, under
//!   their standard unprefixed names (`process_cpu_seconds_total`,
//!   `process_resident_memory_bytes`, `process_open_fds`,
//!   `process_max_fds`, `process_start_time_seconds`, …), told apart by the
//!   scrape's `job` label, so that stock dashboards and alerts read them;
//! - `badgepulse_<service>_http_request_duration_seconds{route,status_class}`
//!   ([`HttpDurations`]), for the services with a public HTTP listener.
//!
//! Must not: register anything with a label from outside a closed set.

use prometheus::core::Collector;
use prometheus::{HistogramOpts, HistogramVec, IntGaugeVec, Opts, Registry};

/// The commit the binary was built from, or `unknown`.
pub const COMMIT: &str = env!("BADGEPULSE_COMMIT");

/// The workspace version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The metric name of [`HttpDurations`] after `badgepulse_<service>_`.
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";

/// Buckets of the request durations, seconds: from a pixel (well under a
/// millisecond) to a cold analytics query (seconds).
pub const HTTP_DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `status_class` label values.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// `status`'s class: `2xx` for 204.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => STATUS_CLASSES[0],
        200..=299 => STATUS_CLASSES[1],
        300..=399 => STATUS_CLASSES[2],
        400..=499 => STATUS_CLASSES[3],
        _ => STATUS_CLASSES[4],
    }
}

fn register(registry: &Registry, collector: impl Collector + 'static) {
    registry
        .register(Box::new(collector))
        .expect("metric registered once");
}

/// Registers `badgepulse_build_info` and the process metrics.
pub fn register_process_metrics(registry: &Registry) {
    let build_info = IntGaugeVec::new(
        Opts::new(
            "badgepulse_build_info",
            "1, labelled with the version and the git commit of the build (unknown when built without .git)",
        ),
        &["version", "commit"],
    )
    .expect("valid metric");
    build_info.with_label_values(&[VERSION, COMMIT]).set(1);
    register(registry, build_info);
    register(
        registry,
        prometheus::process_collector::ProcessCollector::for_self(),
    );
}

/// `badgepulse_<service>_http_request_duration_seconds{route,status_class}`:
/// how long the service took to answer, by the route template that matched
/// (from the service's route table, never the raw path; one fixed label for
/// what matched none) and the class of the status.
#[derive(Clone)]
pub struct HttpDurations {
    histogram: HistogramVec,
}

impl HttpDurations {
    /// Registers the histogram of `service`; [`HttpDurations::declare`]
    /// makes each route's series present from the start.
    pub fn register(registry: &Registry, service: &str) -> HttpDurations {
        let histogram = HistogramVec::new(
            HistogramOpts::new(
                format!("badgepulse_{service}_{HTTP_REQUEST_DURATION}"),
                "Time to answer an HTTP request, by route template and status class",
            )
            .buckets(HTTP_DURATION_BUCKETS.to_vec()),
            &["route", "status_class"],
        )
        .expect("valid metric");
        register(registry, histogram.clone());
        HttpDurations { histogram }
    }

    /// Creates the series of every `route` and status class (but `1xx`),
    /// so that they are scraped as 0 before their first request.
    pub fn declare<'r>(&self, routes: impl IntoIterator<Item = &'r str>) {
        for route in routes {
            for class in &STATUS_CLASSES[1..] {
                self.histogram.with_label_values(&[route, class]);
            }
        }
    }

    /// The series of `route` and `status`, to observe into without a label
    /// lookup on a hot path.
    pub fn series(&self, route: &str, status: u16) -> prometheus::Histogram {
        self.histogram
            .with_label_values(&[route, status_class(status)])
    }

    pub fn observe(&self, route: &str, status: u16, elapsed: std::time::Duration) {
        self.series(route, status).observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(registry: &Registry) -> String {
        let mut buf = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut buf,
        )
        .unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn build_info_and_process_metrics() {
        let registry = Registry::new();
        register_process_metrics(&registry);
        let out = text(&registry);
        assert!(
            out.contains(&format!(
                "badgepulse_build_info{{commit=\"{COMMIT}\",version=\"{VERSION}\"}} 1"
            )),
            "{out}"
        );
        assert!(!COMMIT.is_empty());
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                out.lines().any(|l| l.starts_with(&format!("{name} "))),
                "{name} missing:\n{out}"
            );
        }
    }

    #[test]
    fn durations_by_route_and_status_class() {
        let registry = Registry::new();
        let d = HttpDurations::register(&registry, "svc");
        d.declare(["/a", "other"]);
        d.observe("/a", 204, std::time::Duration::from_millis(3));
        d.observe("other", 404, std::time::Duration::from_millis(3));
        let out = text(&registry);
        let count = |route: &str, class: &str| {
            let prefix = format!(
                "badgepulse_svc_http_request_duration_seconds_count{{route=\"{route}\",status_class=\"{class}\"}} "
            );
            out.lines()
                .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        };
        assert_eq!(count("/a", "2xx").as_deref(), Some("1"));
        assert_eq!(count("other", "4xx").as_deref(), Some("1"));
        assert_eq!(
            count("/a", "5xx").as_deref(),
            Some("0"),
            "present from the start"
        );
        assert_eq!(status_class(101), "1xx");
        assert_eq!(status_class(304), "3xx");
        assert_eq!(status_class(503), "5xx");
    }
}
