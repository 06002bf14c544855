//! Per-thread accumulation of rows into a table's column builders, until they make a batch.
//!
//! Every thread that converts rows (each worker, and the event loop thread) owns one
//! [`Accumulator`] per table it has seen, so appending a row never contends with another
//! thread. The accumulators are also registered in [`Shared`] so the timer thread can flush a
//! table whose rows have waited too long, and the final flush finds every leftover row.
//!
//! A table with child tables keeps, next to its rows, the Python row objects and their
//! clients: the finisher starts one child task per row and child table once the batch (and so
//! each row's `_cq_id`) is finished.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use headwater_core::builder::{builders_for, ColumnBuilder};
use headwater_core::CoreError;
use pyo3::prelude::*;

use super::finisher::Work;
use super::{lock, Shared};

/// Rows appended between two checks of an accumulator's byte size.
const BYTES_CHECK_ROWS: usize = 64;

/// The rows of one table gathered by one thread since the last flush.
#[derive(Debug)]
pub struct Accumulator {
    table: usize,
    /// One builder per data column.
    pub builders: Vec<ColumnBuilder>,
    rows: usize,
    /// `_cq_parent_id` of each row, for child tables.
    parent_ids: Vec<[u8; 16]>,
    /// Each row as yielded and its client, for tables with children.
    held: Vec<(Arc<Py<PyAny>>, usize)>,
    since: Option<Instant>,
}

/// A flushed accumulator: the rows of one batch, not yet finished.
#[derive(Debug)]
pub struct Bundle {
    /// Table index.
    pub table: usize,
    /// The filled builders.
    pub builders: Vec<ColumnBuilder>,
    /// Number of rows.
    pub rows: usize,
    /// `_cq_parent_id` per row (child tables), else empty.
    pub parent_ids: Vec<[u8; 16]>,
    /// Rows and clients kept for starting child tasks.
    pub held: Vec<(Arc<Py<PyAny>>, usize)>,
    /// An upper bound of the finished batch's memory, reserved in the output buffer.
    pub bytes: usize,
}

impl Accumulator {
    fn new(shared: &Shared, table: usize) -> Result<Self, CoreError> {
        Ok(Accumulator {
            table,
            builders: builders_for(&shared.tables[table].plan.data_fields)?,
            rows: 0,
            parent_ids: Vec::new(),
            held: Vec::new(),
            since: None,
        })
    }

    /// Notes a row just appended to the builders, and whether the batch is now full.
    pub fn appended(
        &mut self,
        shared: &Shared,
        parent_id: Option<[u8; 16]>,
        held: Option<(Arc<Py<PyAny>>, usize)>,
    ) -> bool {
        if self.rows == 0 {
            self.since = Some(Instant::now());
        }
        self.rows += 1;
        if let Some(id) = parent_id {
            self.parent_ids.push(id);
        }
        if let Some(held) = held {
            self.held.push(held);
        }
        self.rows >= shared.options.max_rows
            || (self.rows % BYTES_CHECK_ROWS == 0 && self.bytes() >= shared.options.max_bytes)
    }

    fn bytes(&self) -> usize {
        self.builders
            .iter()
            .map(ColumnBuilder::byte_size)
            .sum::<usize>()
            + 16 * self.parent_ids.len()
    }

    /// Whether the oldest row has waited at least the maximum latency.
    pub fn is_stale(&self, shared: &Shared) -> bool {
        self.since
            .is_some_and(|since| since.elapsed() >= shared.options.max_latency)
    }

    /// Takes the rows out as a [`Bundle`], leaving fresh builders; `None` when empty. Rows kept
    /// for child tasks put a hold on the scheduler, so the sync cannot end before the
    /// finisher has started those tasks.
    pub fn take(&mut self, shared: &Shared) -> Result<Option<Bundle>, CoreError> {
        if self.rows == 0 {
            return Ok(None);
        }
        let fresh = builders_for(&shared.tables[self.table].plan.data_fields)?;
        // Builders grow by doubling, so their buffers hold up to twice the bytes appended;
        // `_cq_id` and `_cq_parent_id` add 16 bytes a row each.
        let bytes = 2 * self.bytes() + 32 * self.rows;
        let held = std::mem::take(&mut self.held);
        if !held.is_empty() {
            shared.scheduler.hold();
        }
        let bundle = Bundle {
            table: self.table,
            builders: std::mem::replace(&mut self.builders, fresh),
            rows: std::mem::take(&mut self.rows),
            parent_ids: std::mem::take(&mut self.parent_ids),
            held,
            bytes,
        };
        self.since = None;
        Ok(Some(bundle))
    }
}

/// One thread's accumulators, by table index.
#[derive(Debug, Default)]
pub struct Local {
    accumulators: Vec<Option<Arc<Mutex<Accumulator>>>>,
}

impl Local {
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
            lock(&shared.accumulators).push(Arc::clone(&accumulator));
            *slot = Some(accumulator);
        }
        Ok(slot.as_ref().expect("just made"))
    }

    /// Flushes this thread's accumulators (only those of tables with children when
    /// `parents_only`), submitting their rows to the finisher. Blocks without the GIL while
    /// the output buffer is full.
    pub fn flush(&self, py: Python<'_>, shared: &Shared, parents_only: bool) -> PyResult<()> {
        for accumulator in self.accumulators.iter().flatten() {
            let table = lock(accumulator).table;
            if parents_only && shared.tables[table].children.is_empty() {
                continue;
            }
            let bundle = lock(accumulator).take(shared);
            submit_bundle(py, shared, bundle)?;
        }
        Ok(())
    }
}

/// Submits a taken bundle (if any) to the finisher with the GIL released; a bundle refused
/// because the sync was cancelled is dropped here, with the GIL held.
pub fn submit_bundle(
    py: Python<'_>,
    shared: &Shared,
    bundle: Result<Option<Bundle>, CoreError>,
) -> PyResult<()> {
    let Some(bundle) = bundle.map_err(crate::errors::to_py_err)? else {
        return Ok(());
    };
    let bytes = bundle.bytes;
    let refused = py.detach(|| shared.submit(Work::Rows(bundle), bytes));
    if let Some(work) = refused {
        work.abandon(shared);
    }
    Ok(())
}

/// Flushes every registered accumulator whose rows are older than the maximum latency (or
/// every non-empty one when `all`), from a thread without the GIL. Accumulators in use by
/// their thread are skipped unless `all`.
pub fn flush_registered(shared: &Shared, all: bool) {
    let accumulators: Vec<_> = lock(&shared.accumulators).clone();
    for accumulator in accumulators {
        let bundle = {
            let mut guard = if all {
                lock(&accumulator)
            } else {
                match accumulator.try_lock() {
                    Ok(guard) => guard,
                    Err(_) => continue,
                }
            };
            if !(all || guard.is_stale(shared)) {
                continue;
            }
            guard.take(shared)
        };
        match bundle {
            Ok(Some(bundle)) => {
                let bytes = bundle.bytes;
                if let Some(work) = shared.submit(Work::Rows(bundle), bytes) {
                    work.abandon(shared);
                }
            }
            Ok(None) => {}
            Err(err) => shared.fatal(format!("flushing rows failed: {err}")),
        }
    }
}
