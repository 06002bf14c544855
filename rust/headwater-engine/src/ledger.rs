//! What the engine delivers into: the tables with their counters, the output buffer and the
//! state map, with the flag that says the sync was cancelled.
//!
//! It is its own structure, below the rest of the engine, because the epochs that let state
//! updates out (see [`crate::epoch`]) write into it while the engine holds them.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::buffer::OutputBuffer;
use crate::host::Host;
use crate::output::{Failure, Output};
use crate::state::StateMap;
use crate::table::{Counters, Table};

/// The tables, the output and the state of one sync.
#[derive(Debug)]
pub struct Ledger<H: Host> {
    /// The selected tables, parents before children.
    pub tables: Vec<Table>,
    /// Finished batches, state updates and errors, bounded by bytes.
    pub output: OutputBuffer<Output<H::Failure>>,
    /// Incremental state: the values given at the start, and what resolvers set since.
    pub state: StateMap,
    cancelled: AtomicBool,
}

impl<H: Host> Ledger<H> {
    /// An empty output of `budget` bytes for `tables`, starting from `state`.
    pub fn new(tables: Vec<Table>, budget: usize, state: StateMap) -> Self {
        Ledger {
            tables,
            output: OutputBuffer::new(budget),
            state,
            cancelled: AtomicBool::new(false),
        }
    }

    /// Whether the sync was cancelled (cheap: checked once per item).
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Marks the sync cancelled and wakes whoever waits on the output.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.output.cancel();
    }

    /// Delivers a state update of `table` (after every row it covers), unless cancelled.
    pub fn deliver_state(&self, table: usize, key: String, value: String) {
        if self.is_cancelled() {
            return;
        }
        self.state.delivered(&key, &value);
        self.output.push_free(Output::State { table, key, value });
    }

    /// Counts a state update of `table` withheld because rows it covers were lost.
    pub fn withhold_state(&self, table: usize) {
        Counters::add(&self.tables[table].counters.withheld, 1);
    }

    /// Counts a failure of `table` and sends it to the output; the rest of the sync goes on.
    pub fn fail(&self, table: usize, client: Option<usize>, failure: Failure<H::Failure>) {
        Counters::add(&self.tables[table].counters.errors, 1);
        self.output.push_free(Output::Error {
            table,
            client,
            failure,
        });
    }
}
