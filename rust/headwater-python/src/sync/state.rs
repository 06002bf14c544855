//! `TaskState`: a resolver's access to the sync's incremental state (cursors, high-water marks),
//! kept by the engine ([`headwater_engine::state`]).
//!
//! Keys belong to a table and a client: `state.set("cursor", v)` in table `issues` run for
//! client `acme` stores `issues/acme/cursor`, so two tables (or one table run for two
//! clients) never move each other's cursor. `shared=True` stores the key as given, for the
//! rare value meant to be shared on purpose. A read returns what the task's table and client
//! set during this sync, else the value the sync started with; never another task's write
//! (shared keys excepted). A key stored unscoped by an earlier headwater (the same name
//! without `table/client/`) is read when the scoped one is missing, so existing state keeps
//! working; the next update stores it scoped.
//!
//! An update closes the task's [`Epoch`]: it is queued behind the rows the resolver has
//! yielded so far (in the accumulator of the thread it runs on), and leaves only once those
//! rows and everything their child tasks produced are in the output, so a consumer that
//! stores state only once the rows before it are stored never advances a cursor past data it
//! does not have.

use std::sync::{Arc, Mutex};

use headwater_engine::accumulate::{Converting, Owner};
use headwater_engine::epoch::{Epoch, Newest};
use headwater_engine::lock::lock;
use headwater_engine::running::current_timed_out;
use headwater_engine::worker::queue_release;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::host::{Engine, PyHost};

/// The state API a resolver receives as its `state` argument.
#[pyclass(module = "headwater._core", frozen)]
#[derive(Debug)]
pub struct TaskState {
    engine: Arc<Engine>,
    table: usize,
    client: usize,
    /// The thread whose accumulator holds the task's rows.
    owner: Mutex<Owner>,
    /// The task's newest epoch, which an update closes.
    epoch: Newest<PyHost>,
}

impl TaskState {
    /// The state of a task of `table` with `client`, running on `owner`.
    pub fn new(
        engine: &Arc<Engine>,
        table: usize,
        client: usize,
        owner: Owner,
        epoch: Newest<PyHost>,
    ) -> Self {
        TaskState {
            engine: Arc::clone(engine),
            table,
            client,
            owner: Mutex::new(owner),
            epoch,
        }
    }

    fn scoped(&self, key: &str, shared: bool) -> String {
        if shared {
            key.to_owned()
        } else {
            format!("{}/{}/{key}", self.table_name(), self.client_id())
        }
    }

    /// Queues a closed epoch behind the rows this task yielded on its thread.
    fn queue(&self, py: Python<'_>, epoch: Arc<Epoch<PyHost>>) {
        let engine = &self.engine;
        let owner = *lock(&self.owner);
        let table = self.table;
        // Only engine structures are touched: done without the GIL, so waiting for an
        // accumulator its owner holds (while it waits for the GIL) cannot deadlock.
        let refused = py.detach(move || queue_release(engine, owner, table, epoch));
        if let Some(work) = refused {
            work.abandon(&engine.scheduler);
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
    /// The value of `key` for this table and client (or as given, with `shared`): what this
    /// table and client set during the sync, else what the sync started with, else `default`.
    #[pyo3(signature = (key, default=None, *, shared=false))]
    fn get(
        &self,
        key: &Bound<'_, PyAny>,
        default: Option<String>,
        shared: bool,
    ) -> PyResult<Option<String>> {
        let key = text(key, "key", None)?;
        let stored = self.scoped(&key, shared);
        Ok(self.engine.ledger.state.get(&stored, &key).or(default))
    }

    /// Sets `key` for this table and client (or as given, with `shared`). The update leaves
    /// after the rows this resolver yielded before it and after everything their child tables
    /// produced, so it reaches the destination after them; it does not cut batches short.
    #[pyo3(signature = (key, value, *, shared=false))]
    fn set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        shared: bool,
    ) -> PyResult<()> {
        let key = text(key, "key", None)?;
        let value = text(value, "value", Some(&key))?;
        if Converting::active() {
            return Err(PyRuntimeError::new_err(
                "state.set() was called while a row was being read (from a property or \
                 __getattr__ of a row); set state from the resolver itself",
            ));
        }
        if self.engine.is_cancelled() {
            return Err(PyRuntimeError::new_err(
                "the sync was cancelled: state can no longer be set",
            ));
        }
        if current_timed_out() {
            return Err(PyRuntimeError::new_err(
                "the resolver ran past resolver_timeout: state can no longer be set",
            ));
        }
        let stored = self.scoped(&key, shared);
        let Some(closed) = self.epoch.close((stored.clone(), value.clone())) else {
            return Err(PyRuntimeError::new_err(format!(
                "state.set('{key}') was called after the resolver of table '{}' returned; \
                 set state while the resolver runs",
                self.table_name()
            )));
        };
        self.engine.ledger.state.set(stored, value);
        self.queue(py, closed);
        Ok(())
    }

    /// The key `key` is stored under: `"{table}/{client}/{key}"`, or `key` with `shared`.
    #[pyo3(signature = (key, *, shared=false))]
    fn stored_key(&self, key: &Bound<'_, PyAny>, shared: bool) -> PyResult<String> {
        Ok(self.scoped(&text(key, "key", None)?, shared))
    }

    /// The name of the table whose resolver holds this state.
    #[getter]
    fn table_name(&self) -> &str {
        &self.engine.host.tables[self.table].plan.table
    }

    /// The id of the client the resolver runs with.
    #[getter]
    fn client_id(&self) -> &str {
        &self.engine.host.client_ids[self.client]
    }

    fn __repr__(&self) -> String {
        format!(
            "TaskState(table={:?}, client={:?})",
            self.table_name(),
            self.client_id()
        )
    }
}
