//! The tasks running now: what each runs (table, client), on which Python thread, and until
//! when it may run.
//!
//! Every task gets a [`Ticket`] when a worker starts it. The timer thread calls
//! [`expire_overdue`]: a threaded task past `resolver_timeout` is given up on. Its claim on
//! the concurrency limits goes back ([`Scheduler::abandon`]), a timeout error is recorded for
//! its table and client, and its worker thread leaves the pool (a new one takes its place).
//! The engine cannot stop Python code blocked in C (a `time.sleep`, a socket read), so the
//! thread is asked to unwind with [`ResolverCancelled`] the next time it runs Python, and,
//! when it comes back, it sees its ticket timed out and stops without delivering anything
//! more. Async resolvers are timed by their event loop instead (the Python side), so their
//! tickets are disarmed.
//!
//! The same list names the tasks a cancelled sync interrupted.
//!
//! [`Scheduler::abandon`]: headwater_core::scheduler::Scheduler::abandon

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use headwater_core::scheduler::{Slot, SlotId};
use pyo3::intern;
use pyo3::prelude::*;

use super::epoch::Newest;
use super::worker::spawn_worker;
use super::{lock, Counters, Failure, Output, Shared};

const RUNNING: u8 = 0;
const ENDED: u8 = 1;
const TIMED_OUT: u8 = 2;

/// One running task.
#[derive(Debug)]
pub struct Ticket {
    table: usize,
    client: usize,
    slot: SlotId,
    /// The Python thread id (`threading.get_ident()`) of the worker that started it.
    thread: u64,
    /// The same thread, as Rust names it.
    worker: ThreadId,
    /// Whether it moved to the event loop (its worker went on to other tasks).
    on_loop: AtomicBool,
    /// When it must end; `None` without a limit, or once it runs on the event loop.
    deadline: Mutex<Option<Instant>>,
    phase: AtomicU8,
    /// The task's newest epoch: a timeout loses the rows it would still have yielded.
    epoch: Newest,
}

impl Ticket {
    /// Whether the engine gave up on the task: it must not deliver anything more.
    pub fn timed_out(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == TIMED_OUT
    }

    /// Lifts the deadline: the task now runs on the event loop, which times it itself.
    /// Returns `false` if it timed out already.
    pub fn disarm(&self) -> bool {
        let mut deadline = lock(&self.deadline);
        if self.timed_out() {
            return false;
        }
        *deadline = None;
        self.on_loop.store(true, Ordering::Relaxed);
        true
    }

    /// Makes this the current thread's task until the guard is dropped, so code the
    /// resolver calls back into (`state.set`, error reports) can tell it timed out.
    pub fn enter(self: &Arc<Self>) -> Current {
        Current(CURRENT.with(|c| c.replace(Some(Arc::clone(self)))))
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Ticket>>> = const { RefCell::new(None) };
    static IDENT: Cell<Option<u64>> = const { Cell::new(None) };
}

/// `threading.get_ident()` of this thread, asked once per thread.
fn python_thread_ident(py: Python<'_>) -> u64 {
    if let Some(ident) = IDENT.get() {
        return ident;
    }
    let ident = py
        .import(intern!(py, "_thread"))
        .and_then(|m| m.getattr(intern!(py, "get_ident"))?.call0()?.extract())
        // Only a broken interpreter fails here; 0 names no thread, so it is never interrupted.
        .unwrap_or(0);
    IDENT.set(Some(ident));
    ident
}

/// The current thread's task, for as long as it lives (see [`Ticket::enter`]).
#[derive(Debug)]
pub struct Current(Option<Arc<Ticket>>);

impl Drop for Current {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Whether the task running on this thread timed out; `false` off a worker thread.
pub fn current_timed_out() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|t| t.timed_out()))
}

/// The running tasks of one sync.
#[derive(Debug)]
pub struct Running {
    tasks: Mutex<HashMap<SlotId, Arc<Ticket>>>,
    resolver_timeout: Option<Duration>,
    /// Python threads of timed-out tasks, to interrupt once someone holds the GIL.
    to_interrupt: Mutex<Vec<u64>>,
    /// The tasks that were running when the sync was cancelled.
    interrupted: Mutex<Option<Vec<(usize, usize)>>>,
    /// Whether any task timed out (cheap check for [`Running::interrupt_timed_out`]).
    any_timed_out: AtomicBool,
    /// Worker threads that left the pool with a timed-out task: nobody waits for them.
    left: Mutex<Vec<ThreadId>>,
}

impl Running {
    /// No task yet; each threaded invocation may run `resolver_timeout` at most.
    pub fn new(resolver_timeout: Option<Duration>) -> Self {
        Running {
            tasks: Mutex::new(HashMap::new()),
            resolver_timeout,
            to_interrupt: Mutex::new(Vec::new()),
            interrupted: Mutex::new(None),
            any_timed_out: AtomicBool::new(false),
            left: Mutex::new(Vec::new()),
        }
    }

    /// Registers a task of `table` and `client` starting now on this (Python) thread.
    pub fn start(
        &self,
        py: Python<'_>,
        table: usize,
        client: usize,
        slot: &Slot,
        epoch: Newest,
    ) -> Arc<Ticket> {
        let thread = python_thread_ident(py);
        let ticket = Arc::new(Ticket {
            table,
            client,
            slot: slot.id(),
            thread,
            worker: std::thread::current().id(),
            on_loop: AtomicBool::new(false),
            deadline: Mutex::new(self.resolver_timeout.map(|limit| Instant::now() + limit)),
            phase: AtomicU8::new(RUNNING),
            epoch,
        });
        lock(&self.tasks).insert(slot.id(), Arc::clone(&ticket));
        ticket
    }

    /// Ends a task; returns `false` if it had timed out (the engine gave up on it and its
    /// thread left the pool). Calling it again is harmless.
    pub fn end(&self, ticket: &Ticket) -> bool {
        match ticket
            .phase
            .compare_exchange(RUNNING, ENDED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => {
                lock(&self.tasks).remove(&ticket.slot);
                true
            }
            Err(phase) => phase != TIMED_OUT,
        }
    }

    /// Notes the tasks running now as the ones a cancellation interrupted (only the first
    /// time).
    pub fn note_interrupted(&self) {
        let running: Vec<(usize, usize)> = {
            let tasks = lock(&self.tasks);
            let mut running: Vec<_> = tasks.values().map(|t| (t.table, t.client)).collect();
            running.sort_unstable();
            running.dedup();
            running
        };
        lock(&self.interrupted).get_or_insert(running);
    }

    /// The `(table, client)` pairs running when the sync was cancelled.
    pub fn interrupted(&self) -> Vec<(usize, usize)> {
        lock(&self.interrupted).clone().unwrap_or_default()
    }

    /// The `(table, client)` pairs running now.
    pub fn now(&self) -> Vec<(usize, usize)> {
        let mut running: Vec<_> = lock(&self.tasks)
            .values()
            .map(|t| (t.table, t.client))
            .collect();
        running.sort_unstable();
        running.dedup();
        running
    }

    /// The Python threads running resolvers now (not those of async resolvers, which share
    /// the event loop's).
    pub fn resolver_threads(&self) -> Vec<u64> {
        lock(&self.tasks)
            .values()
            .filter(|t| !t.on_loop.load(Ordering::Relaxed))
            .map(|t| t.thread)
            .collect()
    }

    /// Whether `thread` left the pool with a timed-out task.
    pub fn has_left(&self, thread: ThreadId) -> bool {
        lock(&self.left).contains(&thread)
    }

    /// Asks the threads of timed-out tasks to unwind ([`ResolverCancelled`]) when they next
    /// run Python. Needs the GIL; cheap when no task timed out.
    pub fn interrupt_timed_out(&self, shared: &Shared, py: Python<'_>) {
        if !self.any_timed_out.load(Ordering::Relaxed) {
            return;
        }
        let threads = std::mem::take(&mut *lock(&self.to_interrupt));
        interrupt(shared, py, threads);
    }
}

/// Asks each Python thread in `threads` to raise `headwater.errors.ResolverCancelled` the
/// next time it runs Python code, through the Python side (`PyThreadState_SetAsyncExc`).
pub fn interrupt(shared: &Shared, py: Python<'_>, threads: Vec<u64>) {
    if !threads.is_empty() {
        shared.sink.interrupt(py, threads);
    }
}

/// Gives up on every threaded task past its deadline (called by the timer thread): records
/// a timeout error for its table and client, frees its claim, and replaces its worker.
pub fn expire_overdue(shared: &Arc<Shared>) {
    let Some(limit) = shared.running.resolver_timeout else {
        return;
    };
    let now = Instant::now();
    let overdue: Vec<Arc<Ticket>> = lock(&shared.running.tasks)
        .values()
        .filter(|t| lock(&t.deadline).is_some_and(|d| d <= now))
        .cloned()
        .collect();
    for ticket in overdue {
        if shared.is_cancelled() {
            return;
        }
        // Under the deadline's lock, so a task moving to the event loop (`disarm`) and its
        // timeout cannot both happen.
        let timed_out = {
            let deadline = lock(&ticket.deadline);
            deadline.is_some()
                && ticket
                    .phase
                    .compare_exchange(RUNNING, TIMED_OUT, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
        };
        if !timed_out {
            continue;
        }
        lock(&shared.running.tasks).remove(&ticket.slot);
        // Its state can no longer be set, and no update may cover what it did not yield.
        if let Some(epoch) = ticket.epoch.end() {
            epoch.poison();
        }
        shared.running.any_timed_out.store(true, Ordering::Relaxed);
        lock(&shared.running.to_interrupt).push(ticket.thread);
        lock(&shared.running.left).push(ticket.worker);
        Counters::add(&shared.tables[ticket.table].counters.errors, 1);
        shared.output.push_free(Output::Error {
            table: ticket.table,
            client: Some(ticket.client),
            failure: Failure::TimedOut(limit),
        });
        shared.scheduler.abandon(ticket.slot);
        // Its thread is stuck in the resolver: a new worker takes its place in the pool,
        // and the stuck one leaves it (it exits once the resolver returns).
        spawn_worker(shared);
        shared.scheduler.unregister_worker();
        // The new worker keeps the count above zero; only a sync cancelled meanwhile gets
        // none, and the engine's close finishes that one (this thread must not: it is the
        // timer, which finishing joins).
        shared.live_workers.fetch_sub(1, Ordering::SeqCst);
    }
}
