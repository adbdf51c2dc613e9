//! Daily viewer-key salts (SPEC §4): one random 32-byte salt per UTC day,
//! shared by every ingest instance through the NATS KV bucket
//! `badgepulse_salts` (created by whichever instance needs it first; `create`
//! is atomic, so all instances agree), and gone from the bucket after 48 h.
//!
//! If NATS is unreachable when a day's salt is first needed, a process-local
//! random salt stands in (counted) and the shared one is fetched again a
//! minute later. Salts are never logged.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use badgepulse_contract::subject::SALT_BUCKET;
use chrono::NaiveDate;
use rand::RngCore;

use super::viewer::ViewerKeyer;

/// How long a salt lives in the bucket.
pub const SALT_MAX_AGE: Duration = Duration::from_secs(48 * 3600);

#[derive(Clone)]
struct Cached {
    day: NaiveDate,
    salt: Arc<[u8]>,
    keyer: Arc<ViewerKeyer>,
    /// Whether it came from the shared bucket (else a local stand-in).
    shared: bool,
    fetched: Instant,
}

pub struct Salts {
    jetstream: jetstream::Context,
    replicas: usize,
    cached: RwLock<Option<Cached>>,
    refresh: tokio::sync::Mutex<()>,
    pub fallbacks: prometheus::IntCounter,
}

impl Salts {
    pub fn new(
        jetstream: jetstream::Context,
        replicas: usize,
        fallbacks: prometheus::IntCounter,
    ) -> Self {
        Salts {
            jetstream,
            replicas,
            cached: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
            fallbacks,
        }
    }

    fn cached_for(&self, day: NaiveDate) -> Option<Cached> {
        let c = self.cached.read().expect("salt lock").clone()?;
        let fresh = c.day == day && (c.shared || c.fetched.elapsed() < Duration::from_secs(60));
        fresh.then_some(c)
    }

    /// The viewer keyer of `day`'s salt (UTC).
    pub async fn keyer(&self, day: NaiveDate) -> Arc<ViewerKeyer> {
        if let Some(c) = self.cached_for(day) {
            return c.keyer;
        }
        // Boxed: the fetch's state machine is large, and a pixel request's
        // future, moved on every request, must not carry it inline.
        Box::pin(self.refresh(day)).await
    }

    /// Fetches (or stands in for) `day`'s salt and caches its keyer.
    async fn refresh(&self, day: NaiveDate) -> Arc<ViewerKeyer> {
        let _guard = self.refresh.lock().await;
        if let Some(c) = self.cached_for(day) {
            return c.keyer;
        }
        let previous = self.cached.read().expect("salt lock").clone();
        let cached = match tokio::time::timeout(Duration::from_secs(2), self.shared_salt(day)).await
        {
            Ok(Ok(salt)) => Cached {
                day,
                keyer: Arc::new(ViewerKeyer::new(&salt)),
                salt: salt.into(),
                shared: true,
                fetched: Instant::now(),
            },
            outcome => {
                let error = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                tracing::warn!(%error, "daily salt unavailable from NATS KV; using a local stand-in");
                self.fallbacks.inc();
                // Keep one stand-in per day so keys stay stable within the process.
                let salt = match previous {
                    Some(p) if p.day == day => p.salt,
                    _ => random_salt().into(),
                };
                Cached {
                    day,
                    keyer: Arc::new(ViewerKeyer::new(&salt)),
                    salt,
                    shared: false,
                    fetched: Instant::now(),
                }
            }
        };
        let keyer = cached.keyer.clone();
        *self.cached.write().expect("salt lock") = Some(cached);
        keyer
    }

    /// Opens the bucket, creating it if no instance has yet.
    ///
    /// The bucket's stream is created with `create_stream` rather than
    /// `create_key_value`: async-nats 0.51 first queries the account, and
    /// fails to parse nats-server 2.9's answer (it lacks the
    /// `reserved_memory` field), so no bucket was ever created there.
    /// Creating a stream is idempotent for an identical config, so
    /// instances racing here all succeed, and the config is the one
    /// `create_key_value` would send (`kv_stream_config`).
    async fn bucket(&self) -> Result<kv::Store, async_nats::Error> {
        if let Ok(store) = self.jetstream.get_key_value(SALT_BUCKET).await {
            return Ok(store);
        }
        self.jetstream
            .create_stream(kv_stream_config(self.replicas))
            .await?;
        Ok(self.jetstream.get_key_value(SALT_BUCKET).await?)
    }

    /// Reads the day's salt, creating it if no instance has yet.
    async fn shared_salt(&self, day: NaiveDate) -> Result<Vec<u8>, async_nats::Error> {
        let store = self.bucket().await?;
        let key = day.format("%Y-%m-%d").to_string();
        if let Some(v) = store.get(&key).await? {
            return Ok(v.to_vec());
        }
        match store.create(&key, random_salt().into()).await {
            Ok(_) => {}
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        // Read back: if another instance won the race, its salt is the one.
        store
            .get(&key)
            .await?
            .map(|v| v.to_vec())
            .ok_or_else(|| format!("salt {key} vanished after create").into())
    }
}

/// The stream behind the KV bucket `badgepulse_salts`, as async-nats'
/// `create_key_value` builds it for a bucket of history 1: one value per
/// key, values older than [`SALT_MAX_AGE`] deleted, rollups allowed,
/// deletes denied, direct gets, new writes refused when full.
pub fn kv_stream_config(replicas: usize) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: format!("KV_{SALT_BUCKET}"),
        description: Some("badgepulse daily viewer-key salts".into()),
        subjects: vec![format!("$KV.{SALT_BUCKET}.>")],
        max_messages_per_subject: 1,
        max_age: SALT_MAX_AGE,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas.max(1),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    }
}

fn random_salt() -> Vec<u8> {
    let mut salt = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut salt);
    salt
}
