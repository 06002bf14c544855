//! The tasks running now: what each runs (table, client), on which thread, and until
//! when it may run.
//!
//! Every task gets a [`Ticket`] when a worker starts it. The timer thread calls
//! [`expire_overdue`](crate::worker::expire_overdue): a threaded task past `resolver_timeout`
//! is given up on. Its claim on the concurrency limits goes back ([`Scheduler::abandon`]), a timeout error is recorded for
//! its table and client, and its worker thread leaves the pool (a new one takes its place).
//! The engine cannot stop a resolver blocked in foreign code (a `time.sleep`, a socket read),
//! so its thread is listed for the driver to interrupt ([`Running::take_to_interrupt`]: the
//! Python bindings raise `ResolverCancelled` in it the next time it runs Python), and, when it
//! comes back, it sees its ticket timed out and stops without delivering anything more. Async
//! resolvers are timed by their event loop instead (the Python side), so their tickets are
//! disarmed.
//!
//! The same list names the tasks a cancelled sync interrupted.
//!
//! [`Scheduler::abandon`]: crate::scheduler::Scheduler::abandon

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crate::epoch::Newest;
use crate::host::Host;
use crate::lock::lock;
use crate::scheduler::{Slot, SlotId};

const RUNNING: u8 = 0;
const ENDED: u8 = 1;
const TIMED_OUT: u8 = 2;

/// One running task.
#[derive(Debug)]
pub struct Ticket {
    table: usize,
    client: usize,
    slot: SlotId,
    /// The driver's id of the thread that started it (Python's `threading.get_ident()`).
    thread: u64,
    /// The same thread, as Rust names it.
    worker: ThreadId,
    /// Whether it moved to the event loop (its worker went on to other tasks).
    on_loop: AtomicBool,
    /// When it must end; `None` without a limit, or once it runs on the event loop.
    deadline: Mutex<Option<Instant>>,
    phase: AtomicU8,
}

impl Ticket {
    /// Whether the engine gave up on the task: it must not deliver anything more.
    #[inline]
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

/// A running task's ticket and newest epoch.
type Entry<H> = (Arc<Ticket>, Newest<H>);

/// The running tasks of one sync.
#[derive(Debug)]
pub struct Running<H: Host> {
    /// Each running task's ticket and newest epoch (a timeout loses the rows it would still
    /// have yielded).
    tasks: Mutex<HashMap<SlotId, Entry<H>>>,
    resolver_timeout: Option<Duration>,
    /// Threads of timed-out tasks, to interrupt (see [`Running::take_to_interrupt`]).
    to_interrupt: Mutex<Vec<u64>>,
    /// The tasks that were running when the sync was cancelled.
    interrupted: Mutex<Option<Vec<(usize, usize)>>>,
    /// Whether any task timed out (cheap check for [`Running::take_to_interrupt`]).
    any_timed_out: AtomicBool,
    /// Worker threads that left the pool with a timed-out task: nobody waits for them.
    left: Mutex<Vec<ThreadId>>,
}

impl<H: Host> Running<H> {
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

    /// Registers a task of `table` and `client` starting now on this thread, which the
    /// driver names `thread` (to interrupt it).
    pub fn start(
        &self,
        thread: u64,
        table: usize,
        client: usize,
        slot: &Slot,
        epoch: Newest<H>,
    ) -> Arc<Ticket> {
        let ticket = Arc::new(Ticket {
            table,
            client,
            slot: slot.id(),
            thread,
            worker: std::thread::current().id(),
            on_loop: AtomicBool::new(false),
            deadline: Mutex::new(self.resolver_timeout.map(|limit| Instant::now() + limit)),
            phase: AtomicU8::new(RUNNING),
        });
        lock(&self.tasks).insert(slot.id(), (Arc::clone(&ticket), epoch));
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
            let mut running: Vec<_> = tasks.values().map(|(t, _)| (t.table, t.client)).collect();
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
            .map(|(t, _)| (t.table, t.client))
            .collect();
        running.sort_unstable();
        running.dedup();
        running
    }

    /// The threads running resolvers now, as the driver names them (not those of async
    /// resolvers, which share the event loop's).
    pub fn resolver_threads(&self) -> Vec<u64> {
        lock(&self.tasks)
            .values()
            .filter(|(t, _)| !t.on_loop.load(Ordering::Relaxed))
            .map(|(t, _)| t.thread)
            .collect()
    }

    /// Whether `thread` left the pool with a timed-out task.
    pub fn has_left(&self, thread: ThreadId) -> bool {
        lock(&self.left).contains(&thread)
    }

    /// The threads of tasks that timed out since the last call, for the driver to interrupt
    /// (see the module docs); cheap when no task timed out.
    pub fn take_to_interrupt(&self) -> Vec<u64> {
        if !self.any_timed_out.load(Ordering::Relaxed) {
            return Vec::new();
        }
        std::mem::take(&mut *lock(&self.to_interrupt))
    }

    /// The resolver time limit.
    pub fn resolver_timeout(&self) -> Option<Duration> {
        self.resolver_timeout
    }

    /// Gives up on every threaded task past its deadline at `now`: each leaves the list of
    /// running tasks, its newest epoch is poisoned, its thread is listed to interrupt and as
    /// having left the pool. Returns them, for the caller to report and replace.
    pub fn expire(&self, now: Instant) -> Vec<Arc<Ticket>> {
        let overdue: Vec<Entry<H>> = lock(&self.tasks)
            .values()
            .filter(|(t, _)| lock(&t.deadline).is_some_and(|d| d <= now))
            .cloned()
            .collect();
        let mut expired = Vec::new();
        for (ticket, epoch) in overdue {
            // Under the deadline's lock, so a task moving to the event loop (`disarm`) and
            // its timeout cannot both happen.
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
            lock(&self.tasks).remove(&ticket.slot);
            // Its state can no longer be set, and no update may cover what it did not yield.
            if let Some(epoch) = epoch.end() {
                epoch.poison();
            }
            self.any_timed_out.store(true, Ordering::Relaxed);
            lock(&self.to_interrupt).push(ticket.thread);
            lock(&self.left).push(ticket.worker);
            expired.push(ticket);
        }
        expired
    }
}

impl Ticket {
    /// The table of the task.
    pub fn table(&self) -> usize {
        self.table
    }

    /// The client of the task.
    pub fn client(&self) -> usize {
        self.client
    }

    /// The task's slot.
    pub fn slot(&self) -> SlotId {
        self.slot
    }
}
