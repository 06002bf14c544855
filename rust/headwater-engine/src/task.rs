//! What a task carries besides its table: the client index, and for a child table's task the
//! parent row with its `_cq_id` and the epoch it belongs to.

use std::sync::Arc;

use crate::epoch::Epoch;
use crate::host::Host;
use crate::scheduler::Task;

/// The parent row a child task resolves for.
#[derive(Debug)]
pub struct Parent<H: Host> {
    /// The row as the parent's resolver yielded it.
    pub row: Arc<H::Row>,
    /// Its `_cq_id`.
    pub id: [u8; 16],
}

impl<H: Host> Clone for Parent<H> {
    fn clone(&self) -> Self {
        Parent {
            row: Arc::clone(&self.row),
            id: self.id,
        }
    }
}

/// What a task needs besides its table.
#[derive(Debug)]
pub struct Payload<H: Host> {
    /// Index of the client the task runs with.
    pub client: usize,
    /// The parent row, for child tables.
    pub parent: Option<Parent<H>>,
    /// The epoch of the parent task that yielded the row: held until the task is done.
    pub parent_epoch: Option<Arc<Epoch<H>>>,
}

/// A task of the engine's scheduler.
pub type EngineTask<H> = Task<Payload<H>>;

impl<H: Host> Payload<H> {
    /// A top-level task's payload: client `client`, no parent.
    pub fn root(client: usize) -> Self {
        Payload {
            client,
            parent: None,
            parent_epoch: None,
        }
    }
}
