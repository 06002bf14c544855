//! `BatchBuilder`: one table's compiled batch builder, driven from Python.
//!
//! Made once per table from its Arrow schema, it turns rows or Arrow data into a finished
//! `pyarrow.RecordBatch` with `_cq_id` and `_cq_parent_id`. Python objects are read with the
//! GIL held; finishing the arrays and hashing ids run with it released.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use arrow_array::{ArrayRef, FixedSizeBinaryArray};
use arrow_schema::{Field, FieldRef};
use headwater_core::builder::ColumnBuilder;
use headwater_core::ingest::CqIds;
use headwater_core::{cq_id, ingest, CoreError};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use pyo3_arrow::input::AnyRecordBatch;
use pyo3_arrow::{PyRecordBatch, PySchema};

use crate::context::{known, Known};
use crate::errors::IntoPyResult;
use crate::plan::TablePlan;
use crate::rows::{append_rows, Appended, OnFault, CHUNK_ROWS};
use crate::values::uuid_like;

/// Builds record batches of one table.
#[pyclass(module = "headwater._core", frozen)]
#[derive(Debug)]
pub struct BatchBuilder {
    plan: TablePlan,
}

/// Parent row ids as given: none, one for every row, or one per input row.
enum ParentIds {
    None,
    One([u8; 16]),
    PerRow(Vec<[u8; 16]>),
}

impl ParentIds {
    fn from_py(value: Option<&Bound<'_, PyAny>>, known: &Known) -> PyResult<Self> {
        let Some(value) = value.filter(|v| !v.is_none()) else {
            return Ok(ParentIds::None);
        };
        if let Ok(id) = uuid_like(value, known)? {
            return Ok(ParentIds::One(id));
        }
        if value.cast::<PyList>().is_err() && value.cast::<PyTuple>().is_err() {
            return Err(PyTypeError::new_err(format!(
                "parent_cq_ids must be one UUID (uuid.UUID, str or 16 bytes) or a list of them, \
                 not {}",
                value.get_type().qualname()?
            )));
        }
        let mut ids = Vec::with_capacity(value.len()?);
        for (index, item) in value.try_iter()?.enumerate() {
            let item = item?;
            match uuid_like(&item, known)? {
                Ok(id) => ids.push(id),
                Err(reason) => {
                    return Err(PyValueError::new_err(format!(
                        "parent_cq_ids[{index}] = {} {reason}",
                        item.repr()?
                    )))
                }
            }
        }
        Ok(ParentIds::PerRow(ids))
    }

    /// The ids of the rows kept (`kept` are input indices), checked against the input size.
    fn select(&self, seen: usize, kept: &[usize]) -> PyResult<Option<FixedSizeBinaryArray>> {
        let ids: Vec<[u8; 16]> = match self {
            ParentIds::None => return Ok(None),
            ParentIds::One(id) => vec![*id; kept.len()],
            ParentIds::PerRow(ids) => {
                if ids.len() != seen {
                    return Err(PyValueError::new_err(format!(
                        "parent_cq_ids has {} ids but there are {seen} rows",
                        ids.len()
                    )));
                }
                kept.iter().map(|&i| ids[i]).collect()
            }
        };
        let array = if ids.is_empty() {
            FixedSizeBinaryArray::new_null(16, 0)
        } else {
            FixedSizeBinaryArray::try_from_iter(ids.into_iter()).into_py_result()?
        };
        Ok(Some(array))
    }
}

/// Lists of at least this many rows hash their primary keys on a second thread while the rows
/// are still being read; below it the thread costs more than it saves.
const PIPELINE_MIN_ROWS: usize = 4 * CHUNK_ROWS;

/// Runs `read` (which reads the rows, calling its hook every [`CHUNK_ROWS`] stored rows) while
/// a second thread hashes the primary keys of each finished chunk, so `_cq_id` costs little
/// beyond the reading itself. When the reading is done, this thread hashes the chunks the
/// other has not taken yet instead of waiting for it (on a busy machine the second thread may
/// not get a core). Rows stored after the last chunk are hashed by `finish_batch`.
fn hash_keys_while_reading(
    keys: &[usize],
    read: impl FnOnce(&mut dyn FnMut(&[ColumnBuilder])) -> PyResult<Appended>,
) -> PyResult<(Appended, CqIds)> {
    let work = HashWork::default();
    let appended = std::thread::scope(|scope| {
        let shared = &work;
        let hasher = scope.spawn(move || {
            while let Some(job) = shared.take(true) {
                shared.hash(job);
            }
        });
        let mut hashed = 0;
        let appended = read(&mut |builders: &[ColumnBuilder]| {
            let end = builders[keys[0]].len();
            let columns = keys
                .iter()
                .map(|&i| {
                    let array = builders[i].snapshot(hashed, end).expect("checked flat")?;
                    Ok((Arc::clone(builders[i].field()), array))
                })
                .collect();
            shared.give(columns, end - hashed);
            hashed = end;
        });
        shared.close(appended.is_err());
        while let Some(job) = shared.take(false) {
            shared.hash(job);
        }
        hasher
            .join()
            .map_err(|_| PyRuntimeError::new_err("the _cq_id hashing thread panicked"))?;
        appended
    })?;
    let done = work.into_ids().into_py_result()?;
    Ok((appended, CqIds::Partial(done)))
}

/// Key columns of one chunk of rows (or the error making them), and its row count.
type HashJob = (usize, Result<Vec<(FieldRef, ArrayRef)>, CoreError>, usize);

/// Chunks of primary keys waiting to be hashed, shared by the reading thread and the hasher.
#[derive(Debug, Default)]
struct HashWork {
    state: Mutex<HashState>,
    more: Condvar,
}

#[derive(Debug, Default)]
struct HashState {
    queue: VecDeque<HashJob>,
    /// No more chunks will come.
    closed: bool,
    /// The ids of chunk `i`, once hashed.
    ids: Vec<Option<Result<FixedSizeBinaryArray, CoreError>>>,
}

impl HashWork {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashState> {
        // Nothing panics while holding the lock, so a poisoned lock still holds sound state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn give(&self, columns: Result<Vec<(FieldRef, ArrayRef)>, CoreError>, rows: usize) {
        let mut state = self.lock();
        let index = state.ids.len();
        state.ids.push(None);
        state.queue.push_back((index, columns, rows));
        self.more.notify_one();
    }

    /// No more chunks will come; with `abandon`, the ones waiting are dropped unhashed.
    fn close(&self, abandon: bool) {
        let mut state = self.lock();
        state.closed = true;
        if abandon {
            state.queue.clear();
        }
        self.more.notify_all();
    }

    /// The next chunk to hash; with `wait`, blocks until there is one or no more will come.
    fn take(&self, wait: bool) -> Option<HashJob> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                return Some(job);
            }
            if state.closed || !wait {
                return None;
            }
            state = self
                .more
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn hash(&self, (index, columns, rows): HashJob) {
        let ids = columns.and_then(|columns| {
            let keys: Vec<(&Field, &ArrayRef)> =
                columns.iter().map(|(f, a)| (f.as_ref(), a)).collect();
            cq_id::deterministic_cq_ids(&keys, rows)
        });
        self.lock().ids[index] = Some(ids);
    }

    /// Every chunk's ids, in order, or the first error. Only for work not abandoned.
    fn into_ids(self) -> Result<Vec<FixedSizeBinaryArray>, CoreError> {
        let state = self
            .state
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        state
            .ids
            .into_iter()
            .map(|ids| ids.expect("every chunk given was hashed"))
            .collect()
    }
}

#[pymethods]
impl BatchBuilder {
    /// Compiles a builder for a CloudQuery table schema (`Table.arrow_schema`); a `strict`
    /// one refuses rows with keys or attributes that match no column.
    #[new]
    #[pyo3(signature = (schema, *, strict=false))]
    fn new(py: Python<'_>, schema: PySchema, strict: bool) -> PyResult<Self> {
        Ok(Self {
            plan: TablePlan::new(py, schema.into_inner(), strict)?,
        })
    }

    /// The table name from the schema metadata.
    #[getter]
    fn table_name(&self) -> &str {
        &self.plan.table
    }

    /// Converts rows into a `pyarrow.RecordBatch`.
    #[pyo3(signature = (rows, *, parent_cq_ids=None, deterministic_cq_id=true, skip_errors=false, errors=None))]
    fn build_rows<'py>(
        &self,
        py: Python<'py>,
        rows: &Bound<'py, PyAny>,
        parent_cq_ids: Option<&Bound<'py, PyAny>>,
        deterministic_cq_id: bool,
        skip_errors: bool,
        errors: Option<&Bound<'py, PyList>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let known = known(py)?;
        let parents = ParentIds::from_py(parent_cq_ids, known)?;
        let plan = &self.plan;
        let mut builders = plan.builders()?;
        let target = plan.target();
        let on_fault = if skip_errors {
            OnFault::Skip
        } else {
            OnFault::Raise
        };
        let cx = plan.context(known);
        let mut read = |every_chunk: &mut dyn FnMut(&[ColumnBuilder])| {
            append_rows(
                rows,
                &mut builders,
                &target,
                cx,
                on_fault,
                errors,
                every_chunk,
            )
        };
        let (appended, cq_ids) = match &plan.pipelined_keys {
            Some(keys)
                if deterministic_cq_id
                    && rows
                        .cast::<PyList>()
                        .is_ok_and(|l| l.len() >= PIPELINE_MIN_ROWS) =>
            {
                hash_keys_while_reading(keys, read)?
            }
            _ => (read(&mut |_| {})?, CqIds::from_flag(deterministic_cq_id)),
        };
        let parent_ids = parents.select(appended.seen, &appended.kept)?;
        let schema = Arc::clone(&plan.schema);
        let batch = py
            .detach(move || {
                let columns = builders
                    .iter_mut()
                    .map(|b| b.finish())
                    .collect::<Result<Vec<_>, CoreError>>()?;
                ingest::finish_batch(&schema, columns, parent_ids, appended.rows, cq_ids)
            })
            .into_py_result()?;
        PyRecordBatch::new(batch).into_pyarrow(py)
    }

    /// Conforms Arrow data (anything with `__arrow_c_array__` or `__arrow_c_stream__`) to the
    /// table and returns a `pyarrow.RecordBatch`.
    #[pyo3(signature = (data, *, parent_cq_ids=None, deterministic_cq_id=true))]
    fn build_arrow<'py>(
        &self,
        py: Python<'py>,
        data: AnyRecordBatch,
        parent_cq_ids: Option<&Bound<'py, PyAny>>,
        deterministic_cq_id: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let parents = ParentIds::from_py(parent_cq_ids, known(py)?)?;
        let schema = Arc::clone(&self.plan.schema);
        let plan = &self.plan;
        let (columns, rows) = py.detach(move || -> PyResult<_> {
            let reader = data.into_reader()?;
            plan.check_arrow_columns(&reader.schema())
                .into_py_result()?;
            let batches = reader.collect::<Result<Vec<_>, _>>().into_py_result()?;
            ingest::conform_batches(&batches, &schema).into_py_result()
        })?;
        let kept: Vec<usize> = (0..rows).collect();
        let parent_ids = parents.select(rows, &kept)?;
        let schema = Arc::clone(&self.plan.schema);
        let batch = py
            .detach(move || {
                let cq_ids = CqIds::from_flag(deterministic_cq_id);
                ingest::finish_batch(&schema, columns, parent_ids, rows, cq_ids)
            })
            .into_py_result()?;
        PyRecordBatch::new(batch).into_pyarrow(py)
    }

    fn __repr__(&self) -> String {
        format!("BatchBuilder(table={:?})", self.plan.table)
    }
}

/// Encodes a schema as an Arrow IPC stream holding only the schema.
#[pyfunction]
pub fn encode_schema_ipc<'py>(py: Python<'py>, schema: PySchema) -> PyResult<Bound<'py, PyBytes>> {
    let schema = schema.into_inner();
    let bytes = py
        .detach(move || headwater_core::ipc::encode_schema(&schema))
        .into_py_result()?;
    Ok(PyBytes::new(py, &bytes))
}

/// Encodes Arrow data as IPC streams of one batch each, none larger than `max_message_bytes`.
#[pyfunction]
pub fn encode_data_ipc<'py>(
    py: Python<'py>,
    data: AnyRecordBatch,
    max_message_bytes: usize,
) -> PyResult<Bound<'py, PyList>> {
    let messages = py.detach(move || -> PyResult<Vec<Vec<u8>>> {
        let reader = data.into_reader()?;
        let mut messages = Vec::new();
        for batch in reader {
            let batch = batch.into_py_result()?;
            messages.extend(
                headwater_core::ipc::encode_batch(&batch, max_message_bytes).into_py_result()?,
            );
        }
        Ok(messages)
    })?;
    PyList::new(py, messages.iter().map(|m| PyBytes::new(py, m)))
}
