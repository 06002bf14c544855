//! [`Engine`]: everything the threads of one sync share.
//!
//! It is a plain structure with the operations every part needs (cancel, hand work to the
//! finisher, spawn and join threads); the parts that run on it are the modules above it:
//! [`crate::flush`], [`crate::worker`], [`crate::finisher`], [`crate::timer`] and
//! [`crate::lifecycle`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use headwater_core::CoreError;

use crate::accumulate::{Accumulator, Local, Owner, Registered};
use crate::host::Host;
use crate::ledger::Ledger;
use crate::lock::lock;
use crate::running::Running;
use crate::scheduler::{Limits, Scheduler};
use crate::state::StateMap;
use crate::table::{Options, Table};
use crate::task::EngineTask;
use crate::work::{Job, Work};

/// How a sync is limited: concurrency, memory, batching.
#[derive(Debug, Clone)]
pub struct Config {
    /// Concurrency limits and the task queue's bound.
    pub limits: Limits,
    /// Batching and error options.
    pub options: Options,
    /// The output buffer's byte budget.
    pub max_buffer_bytes: usize,
}

/// What [`Engine::start`](crate::lifecycle::start) takes once: the top-level tasks and the
/// finisher's end of its channel.
#[derive(Debug)]
pub struct Pending<H: Host> {
    /// The top-level tasks, in the order they start.
    pub roots: Vec<EngineTask<H>>,
    /// The finisher's end of the job channel.
    pub jobs: mpsc::Receiver<Job<H>>,
}

/// Everything the engine's threads share.
#[derive(Debug)]
pub struct Engine<H: Host> {
    /// The tables, the output and the state.
    pub ledger: Arc<Ledger<H>>,
    /// Task queue and limits.
    pub scheduler: Scheduler<crate::task::Payload<H>>,
    /// Batching and error options.
    pub options: Options,
    /// The tasks running now, their deadlines, and what a cancellation interrupted.
    pub running: Running<H>,
    /// What the driver keeps per sync (the bindings: resolvers, clients, callbacks).
    pub host: H,
    /// The event loop thread's accumulators (async resolvers).
    pub loop_local: Mutex<Local<H>>,
    /// To the finisher thread.
    jobs: mpsc::Sender<Job<H>>,
    /// Every accumulator of every thread, for the timer, state updates and the final flush.
    pub(crate) accumulators: Mutex<Vec<Registered<H>>>,
    /// Set once the sync winds down: the timer stops, the last worker out flushes.
    pub(crate) shutting_down: AtomicBool,
    /// An internal error (a panic) that ended the sync.
    fatal: Mutex<Option<String>>,
    /// Worker and finisher threads, joined on close.
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
    /// The timer thread, joined before the final flush so none of its flushes comes late.
    pub(crate) timer: Mutex<Option<JoinHandle<()>>>,
    /// Worker threads alive in the pool.
    pub(crate) live_workers: AtomicUsize,
    /// What `start` takes, until it runs.
    pub(crate) pending: Mutex<Option<Pending<H>>>,
}

impl<H: Host> Engine<H> {
    /// A sync of `tables` (parents before children, each with its children listed), starting
    /// with `roots`, from the incremental `state`; nothing runs before
    /// [`start`](crate::lifecycle::start).
    pub fn new(
        tables: Vec<Table>,
        roots: Vec<EngineTask<H>>,
        config: Config,
        state: HashMap<String, String>,
        host: H,
    ) -> Result<Arc<Self>, CoreError> {
        let scheduler = Scheduler::new(config.limits, tables.len())?;
        let (jobs, received) = mpsc::channel();
        Ok(Arc::new(Engine {
            ledger: Arc::new(Ledger::new(
                tables,
                config.max_buffer_bytes,
                StateMap::new(state),
            )),
            scheduler,
            running: Running::new(config.options.resolver_timeout),
            options: config.options,
            host,
            loop_local: Mutex::new(Local::new(Owner::Loop)),
            jobs,
            accumulators: Mutex::new(Vec::new()),
            shutting_down: AtomicBool::new(false),
            fatal: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            timer: Mutex::new(None),
            live_workers: AtomicUsize::new(0),
            pending: Mutex::new(Some(Pending {
                roots,
                jobs: received,
            })),
        }))
    }

    /// The selected tables, parents before children.
    pub fn tables(&self) -> &[Table] {
        &self.ledger.tables
    }

    /// Whether the sync was cancelled (cheap: checked once per item).
    pub fn is_cancelled(&self) -> bool {
        self.ledger.is_cancelled()
    }

    /// Cancels everything: queued tasks are dropped, blocked threads wake up, producers stop.
    /// Returns the dropped tasks, for the caller to release where it may drop their rows.
    pub fn cancel(&self) -> Vec<EngineTask<H>> {
        self.running.note_interrupted();
        self.ledger.cancel();
        self.wake_timer();
        self.scheduler.cancel()
    }

    /// Ends the sync on an internal error (a panic in an engine thread).
    pub fn fatal(&self, message: String) {
        lock(&self.fatal).get_or_insert(message);
        drop(self.cancel());
    }

    /// The internal error that ended the sync, if one did.
    pub fn fatal_error(&self) -> Option<String> {
        lock(&self.fatal).clone()
    }

    /// Whether every engine thread has been joined.
    pub fn finished(&self) -> bool {
        lock(&self.threads).is_empty() && lock(&self.timer).is_none()
    }

    /// Whether `start` has run.
    pub fn started(&self) -> bool {
        lock(&self.pending).is_none()
    }

    /// Sends `work` to the finisher, reserving `bytes` of the output budget first: this is
    /// where producers block while the consumer is slow (so call it where blocking is
    /// allowed: without the GIL, in the bindings). Returns the work if the sync was cancelled
    /// meanwhile, for the caller to [`abandon`](Work::abandon) where it may drop its rows.
    pub fn submit(&self, work: Work<H>, bytes: usize) -> Option<Work<H>> {
        let Some(reservation) = self.ledger.output.reserve(bytes) else {
            return Some(work);
        };
        match self.send(Job::Finish(work, reservation)) {
            Ok(()) => None,
            Err(Job::Finish(work, reservation)) => {
                self.ledger.output.cancel_reservation(reservation);
                Some(work)
            }
            Err(Job::Shutdown) => None,
        }
    }

    /// Sends a job to the finisher; gives it back if the finisher is gone.
    pub(crate) fn send(&self, job: Job<H>) -> Result<(), Job<H>> {
        self.jobs.send(job).map_err(|mpsc::SendError(job)| job)
    }

    /// The accumulator of `table` in the thread's `local` ones, made on first use.
    pub fn accumulator<'a>(
        &self,
        local: &'a mut Local<H>,
        table: usize,
    ) -> Result<&'a Arc<Mutex<Accumulator<H>>>, CoreError> {
        local.get(&self.accumulators, self.tables(), table)
    }

    /// The accumulator `owner` fills for `table`, if it has made one.
    pub fn registered(&self, owner: Owner, table: usize) -> Option<Arc<Mutex<Accumulator<H>>>> {
        lock(&self.accumulators)
            .iter()
            .find(|r| r.owner == owner && r.table == table)
            .map(|r| Arc::clone(&r.accumulator))
    }

    pub(crate) fn wake_timer(&self) {
        if let Some(timer) = lock(&self.timer).as_ref() {
            timer.thread().unpark();
        }
    }

    /// Stops the timer thread and waits for it, so it flushes nothing after this returns.
    /// Called on the timer thread itself (which ends the sync when the worker it started in
    /// place of a timed-out one is gone already), it only tells the timer to stop: whoever
    /// joins the engine joins it.
    pub fn stop_timer(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let timer = {
            let mut timer = lock(&self.timer);
            let current = std::thread::current().id();
            if timer.as_ref().is_some_and(|t| t.thread().id() == current) {
                return;
            }
            timer.take()
        };
        if let Some(timer) = timer {
            timer.thread().unpark();
            if timer.join().is_err() {
                self.fatal("the timer thread panicked".into());
            }
        }
    }

    /// Starts an engine thread, joined when the sync closes.
    pub(crate) fn spawn(
        &self,
        name: &str,
        body: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let handle = std::thread::Builder::new()
            .name(name.into())
            // Resolvers run on these threads (Python code, in the bindings): give them the
            // usual main-thread stack.
            .stack_size(8 << 20)
            .spawn(body)?;
        lock(&self.threads).push(handle);
        Ok(())
    }
}
