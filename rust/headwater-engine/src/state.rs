//! The incremental state of a sync (cursors, high-water marks): a string-to-string map.
//!
//! It holds the values given when the sync starts (read from the CloudQuery state backend, or
//! from the destination of a local sync), what resolvers set since, and which of those
//! updates were delivered. A resolver reads back what its own table and client set; a next
//! sync starts from the delivered updates only, since a withheld one covers rows that were
//! lost (see [`crate::epoch`]).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::lock::lock;

/// The sync's incremental state.
#[derive(Debug, Default)]
pub struct StateMap {
    /// What the sync started with.
    start: HashMap<String, String>,
    /// Every update set since, by stored key: what a task reads back.
    written: Mutex<HashMap<String, String>>,
    /// The updates delivered to the output (not withheld): what a next sync starts from.
    delivered: Mutex<HashMap<String, String>>,
}

impl StateMap {
    /// The state a sync starts with.
    pub fn new(start: HashMap<String, String>) -> Self {
        StateMap {
            start,
            written: Mutex::new(HashMap::new()),
            delivered: Mutex::new(HashMap::new()),
        }
    }

    /// The value of `stored`: what was set during the sync, else what the sync started with,
    /// else what it started with under `fallback` (a key stored before keys were scoped).
    pub fn get(&self, stored: &str, fallback: &str) -> Option<String> {
        lock(&self.written)
            .get(stored)
            .or_else(|| self.start.get(stored))
            .or_else(|| self.start.get(fallback))
            .cloned()
    }

    /// Notes an update a resolver set (not delivered yet).
    pub fn set(&self, stored: String, value: String) {
        lock(&self.written).insert(stored, value);
    }

    /// Notes an update sent to the output.
    pub fn delivered(&self, key: &str, value: &str) {
        lock(&self.delivered).insert(key.to_owned(), value.to_owned());
    }

    /// What the sync started with, with every update delivered since (withheld ones left
    /// out): the state to start the next sync from.
    pub fn snapshot(&self) -> HashMap<String, String> {
        let mut all = self.start.clone();
        all.extend(
            lock(&self.delivered)
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        all
    }
}
