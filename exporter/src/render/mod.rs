//! The answers rendered: CSV tables ([`csv`], [`tables`]), PNG/SVG
//! charts ([`charts`]), the printable HTML report ([`report`]) and the
//! OpenAPI document ([`openapi`]).
//!
//! Imports `analytics` and `model`; never the HTTP layer.

pub mod charts;
pub mod csv;
pub mod openapi;
pub mod report;
pub mod tables;
