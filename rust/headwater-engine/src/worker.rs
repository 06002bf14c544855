//! Worker threads and the life of a task, as far as the engine is concerned.
//!
//! Workers are started on demand, up to the concurrency limit (plus one per task that waits
//! for its children), and exit when the sync is over; the last one out flushes what is left
//! and tells the finisher to close the output. What a worker does with a task (call the
//! resolver, step what it returns, append rows) is the driver's: [`Driver::work`] is the body
//! of every worker thread. The engine gives each task a [`TaskContext`] (its epoch and its
//! ticket among the running tasks), ends it with [`end_task`], and gives up on tasks past
//! their time limit ([`expire_overdue`]).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use headwater_core::CoreError;

use crate::accumulate::{Local, Owner};
use crate::buffer::Reservation;
use crate::engine::Engine;
use crate::epoch::{Epoch, Newest};
use crate::flush::{flush_local, flush_registered};
use crate::host::Host;
use crate::lock::lock;
use crate::output::Failure;
use crate::running::Ticket;
use crate::scheduler::Slot;
use crate::task::{EngineTask, Parent};
use crate::work::{Job, Work};

/// Why a worker thread stopped taking tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// The sync is over (or cancelled).
    Done,
    /// Its task timed out and the engine gave up on it (see [`crate::running`]): the thread
    /// left the pool, and a new one took its place.
    Pool,
}

/// The driver of a sync: what runs on its worker threads.
pub trait Driver: Host {
    /// The body of a worker thread: takes tasks from `engine.scheduler` until there are none
    /// left (or the sync is cancelled), flushing its accumulators before it waits and at the
    /// end. Returns [`Left::Pool`] if a task it ran timed out (the thread must then exit
    /// without flushing).
    fn work(engine: &Arc<Engine<Self>>) -> Left;
}

/// One running task: which table, client and parent, and what it has produced so far.
#[derive(Debug)]
pub struct TaskContext<H: Host> {
    /// Table index.
    pub table: usize,
    /// 0 for top-level tables.
    pub depth: usize,
    /// Client index.
    pub client: usize,
    /// The parent row of a child table's task.
    pub parent: Option<Parent<H>>,
    /// Rows yielded so far (the index of the next one, for row errors).
    pub rows_seen: usize,
    /// Rows stored so far.
    pub rows_kept: usize,
    /// When the task started.
    pub started: Instant,
    /// The epoch the rows yielded now belong to (see [`crate::epoch`]).
    pub epoch: Newest<H>,
    /// Its entry among the running tasks (deadline, timed out or not).
    pub ticket: Arc<Ticket>,
}

impl<H: Host> TaskContext<H> {
    /// Starts `task` in `slot` on this thread, which the driver names `thread`.
    pub fn new(engine: &Engine<H>, task: EngineTask<H>, slot: &Slot, thread: u64) -> Self {
        let epoch = Newest::new(Epoch::first(
            &engine.ledger,
            task.table,
            task.payload.parent_epoch,
        ));
        let ticket =
            engine
                .running
                .start(thread, task.table, task.payload.client, slot, epoch.clone());
        TaskContext {
            table: task.table,
            depth: task.depth,
            client: task.payload.client,
            parent: task.payload.parent,
            rows_seen: 0,
            rows_kept: 0,
            started: Instant::now(),
            epoch,
            ticket,
        }
    }

    /// The task lost rows (it failed): no state update may cover what it did not deliver.
    pub fn failed(&self) {
        self.epoch.poison();
    }
}

/// Queues a task, starting a worker thread if none is free to run it.
pub fn queue<H: Driver>(engine: &Arc<Engine<H>>, task: EngineTask<H>) {
    match engine.scheduler.push(task) {
        Ok(true) => spawn_worker(engine),
        Ok(false) => {}
        Err(err) => engine.fatal(format!("queueing a task failed: {err}")),
    }
}

/// Starts one more worker thread.
pub fn spawn_worker<H: Driver>(engine: &Arc<Engine<H>>) {
    if engine.is_cancelled() {
        return;
    }
    engine.scheduler.register_worker();
    engine.live_workers.fetch_add(1, Ordering::SeqCst);
    let worker = Arc::clone(engine);
    if let Err(err) = engine.spawn("headwater-worker", move || worker_main(worker)) {
        engine.scheduler.unregister_worker();
        if engine.live_workers.fetch_sub(1, Ordering::SeqCst) == 1 {
            engine.fatal(format!("cannot start a worker thread: {err}"));
        }
    }
}

fn worker_main<H: Driver>(engine: Arc<Engine<H>>) {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| H::work(&engine)));
    if let Ok(Left::Pool) = outcome {
        // It timed out in a resolver: the engine replaced it and counted it out already.
        return;
    }
    if let Err(panic) = outcome {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        engine.fatal(format!("a worker thread panicked: {message}"));
    }
    engine.scheduler.unregister_worker();
    if engine.live_workers.fetch_sub(1, Ordering::SeqCst) == 1 {
        finish_sync(&engine);
    }
}

/// Called by the last worker thread to exit (or by a close that stopped waiting for stuck
/// ones): flushes the rows left in any accumulator (the event loop thread's, say) and shuts
/// the finisher down, which closes the output.
pub fn finish_sync<H: Host>(engine: &Engine<H>) {
    if engine.shutting_down.swap(true, Ordering::SeqCst) {
        return;
    }
    engine.stop_timer();
    flush_registered(engine, true);
    // The finisher is gone only if it panicked, which already cancelled the sync.
    let _ = engine.send(Job::Shutdown);
}

/// Ends a task, as far as the engine is concerned: its newest epoch is queued behind its last
/// rows and its parent rows go to the finisher (so their children can start), through
/// `reserve` and `refused` as in [`flush_local`]. The caller gives the slot back
/// ([`crate::scheduler::Scheduler::finish`]) after whatever it reports about the task.
/// Returns the errors to report for the task (each has already poisoned its epoch).
pub fn end_task<H: Host>(
    engine: &Engine<H>,
    local: &mut Local<H>,
    cx: &TaskContext<H>,
    reserve: impl Fn(usize) -> Option<Reservation>,
    refused: impl FnMut(Work<H>),
) -> Vec<CoreError> {
    let mut errors = Vec::new();
    engine.running.end(&cx.ticket);
    if let Some(epoch) = cx.epoch.end() {
        match engine.accumulator(local, cx.table) {
            Ok(accumulator) => lock(accumulator).push_release(epoch),
            Err(err) => {
                epoch.poison();
                errors.push(err);
            }
        }
    }
    if let Err(err) = flush_local(engine, local, true, reserve, refused) {
        cx.failed();
        errors.push(err);
    }
    errors
}

/// Queues a closed epoch of a task of `table` behind the rows it yielded on the thread
/// `owner` (or straight to the finisher if that thread has no rows of the table). Call where
/// blocking is allowed; returns refused work as [`Engine::submit`] does.
pub fn queue_release<H: Host>(
    engine: &Engine<H>,
    owner: Owner,
    table: usize,
    epoch: Arc<Epoch<H>>,
) -> Option<Work<H>> {
    match engine.registered(owner, table) {
        Some(accumulator) => {
            lock(&accumulator).push_release(epoch);
            None
        }
        // No row of this table was appended on that thread: nothing to wait for.
        None => engine.submit(Work::Release { table, epoch }, 0),
    }
}

/// Gives up on every threaded task past its deadline (called by the timer thread): records
/// a timeout error for its table and client, frees its claim, and replaces its worker.
pub fn expire_overdue<H: Driver>(engine: &Arc<Engine<H>>) {
    let Some(limit) = engine.running.resolver_timeout() else {
        return;
    };
    if engine.is_cancelled() {
        return;
    }
    for ticket in engine.running.expire(Instant::now()) {
        engine.ledger.fail(
            ticket.table(),
            Some(ticket.client()),
            Failure::TimedOut(limit),
        );
        engine.scheduler.abandon(ticket.slot());
        // Its thread is stuck in the resolver: a new worker takes its place in the pool,
        // and the stuck one leaves it (it exits once the resolver returns).
        spawn_worker(engine);
        engine.scheduler.unregister_worker();
        // The new worker may have found nothing left to do and gone already (or none was
        // started, the sync being cancelled): then the stuck one was the last in the pool.
        if engine.live_workers.fetch_sub(1, Ordering::SeqCst) == 1 {
            finish_sync(engine);
        }
    }
}
