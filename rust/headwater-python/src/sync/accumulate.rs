//! Per-thread accumulation of rows into a table's column builders, until they make a batch.
//!
//! Every thread that converts rows (each worker, and the event loop thread) owns one
//! [`Accumulator`] per table it has seen, so appending a row never contends with another
//! thread. The accumulators are also registered in [`Shared`] so the timer thread can flush a
//! table whose rows have waited too long, the final flush finds every leftover row, and a
//! state update can be queued behind the rows it covers.
//!
//! Ordering is the point of [`flush`]: output budget is reserved first, without holding the
//! accumulator's lock (that wait can be long), then the accumulator is emptied *and* its
//! contents sent to the finisher under the lock. Whoever flushes (the owner thread, the
//! timer, a state update), what leaves one accumulator reaches the finisher in the order it
//! was appended, so a state update is always emitted after the rows before it.
//!
//! A table with child tables keeps, next to its rows, the Python row objects and their
//! clients: the finisher starts one child task per row and child table once the batch (and so
//! each row's `_cq_id`) is finished.

use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Instant;

use headwater_core::buffer::Reservation;
use headwater_core::builder::{builders_for, ColumnBuilder};
use headwater_core::CoreError;
use pyo3::prelude::*;

use super::epoch::Epoch;
use super::finisher::{Job, Work};
use super::{lock, Shared};
use crate::rows::SIZING_ROWS;

/// Rows appended between two checks of an accumulator's byte size.
const BYTES_CHECK_ROWS: usize = 64;

/// The thread an accumulator belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A worker thread.
    Thread(ThreadId),
    /// The event loop thread of async resolvers.
    Loop,
}

/// A state update: the key and its new value.
pub type StateUpdate = (String, String);

/// A row kept to start the child tasks of a parent table once its `_cq_id` is known.
#[derive(Debug)]
pub struct HeldRow {
    /// The row as the resolver yielded it.
    pub row: Arc<Py<PyAny>>,
    /// Index of its client.
    pub client: usize,
    /// The epoch of the task that yielded it: the children hold it until they are done.
    pub epoch: Arc<Epoch>,
}

/// The rows of one table gathered by one thread since the last flush, and the epochs to
/// release after them (state updates, and tasks that ended).
#[derive(Debug)]
pub struct Accumulator {
    table: usize,
    /// One builder per data column.
    pub builders: Vec<ColumnBuilder>,
    rows: usize,
    /// `_cq_parent_id` of each row, for child tables.
    parent_ids: Vec<[u8; 16]>,
    /// Each row as yielded, for tables with children.
    held: Vec<HeldRow>,
    /// Epochs released once these rows are in the output (see [`super::epoch`]).
    releases: Vec<Arc<Epoch>>,
    /// Bytes the builders were sized for (0 until [`SIZING_ROWS`] rows are in).
    sized_bytes: usize,
    /// When the oldest row (or, without rows, the oldest state update) was added.
    since: Option<Instant>,
}

/// A flushed accumulator: the rows of one batch, not yet finished, and the epochs to release
/// after it.
#[derive(Debug)]
pub struct Bundle {
    /// Table index.
    pub table: usize,
    /// The filled builders.
    pub builders: Vec<ColumnBuilder>,
    /// Number of rows (0 for state updates alone).
    pub rows: usize,
    /// `_cq_parent_id` per row (child tables), else empty.
    pub parent_ids: Vec<[u8; 16]>,
    /// Rows kept for starting child tasks.
    pub held: Vec<HeldRow>,
    /// Epochs to release after the batch is queued.
    pub releases: Vec<Arc<Epoch>>,
}

impl Accumulator {
    fn new(shared: &Shared, table: usize) -> Result<Self, CoreError> {
        Ok(Accumulator {
            table,
            builders: builders_for(&shared.tables[table].plan.data_fields)?,
            rows: 0,
            parent_ids: Vec::new(),
            held: Vec::new(),
            releases: Vec::new(),
            sized_bytes: 0,
            since: None,
        })
    }

    /// Notes a row just appended to the builders, and whether the batch is now full.
    pub fn appended(
        &mut self,
        shared: &Shared,
        parent_id: Option<[u8; 16]>,
        held: Option<HeldRow>,
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
            self.size_for_batch(shared);
        }
        self.rows >= shared.options.batch_max_rows
            || (self.rows % BYTES_CHECK_ROWS == 0 && self.bytes() >= shared.options.batch_max_bytes)
    }

    /// Reserves room for the rows the batch will still take if they are like those so far:
    /// up to the row limit, or to the byte limit if that comes first.
    fn size_for_batch(&mut self, shared: &Shared) {
        let per_row = (self.bytes() / self.rows).max(1);
        let batch_rows = shared
            .options
            .batch_max_rows
            .min(shared.options.batch_max_bytes / per_row + 1);
        let more = batch_rows.saturating_sub(self.rows);
        for builder in &mut self.builders {
            builder.reserve_like(more);
        }
        self.sized_bytes = per_row * batch_rows;
    }

    /// Queues an epoch's release behind the rows appended so far (a state update, or a task
    /// that ended); it leaves with them, when the batch is full or has waited the maximum
    /// latency.
    pub fn push_release(&mut self, epoch: Arc<Epoch>) {
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
    fn reservation(&self) -> usize {
        2 * self.bytes().max(self.sized_bytes) + 32 * self.rows
    }

    fn is_empty(&self) -> bool {
        self.rows == 0 && self.releases.is_empty()
    }

    /// Whether the oldest row or release has waited at least the maximum latency.
    fn is_stale(&self, shared: &Shared) -> bool {
        self.since
            .is_some_and(|since| since.elapsed() >= shared.options.batch_max_latency)
    }

    /// Takes the rows and releases out as a [`Bundle`], leaving fresh builders; `None`
    /// when empty. Rows kept for child tasks put a hold on the scheduler, so the sync cannot
    /// end before the finisher has started those tasks.
    fn take(&mut self, shared: &Shared) -> Result<Option<Bundle>, CoreError> {
        if self.is_empty() {
            return Ok(None);
        }
        let builders = if self.rows == 0 {
            Vec::new()
        } else {
            let fresh = builders_for(&shared.tables[self.table].plan.data_fields)?;
            std::mem::replace(&mut self.builders, fresh)
        };
        let held = std::mem::take(&mut self.held);
        if !held.is_empty() {
            shared.scheduler.hold();
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

/// An accumulator as registered in [`Shared`], with its owner and table readable without
/// its lock.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The thread that appends to it.
    pub owner: Owner,
    /// Its table.
    pub table: usize,
    /// The accumulator.
    pub accumulator: Arc<Mutex<Accumulator>>,
}

/// One thread's accumulators, by table index.
#[derive(Debug)]
pub struct Local {
    owner: Owner,
    accumulators: Vec<Option<Arc<Mutex<Accumulator>>>>,
}

impl Local {
    /// The (still empty) accumulators of the thread `owner`.
    pub fn new(owner: Owner) -> Self {
        Local {
            owner,
            accumulators: Vec::new(),
        }
    }

    /// The accumulator of `table`, made and registered on first use.
    pub fn get(
        &mut self,
        shared: &Shared,
        table: usize,
    ) -> Result<&Arc<Mutex<Accumulator>>, CoreError> {
        if self.accumulators.len() <= table {
            self.accumulators.resize_with(table + 1, || None);
        }
        let slot = &mut self.accumulators[table];
        if slot.is_none() {
            let accumulator = Arc::new(Mutex::new(Accumulator::new(shared, table)?));
            lock(&shared.accumulators).push(Registered {
                owner: self.owner,
                table,
                accumulator: Arc::clone(&accumulator),
            });
            *slot = Some(accumulator);
        }
        Ok(slot.as_ref().expect("just made"))
    }

    /// Flushes this thread's accumulators (only those of tables with children when
    /// `parents_only`) to the finisher. Blocks without the GIL while the output buffer is
    /// full.
    pub fn flush(&self, py: Python<'_>, shared: &Shared, parents_only: bool) -> PyResult<()> {
        for (table, accumulator) in self.accumulators.iter().enumerate() {
            let Some(accumulator) = accumulator else {
                continue;
            };
            if parents_only && shared.tables[table].children.is_empty() {
                continue;
            }
            flush_holding_gil(py, shared, accumulator)?;
        }
        Ok(())
    }
}

/// What [`flush`] did.
#[derive(Debug)]
pub enum Flushed {
    /// Sent to the finisher, or nothing to send (or the sync is cancelled).
    Done,
    /// The finisher is gone (the sync was cancelled): the caller drops this, with the GIL.
    Refused(Work),
}

/// Flushes `accumulator` to the finisher, in order with everything flushed from it before.
///
/// `reserve(bytes)` reserves output budget and may block; it is called without the
/// accumulator's lock held (and must release the GIL if the caller holds it). With
/// `skip_busy`, an accumulator in use, or not stale yet, is left alone (the timer's mode).
pub fn flush(
    shared: &Shared,
    accumulator: &Mutex<Accumulator>,
    reserve: impl FnOnce(usize) -> Option<Reservation>,
    skip_busy: bool,
) -> Result<Flushed, CoreError> {
    let estimate = {
        let guard = if skip_busy {
            match accumulator.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(Flushed::Done),
            }
        } else {
            lock(accumulator)
        };
        if guard.is_empty() || (skip_busy && !guard.is_stale(shared)) {
            return Ok(Flushed::Done);
        }
        guard.reservation()
    };
    let Some(reservation) = reserve(estimate) else {
        return Ok(Flushed::Done);
    };
    let mut guard = lock(accumulator);
    let Some(bundle) = guard.take(shared)? else {
        // Someone else flushed it meanwhile.
        shared.output.cancel_reservation(reservation);
        return Ok(Flushed::Done);
    };
    match shared.send(Job::Finish(Work::Rows(bundle), reservation)) {
        Ok(()) => Ok(Flushed::Done),
        Err(Job::Finish(work, reservation)) => {
            shared.output.cancel_reservation(reservation);
            Ok(Flushed::Refused(work))
        }
        Err(Job::Shutdown) => Ok(Flushed::Done),
    }
}

/// [`flush`] from a thread holding the GIL: the reservation waits with the GIL released, and
/// refused work is dropped with it held.
pub fn flush_holding_gil(
    py: Python<'_>,
    shared: &Shared,
    accumulator: &Mutex<Accumulator>,
) -> PyResult<()> {
    let flushed = flush(
        shared,
        accumulator,
        |bytes| py.detach(|| shared.output.reserve(bytes)),
        false,
    )
    .map_err(crate::errors::to_py_err)?;
    if let Flushed::Refused(work) = flushed {
        work.abandon(shared);
    }
    Ok(())
}

/// Flushes every registered accumulator whose rows are older than the maximum latency (or
/// every non-empty one when `all`), from a thread without the GIL. Accumulators in use by
/// their thread are skipped unless `all`.
pub fn flush_registered(shared: &Shared, all: bool) {
    let registered: Vec<Registered> = lock(&shared.accumulators).clone();
    for entry in registered {
        match flush(
            shared,
            &entry.accumulator,
            |bytes| shared.output.reserve(bytes),
            !all,
        ) {
            Ok(Flushed::Done) => {}
            Ok(Flushed::Refused(work)) => work.abandon(shared),
            Err(err) => shared.fatal(format!("flushing rows failed: {err}")),
        }
    }
}
