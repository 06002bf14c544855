//! The items of a sync's output stream.

use std::time::Duration;

use arrow_array::RecordBatch;

/// Why a resolver invocation (or a batch) failed.
#[derive(Debug)]
pub enum Failure<F> {
    /// What the resolver raised, as the host holds it.
    Host(F),
    /// An engine error.
    Text(String),
    /// The resolver ran longer than `resolver_timeout` (this long); the engine gave up on it.
    TimedOut(Duration),
}

/// An item of the output stream.
#[derive(Debug)]
pub enum Output<F> {
    /// A finished batch of a table.
    Insert {
        /// Table index.
        table: usize,
        /// The batch, with `_cq_id` and `_cq_parent_id`.
        batch: RecordBatch,
    },
    /// A resolver set a state key; every row it covers is in an earlier `Insert`.
    State {
        /// Table index.
        table: usize,
        /// The key.
        key: String,
        /// Its new value.
        value: String,
    },
    /// A resolver invocation failed; the rest of the sync goes on.
    Error {
        /// Table index.
        table: usize,
        /// Client index, when the failure belongs to one client.
        client: Option<usize>,
        /// What went wrong.
        failure: Failure<F>,
    },
}
