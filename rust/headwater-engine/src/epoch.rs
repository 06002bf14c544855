//! Epochs: a state update waits for every row derived from the rows it covers.
//!
//! A cursor that a parent table's resolver stores covers the parent rows yielded before it
//! *and* everything their child tasks (at every depth) produce. If the update became durable
//! before the children's rows, a crash would leave parents whose children a rerun never fetches
//! again, since the rerun starts after them. So the engine keeps an update back until all of
//! that is in the output, ahead of it.
//!
//! A task's life is cut into epochs by its state updates: epoch *k* holds the rows yielded
//! before update *k*, and closes with it. The update leaves (is pushed to the output) when the
//! last [`Arc`] of its epoch is dropped. Whatever must come first holds one:
//! - the update itself, queued behind the task's rows in its accumulator, until the finisher
//!   has queued those rows' batch;
//! - each row kept to start child tasks, and then the child task's epochs: the child's newest
//!   epoch holds its parent's, and the child task holds its newest epoch until its own last
//!   rows have left (end of task, queued behind them like an update);
//! - the epoch before it (epoch *k* holds *k + 1*), so one task's updates leave in order and
//!   a later cursor never overtakes an earlier one.
//!
//! When rows an update covers are lost (a child task failed, a batch failed to build, a task
//! timed out), the epoch is *poisoned*: its update is withheld, and the poison follows the
//! same edges — to the later epochs of the task and up to the parent's epoch — so no cursor
//! moves past missing rows. The next sync fetches them again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::host::Host;
use crate::ledger::Ledger;
use crate::lock::lock;

/// A state update: the key and its new value.
pub type StateUpdate = (String, String);

/// The epochs an epoch links to: the task's next one and the parent task's.
type Links<H> = (Option<Arc<Epoch<H>>>, Option<Arc<Epoch<H>>>);

/// One stretch of a task between two state updates; see the module docs.
#[derive(Debug)]
pub struct Epoch<H: Host> {
    ledger: Weak<Ledger<H>>,
    table: usize,
    /// The update that closed the epoch; `None` while it is the task's newest.
    update: Mutex<Option<StateUpdate>>,
    poisoned: AtomicBool,
    /// The task's next epoch, kept alive until this one leaves.
    next: Mutex<Option<Arc<Epoch<H>>>>,
    /// The parent task's epoch, held by the task's newest epoch only.
    parent: Mutex<Option<Arc<Epoch<H>>>>,
}

impl<H: Host> Epoch<H> {
    /// The first epoch of a task of `table`, started from a row of the `parent` epoch.
    pub fn first(
        ledger: &Arc<Ledger<H>>,
        table: usize,
        parent: Option<Arc<Epoch<H>>>,
    ) -> Arc<Self> {
        Arc::new(Epoch {
            ledger: Arc::downgrade(ledger),
            table,
            update: Mutex::new(None),
            poisoned: AtomicBool::new(false),
            next: Mutex::new(None),
            parent: Mutex::new(parent),
        })
    }

    /// Closes this epoch with `update` and returns the task's next one, which takes over the
    /// parent. The caller queues (a clone of) `self` behind the rows before the update.
    pub fn close(self: &Arc<Self>, update: StateUpdate) -> Arc<Self> {
        let next = Arc::new(Epoch {
            ledger: Weak::clone(&self.ledger),
            table: self.table,
            update: Mutex::new(None),
            poisoned: AtomicBool::new(false),
            next: Mutex::new(None),
            parent: Mutex::new(lock(&self.parent).take()),
        });
        *lock(&self.update) = Some(update);
        *lock(&self.next) = Some(Arc::clone(&next));
        next
    }

    /// Withholds this epoch's update, the task's later ones and its ancestors' (see the
    /// module docs): rows they cover are lost.
    pub fn poison(&self) {
        self.poisoned.store(true, Ordering::SeqCst);
    }

    /// Pushes (or withholds) the update and hands the poison on, without dropping the links.
    fn leave(&mut self) -> Links<H> {
        let poisoned = *self.poisoned.get_mut();
        let update = self
            .update
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let next = self
            .next
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let parent = self
            .parent
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if poisoned {
            for linked in next.iter().chain(parent.iter()) {
                linked.poison();
            }
        }
        if let (Some((key, value)), Some(ledger)) = (update, self.ledger.upgrade()) {
            if poisoned {
                ledger.withhold_state(self.table);
            } else {
                ledger.deliver_state(self.table, key, value);
            }
        }
        (next, parent)
    }
}

impl<H: Host> Drop for Epoch<H> {
    fn drop(&mut self) {
        let (mut next, parent) = self.leave();
        // The parent's chain is as deep as the table tree; a task's own chain can be as long as
        // it has updates, so it is walked in a loop rather than by recursive drops.
        drop(parent);
        while let Some(epoch) = next.take() {
            if let Some(mut epoch) = Arc::into_inner(epoch) {
                let (after, parent) = epoch.leave();
                drop(parent);
                next = after;
            }
        }
    }
}

/// The newest epoch of a running task, shared by its context and its `state` handle; empty
/// once the task has ended.
#[derive(Debug)]
pub struct Newest<H: Host>(Arc<Mutex<Option<Arc<Epoch<H>>>>>);

impl<H: Host> Clone for Newest<H> {
    fn clone(&self) -> Self {
        Newest(Arc::clone(&self.0))
    }
}

impl<H: Host> Newest<H> {
    /// A task's first epoch.
    pub fn new(epoch: Arc<Epoch<H>>) -> Self {
        Newest(Arc::new(Mutex::new(Some(epoch))))
    }

    /// The epoch rows yielded now belong to; `None` once the task has ended.
    pub fn get(&self) -> Option<Arc<Epoch<H>>> {
        lock(&self.0).clone()
    }

    /// Closes the newest epoch with `update` and moves on to the next; returns the closed one,
    /// to queue behind the rows before it (`None` once the task has ended).
    pub fn close(&self, update: StateUpdate) -> Option<Arc<Epoch<H>>> {
        let mut newest = lock(&self.0);
        let closed = newest.take()?;
        *newest = Some(closed.close(update));
        Some(closed)
    }

    /// Poisons the newest epoch: the task lost rows (it failed, or its batch did).
    pub fn poison(&self) {
        if let Some(epoch) = lock(&self.0).as_ref() {
            epoch.poison();
        }
    }

    /// Ends the task: returns its newest epoch, to queue behind its last rows.
    pub fn end(&self) -> Option<Arc<Epoch<H>>> {
        lock(&self.0).take()
    }
}
