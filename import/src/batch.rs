//! Items into batches: the request bodies of `POST /v1/events`, numbered
//! from 0 in input order.
//!
//! Invariant: the same items always give the same batches (same numbers,
//! same events, same local rejects), so a checkpoint's batch number means
//! the same thing in the run that resumes it. A batch holds at most
//! `max_items` items (events and local rejects together, so a file of
//! unreadable lines still makes progress) and a body of at most
//! `max_body` bytes.

use crate::input::{Item, Origin, Reject};

/// The largest body ingest takes (SPEC §4: 1 MiB).
pub const MAX_BODY: usize = 1 << 20;
/// The most events ingest takes in one request (SPEC §4).
pub const MAX_EVENTS: usize = 1_000;

const HEAD: &[u8] = b"{\"events\":[";
const TAIL: &[u8] = b"]}";

/// One request's worth of items.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub index: u64,
    /// `{"events":[…]}`, complete once the batch is closed.
    pub body: Vec<u8>,
    /// Each event's place and id (when known), in the order of the body
    /// (the server's `rejected[].index` points here).
    pub events: Vec<(Origin, Option<String>)>,
    /// Records refused before sending.
    pub rejects: Vec<Reject>,
}

impl Batch {
    /// Events plus local rejects: the records this batch accounts for.
    pub fn items(&self) -> u64 {
        (self.events.len() + self.rejects.len()) as u64
    }
}

/// Groups items into batches.
#[derive(Debug)]
pub struct Batcher {
    max_items: usize,
    max_body: usize,
    current: Batch,
}

impl Batcher {
    pub fn new(max_items: usize, max_body: usize) -> Batcher {
        let mut b = Batcher {
            max_items,
            max_body,
            current: Batch::default(),
        };
        b.current.body.extend_from_slice(HEAD);
        b
    }

    /// Adds an item; returns the batches it closed (at most two: the full
    /// one before it, and the one it filled).
    pub fn push(&mut self, item: Item) -> Vec<Batch> {
        let mut closed = Vec::new();
        match item {
            Item::Reject(r) => self.current.rejects.push(r),
            Item::Event {
                origin,
                event_id,
                json,
            } => {
                let alone = HEAD.len() + json.len() + TAIL.len();
                if alone > self.max_body {
                    self.current.rejects.push(Reject {
                        origin,
                        event_id,
                        error: format!(
                            "event: {} bytes of JSON, more than one request may carry ({} bytes)",
                            json.len(),
                            self.max_body - HEAD.len() - TAIL.len()
                        ),
                    });
                } else {
                    let separator = usize::from(!self.current.events.is_empty());
                    if self.current.body.len() + separator + json.len() + TAIL.len() > self.max_body
                    {
                        closed.extend(self.close());
                    }
                    if !self.current.events.is_empty() {
                        self.current.body.push(b',');
                    }
                    self.current.body.extend_from_slice(&json);
                    self.current.events.push((origin, event_id));
                }
            }
        }
        if self.current.items() as usize >= self.max_items {
            closed.extend(self.close());
        }
        closed
    }

    /// Closes the current batch, if it holds anything.
    pub fn close(&mut self) -> Option<Batch> {
        if self.current.items() == 0 {
            return None;
        }
        let next = self.current.index + 1;
        let mut batch = std::mem::take(&mut self.current);
        batch.body.extend_from_slice(TAIL);
        self.current.index = next;
        self.current.body.extend_from_slice(HEAD);
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(line: u64, size: usize) -> Item {
        Item::Event {
            origin: Origin { file: 0, line },
            event_id: Some(format!("e{line}")),
            json: format!("\"{}\"", "x".repeat(size - 2)).into_bytes(),
        }
    }

    #[test]
    fn batches_close_on_items_and_body_size() {
        let mut b = Batcher::new(3, 100);
        let mut out = Vec::new();
        for line in 1..=4 {
            out.extend(b.push(event(line, 10)));
        }
        out.extend(b.push(Item::reject(Origin { file: 0, line: 5 }, None, "bad")));
        out.extend(b.close());
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].index, 0);
        assert_eq!(out[0].events.len(), 3);
        let body: serde_json::Value = serde_json::from_slice(&out[0].body).unwrap();
        assert_eq!(body["events"].as_array().unwrap().len(), 3);
        assert_eq!(
            (out[1].index, out[1].events.len(), out[1].rejects.len()),
            (1, 1, 1)
        );

        // 13 bytes of wrapper: 40 + 1 + 40 fits in 100, a third does not.
        let mut b = Batcher::new(1000, 100);
        let mut out = Vec::new();
        for line in 1..=3 {
            out.extend(b.push(event(line, 40)));
        }
        out.extend(b.close());
        assert_eq!(
            out.iter().map(|b| b.events.len()).collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert!(out.iter().all(|b| b.body.len() <= 100));
        assert_eq!(out[0].body.len(), 11 + 40 + 1 + 40 + 2);
    }

    #[test]
    fn an_event_too_large_for_any_request_is_rejected() {
        let mut b = Batcher::new(1000, 100);
        assert!(b.push(event(1, 88)).is_empty());
        let batch = b.close().unwrap();
        assert!(batch.events.is_empty());
        assert_eq!(batch.rejects.len(), 1);
        assert!(batch.rejects[0].error.starts_with("event: 88 bytes"));
        let mut b = Batcher::new(1000, 100);
        b.push(event(1, 87));
        assert_eq!(b.close().unwrap().body.len(), 100);
    }
}
