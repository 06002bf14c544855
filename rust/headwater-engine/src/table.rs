//! The tables of a sync as the engine sees them, their counters, and the batching options.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow_schema::{FieldRef, SchemaRef};
use headwater_core::{ingest, schema};

/// What happens to a row that does not fit its table (`SyncOptions.on_row_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRowError {
    /// `"skip"`: the row is left out, logged and counted.
    Skip,
    /// `"fail"`: the row fails its resolver invocation.
    Fail,
}

/// Batching and error options of a sync, named as in `SyncOptions`.
#[derive(Debug, Clone)]
pub struct Options {
    /// A table's rows are flushed into a batch at this many rows...
    pub batch_max_rows: usize,
    /// ...or this many bytes...
    pub batch_max_bytes: usize,
    /// ...or when the oldest row has waited this long.
    pub batch_max_latency: Duration,
    /// What a row that does not fit its table does.
    pub on_row_error: OnRowError,
    /// How long one threaded resolver invocation may run (see [`crate::running`]).
    pub resolver_timeout: Option<Duration>,
}

/// Rows and errors counted for one table.
#[derive(Debug, Default)]
pub struct Counters {
    /// Rows delivered in batches.
    pub rows: AtomicU64,
    /// Resolver invocations that failed.
    pub errors: AtomicU64,
    /// Rows left out because they did not fit the table.
    pub skipped: AtomicU64,
    /// State updates withheld because rows they cover were lost (see [`crate::epoch`]).
    pub withheld: AtomicU64,
}

impl Counters {
    /// Adds `n` to `counter`.
    #[inline]
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// One selected table.
#[derive(Debug)]
pub struct Table {
    /// Its name.
    pub name: String,
    /// Its full schema, `_cq_id` and `_cq_parent_id` included.
    pub schema: SchemaRef,
    /// The data columns, which the accumulators build.
    pub data_fields: Vec<FieldRef>,
    /// Indices of the selected child tables.
    pub children: Vec<usize>,
    /// 0 for top-level tables.
    pub depth: usize,
    /// What was delivered and what failed.
    pub counters: Counters,
}

impl Table {
    /// A table of `schema` at `depth`, with no children yet.
    pub fn new(schema: SchemaRef, depth: usize) -> Self {
        Table {
            name: schema::table_name(&schema).to_string(),
            data_fields: ingest::data_fields(&schema),
            schema,
            children: Vec::new(),
            depth,
            counters: Counters::default(),
        }
    }
}
