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
