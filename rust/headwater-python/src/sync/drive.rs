//! Stepping what a resolver returns, and appending its rows to the task's table.
//!
//! What a resolver returns is classified here, and only here: one item or an iterable of items
//! ([`is_one_item`], for async resolvers' awaited results too), and each item a row, a page of
//! rows or Arrow data ([`drive`]). The table's row hooks (`pre_row`, column resolvers,
//! `post_row`) run on each row as it is appended; its children receive the row as the
//! resolver yielded it (or as `pre_row` replaced it), never what the hooks derived from it.
//!
//! Rows a generator yields quickly are converted in small groups (see
//! [`headwater_engine::read_ahead`]).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_array::Array;
use headwater_core::ingest::{self, CqIds};
use headwater_core::CoreError;
use headwater_engine::accumulate::{Accumulator, Converting, HeldRow};
use headwater_engine::finisher::{repeat_id, start_children};
use headwater_engine::flush::{flush, Flushed};
use headwater_engine::lock::lock;
use headwater_engine::read_ahead::Pace;
use headwater_engine::scheduler::Slot;
use headwater_engine::table::{Counters, OnRowError};
use headwater_engine::work::Work;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};
use pyo3_arrow::input::AnyRecordBatch;
use pyo3_arrow::PyRecordBatch;

use super::host::{report_failure, Engine, Local, PyHost, TaskContext};
use super::state::TaskState;
use crate::context::{known, Known};
use crate::errors::{row_error_instance, to_py_err, IntoPyResult, NotARowError};
use crate::ffi_read::row_kept_unchanged;
use crate::rows::{append_one, iterator_kind, not_a_row_error, RowProblem};

/// One running task, as the bindings drive it.
#[derive(Debug)]
pub struct PyTask {
    /// What the engine tracks of it.
    pub cx: TaskContext,
    /// The state handle given to the resolver, if it takes one.
    pub state: Option<Py<TaskState>>,
    /// The type of the last item found to be a row of the general kind (an object, a model):
    /// the items of one resolver are mostly of one type, whose attributes need not be looked
    /// up again (a failed lookup raises, which costs more than reading the row).
    pub row_type: Option<Py<PyType>>,
}

/// [`flush`] from a thread holding the GIL: the reservation waits with the GIL released, and
/// refused work is dropped with it held.
pub fn flush_holding_gil(
    py: Python<'_>,
    engine: &Engine,
    accumulator: &Mutex<Accumulator<PyHost>>,
) -> PyResult<()> {
    let flushed = flush(
        engine,
        accumulator,
        |bytes| py.detach(|| engine.ledger.output.reserve(bytes)),
        false,
    )
    .map_err(to_py_err)?;
    if let Flushed::Refused(work) = flushed {
        work.abandon(&engine.scheduler);
    }
    Ok(())
}

/// Flushes this thread's accumulators (only those of tables with children when
/// `parents_only`) to the finisher. Blocks without the GIL while the output buffer is full.
pub fn flush_local(
    py: Python<'_>,
    engine: &Engine,
    local: &Local,
    parents_only: bool,
) -> PyResult<()> {
    headwater_engine::flush::flush_local(
        engine,
        local,
        parents_only,
        |bytes| py.detach(|| engine.ledger.output.reserve(bytes)),
        |work| work.abandon(&engine.scheduler),
    )
    .map_err(to_py_err)
}

/// Ends a task: its newest epoch is queued behind its last rows, its parent rows go to the
/// finisher (so their children can start), it is logged, then the slot is given back.
pub fn end_task(py: Python<'_>, engine: &Engine, local: &mut Local, task: &PyTask, slot: Slot) {
    let cx = &task.cx;
    let errors = headwater_engine::worker::end_task(
        engine,
        local,
        cx,
        |bytes| py.detach(|| engine.ledger.output.reserve(bytes)),
        |work| work.abandon(&engine.scheduler),
    );
    for err in errors {
        report_failure(py, engine, cx.table, Some(cx.client), to_py_err(err));
    }
    if cx.depth == 0 {
        let host = &engine.host;
        host.sink.finished(
            py,
            host.tables[cx.table].plan.table.as_str(),
            host.client_label(cx.client),
            cx.rows_kept,
            cx.started.elapsed().as_secs_f64(),
        );
    }
    engine.scheduler.finish(slot);
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
pub fn drive_result(
    py: Python<'_>,
    engine: &Arc<Engine>,
    local: &mut Local,
    task: &mut PyTask,
    slot: &Slot,
    result: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if result.is_none() {
        return Ok(());
    }
    if is_one_item(result, &engine.host.tables[task.cx.table].plan.table)? {
        return drive(py, engine, local, task, Some(slot), result);
    }
    let mut items = result.try_iter()?;
    let has_children = !engine.tables()[task.cx.table].children.is_empty();
    // A parent's rows start its children's tasks, and a state update must come after the rows
    // yielded before it: those tasks convert each row as it comes.
    let may_hold = !has_children && task.state.is_none();
    let known = known(py)?;
    let mut pace = Pace::new(Instant::now());
    let mut held: Vec<Bound<'_, PyAny>> = Vec::new();
    let outcome = loop {
        if engine.is_cancelled() || task.cx.ticket.timed_out() {
            break Ok(());
        }
        if has_children
            && !engine.scheduler.has_room()
            && !py.detach(|| engine.scheduler.wait_for_room(slot))
        {
            break Ok(());
        }
        // Nothing the resolver yields once it timed out is delivered.
        match items.next().filter(|_| !task.cx.ticket.timed_out()) {
            None => break append_held(py, engine, local, task, &mut held),
            // A generator that raised is finished already; the rows before it are kept.
            Some(Err(err)) => {
                append_held(py, engine, local, task, &mut held)?;
                return Err(err);
            }
            Some(Ok(item)) if may_hold && is_row(&item) => {
                // Only a row the resolver cannot change any more is held; any other is
                // converted now, after the rows held before it.
                let appended = if pace.holding() && row_kept_unchanged(&item, known) {
                    held.push(item);
                    Ok(())
                } else {
                    append_held(py, engine, local, task, &mut held)
                        .and_then(|()| append_rows(py, engine, local, task, std::iter::once(item)))
                };
                let group_done = appended.and_then(|()| {
                    if pace.count_row(Instant::now) {
                        append_held(py, engine, local, task, &mut held)
                    } else {
                        Ok(())
                    }
                });
                if let Err(err) = group_done {
                    break Err(err);
                }
            }
            Some(Ok(item)) => {
                let driven = append_held(py, engine, local, task, &mut held)
                    .and_then(|()| drive(py, engine, local, task, Some(slot), &item));
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
    engine: &Arc<Engine>,
    local: &mut Local,
    task: &mut PyTask,
    slot: Option<&Slot>,
    item: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if is_row(item) {
        return append_rows(py, engine, local, task, std::iter::once(item.clone()));
    }
    if let Ok(page) = item.cast_exact::<PyList>() {
        return append_rows(py, engine, local, task, page.iter());
    }
    let kind = item.get_type();
    if !task.row_type.as_ref().is_some_and(|t| kind.is(t.bind(py))) {
        if is_arrow(&kind) {
            return append_arrow(py, engine, task, slot, item);
        }
        task.row_type = Some(kind.unbind());
    }
    append_rows(py, engine, local, task, std::iter::once(item.clone()))
}

/// A plain row: a dict or a tuple (subclasses, models and objects take the general path).
fn is_row(item: &Bound<'_, PyAny>) -> bool {
    item.cast_exact::<PyDict>().is_ok() || item.cast_exact::<PyTuple>().is_ok()
}

/// Converts the rows held back by read-ahead, if any.
fn append_held<'py>(
    py: Python<'py>,
    engine: &Arc<Engine>,
    local: &mut Local,
    task: &mut PyTask,
    held: &mut Vec<Bound<'py, PyAny>>,
) -> PyResult<()> {
    if held.is_empty() {
        return Ok(());
    }
    append_rows(py, engine, local, task, held.drain(..))
}

/// Appends rows to the task's table: each as it is, or, for a table with row hooks, what the
/// hooks make of it (see [`prepare`]).
fn append_rows<'py>(
    py: Python<'py>,
    engine: &Arc<Engine>,
    local: &mut Local,
    task: &mut PyTask,
    rows: impl Iterator<Item = Bound<'py, PyAny>>,
) -> PyResult<()> {
    let runtime = &engine.host.tables[task.cx.table];
    if runtime.pre_row.is_none() && runtime.derive.is_none() {
        return append_prepared(py, engine, local, task, rows.map(|row| (row, None)));
    }
    // The hooks are the plugin's own code: they run before the accumulator is locked.
    let known = known(py)?;
    let client = engine.host.clients[task.cx.client].bind(py);
    let prepared = rows
        .enumerate()
        .map(|(k, row)| prepare(engine, &task.cx, known, client, task.cx.rows_seen + k, row))
        .collect::<PyResult<Vec<_>>>()?;
    append_prepared(py, engine, local, task, prepared.into_iter())
}

/// Runs a table's row hooks on row `index`: returns what to store, and the row its children
/// receive (`pre_row`'s replacement, or the row itself).
fn prepare<'py>(
    engine: &Arc<Engine>,
    cx: &TaskContext,
    known: &Known,
    client: &Bound<'py, PyAny>,
    index: usize,
    row: Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)> {
    let runtime = &engine.host.tables[cx.table];
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
    engine: &Arc<Engine>,
    local: &mut Local,
    task: &mut PyTask,
    rows: impl Iterator<Item = (Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)>,
) -> PyResult<()> {
    let runtime = &engine.host.tables[task.cx.table];
    let target = runtime.plan.target();
    let conversion = runtime.plan.context(known(py)?);
    // `state.set` cannot run while rows are read, so they all belong to one epoch.
    let epoch = if engine.tables()[task.cx.table].children.is_empty() {
        None
    } else {
        task.cx.epoch.get()
    };
    let parent_id = task.cx.parent.as_ref().map(|p| p.id);
    let accumulator = Arc::clone(engine.accumulator(local, task.cx.table).into_py_result()?);
    let _converting = Converting::enter();
    let mut guard = lock(&accumulator);
    for (row, yielded) in rows {
        let index = task.cx.rows_seen;
        task.cx.rows_seen += 1;
        match append_one(&row, &mut guard.builders, &target, conversion, index) {
            Ok(()) => {
                task.cx.rows_kept += 1;
                let held = epoch.as_ref().map(|epoch| HeldRow {
                    row: Arc::new(yielded.unwrap_or(row).unbind()),
                    client: task.cx.client,
                    epoch: Arc::clone(epoch),
                });
                if guard.appended(&engine.options, parent_id, held) {
                    drop(guard);
                    flush_holding_gil(py, engine, &accumulator)?;
                    guard = lock(&accumulator);
                }
            }
            Err(RowProblem::Bad(fault)) => {
                if engine.options.on_row_error == OnRowError::Fail {
                    return Err(to_py_err(CoreError::Row(fault)));
                }
                Counters::add(&engine.tables()[task.cx.table].counters.skipped, 1);
                drop(guard);
                let error = row_error_instance(py, &fault)?;
                engine.host.sink.skipped(
                    py,
                    runtime.plan.table.as_str(),
                    engine.host.client_label(task.cx.client),
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
    engine: &Arc<Engine>,
    task: &mut PyTask,
    slot: Option<&Slot>,
    item: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let data: AnyRecordBatch = item.extract()?;
    let runtime = &engine.host.tables[task.cx.table];
    let schema = Arc::clone(&runtime.plan.schema);
    let plan = &runtime.plan;
    let (columns, rows) = py.detach(|| -> PyResult<_> {
        let reader = data.into_reader()?;
        plan.check_arrow_columns(&reader.schema())
            .into_py_result()?;
        let batches = reader.collect::<Result<Vec<_>, _>>().into_py_result()?;
        ingest::conform_batches(&batches, &schema).into_py_result()
    })?;
    task.cx.rows_seen += rows;
    task.cx.rows_kept += rows;
    if rows == 0 {
        return Ok(());
    }
    let table = task.cx.table;
    let parent_id = task.cx.parent.as_ref().map(|p| p.id);
    if engine.tables()[table].children.is_empty() {
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
        if let Some(refused) = py.detach(|| engine.submit(work, bytes)) {
            refused.abandon(&engine.scheduler);
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
    let Some(epoch) = task.cx.epoch.get() else {
        return Ok(());
    };
    let held: Vec<HeldRow<PyHost>> = as_dicts
        .cast_into::<PyList>()?
        .iter()
        .map(|row| HeldRow {
            row: Arc::new(row.unbind()),
            client: task.cx.client,
            epoch: Arc::clone(&epoch),
        })
        .collect();
    if let Some(slot) = slot {
        if !engine.scheduler.has_room() && !py.detach(|| engine.scheduler.wait_for_room(slot)) {
            return Ok(());
        }
    }
    start_children(engine, table, &batch, held.iter()).into_py_result()?;
    let bytes = batch.get_array_memory_size();
    if let Some(refused) = py.detach(|| engine.submit(Work::Finished { table, batch }, bytes)) {
        refused.abandon(&engine.scheduler);
    }
    Ok(())
}
