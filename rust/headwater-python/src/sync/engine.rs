//! `SyncEngine`: one sync, as Python sees it — an iterator over `Insert` and `SyncError`
//! messages that starts the engine's threads, cancels them when closed, and joins them.
//!
//! Closing never waits long for a resolver: a thread still in one a moment after the cancel
//! (blocked in `time.sleep`, a socket read) is asked to raise `ResolverCancelled` when it
//! next runs Python, and after [`STOP_GRACE`](headwater_engine::lifecycle::STOP_GRACE) the
//! engine stops waiting for it. It ends on its own once the resolver returns, seeing the sync
//! cancelled: it delivers nothing more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use headwater_engine::buffer::Pop;
use headwater_engine::engine::Config;
use headwater_engine::lifecycle::{self, JoinStep, Joiner};
use headwater_engine::lock::lock;
use headwater_engine::output::{Failure, Output};
use headwater_engine::scheduler::{order_roots, Limits, Shard, Strategy, Task};
use headwater_engine::table::{OnRowError, Options, Table};
use headwater_engine::task::Payload;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3_arrow::{PyRecordBatch, PySchema};

use super::async_task::AsyncTask;
use super::host::{Engine, PyHost, PyTable};
use super::sink::{self, Sink};
use super::state::TaskState;
use crate::errors::HeadwaterError;
use crate::plan::TablePlan;

/// How often a consumer blocked on the output wakes up to check for signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

pyo3::import_exception!(headwater.errors, ResolverTimeoutError);
pyo3::import_exception!(headwater.errors, SyncTimeoutError);

/// One sync: call `start()`, then iterate for messages; `close()` cancels.
#[pyclass(module = "headwater._core", frozen)]
#[derive(Debug)]
pub struct SyncEngine {
    engine: Arc<Engine>,
    /// The `SyncOptions` given, for whoever asks which options the sync runs with.
    options: Py<PyAny>,
    started: AtomicBool,
    /// `sync_timeout`, and the moment it runs out once started.
    sync_timeout: Option<Duration>,
    sync_deadline: Mutex<Option<Instant>>,
}

fn strategy(name: &str, seed: u64) -> PyResult<Strategy> {
    match name {
        "dfs" => Ok(Strategy::Dfs),
        "round-robin" => Ok(Strategy::RoundRobin),
        "shuffle" => Ok(Strategy::Shuffle { seed }),
        other => Err(PyValueError::new_err(format!(
            "strategy must be 'dfs', 'round-robin' or 'shuffle', not {other:?}"
        ))),
    }
}

fn on_row_error(value: &str) -> PyResult<OnRowError> {
    match value {
        "skip" => Ok(OnRowError::Skip),
        "fail" => Ok(OnRowError::Fail),
        other => Err(PyValueError::new_err(format!(
            "on_row_error must be 'skip' or 'fail', not {other:?}"
        ))),
    }
}

/// A time limit option: `None`, or a positive number of seconds.
fn time_limit(name: &str, seconds: Option<f64>) -> PyResult<Option<Duration>> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(PyValueError::new_err(format!(
            "{name} must be a positive number of seconds (or None for no limit), not {s}"
        ))),
    }
}

/// The seed `shuffle` uses when `shuffle_seed` is `None`: the CRC-32 (as zlib computes it) of
/// the selected tables' names joined by commas, so the same selection shuffles the same way
/// every run.
fn default_seed(tables: &[Table]) -> u64 {
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let mut crc = u32::MAX;
    for byte in names.join(",").bytes() {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    u64::from(!crc)
}

/// One selected table as the Python side describes it: its schema, `invoke`, its parent's
/// index, whether `invoke` takes state, `pre_row`, `derive` (see [`PyTable`]) and
/// whether it is strict.
type TableSpec = (
    PySchema,
    Py<PyAny>,
    Option<usize>,
    bool,
    Option<Py<PyAny>>,
    Option<Py<PyAny>>,
    bool,
);

/// The fields of a `headwater.SyncOptions` the engine reads, by their names there. The Python
/// side has validated them; the checks here keep a direct caller of `SyncEngine` from
/// handing the engine a value it cannot use.
#[derive(Debug, FromPyObject)]
struct SyncOptions {
    #[pyo3(attribute)]
    concurrency: usize,
    #[pyo3(attribute)]
    table_concurrency: Option<usize>,
    #[pyo3(attribute)]
    depth_concurrency: Option<Vec<usize>>,
    #[pyo3(attribute)]
    strategy: String,
    #[pyo3(attribute)]
    shuffle_seed: Option<u64>,
    #[pyo3(attribute)]
    max_buffer_bytes: usize,
    #[pyo3(attribute)]
    batch_max_rows: usize,
    #[pyo3(attribute)]
    batch_max_bytes: usize,
    #[pyo3(attribute)]
    batch_max_latency: f64,
    #[pyo3(attribute)]
    on_row_error: String,
    #[pyo3(attribute)]
    resolver_timeout: Option<f64>,
    #[pyo3(attribute)]
    sync_timeout: Option<f64>,
    #[pyo3(attribute)]
    shard: Option<(usize, usize)>,
}

fn at_least_one(name: &str, value: usize) -> PyResult<usize> {
    if value == 0 {
        return Err(PyValueError::new_err(format!("{name} must be >= 1, not 0")));
    }
    Ok(value)
}

#[pymethods]
impl SyncEngine {
    /// Prepares a sync of `tables` (`(schema, invoke, parent index, wants state, pre_row,
    /// derive, strict)`, parents first), starting from `roots` (`(top-level table index,
    /// client indices)`), with the incremental `state` read from the destination or backend.
    /// `client_ids` name the clients in state keys, `client_labels` (default: the ids) in
    /// messages and logs, `None` for a client not worth naming. `sink` receives the messages
    /// and events (see the `EngineSink` protocol); `options` is a `headwater.SyncOptions`,
    /// read by its field names.
    #[new]
    #[pyo3(signature = (
        tables, roots, clients, client_ids, *, sink, options, client_labels=None, state=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        tables: Vec<TableSpec>,
        roots: Vec<(usize, Vec<usize>)>,
        clients: Vec<Py<PyAny>>,
        client_ids: Vec<String>,
        sink: Py<PyAny>,
        options: Bound<'_, PyAny>,
        client_labels: Option<Vec<Option<String>>>,
        state: Option<HashMap<String, String>>,
    ) -> PyResult<Self> {
        let given: SyncOptions = options.extract()?;
        let shard = given
            .shard
            .map(|(num, total)| Shard::new(num, total))
            .transpose()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        if client_ids.len() != clients.len() {
            return Err(PyValueError::new_err(format!(
                "{} client ids for {} clients",
                client_ids.len(),
                clients.len()
            )));
        }
        let client_labels =
            client_labels.unwrap_or_else(|| client_ids.iter().cloned().map(Some).collect());
        if client_labels.len() != clients.len() {
            return Err(PyValueError::new_err(format!(
                "{} client labels for {} clients",
                client_labels.len(),
                clients.len()
            )));
        }
        let latency = given.batch_max_latency;
        if !(latency.is_finite() && latency > 0.0) {
            return Err(PyValueError::new_err(format!(
                "batch_max_latency must be a positive number of seconds, not {latency}"
            )));
        }
        let engine_options = Options {
            batch_max_rows: at_least_one("batch_max_rows", given.batch_max_rows)?,
            batch_max_bytes: at_least_one("batch_max_bytes", given.batch_max_bytes)?,
            batch_max_latency: Duration::from_secs_f64(latency),
            on_row_error: on_row_error(&given.on_row_error)?,
            resolver_timeout: time_limit("resolver_timeout", given.resolver_timeout)?,
        };
        let sync_timeout = time_limit("sync_timeout", given.sync_timeout)?;
        let mut runtimes: Vec<Table> = Vec::with_capacity(tables.len());
        let mut py_tables: Vec<PyTable> = Vec::with_capacity(tables.len());
        for (index, spec) in tables.into_iter().enumerate() {
            let (schema, invoke, parent, wants_state, pre_row, derive, strict) = spec;
            let depth = match parent {
                None => 0,
                Some(p) if p < index => runtimes[p].depth + 1,
                Some(p) => {
                    return Err(PyValueError::new_err(format!(
                        "table {index} has parent {p}: parents must come before their children"
                    )))
                }
            };
            if let Some(p) = parent {
                runtimes[p].children.push(index);
            }
            let plan = TablePlan::new(py, schema.into_inner(), strict)?;
            runtimes.push(Table::new(Arc::clone(&plan.schema), depth));
            py_tables.push(PyTable {
                plan,
                invoke,
                wants_state,
                pre_row,
                derive,
            });
        }
        let seed = given
            .shuffle_seed
            .unwrap_or_else(|| default_seed(&runtimes));
        let strategy = self::strategy(&given.strategy, seed)?;
        let max_depth = runtimes.iter().map(|t| t.depth).max().unwrap_or(0);
        let mut limits =
            Limits::go_style(at_least_one("concurrency", given.concurrency)?, max_depth);
        if let Some(per_table) = given.table_concurrency {
            limits.per_table = at_least_one("table_concurrency", per_table)?;
        }
        if let Some(per_depth) = given.depth_concurrency {
            if per_depth.is_empty() || per_depth.contains(&0) {
                return Err(PyValueError::new_err(format!(
                    "depth_concurrency must be a non-empty list of numbers >= 1, not {per_depth:?}"
                )));
            }
            limits.per_depth = per_depth;
        }
        let mut root_tasks: Vec<Task<Payload<PyHost>>> = Vec::new();
        let mut root_clients: Vec<Vec<usize>> = Vec::with_capacity(roots.len());
        let mut root_tables = Vec::with_capacity(roots.len());
        for (table, table_clients) in roots {
            if runtimes.get(table).is_none_or(|t| t.depth != 0) {
                return Err(PyValueError::new_err(format!(
                    "root {table} is not a top-level table"
                )));
            }
            if let Some(bad) = table_clients.iter().find(|&&c| c >= clients.len()) {
                return Err(PyValueError::new_err(format!(
                    "client {bad} of {} clients",
                    clients.len()
                )));
            }
            root_tables.push(table);
            root_clients.push(table_clients);
        }
        let counts: Vec<usize> = root_clients.iter().map(Vec::len).collect();
        for (root, position) in order_roots(&counts, strategy, shard) {
            root_tasks.push(Task {
                table: root_tables[root],
                depth: 0,
                payload: Payload::root(root_clients[root][position]),
            });
        }
        let config = Config {
            limits,
            options: engine_options,
            max_buffer_bytes: at_least_one("max_buffer_bytes", given.max_buffer_bytes)?,
        };
        let host = PyHost {
            tables: py_tables,
            clients,
            client_ids,
            client_labels,
            sink: Sink::new(sink),
        };
        let engine = Engine::new(
            runtimes,
            root_tasks,
            config,
            state.unwrap_or_default(),
            host,
        )
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(SyncEngine {
            engine,
            options: options.unbind(),
            started: AtomicBool::new(false),
            sync_timeout,
            sync_deadline: Mutex::new(None),
        })
    }

    /// The names of the sink methods the engine calls (see the `EngineSink` protocol).
    #[classattr]
    #[pyo3(name = "SINK_METHODS")]
    fn sink_methods(py: Python<'_>) -> PyResult<Py<PyTuple>> {
        sink::method_names(py).map(Bound::unbind)
    }

    /// The options the sync was made with, the very object given.
    #[getter]
    fn options(&self, py: Python<'_>) -> Py<PyAny> {
        self.options.clone_ref(py)
    }

    /// Starts the engine's threads and queues the top-level tasks. Only once.
    fn start(&self) -> PyResult<()> {
        if self.engine.started() {
            return Err(PyRuntimeError::new_err("this sync was started already"));
        }
        self.started.store(true, Ordering::SeqCst);
        *lock(&self.sync_deadline) = self.sync_timeout.map(|limit| Instant::now() + limit);
        lifecycle::start(&self.engine).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next `Insert` or `SyncError`; `None` (StopIteration) when the sync is over.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        if !self.started.load(Ordering::SeqCst) {
            return Err(PyRuntimeError::new_err("call start() before iterating"));
        }
        let deadline = *lock(&self.sync_deadline);
        loop {
            self.engine
                .host
                .interrupt(py, self.engine.running.take_to_interrupt());
            let mut wait = SIGNAL_CHECK;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() && !self.finished() {
                    return Err(self.sync_timed_out(py));
                }
                wait = wait.min(left);
            }
            match py.detach(|| self.engine.ledger.output.pop(wait)) {
                Pop::Item(output) => return self.to_python(py, output).map(Some),
                Pop::Timeout => {
                    if let Err(err) = py.check_signals() {
                        self.close(py);
                        return Err(err);
                    }
                }
                Pop::Closed => {
                    self.join(py);
                    if let Some(message) = self.engine.fatal_error() {
                        return Err(HeadwaterError::new_err(message));
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// Cancels the sync: resolvers stop at their next item (generators are closed), waiting
    /// threads wake up, buffered batches are dropped. Returns at once; `close()` also waits.
    fn cancel(&self) {
        // Queued tasks hold parent rows: they are released here, with the GIL held. Async
        // resolvers are cancelled by the Python side, which owns the event loop.
        drop(self.engine.cancel());
    }

    /// Cancels the sync (a no-op once it is over) and waits for its threads to exit: for a
    /// resolver stuck in code that does not return, a couple of seconds at most.
    fn close(&self, py: Python<'_>) {
        if !self.finished() {
            self.cancel();
        }
        self.join(py);
    }

    /// Whether the sync was cancelled (by `cancel()`, `close()`, or an internal error).
    #[getter]
    fn cancelled(&self) -> bool {
        self.engine.is_cancelled()
    }

    /// Whether every thread has exited.
    #[getter]
    fn finished(&self) -> bool {
        self.engine.finished()
    }

    /// Rows delivered, failed resolver invocations and skipped rows, per table:
    /// `[(table, rows, errors, skipped)]`.
    fn stats(&self) -> Vec<(String, u64, u64, u64, u64)> {
        self.engine
            .tables()
            .iter()
            .map(|t| {
                let c = &t.counters;
                (
                    t.name.clone(),
                    c.rows.load(Ordering::Relaxed),
                    c.errors.load(Ordering::Relaxed),
                    c.skipped.load(Ordering::Relaxed),
                    c.withheld.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// The most bytes the output buffer ever held (batches waiting for the consumer, and
    /// batches being finished).
    #[getter]
    fn peak_buffer_bytes(&self) -> usize {
        self.engine.ledger.output.peak()
    }

    /// The output buffer's byte budget.
    #[getter]
    fn max_buffer_bytes(&self) -> usize {
        self.engine.ledger.output.budget()
    }

    /// Worker threads running now.
    #[getter]
    fn workers(&self) -> usize {
        self.engine.scheduler.workers()
    }

    /// The resolvers running now: `[(table, client label)]`.
    fn running(&self) -> Vec<(String, Option<String>)> {
        self.named(self.engine.running.now())
    }

    /// The resolvers that were running when the sync was cancelled (closed early, interrupted,
    /// or past `sync_timeout`): `[(table, client label)]`; empty if it was not.
    fn interrupted(&self) -> Vec<(String, Option<String>)> {
        self.named(self.engine.running.interrupted())
    }

    /// The incremental state: the values given at the start, with every update delivered
    /// since.
    fn state(&self) -> HashMap<String, String> {
        self.engine.ledger.state.snapshot()
    }
}

impl SyncEngine {
    fn to_python<'py>(
        &self,
        py: Python<'py>,
        output: Output<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let host = &self.engine.host;
        let sink = &host.sink;
        match output {
            Output::Insert { table, batch } => {
                let name = host.tables[table].plan.table.as_str();
                let batch = PyRecordBatch::new(batch).into_pyarrow(py)?;
                sink.insert(py, name, batch)
            }
            Output::State { table, key, value } => {
                let name = host.tables[table].plan.table.as_str();
                sink.state(py, name, key, value)
            }
            Output::Error {
                table,
                client,
                failure,
            } => {
                let name = host.tables[table].plan.table.as_str();
                let client = client.and_then(|c| host.client_label(c));
                let error = match failure {
                    Failure::Host(error) => error.into_bound(py),
                    Failure::Text(text) => text.into_pyobject(py)?.into_any(),
                    Failure::TimedOut(limit) => {
                        let error = ResolverTimeoutError::new_err(format!(
                            "the resolver did not finish within resolver_timeout={}s; the \
                             sync stopped waiting for it",
                            limit.as_secs_f64()
                        ))
                        .into_value(py)
                        .into_any()
                        .into_bound(py);
                        // Logged here, where the GIL is: the timer thread that gave up on the
                        // resolver has none.
                        sink.failed(py, name, client, &error);
                        error
                    }
                };
                sink.error(py, name, error, client)
            }
        }
    }

    fn named(&self, tasks: Vec<(usize, usize)>) -> Vec<(String, Option<String>)> {
        tasks
            .into_iter()
            .map(|(table, client)| {
                (
                    self.engine.host.tables[table].plan.table.clone(),
                    self.engine.host.client_label(client).map(str::to_owned),
                )
            })
            .collect()
    }

    /// Ends a sync past `sync_timeout`: cancels it and returns the error to raise.
    fn sync_timed_out(&self, py: Python<'_>) -> PyErr {
        self.close(py);
        let limit = self.sync_timeout.map_or(0.0, |d| d.as_secs_f64());
        let running = self.interrupted();
        let what = if running.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = running
                .iter()
                .map(|(table, client)| match client {
                    Some(client) => format!("table {table:?} (client {client})"),
                    None => format!("table {table:?}"),
                })
                .collect();
            format!("; still running: {}", names.join(", "))
        };
        SyncTimeoutError::new_err(format!(
            "the sync did not finish within sync_timeout={limit}s and was cancelled{what}"
        ))
    }

    /// Joins the engine's threads, with the GIL released so they can finish their Python
    /// work. A thread still running a resolver a moment after the cancel is interrupted; one
    /// that does not stop is left to end on its own, as is one whose task timed out (see
    /// [`Joiner`]).
    fn join(&self, py: Python<'_>) {
        let mut joiner = Joiner::new(&self.engine);
        loop {
            match py.detach(|| joiner.step()) {
                JoinStep::Joined => break,
                JoinStep::Interrupt(threads) => self.engine.host.interrupt(py, threads),
                JoinStep::Abandoned(stuck) => {
                    self.engine.host.sink.abandoned(py, self.named(stuck));
                    break;
                }
            }
        }
    }
}

impl Drop for SyncEngine {
    fn drop(&mut self) {
        if self.started.load(Ordering::SeqCst) && !self.finished() {
            Python::attach(|py| self.close(py));
        }
    }
}

/// Registers the sync classes on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SyncEngine>()?;
    m.add_class::<AsyncTask>()?;
    m.add_class::<TaskState>()?;
    Ok(())
}
