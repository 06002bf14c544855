//! The finisher thread: turns flushed rows into record batches without the GIL.
//!
//! It finishes the column builders, computes `_cq_id` (from the primary key, as the Go SDK
//! does; random for tables without one) and `_cq_parent_id`, starts the child tasks of a
//! parent table's rows (each needs its parent's `_cq_id`), counts the rows, and queues the
//! batch in the output buffer under the bytes reserved for it. One thread, first in first out,
//! so batches leave in the order they were flushed; the [`Epoch`](crate::epoch::Epoch)s flushed behind a batch are
//! released once it is queued (which lets their state updates leave, see [`crate::epoch`]).

use std::sync::{mpsc, Arc};

use arrow_array::{Array, FixedSizeBinaryArray, RecordBatch};
use headwater_core::ingest::{self, CqIds};
use headwater_core::CoreError;

use crate::accumulate::{Bundle, HeldRow};
use crate::buffer::Reservation;
use crate::engine::Engine;
use crate::output::{Failure, Output};
use crate::scheduler::Task;
use crate::table::Counters;
use crate::task::{Parent, Payload};
use crate::work::{Job, Work};
use crate::worker::{queue, Driver};

/// Runs the finisher loop until [`Job::Shutdown`] (or every sender is gone), then closes the
/// output buffer.
pub fn run<H: Driver>(engine: &Arc<Engine<H>>, jobs: mpsc::Receiver<Job<H>>) {
    for job in jobs {
        match job {
            Job::Finish(work, reservation) => finish(engine, work, reservation),
            Job::Shutdown => break,
        }
    }
    engine.ledger.output.close();
}

fn finish<H: Driver>(engine: &Arc<Engine<H>>, work: Work<H>, reservation: Reservation) {
    let table = work.table();
    let output = &engine.ledger.output;
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
    match to_build.map(|work| build(engine, work)) {
        None => output.cancel_reservation(reservation),
        Some(Ok(batch)) => {
            Counters::add(&engine.tables()[table].counters.rows, batch.num_rows());
            let bytes = batch.get_array_memory_size();
            output.push(Output::Insert { table, batch }, bytes, reservation);
        }
        Some(Err(err)) => {
            // The rows are lost: no state update may cover them.
            for epoch in &releases {
                epoch.poison();
            }
            output.cancel_reservation(reservation);
            engine.ledger.fail(
                table,
                None,
                Failure::Text(format!(
                    "building a batch of table {:?} failed: {err}",
                    engine.tables()[table].name
                )),
            );
        }
    }
    if held {
        engine.scheduler.release_hold();
    }
    // Dropped after the batch is queued: a state update they let go comes after its rows.
    drop(releases);
}

fn build<H: Driver>(engine: &Arc<Engine<H>>, work: Work<H>) -> Result<RecordBatch, CoreError> {
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
            let schema = &engine.tables()[table].schema;
            ingest::finish_batch(schema, columns, parent_ids, rows, CqIds::Deterministic)
        }
        Work::Rows(mut bundle) => {
            let held = std::mem::take(&mut bundle.held);
            let table = bundle.table;
            let built = build_rows(engine, bundle).and_then(|batch| {
                start_children(engine, table, &batch, held.iter()).map(|()| batch)
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

fn build_rows<H: Driver>(
    engine: &Engine<H>,
    mut bundle: Bundle<H>,
) -> Result<RecordBatch, CoreError> {
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
    ingest::finish_batch(
        &engine.tables()[bundle.table].schema,
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
pub fn start_children<'a, H: Driver>(
    engine: &Arc<Engine<H>>,
    table: usize,
    batch: &RecordBatch,
    rows: impl ExactSizeIterator<Item = &'a HeldRow<H>>,
) -> Result<(), CoreError> {
    if rows.len() == 0 {
        return Ok(());
    }
    let ids = batch
        .column_by_name(headwater_core::schema::CQ_ID)
        .and_then(|ids| ids.as_any().downcast_ref::<FixedSizeBinaryArray>())
        .ok_or_else(|| CoreError::InvalidArgument("the batch has no _cq_id column".into()))?;
    let runtime = &engine.tables()[table];
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
            queue(engine, task);
        }
    }
    Ok(())
}
