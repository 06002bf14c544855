//! What the bindings keep per sync.
//!
//! [`PyHost`] instantiates [`headwater_engine`] with Python objects: a parent row handed to
//! child tasks is the object the resolver yielded, a resolver's failure is the exception it
//! raised. Next to them it holds what only Python code uses: each table's conversion plan and
//! resolver callables, the clients, and the [`Sink`] messages and events go to.

use headwater_engine::host::Host;
use headwater_engine::output::Failure;
use headwater_engine::running::current_timed_out;
use pyo3::prelude::*;

use super::sink::Sink;
use crate::plan::TablePlan;

/// The engine as the bindings run it.
pub type Engine = headwater_engine::engine::Engine<PyHost>;
/// A thread's accumulators, as the bindings fill them.
pub type Local = headwater_engine::accumulate::Local<PyHost>;
/// A running task, as the engine tracks it.
pub type TaskContext = headwater_engine::worker::TaskContext<PyHost>;

/// One selected table, as the Python side runs it.
#[derive(Debug)]
pub struct PyTable {
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
}

/// What the bindings keep per sync.
#[derive(Debug)]
pub struct PyHost {
    /// The selected tables, parallel to the engine's.
    pub tables: Vec<PyTable>,
    /// The clients tasks run with.
    pub clients: Vec<Py<PyAny>>,
    /// Client ids, parallel to `clients`, for state keys.
    pub client_ids: Vec<String>,
    /// How messages and logs name each client, parallel to `clients`: `None` for a client
    /// not worth naming (the only one of a sync, without an id of its own).
    pub client_labels: Vec<Option<String>>,
    /// Messages and events go to Python through it (see [`super::sink`]).
    pub sink: Sink,
}

impl Host for PyHost {
    type Row = Py<PyAny>;
    type Failure = Py<PyAny>;
}

impl PyHost {
    /// How messages and logs name client `client` (see [`PyHost::client_labels`]).
    pub fn client_label(&self, client: usize) -> Option<&str> {
        self.client_labels[client].as_deref()
    }

    /// Asks each Python thread in `threads` to raise `headwater.errors.ResolverCancelled`
    /// the next time it runs Python code, through the Python side
    /// (`PyThreadState_SetAsyncExc`).
    pub fn interrupt(&self, py: Python<'_>, threads: Vec<u64>) {
        if !threads.is_empty() {
            self.sink.interrupt(py, threads);
        }
    }
}

/// A resolver invocation failed: count it, log it, and send a `SyncError` message. The rest
/// of the sync goes on.
pub fn report_failure(
    py: Python<'_>,
    engine: &Engine,
    table: usize,
    client: Option<usize>,
    err: PyErr,
) {
    // A task that timed out was reported then; what it raised since is not news.
    if engine.is_cancelled() || current_timed_out() {
        return;
    }
    let host = &engine.host;
    let error = err.into_value(py).into_any();
    host.sink.failed(
        py,
        host.tables[table].plan.table.as_str(),
        client.and_then(|c| host.client_label(c)),
        error.bind(py),
    );
    engine.ledger.fail(table, client, Failure::Host(error));
}
