//! Worker threads: each takes a task from the scheduler, calls the table's resolver and steps
//! what it returns, appending every row to the thread's accumulator of that table.
//!
//! The GIL is held only while Python runs: calling the resolver, advancing its generator and
//! reading the rows. Waiting for a task, for room in the task queue or for room in the output
//! buffer happens with the GIL released, and so does a resolver blocked in I/O, so hundreds of
//! slow resolvers overlap. Workers are started on demand, up to the concurrency limit (plus
//! one per task that waits for its children), and exit when the sync is over; the last one
//! out flushes what is left and tells the finisher to close the output.
//!
//! Rows a generator yields quickly are converted in small groups (see [`super::read_ahead`]).
//!
//! What a resolver returns is classified here, and only here: one item or an iterable of items
//! ([`is_one_item`], for async resolvers' awaited results too), and each item a row, a page of
//! rows or Arrow data ([`drive`]). The table's row hooks (`pre_row`, column resolvers,
//! `post_row`) run on each row as it is appended; its children receive the row as the
//! resolver yielded it (or as `pre_row` replaced it), never what the hooks derived from it.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::Array;
use headwater_core::ingest::{self, CqIds};
use headwater_core::scheduler::{Next, Slot, Task};
use headwater_core::CoreError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};
use pyo3_arrow::input::AnyRecordBatch;
use pyo3_arrow::PyRecordBatch;

use super::accumulate::{flush_holding_gil, HeldRow, Local, Owner};
use super::async_task::AsyncTask;
use super::epoch::{Epoch, Newest};
use super::finisher::{repeat_id, start_children, Job, Work};
use super::read_ahead::Pace;
use super::running::Ticket;
use super::state::TaskState;
use super::{lock, Counters, OnRowError, Parent, Payload, Shared};
use crate::context::{known, Known};
use crate::errors::{row_error_instance, to_py_err, IntoPyResult, NotARowError};
use crate::ffi_read::row_kept_unchanged;
use crate::rows::{append_one, iterator_kind, not_a_row_error, RowProblem};

/// One running task: which table, client and parent, and what it has produced so far.
#[derive(Debug)]
pub struct TaskContext {
    /// Table index.
    pub table: usize,
    /// 0 for top-level tables.
    pub depth: usize,
    /// Client index.
    pub client: usize,
    /// The parent row of a child table's task.
    pub parent: Option<Parent>,
    /// Rows yielded so far (the index of the next one, for `RowError`s).
    pub rows_seen: usize,
    /// Rows stored so far.
    pub rows_kept: usize,
    /// When the task started.
    pub started: Instant,
    /// The state handle given to the resolver, if it takes one.
    pub state: Option<Py<TaskState>>,
    /// The epoch the rows yielded now belong to (see [`super::epoch`]).
    pub epoch: Newest,
    /// Its entry among the running tasks (deadline, timed out or not).
    pub ticket: Arc<Ticket>,
    /// The type of the last item found to be a row of the general kind (an object, a model):
    /// the items of one resolver are mostly of one type, whose attributes need not be looked
    /// up again (a failed lookup raises, which costs more than reading the row).
    pub row_type: Option<Py<PyType>>,
}

impl TaskContext {
    fn new(py: Python<'_>, shared: &Arc<Shared>, task: Task<Payload>, slot: &Slot) -> Self {
        let epoch = Newest::new(Epoch::first(shared, task.table, task.payload.parent_epoch));
        let ticket = shared
            .running
            .start(py, task.table, task.payload.client, slot, epoch.clone());
        TaskContext {
            table: task.table,
            depth: task.depth,
            client: task.payload.client,
            parent: task.payload.parent,
            rows_seen: 0,
            rows_kept: 0,
            started: Instant::now(),
            state: None,
            epoch,
            ticket,
            row_type: None,
        }
    }

    /// The task lost rows (it failed): no state update may cover what it did not deliver.
    pub fn failed(&self) {
        self.epoch.poison();
    }
}

thread_local! {
    static CONVERTING: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as reading rows into its accumulator (whose lock it holds), for
/// as long as the guard lives.
#[derive(Debug)]
pub struct Converting(bool);

impl Converting {
    fn enter() -> Self {
        Converting(CONVERTING.with(|c| c.replace(true)))
    }

    /// Whether the current thread is reading rows: code run from a row's properties must not
    /// wait for that thread's accumulator.
    pub fn active() -> bool {
        CONVERTING.with(Cell::get)
    }
}

impl Drop for Converting {
    fn drop(&mut self) {
        CONVERTING.with(|c| c.set(self.0));
    }
}

/// Queues a task, starting a worker thread if none is free to run it.
pub fn queue(shared: &Arc<Shared>, task: Task<Payload>) {
    match shared.scheduler.push(task) {
        Ok(true) => spawn_worker(shared),
        Ok(false) => {}
        Err(err) => shared.fatal(format!("queueing a task failed: {err}")),
    }
}

/// Starts one more worker thread.
pub fn spawn_worker(shared: &Arc<Shared>) {
    if shared.is_cancelled() {
        return;
    }
    shared.scheduler.register_worker();
    shared.live_workers.fetch_add(1, Ordering::SeqCst);
    let worker = Arc::clone(shared);
    if let Err(err) = shared.spawn("headwater-worker", move || worker_main(worker)) {
        shared.scheduler.unregister_worker();
        if shared.live_workers.fetch_sub(1, Ordering::SeqCst) == 1 {
            shared.fatal(format!("cannot start a worker thread: {err}"));
        }
    }
}

fn worker_main(shared: Arc<Shared>) {
    let outcome =
        std::panic::catch_unwind(AssertUnwindSafe(|| Python::attach(|py| work(py, &shared))));
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
        shared.fatal(format!("a worker thread panicked: {message}"));
    }
    shared.scheduler.unregister_worker();
    if shared.live_workers.fetch_sub(1, Ordering::SeqCst) == 1 {
        finish_sync(&shared);
    }
}

/// Why a worker thread stopped taking tasks.
#[derive(Debug, PartialEq, Eq)]
enum Left {
    /// The sync is over (or cancelled).
    Done,
    /// Its task timed out and the engine gave up on it (see [`super::running`]).
    Pool,
}

fn work(py: Python<'_>, shared: &Arc<Shared>) -> Left {
    let mut local = Local::new(Owner::Thread(std::thread::current().id()));
    loop {
        let next = match shared.scheduler.try_next() {
            Next::Wait => {
                // Nothing to do right now: deliver what this thread holds before waiting.
                if let Err(err) = local.flush(py, shared, false) {
                    shared.fatal(format!("flushing rows failed: {err}"));
                }
                py.detach(|| shared.scheduler.next())
            }
            other => other,
        };
        match next {
            Next::Run(task, slot) => {
                if run_task(py, shared, &mut local, task, slot) == Left::Pool {
                    return Left::Pool;
                }
            }
            Next::Wait => {}
            Next::Done | Next::Cancelled => break,
        }
    }
    if let Err(err) = local.flush(py, shared, false) {
        shared.fatal(format!("flushing rows failed: {err}"));
    }
    Left::Done
}

/// Called by the last worker thread to exit: flushes the rows left in any accumulator (the
/// event loop thread's, say) and shuts the finisher down, which closes the output.
pub fn finish_sync(shared: &Arc<Shared>) {
    if shared.shutting_down.swap(true, Ordering::SeqCst) {
        return;
    }
    shared.stop_timer();
    super::accumulate::flush_registered(shared, true);
    // The finisher is gone only if it panicked, which already cancelled the sync.
    let _ = shared.send(Job::Shutdown);
}

fn run_task(
    py: Python<'_>,
    shared: &Arc<Shared>,
    local: &mut Local,
    task: Task<Payload>,
    slot: Slot,
) -> Left {
    let mut cx = TaskContext::new(py, shared, task, &slot);
    let _current = cx.ticket.enter();
    let runtime = &shared.tables[cx.table];
    if cx.depth == 0 {
        shared.sink.started(
            py,
            runtime.plan.table.as_str(),
            shared.client_label(cx.client),
        );
    }
    let parent = match &cx.parent {
        Some(parent) => parent.row.bind(py).clone(),
        None => py.None().into_bound(py),
    };
    let client = shared.clients[cx.client].bind(py);
    let invoked = if runtime.wants_state {
        let owner = Owner::Thread(std::thread::current().id());
        let state = TaskState::new(shared, cx.table, cx.client, owner, cx.epoch.clone());
        Py::new(py, state).and_then(|state| {
            let result = runtime.invoke.bind(py).call1((client, parent, &state));
            cx.state = Some(state);
            result
        })
    } else {
        runtime.invoke.bind(py).call1((client, parent))
    };
    match invoked {
        Ok(result) if is_async(&result) => {
            if !cx.ticket.disarm() {
                return Left::Pool;
            }
            // The event loop runs it; the task handle owns the slot from here on.
            AsyncTask::start(py, shared, cx, slot, result);
            return Left::Done;
        }
        Ok(result) => {
            if let Err(err) = drive_result(py, shared, local, &mut cx, &slot, &result) {
                cx.failed();
                shared.report_failure(py, cx.table, Some(cx.client), err);
            }
        }
        Err(err) => {
            cx.failed();
            shared.report_failure(py, cx.table, Some(cx.client), err);
        }
    }
    if !shared.running.end(&cx.ticket) {
        // Timed out: the engine reported it and gave its slot away; this thread leaves.
        return Left::Pool;
    }
    end_task(py, shared, local, &cx, slot);
    Left::Done
}

/// Ends a task: its newest epoch is queued behind its last rows, its parent rows go to the
/// finisher (so their children can start), then the slot is given back.
pub fn end_task(py: Python<'_>, shared: &Shared, local: &mut Local, cx: &TaskContext, slot: Slot) {
    shared.running.end(&cx.ticket);
    if let Some(epoch) = cx.epoch.end() {
        match local.get(shared, cx.table) {
            Ok(accumulator) => lock(accumulator).push_release(epoch),
            Err(err) => {
                epoch.poison();
                shared.report_failure(py, cx.table, Some(cx.client), to_py_err(err));
            }
        }
    }
    if let Err(err) = local.flush(py, shared, true) {
        cx.failed();
        shared.report_failure(py, cx.table, Some(cx.client), err);
    }
    if cx.depth == 0 {
        let runtime = &shared.tables[cx.table];
        shared.sink.finished(
            py,
            runtime.plan.table.as_str(),
            shared.client_label(cx.client),
            cx.rows_kept,
            cx.started.elapsed().as_secs_f64(),
        );
    }
    shared.scheduler.finish(slot);
}

fn is_async(result: &Bound<'_, PyAny>) -> bool {
    let kind = result.get_type();
    let py = result.py();
    kind.hasattr(intern!(py, "__anext__")).unwrap_or(false)
        || kind.hasattr(intern!(py, "__aiter__")).unwrap_or(false)
        || kind.hasattr(intern!(py, "__await__")).unwrap_or(false)
}

fn is_arrow(kind: &Bound<'_, PyType>) -> bool {
    let py = kind.py();
    kind.hasattr(intern!(py, "__arrow_c_stream__"))
        .unwrap_or(false)
        || kind
            .hasattr(intern!(py, "__arrow_c_array__"))
            .unwrap_or(false)
}

/// Steps what a resolver returned: a generator or any iterable of items, one item (a dict, a
/// model, Arrow data), or `None` for no rows.
fn drive_result(
    py: Python<'_>,
    shared: &Arc<Shared>,
    local: &mut Local,
    cx: &mut TaskContext,
    slot: &Slot,
    result: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if result.is_none() {
        return Ok(());
    }
    if is_one_item(result, &shared.tables[cx.table].plan.table)? {
        return drive(py, shared, local, cx, Some(slot), result);
    }
    let mut items = result.try_iter()?;
    let has_children = !shared.tables[cx.table].children.is_empty();
    // A parent's rows start its children's tasks, and a state update must come after the rows
    // yielded before it: those tasks convert each row as it comes.
    let may_hold = !has_children && cx.state.is_none();
    let known = known(py)?;
    let mut pace = Pace::new(Instant::now());
    let mut held: Vec<Bound<'_, PyAny>> = Vec::new();
    let outcome = loop {
        if shared.is_cancelled() || cx.ticket.timed_out() {
            break Ok(());
        }
        if has_children
            && !shared.scheduler.has_room()
            && !py.detach(|| shared.scheduler.wait_for_room(slot))
        {
            break Ok(());
        }
        // Nothing the resolver yields once it timed out is delivered.
        match items.next().filter(|_| !cx.ticket.timed_out()) {
            None => break append_held(py, shared, local, cx, &mut held),
            // A generator that raised is finished already; the rows before it are kept.
            Some(Err(err)) => {
                append_held(py, shared, local, cx, &mut held)?;
                return Err(err);
            }
            Some(Ok(item)) if may_hold && is_row(&item) => {
                // Only a row the resolver cannot change any more is held; any other is
                // converted now, after the rows held before it.
                let appended = if pace.holding() && row_kept_unchanged(&item, known) {
                    held.push(item);
                    Ok(())
                } else {
                    append_held(py, shared, local, cx, &mut held)
                        .and_then(|()| append_rows(py, shared, local, cx, std::iter::once(item)))
                };
                let group_done = appended.and_then(|()| {
                    if pace.count_row(Instant::now) {
                        append_held(py, shared, local, cx, &mut held)
                    } else {
                        Ok(())
                    }
                });
                if let Err(err) = group_done {
                    break Err(err);
                }
            }
            Some(Ok(item)) => {
                let driven = append_held(py, shared, local, cx, &mut held)
                    .and_then(|()| drive(py, shared, local, cx, Some(slot), &item));
                if let Err(err) = driven {
                    break Err(err);
                }
            }
        }
    };
    // Stopped early (cancelled, or a row failed the task): run the generator's cleanup.
    if let Ok(close) = items.getattr(intern!(py, "close")) {
        if let Err(err) = close.call0() {
            err.write_unraisable(py, Some(&close));
        }
    }
    outcome
}

/// Whether what a resolver returned (or what an async one's coroutine returned) is one item
/// rather than an iterable of items. A str or bytes is neither: a `NotARowError` naming
/// `table`.
pub fn is_one_item(result: &Bound<'_, PyAny>, table: &str) -> PyResult<bool> {
    let py = result.py();
    if result.cast::<PyString>().is_ok() || result.cast::<PyBytes>().is_ok() {
        return Err(NotARowError::new_err(format!(
            "the resolver of table '{table}' returned a {}: a resolver yields (or returns) \
             rows - dicts, objects, tuples, lists of them - or Arrow data",
            result.get_type().qualname()?
        )));
    }
    if result.cast::<PyDict>().is_ok() || is_arrow(&result.get_type()) {
        return Ok(true);
    }
    // pydantic models iterate over (field, value) pairs, but are rows.
    if let Some(model) = &known(py)?.pydantic_model {
        if result.is_instance(model.bind(py))? {
            return Ok(true);
        }
    }
    Ok(!result.get_type().hasattr(intern!(py, "__iter__"))?)
}

/// Handles one item a resolver yielded: a row, a page (list) of rows, or Arrow data.
/// `slot` is the task's slot when it may wait for room in the task queue (not on the event
/// loop).
pub fn drive(
    py: Python<'_>,
    shared: &Arc<Shared>,
    local: &mut Local,
    cx: &mut TaskContext,
    slot: Option<&Slot>,
    item: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if is_row(item) {
        return append_rows(py, shared, local, cx, std::iter::once(item.clone()));
    }
    if let Ok(page) = item.cast_exact::<PyList>() {
        return append_rows(py, shared, local, cx, page.iter());
    }
    let kind = item.get_type();
    if !cx.row_type.as_ref().is_some_and(|t| kind.is(t.bind(py))) {
        if is_arrow(&kind) {
            return append_arrow(py, shared, cx, slot, item);
        }
        cx.row_type = Some(kind.unbind());
    }
    append_rows(py, shared, local, cx, std::iter::once(item.clone()))
}

/// A plain row: a dict or a tuple (subclasses, models and objects take the general path).
fn is_row(item: &Bound<'_, PyAny>) -> bool {
    item.cast_exact::<PyDict>().is_ok() || item.cast_exact::<PyTuple>().is_ok()
}

/// Converts the rows held back by read-ahead, if any.
fn append_held<'py>(
    py: Python<'py>,
    shared: &Arc<Shared>,
    local: &mut Local,
    cx: &mut TaskContext,
    held: &mut Vec<Bound<'py, PyAny>>,
) -> PyResult<()> {
    if held.is_empty() {
        return Ok(());
    }
    append_rows(py, shared, local, cx, held.drain(..))
}

/// Appends rows to the task's table: each as it is, or, for a table with row hooks, what the
/// hooks make of it (see [`prepare`]).
fn append_rows<'py>(
    py: Python<'py>,
    shared: &Arc<Shared>,
    local: &mut Local,
    cx: &mut TaskContext,
    rows: impl Iterator<Item = Bound<'py, PyAny>>,
) -> PyResult<()> {
    let runtime = &shared.tables[cx.table];
    if runtime.pre_row.is_none() && runtime.derive.is_none() {
        return append_prepared(py, shared, local, cx, rows.map(|row| (row, None)));
    }
    // The hooks are the plugin's own code: they run before the accumulator is locked.
    let known = known(py)?;
    let client = shared.clients[cx.client].bind(py);
    let prepared = rows
        .enumerate()
        .map(|(k, row)| prepare(shared, cx, known, client, cx.rows_seen + k, row))
        .collect::<PyResult<Vec<_>>>()?;
    append_prepared(py, shared, local, cx, prepared.into_iter())
}

/// Runs a table's row hooks on row `index`: returns what to store, and the row its children
/// receive (`pre_row`'s replacement, or the row itself).
fn prepare<'py>(
    shared: &Shared,
    cx: &TaskContext,
    known: &Known,
    client: &Bound<'py, PyAny>,
    index: usize,
    row: Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)> {
    let runtime = &shared.tables[cx.table];
    // Checked before the hooks, which could turn it into a row of nulls.
    if let Some(kind) = iterator_kind(&row, known) {
        return Err(not_a_row_error(&runtime.plan.table, index, &row, kind));
    }
    let hook = |hook: &Option<Py<PyAny>>, row: &Bound<'py, PyAny>| -> PyResult<Bound<'py, PyAny>> {
        let Some(hook) = hook else {
            return Ok(row.clone());
        };
        let replaced = hook.bind(row.py()).call1((client, row))?;
        Ok(if replaced.is_none() {
            row.clone()
        } else {
            replaced
        })
    };
    let row = hook(&runtime.pre_row, &row)?;
    let stored = hook(&runtime.derive, &row)?;
    Ok((stored, Some(row)))
}

/// Appends rows given as what to store and, when it differs, the row the table's children
/// receive.
fn append_prepared<'py>(
    py: Python<'py>,
    shared: &Arc<Shared>,
    local: &mut Local,
    cx: &mut TaskContext,
    rows: impl Iterator<Item = (Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)>,
) -> PyResult<()> {
    let runtime = &shared.tables[cx.table];
    let target = runtime.plan.target();
    let conversion = runtime.plan.context(known(py)?);
    // `state.set` cannot run while rows are read, so they all belong to one epoch.
    let epoch = if runtime.children.is_empty() {
        None
    } else {
        cx.epoch.get()
    };
    let parent_id = cx.parent.as_ref().map(|p| p.id);
    let accumulator = Arc::clone(local.get(shared, cx.table).into_py_result()?);
    let _converting = Converting::enter();
    let mut guard = lock(&accumulator);
    for (row, yielded) in rows {
        let index = cx.rows_seen;
        cx.rows_seen += 1;
        match append_one(&row, &mut guard.builders, &target, conversion, index) {
            Ok(()) => {
                cx.rows_kept += 1;
                let held = epoch.as_ref().map(|epoch| HeldRow {
                    row: Arc::new(yielded.unwrap_or(row).unbind()),
                    client: cx.client,
                    epoch: Arc::clone(epoch),
                });
                if guard.appended(shared, parent_id, held) {
                    drop(guard);
                    flush_holding_gil(py, shared, &accumulator)?;
                    guard = lock(&accumulator);
                }
            }
            Err(RowProblem::Bad(fault)) => {
                if shared.options.on_row_error == OnRowError::Fail {
                    return Err(to_py_err(CoreError::Row(fault)));
                }
                Counters::add(&runtime.counters.skipped, 1);
                drop(guard);
                let error = row_error_instance(py, &fault)?;
                shared.sink.skipped(
                    py,
                    runtime.plan.table.as_str(),
                    shared.client_label(cx.client),
                    error,
                );
                guard = lock(&accumulator);
            }
            Err(RowProblem::Raised(err)) => return Err(err),
        }
    }
    Ok(())
}

/// Arrow data: conformed to the table here (a mismatch fails the task with a clear error),
/// finished by the finisher; a parent table's data is finished here, since its children need
/// the rows and their ids.
fn append_arrow(
    py: Python<'_>,
    shared: &Arc<Shared>,
    cx: &mut TaskContext,
    slot: Option<&Slot>,
    item: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let data: AnyRecordBatch = item.extract()?;
    let runtime = &shared.tables[cx.table];
    let schema = Arc::clone(&runtime.plan.schema);
    let plan = &runtime.plan;
    let (columns, rows) = py.detach(|| -> PyResult<_> {
        let reader = data.into_reader()?;
        plan.check_arrow_columns(&reader.schema())
            .into_py_result()?;
        let batches = reader.collect::<Result<Vec<_>, _>>().into_py_result()?;
        ingest::conform_batches(&batches, &schema).into_py_result()
    })?;
    cx.rows_seen += rows;
    cx.rows_kept += rows;
    if rows == 0 {
        return Ok(());
    }
    let table = cx.table;
    let parent_id = cx.parent.as_ref().map(|p| p.id);
    if runtime.children.is_empty() {
        let bytes = columns
            .iter()
            .map(|c| c.get_array_memory_size())
            .sum::<usize>()
            + 32 * rows;
        let work = Work::Columns {
            table,
            columns,
            rows,
            parent_id,
        };
        if let Some(refused) = py.detach(|| shared.submit(work, bytes)) {
            refused.abandon(shared);
        }
        return Ok(());
    }
    let batch = py
        .detach(|| {
            let parent_ids = parent_id.map(|id| repeat_id(id, rows)).transpose()?;
            ingest::finish_batch(&schema, columns, parent_ids, rows, CqIds::Deterministic)
        })
        .into_py_result()?;
    let as_dicts = PyRecordBatch::new(batch.clone())
        .into_pyarrow(py)?
        .call_method0(intern!(py, "to_pylist"))?;
    let Some(epoch) = cx.epoch.get() else {
        return Ok(());
    };
    let held: Vec<HeldRow> = as_dicts
        .cast_into::<PyList>()?
        .iter()
        .map(|row| HeldRow {
            row: Arc::new(row.unbind()),
            client: cx.client,
            epoch: Arc::clone(&epoch),
        })
        .collect();
    if let Some(slot) = slot {
        if !shared.scheduler.has_room() && !py.detach(|| shared.scheduler.wait_for_room(slot)) {
            return Ok(());
        }
    }
    start_children(shared, table, &batch, held.iter()).into_py_result()?;
    let bytes = batch.get_array_memory_size();
    if let Some(refused) = py.detach(|| shared.submit(Work::Finished { table, batch }, bytes)) {
        refused.abandon(shared);
    }
    Ok(())
}
