//! The finisher thread: turns flushed rows into record batches without the GIL.
//!
//! It finishes the column builders, computes `_cq_id` (from the primary key, as the Go SDK
//! does; random for tables without one) and `_cq_parent_id`, starts the child tasks of a
//! parent table's rows (each needs its parent's `_cq_id`), counts the rows, and queues the
//! batch in the output buffer under the bytes reserved for it. One thread, first in first out,
//! so batches leave in the order they were flushed; the [`Epoch`]s flushed behind a batch are
//! released once it is queued (which lets their state updates leave, see [`super::epoch`]).

use std::sync::{mpsc, Arc};

use arrow_array::{Array, ArrayRef, FixedSizeBinaryArray, RecordBatch};
use headwater_core::buffer::Reservation;
use headwater_core::ingest::{self, CqIds};
use headwater_core::scheduler::Task;
use headwater_core::CoreError;

use super::accumulate::{Bundle, HeldRow};
use super::epoch::Epoch;
use super::{Counters, Failure, Output, Parent, Payload, Shared};

/// Something to finish.
#[derive(Debug)]
pub enum Work {
    /// Rows flushed from an accumulator.
    Rows(Bundle),
    /// Arrow data already conformed to the table's columns.
    Columns {
        /// Table index.
        table: usize,
        /// The data columns, in table order.
        columns: Vec<ArrayRef>,
        /// Their length.
        rows: usize,
        /// `_cq_parent_id` of every row, for child tables.
        parent_id: Option<[u8; 16]>,
    },
    /// A batch finished already (a parent table's Arrow data, whose children needed ids).
    Finished {
        /// Table index.
        table: usize,
        /// The batch.
        batch: RecordBatch,
    },
    /// An epoch to release with no rows of its accumulator waiting before it.
    Release {
        /// Table index.
        table: usize,
        /// The epoch.
        epoch: Arc<Epoch>,
    },
}

impl Work {
    /// The table it belongs to.
    pub fn table(&self) -> usize {
        match self {
            Work::Rows(bundle) => bundle.table,
            Work::Columns { table, .. }
            | Work::Finished { table, .. }
            | Work::Release { table, .. } => *table,
        }
    }

    /// Drops work that will never be finished (the sync was cancelled), releasing the hold
    /// its rows put on the scheduler.
    pub fn abandon(self, shared: &Shared) {
        if let Work::Rows(bundle) = &self {
            if !bundle.held.is_empty() {
                shared.scheduler.release_hold();
            }
        }
    }
}

/// A message to the finisher thread.
#[derive(Debug)]
pub enum Job {
    /// Finish this, within these reserved bytes.
    Finish(Work, Reservation),
    /// No more work: close the output once everything before this is done.
    Shutdown,
}

/// Runs the finisher loop until [`Job::Shutdown`] (or every sender is gone), then closes the
/// output buffer.
pub fn run(shared: &Arc<Shared>, jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        match job {
            Job::Finish(work, reservation) => finish(shared, work, reservation),
            Job::Shutdown => break,
        }
    }
    shared.output.close();
}

fn finish(shared: &Arc<Shared>, work: Work, reservation: Reservation) {
    let table = work.table();
    let (releases, held, to_build) = match work {
        Work::Release { epoch, .. } => (vec![epoch], false, None),
        Work::Rows(mut bundle) => {
            let releases = std::mem::take(&mut bundle.releases);
            let held = !bundle.held.is_empty();
            let rows = bundle.rows > 0;
            (releases, held, rows.then_some(Work::Rows(bundle)))
        }
        other => (Vec::new(), false, Some(other)),
    };
    match to_build.map(|work| build(shared, work)) {
        None => shared.output.cancel_reservation(reservation),
        Some(Ok(batch)) => {
            Counters::add(&shared.tables[table].counters.rows, batch.num_rows());
            let bytes = batch.get_array_memory_size();
            shared
                .output
                .push(Output::Insert { table, batch }, bytes, reservation);
        }
        Some(Err(err)) => {
            // The rows are lost: no state update may cover them.
            for epoch in &releases {
                epoch.poison();
            }
            shared.output.cancel_reservation(reservation);
            Counters::add(&shared.tables[table].counters.errors, 1);
            shared.output.push_free(Output::Error {
                table,
                client: None,
                failure: Failure::Text(format!(
                    "building a batch of table {:?} failed: {err}",
                    shared.tables[table].plan.table
                )),
            });
        }
    }
    if held {
        shared.scheduler.release_hold();
    }
    // Dropped after the batch is queued: a state update they let go comes after its rows.
    drop(releases);
}

fn build(shared: &Arc<Shared>, work: Work) -> Result<RecordBatch, CoreError> {
    match work {
        Work::Finished { batch, .. } => Ok(batch),
        Work::Release { .. } => Err(CoreError::InvalidArgument(
            "a released epoch has no batch".into(),
        )),
        Work::Columns {
            table,
            columns,
            rows,
            parent_id,
        } => {
            let parent_ids = parent_id.map(|id| repeat_id(id, rows)).transpose()?;
            let schema = &shared.tables[table].plan.schema;
            ingest::finish_batch(schema, columns, parent_ids, rows, CqIds::Deterministic)
        }
        Work::Rows(mut bundle) => {
            let held = std::mem::take(&mut bundle.held);
            let table = bundle.table;
            let built = build_rows(shared, bundle).and_then(|batch| {
                start_children(shared, table, &batch, held.iter()).map(|()| batch)
            });
            if built.is_err() {
                // Their children will never run.
                for row in &held {
                    row.epoch.poison();
                }
            }
            built
        }
    }
}

fn build_rows(shared: &Shared, mut bundle: Bundle) -> Result<RecordBatch, CoreError> {
    let columns = bundle
        .builders
        .iter_mut()
        .map(|b| b.finish())
        .collect::<Result<Vec<_>, CoreError>>()?;
    let parent_ids = if bundle.parent_ids.is_empty() {
        None
    } else {
        Some(FixedSizeBinaryArray::try_from_iter(
            bundle.parent_ids.into_iter(),
        )?)
    };
    let runtime = &shared.tables[bundle.table];
    ingest::finish_batch(
        &runtime.plan.schema,
        columns,
        parent_ids,
        bundle.rows,
        CqIds::Deterministic,
    )
}

/// `rows` copies of one id.
pub fn repeat_id(id: [u8; 16], rows: usize) -> Result<FixedSizeBinaryArray, CoreError> {
    let bytes: Vec<u8> = id.iter().copied().cycle().take(16 * rows).collect();
    Ok(FixedSizeBinaryArray::try_new(16, bytes.into(), None)?)
}

/// Queues one task per row and child table of `table`, each with its parent row, id and
/// epoch.
pub fn start_children<'a>(
    shared: &Arc<Shared>,
    table: usize,
    batch: &RecordBatch,
    rows: impl ExactSizeIterator<Item = &'a HeldRow>,
) -> Result<(), CoreError> {
    if rows.len() == 0 {
        return Ok(());
    }
    let ids = batch
        .column_by_name(headwater_core::schema::CQ_ID)
        .and_then(|ids| ids.as_any().downcast_ref::<FixedSizeBinaryArray>())
        .ok_or_else(|| CoreError::InvalidArgument("the batch has no _cq_id column".into()))?;
    let runtime = &shared.tables[table];
    for (index, held) in rows.enumerate() {
        let mut id = [0u8; 16];
        id.copy_from_slice(ids.value(index));
        for &child in &runtime.children {
            let task = Task {
                table: child,
                depth: runtime.depth + 1,
                payload: Payload {
                    client: held.client,
                    parent: Some(Parent {
                        row: Arc::clone(&held.row),
                        id,
                    }),
                    parent_epoch: Some(Arc::clone(&held.epoch)),
                },
            };
            super::worker::queue(shared, task);
        }
    }
    Ok(())
}
