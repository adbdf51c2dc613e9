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

use crate::beacon::ViewerKeyer;

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

    async fn bucket(&self) -> Result<kv::Store, async_nats::Error> {
        match self.jetstream.get_key_value(SALT_BUCKET).await {
            Ok(store) => Ok(store),
            Err(_) => Ok(self
                .jetstream
                .create_key_value(kv::Config {
                    bucket: SALT_BUCKET.into(),
                    description: "badgepulse daily viewer-key salts".into(),
                    history: 1,
                    max_age: SALT_MAX_AGE,
                    num_replicas: self.replicas,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await?),
        }
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

fn random_salt() -> Vec<u8> {
    let mut salt = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut salt);
    salt
}
