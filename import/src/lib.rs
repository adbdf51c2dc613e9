//! badgepulse-import: imports a platform's history (SPEC §12) through
//! ingest's `POST /v1/events`. See docs/import.md for the mapping and
//! ARCHITECTURE.md for the invariants.

pub mod batch;
pub mod checkpoint;
pub mod ids;
pub mod input;
pub mod openbadges;
pub mod progress;
pub mod rejects;
pub mod run;
pub mod send;
