//! The answers rendered: CSV tables ([`csv`], [`tables`]), PNG/SVG
//! charts ([`charts`]; those of the insights, §7.7–§7.10, in
//! [`insight_charts`]), the printable HTML report ([`report`]) and the
//! OpenAPI document ([`openapi`]).
//!
//! Imports `analytics` and `model`; never the HTTP layer.

pub mod charts;
pub mod csv;
pub mod insight_charts;
pub mod openapi;
pub mod report;
pub mod tables;

use crate::analytics::Body;
use charts::Size;

/// Any analytics body drawn as its chart.
impl Body {
    pub fn svg(&self, size: Size) -> String {
        match self {
            Body::Overview(b) => charts::overview_svg(b, size),
            Body::Trends(b) => charts::trends_svg(b, size),
            Body::Distribution(b) => charts::distribution_svg(b, size),
            Body::TopBadges(b) => charts::top_badges_svg(b, size),
            Body::Drivers(b) => charts::drivers_svg(b, size),
            Body::Lifecycle(b) => charts::lifecycle_svg(b, size),
            Body::Impact(b) => insight_charts::impact_svg(b, size),
            Body::Timing(b) => insight_charts::timing_svg(b, size),
            Body::Cohorts(b) => insight_charts::cohorts_svg(b, size),
            Body::Benchmark(b) => insight_charts::benchmark_svg(b, size),
        }
    }
}
