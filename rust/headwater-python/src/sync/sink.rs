//! The sink: the one Python object the engine calls back into, besides the resolvers and
//! their row hooks.
//!
//! Its methods are declared by the `EngineSink` protocol in `headwater/_core.pyi` and
//! implemented by `headwater.sync.events.RunSink`. Every call goes through [`Sink`], one Rust
//! method per Python method, and every method name is spelled once, in [`sink_methods!`]:
//! `SyncEngine.SINK_METHODS` exports that list, and the tests check it against the protocol
//! and the implementation, so renaming a method on one side fails loudly instead of quietly.
//!
//! The message makers (`insert`, `error`, `state`) return what the engine's iterator yields;
//! their errors reach the consumer. The notifications (log events, `interrupt`) must never
//! break the sync: what they raise is reported as unraisable. `submit` hands an async
//! resolver to the event loop; its error ends that task.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

/// Declares the sink's methods: each Rust name with its Python name, listed once.
macro_rules! sink_methods {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// A method of the sink.
        #[derive(Debug, Clone, Copy)]
        enum Method {
            $($variant),*
        }

        impl Method {
            /// Every method, in declaration order.
            const ALL: &'static [Method] = &[$(Method::$variant),*];

            /// Its Python name.
            fn name(self) -> &'static str {
                match self {
                    $(Method::$variant => $name),*
                }
            }

            /// Its Python name, interned once per interpreter.
            fn interned(self, py: Python<'_>) -> &Bound<'_, PyString> {
                match self {
                    $(Method::$variant => intern!(py, $name)),*
                }
            }
        }
    };
}

sink_methods! {
    Insert => "insert",
    Error => "error",
    State => "state",
    Started => "started",
    Finished => "finished",
    Failed => "failed",
    Skipped => "skipped",
    Interrupt => "interrupt",
    Abandoned => "abandoned",
    Submit => "submit",
}

/// The names of every sink method the engine calls, for `SyncEngine.SINK_METHODS`.
pub fn method_names(py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
    PyTuple::new(py, Method::ALL.iter().map(|m| m.name()))
}

/// The Python object the engine delivers messages and events to.
#[derive(Debug)]
pub struct Sink(Py<PyAny>);

impl Sink {
    /// Wraps the sink object given to `SyncEngine`.
    pub fn new(sink: Py<PyAny>) -> Self {
        Sink(sink)
    }

    fn call<'py, A: pyo3::call::PyCallArgs<'py>>(
        &self,
        py: Python<'py>,
        method: Method,
        args: A,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.0.bind(py).call_method1(method.interned(py), args)
    }

    /// Calls a notification; what it raises is reported as unraisable.
    fn notify<'py, A: pyo3::call::PyCallArgs<'py>>(
        &self,
        py: Python<'py>,
        method: Method,
        args: A,
    ) {
        if let Err(err) = self.call(py, method, args) {
            err.write_unraisable(py, Some(self.0.bind(py)));
        }
    }

    /// `insert(table, batch)`: the message for a finished batch.
    pub fn insert<'py>(
        &self,
        py: Python<'py>,
        table: &str,
        batch: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.call(py, Method::Insert, (table, batch))
    }

    /// `error(table, error, client)`: the message for a failed resolver invocation.
    pub fn error<'py>(
        &self,
        py: Python<'py>,
        table: &str,
        error: Bound<'py, PyAny>,
        client: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.call(py, Method::Error, (table, error, client))
    }

    /// `state(table, key, value)`: the message for a state update.
    pub fn state<'py>(
        &self,
        py: Python<'py>,
        table: &str,
        key: String,
        value: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.call(py, Method::State, (table, key, value))
    }

    /// `started(table, client)`: a top-level task started.
    pub fn started(&self, py: Python<'_>, table: &str, client: Option<&str>) {
        self.notify(py, Method::Started, (table, client));
    }

    /// `finished(table, client, rows, seconds)`: a top-level task ended.
    pub fn finished(
        &self,
        py: Python<'_>,
        table: &str,
        client: Option<&str>,
        rows: usize,
        seconds: f64,
    ) {
        self.notify(py, Method::Finished, (table, client, rows, seconds));
    }

    /// `failed(table, client, error)`: a resolver invocation failed.
    pub fn failed(
        &self,
        py: Python<'_>,
        table: &str,
        client: Option<&str>,
        error: &Bound<'_, PyAny>,
    ) {
        self.notify(py, Method::Failed, (table, client, error));
    }

    /// `skipped(table, client, error)`: a row that does not fit its table was left out.
    pub fn skipped(
        &self,
        py: Python<'_>,
        table: &str,
        client: Option<&str>,
        error: Bound<'_, PyAny>,
    ) {
        self.notify(py, Method::Skipped, (table, client, error));
    }

    /// `interrupt(threads)`: make these Python threads raise `ResolverCancelled`.
    pub fn interrupt(&self, py: Python<'_>, threads: Vec<u64>) {
        self.notify(py, Method::Interrupt, (threads,));
    }

    /// `abandoned(stuck)`: these resolvers did not stop after a cancel and are left be.
    pub fn abandoned(&self, py: Python<'_>, stuck: Vec<(String, Option<String>)>) {
        self.notify(py, Method::Abandoned, (stuck,));
    }

    /// `submit(result, task)`: run an async resolver's result on the event loop.
    pub fn submit<'py>(
        &self,
        py: Python<'py>,
        result: Bound<'py, PyAny>,
        task: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        self.call(py, Method::Submit, (result, task)).map(drop)
    }
}
