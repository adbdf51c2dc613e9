//! Single flight: concurrent misses of one cached query share one
//! ClickHouse query. The query runs as a task of its own that stores its
//! result and leaves the map of flights when done (even by a panic), so a
//! finished flight is never joined and one whose requests are all dropped
//! still completes.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};

use super::cache::Ticket;
use crate::db::store::StoreError;

/// A query running for the cache, shared by every request that misses
/// the same key meanwhile.
pub(crate) type Flight =
    Shared<BoxFuture<'static, Result<Arc<dyn Any + Send + Sync>, Arc<StoreError>>>>;

/// The queries running for the cache, by key, with the ticket each
/// started with.
pub(crate) type Flights = Arc<Mutex<HashMap<String, (u64, Flight, Ticket)>>>;

/// Removes flight `id` of `key` from the map when dropped (unless another
/// flight has replaced it).
pub(crate) struct Landing {
    pub(crate) flights: Flights,
    pub(crate) key: String,
    pub(crate) id: u64,
}

impl Drop for Landing {
    fn drop(&mut self) {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights
            .get(&self.key)
            .is_some_and(|(i, _, _)| *i == self.id)
        {
            flights.remove(&self.key);
        }
    }
}

/// Tells flights apart (a key's flight may be replaced while it runs).
pub(crate) static NEXT_FLIGHT: AtomicU64 = AtomicU64::new(0);

/// A shared query's result as `T`.
pub(crate) fn shared_value<T: Clone + 'static>(
    outcome: Result<Arc<dyn Any + Send + Sync>, Arc<StoreError>>,
) -> Result<T, StoreError> {
    match outcome {
        Ok(v) => Ok(v
            .downcast_ref::<T>()
            .expect("one key, one row type")
            .clone()),
        Err(e) => Err(Arc::try_unwrap(e).unwrap_or_else(StoreError::Shared)),
    }
}

/// A shared query's outcome, boxed for the map.
pub(crate) fn boxed<T: Send + Sync + 'static>(
    outcome: Result<T, StoreError>,
) -> Result<Arc<dyn Any + Send + Sync>, Arc<StoreError>> {
    outcome
        .map(|v| Arc::new(v) as Arc<dyn Any + Send + Sync>)
        .map_err(Arc::new)
}

/// Wraps a spawned query task as a flight others can join.
pub(crate) fn flight(
    task: tokio::task::JoinHandle<Result<Arc<dyn Any + Send + Sync>, Arc<StoreError>>>,
) -> Flight {
    async move {
        task.await
            .unwrap_or_else(|e| Err(Arc::new(StoreError::NotReady(format!("query task: {e}")))))
    }
    .boxed()
    .shared()
}

/// A fresh flight id.
pub(crate) fn next_id() -> u64 {
    NEXT_FLIGHT.fetch_add(1, Ordering::Relaxed)
}
