//! Worker threads, as the bindings run them: each takes a task from the scheduler, calls the
//! table's resolver and steps what it returns (see [`super::drive`]).
//!
//! The GIL is held only while Python runs: calling the resolver, advancing its generator and
//! reading the rows. Waiting for a task, for room in the task queue or for room in the output
//! buffer happens with the GIL released, and so does a resolver blocked in I/O, so hundreds of
//! slow resolvers overlap. The engine starts and retires the threads
//! ([`headwater_engine::worker`]).

use std::cell::Cell;
use std::sync::Arc;

use headwater_engine::accumulate::Owner;
use headwater_engine::scheduler::{Next, Slot};
use headwater_engine::task::EngineTask;
use headwater_engine::worker::{Driver, Left};
use pyo3::intern;
use pyo3::prelude::*;

use super::async_task::AsyncTask;
use super::drive::{drive_result, end_task, flush_local, PyTask};
use super::host::{report_failure, Engine, Local, PyHost, TaskContext};
use super::state::TaskState;

impl Driver for PyHost {
    fn work(engine: &Arc<Engine>) -> Left {
        Python::attach(|py| work(py, engine))
    }
}

fn work(py: Python<'_>, engine: &Arc<Engine>) -> Left {
    let mut local = Local::new(Owner::Thread(std::thread::current().id()));
    loop {
        let next = match engine.scheduler.try_next() {
            Next::Wait => {
                // Nothing to do right now: deliver what this thread holds before waiting.
                if let Err(err) = flush_local(py, engine, &local, false) {
                    engine.fatal(format!("flushing rows failed: {err}"));
                }
                py.detach(|| engine.scheduler.next())
            }
            other => other,
        };
        match next {
            Next::Run(task, slot) => {
                if run_task(py, engine, &mut local, task, slot) == Left::Pool {
                    return Left::Pool;
                }
            }
            Next::Wait => {}
            Next::Done | Next::Cancelled => break,
        }
    }
    if let Err(err) = flush_local(py, engine, &local, false) {
        engine.fatal(format!("flushing rows failed: {err}"));
    }
    Left::Done
}

thread_local! {
    static IDENT: Cell<Option<u64>> = const { Cell::new(None) };
}

/// `threading.get_ident()` of this thread, asked once per thread: how the Python side names
/// a thread to interrupt.
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

fn run_task(
    py: Python<'_>,
    engine: &Arc<Engine>,
    local: &mut Local,
    task: EngineTask<PyHost>,
    slot: Slot,
) -> Left {
    let cx = TaskContext::new(engine, task, &slot, python_thread_ident(py));
    let mut task = PyTask {
        cx,
        state: None,
        row_type: None,
    };
    let _current = task.cx.ticket.enter();
    let host = &engine.host;
    let runtime = &host.tables[task.cx.table];
    if task.cx.depth == 0 {
        host.sink.started(
            py,
            runtime.plan.table.as_str(),
            host.client_label(task.cx.client),
        );
    }
    let parent = match &task.cx.parent {
        Some(parent) => parent.row.bind(py).clone(),
        None => py.None().into_bound(py),
    };
    let client = host.clients[task.cx.client].bind(py);
    let invoked = if runtime.wants_state {
        let owner = Owner::Thread(std::thread::current().id());
        let state = TaskState::new(
            engine,
            task.cx.table,
            task.cx.client,
            owner,
            task.cx.epoch.clone(),
        );
        Py::new(py, state).and_then(|state| {
            let result = runtime.invoke.bind(py).call1((client, parent, &state));
            task.state = Some(state);
            result
        })
    } else {
        runtime.invoke.bind(py).call1((client, parent))
    };
    match invoked {
        Ok(result) if is_async(&result) => {
            if !task.cx.ticket.disarm() {
                return Left::Pool;
            }
            // The event loop runs it; the task handle owns the slot from here on.
            AsyncTask::start(py, engine, task, slot, result);
            return Left::Done;
        }
        Ok(result) => {
            if let Err(err) = drive_result(py, engine, local, &mut task, &slot, &result) {
                task.cx.failed();
                report_failure(py, engine, task.cx.table, Some(task.cx.client), err);
            }
        }
        Err(err) => {
            task.cx.failed();
            report_failure(py, engine, task.cx.table, Some(task.cx.client), err);
        }
    }
    if !engine.running.end(&task.cx.ticket) {
        // Timed out: the engine reported it and gave its slot away; this thread leaves.
        return Left::Pool;
    }
    end_task(py, engine, local, &task, slot);
    Left::Done
}

fn is_async(result: &Bound<'_, PyAny>) -> bool {
    let kind = result.get_type();
    let py = result.py();
    kind.hasattr(intern!(py, "__anext__")).unwrap_or(false)
        || kind.hasattr(intern!(py, "__aiter__")).unwrap_or(false)
        || kind.hasattr(intern!(py, "__await__")).unwrap_or(false)
}
