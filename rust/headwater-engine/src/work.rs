//! What producers send the finisher thread (see [`crate::finisher`]).

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};

use crate::accumulate::Bundle;
use crate::buffer::Reservation;
use crate::epoch::Epoch;
use crate::host::Host;
use crate::scheduler::Scheduler;
use crate::task::Payload;

/// Something to finish.
#[derive(Debug)]
pub enum Work<H: Host> {
    /// Rows flushed from an accumulator.
    Rows(Bundle<H>),
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
        epoch: Arc<Epoch<H>>,
    },
}

impl<H: Host> Work<H> {
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
    pub fn abandon(self, scheduler: &Scheduler<Payload<H>>) {
        if let Work::Rows(bundle) = &self {
            if !bundle.held.is_empty() {
                scheduler.release_hold();
            }
        }
    }
}

/// A message to the finisher thread.
#[derive(Debug)]
pub enum Job<H: Host> {
    /// Finish this, within these reserved bytes.
    Finish(Work<H>, Reservation),
    /// No more work: close the output once everything before this is done.
    Shutdown,
}
