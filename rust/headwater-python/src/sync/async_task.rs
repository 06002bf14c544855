//! `AsyncTask`: the handle an async resolver's driver coroutine uses on the event loop.
//!
//! A worker that finds an async generator (or a coroutine) in a resolver's result hands it to
//! the Python side's runner with one of these, and moves on: the task keeps its concurrency
//! slot while it runs on the loop, so async resolvers count against the same limits as
//! threaded ones without occupying a thread. The driver calls [`AsyncTask::push`] for every
//! item an async generator yields, or [`AsyncTask::push_all`] with what a coroutine returned
//! (converted on the loop thread, into its own accumulators), and [`AsyncTask::finish`] at
//! the end. A parent whose children are not keeping up lends its slot out with
//! [`AsyncTask::suspend`] and polls [`AsyncTask::try_resume`] instead of blocking the loop.

use std::sync::{Arc, Mutex};

use headwater_engine::accumulate::Owner;
use headwater_engine::lock::lock;
use headwater_engine::scheduler::Slot;
use pyo3::prelude::*;

use super::drive::{drive, end_task, is_one_item, PyTask};
use super::host::{report_failure, Engine};

/// A running async resolver invocation.
#[pyclass(module = "headwater._core", frozen)]
#[derive(Debug)]
pub struct AsyncTask {
    engine: Arc<Engine>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    task: PyTask,
    /// The task's slot; `None` once finished.
    slot: Option<Slot>,
    /// Whether the slot is lent out (see [`AsyncTask::suspend`]).
    suspended: bool,
}

impl AsyncTask {
    /// Hands `result` (an async iterable or awaitable) to the event loop runner.
    pub fn start(
        py: Python<'_>,
        engine: &Arc<Engine>,
        task: PyTask,
        slot: Slot,
        result: Bound<'_, PyAny>,
    ) {
        if let Some(state) = &task.state {
            // Its rows will be read on the event loop thread.
            state.get().move_to(Owner::Loop);
        }
        let handle = AsyncTask {
            engine: Arc::clone(engine),
            state: Mutex::new(State {
                task,
                slot: Some(slot),
                suspended: false,
            }),
        };
        let handle = match Bound::new(py, handle) {
            Ok(handle) => handle,
            Err(err) => {
                // Only a MemoryError gets here; the slot went back when `handle` was dropped.
                err.write_unraisable(py, None);
                return;
            }
        };
        if let Err(err) = engine.host.sink.submit(py, result, handle.as_any()) {
            handle.get().end(py, Some(err));
        }
    }

    fn end(&self, py: Python<'_>, error: Option<PyErr>) {
        let mut state = lock(&self.state);
        let Some(slot) = state.slot.take() else {
            return;
        };
        if state.suspended {
            // Ended while its slot was lent out: take it back, to give it up below.
            self.engine.scheduler.resume_now(&slot);
            state.suspended = false;
        }
        let engine = &self.engine;
        if let Some(err) = error {
            state.task.cx.failed();
            report_failure(
                py,
                engine,
                state.task.cx.table,
                Some(state.task.cx.client),
                err,
            );
        }
        let mut local = lock(&engine.loop_local);
        end_task(py, engine, &mut local, &state.task, slot);
    }
}

#[pymethods]
impl AsyncTask {
    /// Converts one item the resolver yielded (a row, a page of rows, or Arrow data). Returns
    /// whether to go on: `False` once the sync is cancelled.
    fn push(&self, py: Python<'_>, item: &Bound<'_, PyAny>) -> PyResult<bool> {
        let engine = &self.engine;
        if engine.is_cancelled() {
            return Ok(false);
        }
        let mut state = lock(&self.state);
        let mut local = lock(&engine.loop_local);
        drive(py, engine, &mut local, &mut state.task, None, item)?;
        Ok(!engine.is_cancelled())
    }

    /// Converts what an async resolver's coroutine returned: nothing (`None`), one item, or
    /// each item of an iterable, as a threaded resolver's result is taken. Returns whether to
    /// go on: `False` once the sync is cancelled.
    fn push_all(&self, py: Python<'_>, result: &Bound<'_, PyAny>) -> PyResult<bool> {
        if result.is_none() {
            return Ok(true);
        }
        let table = lock(&self.state).task.cx.table;
        if is_one_item(result, &self.engine.host.tables[table].plan.table)? {
            return self.push(py, result);
        }
        for item in result.try_iter()? {
            if !self.push(py, &item?)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether the task should wait for its children before yielding more rows.
    fn needs_room(&self) -> bool {
        let state = lock(&self.state);
        !self.engine.tables()[state.task.cx.table]
            .children
            .is_empty()
            && !self.engine.scheduler.has_room()
    }

    /// Lends the task's slot out while it waits for its children; poll
    /// [`AsyncTask::try_resume`] (with `await asyncio.sleep`) to get it back.
    fn suspend(&self) {
        let mut state = lock(&self.state);
        if let (Some(slot), false) = (&state.slot, state.suspended) {
            self.engine.scheduler.suspend(slot);
            state.suspended = true;
        }
    }

    /// Takes the slot back if there is room for the task to go on; returns whether it did.
    fn try_resume(&self) -> bool {
        let mut state = lock(&self.state);
        match (&state.slot, state.suspended) {
            (Some(slot), true) => {
                let resumed = self.engine.scheduler.try_resume(slot);
                state.suspended = !resumed;
                resumed
            }
            _ => true,
        }
    }

    /// Ends the task, with the exception it raised if any (reported as a `SyncError`).
    #[pyo3(signature = (error=None))]
    fn finish(&self, py: Python<'_>, error: Option<Bound<'_, PyAny>>) {
        self.end(py, error.map(PyErr::from_value));
    }

    /// Whether the sync was cancelled: the driver should stop.
    #[getter]
    fn cancelled(&self) -> bool {
        self.engine.is_cancelled()
    }
}

impl Drop for AsyncTask {
    fn drop(&mut self) {
        // A handle dropped without `finish` (its coroutine never ran) must not keep its slot:
        // the sync could never end. Nor may a state update cover the rows it never produced.
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = state.slot.take() {
            state.task.cx.failed();
            self.engine.running.end(&state.task.cx.ticket);
            if state.suspended {
                self.engine.scheduler.resume_now(&slot);
            }
            self.engine.scheduler.finish(slot);
        }
    }
}
