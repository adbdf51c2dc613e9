//! Platform events (SPEC §4, `POST /v1/events`): which orgs a bearer token
//! may write, each event validated on its own (a bad event never rejects
//! its neighbours), and the accepted ones published, one message each,
//! before the answer.
//!
//! Must not: count an event as accepted before its PubAck.

use std::time::Duration;

use badgepulse_contract::event::{raw_event_id, validate_platform_event, Event, FieldError};
use badgepulse_runtime::keys::{self, HashedKeys};
use chrono::Utc;
use serde_json::{json, Value};

use crate::config::TokenConfig;
use crate::metrics::Metrics;
use crate::publish::{publish_events, PublishError};

/// The orgs a token may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    all_orgs: bool,
    orgs: Vec<String>,
}

impl Grant {
    fn may_write(&self, org: &str) -> bool {
        self.all_orgs || self.orgs.iter().any(|o| o == org)
    }
}

/// The answer to an accepted request: counts and the per-event rejections.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub accepted: usize,
    pub duplicates: usize,
    /// `{"index", "event_id", "error"}` of each rejected event.
    pub rejected: Vec<Value>,
}

/// The platform events endpoint's logic.
pub struct Platform {
    tokens: HashedKeys<Grant>,
    jetstream: async_nats::jetstream::Context,
    partitions: u16,
    publish_timeout: Duration,
    metrics: Metrics,
}

impl Platform {
    /// From `[[ingest.tokens]]` (hashes validated at start-up).
    pub fn new(
        tokens: &[TokenConfig],
        jetstream: async_nats::jetstream::Context,
        partitions: u16,
        publish_timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        let tokens = tokens
            .iter()
            .map(|t| {
                let hash = keys::parse_sha256(&t.sha256).expect("validated at start-up");
                let grant = Grant {
                    all_orgs: t.orgs.iter().any(|o| o == "*"),
                    orgs: t.orgs.clone(),
                };
                (hash, grant)
            })
            .collect();
        Platform {
            tokens: HashedKeys::new(tokens),
            jetstream,
            partitions,
            publish_timeout,
            metrics,
        }
    }

    /// What the token of an `Authorization` header value may write.
    pub fn grant(&self, authorization: Option<&str>) -> Option<&Grant> {
        self.tokens.lookup(keys::bearer(authorization?)?)
    }

    /// Validates each of `raw_events` and publishes the valid ones, each
    /// with its PubAck awaited. `Err`: JetStream did not take them all
    /// (nothing is accepted; the client retries safely).
    pub async fn accept(
        &self,
        grant: &Grant,
        raw_events: &[Value],
    ) -> Result<Accepted, PublishError> {
        let now = Utc::now();
        let mut valid: Vec<Event> = Vec::with_capacity(raw_events.len());
        let mut rejected = Vec::new();
        for (index, raw) in raw_events.iter().enumerate() {
            let result = validate_platform_event(raw, now).and_then(|e| {
                if grant.may_write(&e.org_id) {
                    Ok(e)
                } else {
                    Err(FieldError::new(
                        "org_id",
                        format!("this token may not write org {:?}", e.org_id),
                    ))
                }
            });
            match result {
                Ok(e) => valid.push(e),
                Err(err) => rejected.push(json!({
                    "index": index,
                    "event_id": raw_event_id(raw),
                    "error": err.to_string(),
                })),
            }
        }
        let (accepted, duplicates) = publish_events(
            &self.jetstream,
            &valid,
            self.partitions,
            self.publish_timeout,
            &self.metrics,
        )
        .await?;
        for (outcome, n) in [
            ("accepted", accepted),
            ("duplicate", duplicates),
            ("rejected", rejected.len()),
        ] {
            self.metrics
                .events
                .with_label_values(&[outcome])
                .inc_by(n as u64);
        }
        Ok(Accepted {
            accepted,
            duplicates,
            rejected,
        })
    }
}
