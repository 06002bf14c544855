//! `TaskState`: a resolver's access to the sync's incremental state (cursors, high-water marks).
//!
//! State is a string-to-string map: the values given when the sync starts (read from the
//! CloudQuery state backend, or from the destination of a local sync), updated as resolvers
//! set keys. An update is queued behind the rows its resolver has yielded so far (in the
//! accumulator of the thread it runs on) and leaves with them, so the `StateUpdate` message
//! always comes after the `Insert`s holding those rows, and a consumer that stores state only
//! once the rows before it are stored never advances a cursor past data it does not have.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::accumulate::Owner;
use super::finisher::Work;
use super::worker::Converting;
use super::{lock, Shared};

/// The state API a resolver receives as its `state` argument.
#[pyclass(module = "headwater._core", frozen)]
#[derive(Debug)]
pub struct TaskState {
    shared: Arc<Shared>,
    table: usize,
    client: usize,
    /// The thread whose accumulator holds the task's rows.
    owner: Mutex<Owner>,
}

impl TaskState {
    /// The state of a task of `table` with `client`, running on `owner`.
    pub fn new(shared: &Arc<Shared>, table: usize, client: usize, owner: Owner) -> Self {
        TaskState {
            shared: Arc::clone(shared),
            table,
            client,
            owner: Mutex::new(owner),
        }
    }

    /// Moves the task to another thread (an async resolver, to the event loop).
    pub fn move_to(&self, owner: Owner) {
        *lock(&self.owner) = owner;
    }
}

fn text(value: &Bound<'_, PyAny>, what: &str, key: Option<&str>) -> PyResult<String> {
    match value.cast::<PyString>() {
        Ok(text) => Ok(text.to_str()?.to_owned()),
        Err(_) => {
            let at = key.map(|k| format!(" for key '{k}'")).unwrap_or_default();
            Err(PyTypeError::new_err(format!(
                "state {what}s are str, got {} {}{at}; convert it first (str(n), \
                 timestamp.isoformat(), json.dumps(...))",
                value.get_type().qualname()?,
                crate::values::short_repr(value),
            )))
        }
    }
}

#[pymethods]
impl TaskState {
    /// The value of `key`, or `default` if it was never set.
    #[pyo3(signature = (key, default=None))]
    fn get(&self, key: &Bound<'_, PyAny>, default: Option<String>) -> PyResult<Option<String>> {
        let key = text(key, "key", None)?;
        Ok(lock(&self.shared.state).get(&key).cloned().or(default))
    }

    /// Sets `key` to `value`. The update leaves with the batch holding the rows this
    /// resolver yielded before it (when that batch is full or has waited the maximum
    /// latency), so it reaches the destination after them, and does not cut batches short.
    fn set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let key = text(key, "key", None)?;
        let value = text(value, "value", Some(&key))?;
        let shared = &self.shared;
        if Converting::active() {
            return Err(PyRuntimeError::new_err(
                "state.set() was called while a row was being read (from a property or \
                 __getattr__ of a row); set state from the resolver itself",
            ));
        }
        if shared.is_cancelled() {
            return Err(PyRuntimeError::new_err(
                "the sync was cancelled: state can no longer be set",
            ));
        }
        if super::running::current_timed_out() {
            return Err(PyRuntimeError::new_err(
                "the resolver ran past resolver_timeout: state can no longer be set",
            ));
        }
        lock(&shared.state).insert(key.clone(), value.clone());
        let owner = *lock(&self.owner);
        let table = self.table;
        // Everything below only touches engine structures: done without the GIL, so waiting
        // for an accumulator its owner holds (while it waits for the GIL) cannot deadlock.
        let refused = py.detach(move || {
            let mine = lock(&shared.accumulators)
                .iter()
                .find(|r| r.owner == owner && r.table == table)
                .map(|r| Arc::clone(&r.accumulator));
            match mine {
                Some(accumulator) => {
                    lock(&accumulator).push_state((key, value));
                    None
                }
                // No row of this table was appended on that thread: nothing to wait for.
                None => shared.submit(
                    Work::State {
                        table,
                        update: (key, value),
                    },
                    0,
                ),
            }
        });
        if let Some(work) = refused {
            work.abandon(shared);
        }
        Ok(())
    }

    /// The name of the table whose resolver holds this state.
    #[getter]
    fn table_name(&self) -> &str {
        &self.shared.tables[self.table].plan.table
    }

    /// The id of the client the resolver runs with.
    #[getter]
    fn client_id(&self) -> &str {
        &self.shared.client_ids[self.client]
    }

    fn __repr__(&self) -> String {
        format!(
            "TaskState(table={:?}, client={:?})",
            self.table_name(),
            self.client_id()
        )
    }
}
