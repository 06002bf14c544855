//! Per-thread accumulation of rows into a table's column builders, until they make a batch.
//!
//! Every thread that converts rows (each worker, and the event loop thread of async
//! resolvers) owns one [`Accumulator`] per table it has seen, so appending a row never
//! contends with another thread. The accumulators are also registered with the engine so
//! the timer thread can flush a table whose rows have waited too long, the final flush finds
//! every leftover row, and a state update can be queued behind the rows it covers; the
//! flushing itself is [`crate::flush`]'s.
//!
//! A table with child tables keeps, next to its rows, the rows as the resolver yielded them
//! and their clients: the finisher starts one child task per row and child table once the
//! batch (and so each row's `_cq_id`) is finished.

use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Instant;

use headwater_core::builder::{builders_for, ColumnBuilder};
use headwater_core::CoreError;

use crate::epoch::Epoch;
use crate::host::Host;
use crate::lock::lock;
use crate::scheduler::Scheduler;
use crate::table::{Options, Table};
use crate::task::Payload;

/// Rows appended between two checks of an accumulator's byte size.
const BYTES_CHECK_ROWS: usize = 64;

/// Rows read before the buffers are sized for the rest of a batch (or of a list, in the
/// bindings' batch builder) from what they hold, so they grow once instead of doubling (and
/// copying) all the way.
pub const SIZING_ROWS: usize = 1024;

/// The thread an accumulator belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A worker thread.
    Thread(ThreadId),
    /// The event loop thread of async resolvers.
    Loop,
}

/// A row kept to start the child tasks of a parent table once its `_cq_id` is known.
#[derive(Debug)]
pub struct HeldRow<H: Host> {
    /// The row as the resolver yielded it.
    pub row: Arc<H::Row>,
    /// Index of its client.
    pub client: usize,
    /// The epoch of the task that yielded it: the children hold it until they are done.
    pub epoch: Arc<Epoch<H>>,
}

/// The rows of one table gathered by one thread since the last flush, and the epochs to
/// release after them (state updates, and tasks that ended).
#[derive(Debug)]
pub struct Accumulator<H: Host> {
    table: usize,
    /// One builder per data column.
    pub builders: Vec<ColumnBuilder>,
    rows: usize,
    /// `_cq_parent_id` of each row, for child tables.
    parent_ids: Vec<[u8; 16]>,
    /// Each row as yielded, for tables with children.
    held: Vec<HeldRow<H>>,
    /// Epochs released once these rows are in the output (see [`crate::epoch`]).
    releases: Vec<Arc<Epoch<H>>>,
    /// Bytes the builders were sized for (0 until [`SIZING_ROWS`] rows are in).
    sized_bytes: usize,
    /// When the oldest row (or, without rows, the oldest state update) was added.
    since: Option<Instant>,
}

/// A flushed accumulator: the rows of one batch, not yet finished, and the epochs to release
/// after it.
#[derive(Debug)]
pub struct Bundle<H: Host> {
    /// Table index.
    pub table: usize,
    /// The filled builders.
    pub builders: Vec<ColumnBuilder>,
    /// Number of rows (0 for state updates alone).
    pub rows: usize,
    /// `_cq_parent_id` per row (child tables), else empty.
    pub parent_ids: Vec<[u8; 16]>,
    /// Rows kept for starting child tasks.
    pub held: Vec<HeldRow<H>>,
    /// Epochs to release after the batch is queued.
    pub releases: Vec<Arc<Epoch<H>>>,
}

impl<H: Host> Accumulator<H> {
    /// An empty accumulator of table `index`.
    pub fn new(table: &Table, index: usize) -> Result<Self, CoreError> {
        Ok(Accumulator {
            table: index,
            builders: builders_for(&table.data_fields)?,
            rows: 0,
            parent_ids: Vec::new(),
            held: Vec::new(),
            releases: Vec::new(),
            sized_bytes: 0,
            since: None,
        })
    }

    /// Its table's index.
    pub fn table(&self) -> usize {
        self.table
    }

    /// Notes a row just appended to the builders, and whether the batch is now full.
    pub fn appended(
        &mut self,
        options: &Options,
        parent_id: Option<[u8; 16]>,
        held: Option<HeldRow<H>>,
    ) -> bool {
        if self.since.is_none() {
            self.since = Some(Instant::now());
        }
        self.rows += 1;
        if let Some(id) = parent_id {
            self.parent_ids.push(id);
        }
        if let Some(held) = held {
            self.held.push(held);
        }
        if self.rows == SIZING_ROWS {
            self.size_for_batch(options);
        }
        self.rows >= options.batch_max_rows
            || (self.rows % BYTES_CHECK_ROWS == 0 && self.bytes() >= options.batch_max_bytes)
    }

    /// Reserves room for the rows the batch will still take if they are like those so far:
    /// up to the row limit, or to the byte limit if that comes first.
    fn size_for_batch(&mut self, options: &Options) {
        let per_row = (self.bytes() / self.rows).max(1);
        let batch_rows = options
            .batch_max_rows
            .min(options.batch_max_bytes / per_row + 1);
        let more = batch_rows.saturating_sub(self.rows);
        for builder in &mut self.builders {
            builder.reserve_like(more);
        }
        self.sized_bytes = per_row * batch_rows;
    }

    /// Queues an epoch's release behind the rows appended so far (a state update, or a task
    /// that ended); it leaves with them, when the batch is full or has waited the maximum
    /// latency.
    pub fn push_release(&mut self, epoch: Arc<Epoch<H>>) {
        if self.since.is_none() {
            self.since = Some(Instant::now());
        }
        self.releases.push(epoch);
    }

    fn bytes(&self) -> usize {
        self.builders
            .iter()
            .map(ColumnBuilder::byte_size)
            .sum::<usize>()
            + 16 * self.parent_ids.len()
    }

    /// An upper bound of the finished batch's memory, to reserve in the output buffer:
    /// builders grow by doubling, so their buffers hold up to twice the bytes appended (or
    /// sized for), and `_cq_id` and `_cq_parent_id` add 16 bytes a row each.
    pub fn reservation(&self) -> usize {
        2 * self.bytes().max(self.sized_bytes) + 32 * self.rows
    }

    /// Whether it holds neither rows nor releases.
    pub fn is_empty(&self) -> bool {
        self.rows == 0 && self.releases.is_empty()
    }

    /// Whether the oldest row or release has waited at least the maximum latency.
    pub fn is_stale(&self, options: &Options) -> bool {
        self.since
            .is_some_and(|since| since.elapsed() >= options.batch_max_latency)
    }

    /// Takes the rows and releases out as a [`Bundle`], leaving fresh builders for `table`;
    /// `None` when empty. Rows kept for child tasks put a hold on the scheduler, so the sync
    /// cannot end before the finisher has started those tasks.
    pub fn take(
        &mut self,
        table: &Table,
        scheduler: &Scheduler<Payload<H>>,
    ) -> Result<Option<Bundle<H>>, CoreError> {
        if self.is_empty() {
            return Ok(None);
        }
        let builders = if self.rows == 0 {
            Vec::new()
        } else {
            let fresh = builders_for(&table.data_fields)?;
            std::mem::replace(&mut self.builders, fresh)
        };
        let held = std::mem::take(&mut self.held);
        if !held.is_empty() {
            scheduler.hold();
        }
        self.since = None;
        self.sized_bytes = 0;
        Ok(Some(Bundle {
            table: self.table,
            builders,
            rows: std::mem::take(&mut self.rows),
            parent_ids: std::mem::take(&mut self.parent_ids),
            held,
            releases: std::mem::take(&mut self.releases),
        }))
    }
}

/// An accumulator as registered with the engine, with its owner and table readable without
/// its lock.
#[derive(Debug)]
pub struct Registered<H: Host> {
    /// The thread that appends to it.
    pub owner: Owner,
    /// Its table.
    pub table: usize,
    /// The accumulator.
    pub accumulator: Arc<Mutex<Accumulator<H>>>,
}

impl<H: Host> Clone for Registered<H> {
    fn clone(&self) -> Self {
        Registered {
            owner: self.owner,
            table: self.table,
            accumulator: Arc::clone(&self.accumulator),
        }
    }
}

/// One thread's accumulators, by table index.
#[derive(Debug)]
pub struct Local<H: Host> {
    owner: Owner,
    accumulators: Vec<Option<Arc<Mutex<Accumulator<H>>>>>,
}

impl<H: Host> Local<H> {
    /// The (still empty) accumulators of the thread `owner`.
    pub fn new(owner: Owner) -> Self {
        Local {
            owner,
            accumulators: Vec::new(),
        }
    }

    /// The accumulator of table `index`, made and added to `registry` on first use.
    pub fn get(
        &mut self,
        registry: &Mutex<Vec<Registered<H>>>,
        tables: &[Table],
        index: usize,
    ) -> Result<&Arc<Mutex<Accumulator<H>>>, CoreError> {
        if self.accumulators.len() <= index {
            self.accumulators.resize_with(index + 1, || None);
        }
        let slot = &mut self.accumulators[index];
        if slot.is_none() {
            let accumulator = Arc::new(Mutex::new(Accumulator::new(&tables[index], index)?));
            lock(registry).push(Registered {
                owner: self.owner,
                table: index,
                accumulator: Arc::clone(&accumulator),
            });
            *slot = Some(accumulator);
        }
        Ok(slot.as_ref().expect("just made"))
    }

    /// This thread's accumulators, by table index (`None` for a table it has not seen).
    pub fn accumulators(&self) -> &[Option<Arc<Mutex<Accumulator<H>>>>] {
        &self.accumulators
    }
}

thread_local! {
    static CONVERTING: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as reading rows into its accumulator (whose lock it holds), for
/// as long as the guard lives.
#[derive(Debug)]
pub struct Converting(bool);

impl Converting {
    /// Marks the current thread until the guard is dropped.
    pub fn enter() -> Self {
        Converting(CONVERTING.with(|c| c.replace(true)))
    }

    /// Whether the current thread is reading rows: code run from a row's properties must not
    /// wait for that thread's accumulator.
    pub fn active() -> bool {
        CONVERTING.with(Cell::get)
    }
}

impl Drop for Converting {
    fn drop(&mut self) {
        CONVERTING.with(|c| c.set(self.0));
    }
}
