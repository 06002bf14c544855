//! The sync engine: runs a plugin's resolvers on worker threads and turns what they yield into
//! record batches, within concurrency limits and a memory budget.
//!
//! The pieces, and the one job each has:
//! - [`headwater_core::scheduler::Scheduler`] decides which resolver invocation (a *task*: one
//!   table, one client, one parent row) runs next;
//! - [`worker`] threads run tasks: they call the resolver, step its generator with the GIL held
//!   and append each row to a per-thread [`accumulate::Accumulator`] of the table; a resolver
//!   blocked in I/O releases the GIL so the others run;
//! - full accumulators (by rows, bytes, or age, checked by a [`timer`] thread) become jobs for
//!   the [`finisher`] thread, which finishes the arrays and hashes `_cq_id` without the GIL,
//!   starts the child tasks of a parent table's rows, and queues the batch in the output
//!   [`headwater_core::buffer::OutputBuffer`], whose byte budget blocks producers when the
//!   consumer is slow;
//! - async resolvers run on an asyncio event loop owned by the Python side; an
//!   [`async_task::AsyncTask`] handle feeds their items into the same accumulators;
//! - a resolver's [`state::TaskState`] reads and writes incremental state (cursors); an update
//!   leaves only after the rows the resolver yielded before it and everything their child
//!   tasks produced ([`epoch`]), so whoever consumes the output stores it only once all of
//!   that is stored;
//! - [`running`] lists the tasks running now, gives up on a threaded resolver past its time
//!   limit, and names what a cancelled sync interrupted;
//! - [`engine::SyncEngine`] is the Python-facing iterator over the output, and cancels and joins
//!   everything when closed;
//! - [`sink::Sink`] is the one way back into Python: messages, log events, interrupts and async
//!   resolvers all go through the one sink object the Python side hands the engine.

mod accumulate;
mod async_task;
mod engine;
mod epoch;
mod finisher;
mod read_ahead;
mod running;
mod sink;
mod state;
mod timer;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use arrow_array::RecordBatch;
use headwater_core::buffer::OutputBuffer;
use headwater_core::scheduler::{Scheduler, Task};
use pyo3::prelude::*;

use crate::plan::TablePlan;

pub use async_task::AsyncTask;
pub use engine::register;
pub use state::TaskState;

use accumulate::Registered;
use finisher::Job;

/// Locks a mutex, ignoring poisoning: every structure behind these locks stays usable after a
/// panic elsewhere, and a panic is reported and cancels the sync anyway.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What happens to a row that does not fit its table (`SyncOptions.on_row_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRowError {
    /// `"skip"`: the row is left out, logged and counted.
    Skip,
    /// `"fail"`: the row fails its resolver invocation.
    Fail,
}

/// Batching and error options of a sync, named as in `SyncOptions`.
#[derive(Debug, Clone)]
pub struct Options {
    /// A table's rows are flushed into a batch at this many rows...
    pub batch_max_rows: usize,
    /// ...or this many bytes...
    pub batch_max_bytes: usize,
    /// ...or when the oldest row has waited this long.
    pub batch_max_latency: Duration,
    /// What a row that does not fit its table does.
    pub on_row_error: OnRowError,
    /// How long one resolver invocation may run (threaded ones: see [`running`]).
    pub resolver_timeout: Option<Duration>,
}

/// Rows and errors counted for one table.
#[derive(Debug, Default)]
pub struct Counters {
    /// Rows delivered in batches.
    pub rows: AtomicU64,
    /// Resolver invocations that failed.
    pub errors: AtomicU64,
    /// Rows left out because they did not fit the table.
    pub skipped: AtomicU64,
    /// State updates withheld because rows they cover were lost (see [`epoch`]).
    pub withheld: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// One selected table, as the engine runs it.
#[derive(Debug)]
pub struct TableRuntime {
    /// Conversion plan.
    pub plan: TablePlan,
    /// `invoke(client, parent_row_or_None[, state])`: calls the resolver and returns what it
    /// returns.
    pub invoke: Py<PyAny>,
    /// Whether `invoke` takes the task's state as a third argument.
    pub wants_state: bool,
    /// `pre_row(client, row)`, run on every row the resolver yields; a result other than
    /// `None` replaces the row, for the table and its children alike.
    pub pre_row: Option<Py<PyAny>>,
    /// `derive(client, row)`, run on every row after `pre_row`: what is stored instead of the
    /// row, unless it returns `None` (the column resolvers and `post_row`). Children still
    /// receive the row.
    pub derive: Option<Py<PyAny>>,
    /// Indices of the selected child tables.
    pub children: Vec<usize>,
    /// 0 for top-level tables.
    pub depth: usize,
    /// What was delivered and what failed.
    pub counters: Counters,
}

/// The parent row a child task resolves for.
#[derive(Debug, Clone)]
pub struct Parent {
    /// The row as the parent's resolver yielded it.
    pub row: Arc<Py<PyAny>>,
    /// Its `_cq_id`.
    pub id: [u8; 16],
}

/// What a task needs besides its table.
#[derive(Debug)]
pub struct Payload {
    /// Index of the client in [`Shared::clients`].
    pub client: usize,
    /// The parent row, for child tables.
    pub parent: Option<Parent>,
    /// The epoch of the parent task that yielded the row: held until the task is done.
    pub parent_epoch: Option<Arc<epoch::Epoch>>,
}

/// Why a resolver invocation (or a batch) failed, for a `SyncError` message.
#[derive(Debug)]
pub enum Failure {
    /// The Python exception raised.
    Python(Py<PyAny>),
    /// An engine error without a Python exception.
    Text(String),
    /// The resolver ran longer than `resolver_timeout` (this long); the engine gave up on it.
    TimedOut(Duration),
}

/// An item of the output stream.
#[derive(Debug)]
pub enum Output {
    /// A finished batch of a table.
    Insert {
        /// Table index.
        table: usize,
        /// The batch, with `_cq_id` and `_cq_parent_id`.
        batch: RecordBatch,
    },
    /// A resolver set a state key; every row it yielded before is in an earlier `Insert`.
    State {
        /// Table index.
        table: usize,
        /// The key.
        key: String,
        /// Its new value.
        value: String,
    },
    /// A resolver invocation failed; the rest of the sync goes on.
    Error {
        /// Table index.
        table: usize,
        /// Client index, when the failure belongs to one client.
        client: Option<usize>,
        /// What went wrong.
        failure: Failure,
    },
}

/// Everything the engine's threads share.
#[derive(Debug)]
pub struct Shared {
    /// The selected tables, parents before children.
    pub tables: Vec<TableRuntime>,
    /// Task queue and limits.
    pub scheduler: Scheduler<Payload>,
    /// Finished batches and errors, bounded by bytes.
    pub output: OutputBuffer<Output>,
    /// To the finisher thread.
    jobs: mpsc::Sender<Job>,
    /// Every accumulator of every thread, for the timer, state updates and the final flush.
    accumulators: Mutex<Vec<Registered>>,
    /// The event loop thread's accumulators (async resolvers).
    loop_local: Mutex<accumulate::Local>,
    /// Batching and error options.
    pub options: Options,
    /// The clients tasks run with.
    pub clients: Vec<Py<PyAny>>,
    /// Client ids, parallel to `clients`, for state keys.
    pub client_ids: Vec<String>,
    /// How messages and logs name each client, parallel to `clients`: `None` for a client
    /// not worth naming (the only one of a sync, without an id of its own).
    pub client_labels: Vec<Option<String>>,
    /// Messages and events go to Python through it (see [`sink`]).
    pub sink: sink::Sink,
    /// Incremental state: the values given at the start, and what resolvers set since.
    state: state::StateMap,
    /// The tasks running now, their deadlines, and what a cancellation interrupted.
    running: running::Running,
    cancelled: AtomicBool,
    shutting_down: AtomicBool,
    /// An internal error (a panic) that ended the sync.
    fatal: Mutex<Option<String>>,
    /// Worker, timer and finisher threads, joined on close.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The timer thread, joined before the final flush so none of its flushes comes late.
    timer: Mutex<Option<JoinHandle<()>>>,
    live_workers: AtomicUsize,
}

impl Shared {
    /// Whether the sync was cancelled (cheap: checked once per item).
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Cancels everything: queued tasks are dropped, blocked threads wake up, producers stop.
    /// Returns the dropped tasks, for the caller to release with the GIL held.
    fn cancel(&self) -> Vec<Task<Payload>> {
        self.running.note_interrupted();
        self.cancelled.store(true, Ordering::SeqCst);
        self.output.cancel();
        self.wake_timer();
        self.scheduler.cancel()
    }

    /// Ends the sync on an internal error (a panic in an engine thread).
    fn fatal(&self, message: String) {
        lock(&self.fatal).get_or_insert(message);
        drop(self.cancel());
    }

    /// Sends `work` to the finisher, reserving `bytes` of the output budget first: this is
    /// where producers block while the consumer is slow. Call without the GIL. Returns the
    /// work if the sync was cancelled meanwhile, for the caller to
    /// [`abandon`](finisher::Work::abandon) with the GIL held.
    fn submit(&self, work: finisher::Work, bytes: usize) -> Option<finisher::Work> {
        let Some(reservation) = self.output.reserve(bytes) else {
            return Some(work);
        };
        match self.send(Job::Finish(work, reservation)) {
            Ok(()) => None,
            Err(Job::Finish(work, reservation)) => {
                self.output.cancel_reservation(reservation);
                Some(work)
            }
            Err(Job::Shutdown) => None,
        }
    }

    fn send(&self, job: Job) -> Result<(), Job> {
        self.jobs.send(job).map_err(|mpsc::SendError(job)| job)
    }

    fn wake_timer(&self) {
        if let Some(timer) = lock(&self.timer).as_ref() {
            timer.thread().unpark();
        }
    }

    /// Stops the timer thread and waits for it, so it flushes nothing after this returns.
    fn stop_timer(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let timer = lock(&self.timer).take();
        if let Some(timer) = timer {
            timer.thread().unpark();
            if timer.join().is_err() {
                self.fatal("the timer thread panicked".into());
            }
        }
    }

    fn spawn(&self, name: &str, body: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let handle = std::thread::Builder::new()
            .name(name.into())
            // Python code runs on these threads: give it the usual main-thread stack.
            .stack_size(8 << 20)
            .spawn(body)?;
        lock(&self.threads).push(handle);
        Ok(())
    }

    /// How messages and logs name client `client` (see [`Shared::client_labels`]).
    fn client_label(&self, client: usize) -> Option<&str> {
        self.client_labels[client].as_deref()
    }

    /// A resolver invocation failed: count it, log it, and send a `SyncError` message. The
    /// rest of the sync goes on.
    fn report_failure(&self, py: Python<'_>, table: usize, client: Option<usize>, err: PyErr) {
        // A task that timed out was reported then; what it raised since is not news.
        if self.is_cancelled() || running::current_timed_out() {
            return;
        }
        Counters::add(&self.tables[table].counters.errors, 1);
        let error = err.into_value(py).into_any();
        self.sink.failed(
            py,
            self.tables[table].plan.table.as_str(),
            client.and_then(|c| self.client_label(c)),
            error.bind(py),
        );
        self.output.push_free(Output::Error {
            table,
            client,
            failure: Failure::Python(error),
        });
    }
}
