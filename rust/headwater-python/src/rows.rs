//! Rows (dicts, objects, dataclasses, pydantic models, tuples, lists) into column builders.
//!
//! Each row is read column by column; when a value does not fit, every column is cut back to
//! the last complete row, so a bad row never leaves half of itself behind. Dicts are read by
//! key (a missing key is null; keys the table does not have are ignored), sequences by
//! position (their length must match), anything else by attribute (a missing one is null).

use headwater_core::builder::ColumnBuilder;
use headwater_core::{CoreError, RowFault};
use pyo3::exceptions::{PyAttributeError, PyKeyError, PyRuntimeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyMapping, PyString, PyTuple};

use crate::errors::{row_error_instance, to_py_err};
use crate::ffi_read::{self, DictWalk, Entry, FastPush, Step};
use crate::values::{is_scalar, push_value, truncate_chars, Context, ConvError, Fault};

/// Rows between two calls of the `every_chunk` hook of [`append_rows`].
pub const CHUNK_ROWS: usize = 8192;

/// What to do with a row whose value does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFault {
    /// Raise `RowError` for the first bad row.
    Raise,
    /// Leave the row out, and describe it in the `errors` list when one is given.
    Skip,
}

/// The table being built: its name and its data columns.
#[derive(Debug)]
pub struct Target<'a> {
    /// Table name, for messages.
    pub table: &'a str,
    /// Column names, interned, in builder order.
    pub names: &'a [Py<PyString>],
    /// The fast path of each column, in builder order.
    pub fast: &'a [FastPush],
}

/// Result of reading rows.
#[derive(Debug, Default)]
pub struct Appended {
    /// Rows stored.
    pub rows: usize,
    /// Rows read from the input, stored or not.
    pub seen: usize,
    /// Input index of every stored row, in order.
    pub kept: Vec<usize>,
}

/// Reads every row of `rows` (any iterable) into `builders`, calling `every_chunk` each time
/// another [`CHUNK_ROWS`] rows have been stored.
pub fn append_rows(
    rows: &Bound<'_, PyAny>,
    builders: &mut [ColumnBuilder],
    target: &Target<'_>,
    cx: Context<'_>,
    on_fault: OnFault,
    errors: Option<&Bound<'_, PyList>>,
    every_chunk: &mut dyn FnMut(&[ColumnBuilder]),
) -> PyResult<Appended> {
    if let Ok(list) = rows.cast::<PyList>() {
        for builder in builders.iter_mut() {
            builder.reserve(list.len());
        }
    }
    let mut reading = Reading {
        builders,
        target,
        cx,
        on_fault,
        errors,
        every_chunk,
        done: Appended::default(),
        sizing: rows.cast::<PyList>().map_or(0, |list| list.len()),
    };
    if let Ok(list) = rows.cast::<PyList>() {
        #[cfg(not(Py_GIL_DISABLED))]
        let mut pipeline = Pipeline::new();
        let mut index = 0;
        while index < list.len() {
            #[cfg(not(Py_GIL_DISABLED))]
            if let Some(appended) = pipeline.read(list, index, &mut reading) {
                index += appended;
                continue;
            }
            reading.row(index, &list.get_item(index)?)?;
            index += 1;
        }
    } else if rows.cast::<PyDict>().is_ok() || is_scalar(rows) || rows.is_none() {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "rows must be an iterable of rows (dicts, objects, tuples) or Arrow data, not {}",
            rows.get_type().qualname()?
        )));
    } else {
        for (index, row) in rows.try_iter()?.enumerate() {
            reading.row(index, &row?)?;
        }
    }
    Ok(reading.done)
}

/// The state of one [`append_rows`].
struct Reading<'r, 'py> {
    builders: &'r mut [ColumnBuilder],
    target: &'r Target<'r>,
    cx: Context<'r>,
    on_fault: OnFault,
    errors: Option<&'r Bound<'py, PyList>>,
    every_chunk: &'r mut dyn FnMut(&[ColumnBuilder]),
    done: Appended,
    /// The number of input rows when known and the buffers are still to be sized after the
    /// first [`SIZING_ROWS`] rows; 0 otherwise.
    sizing: usize,
}

/// Rows read before the buffers are sized for the rest of a list (or of a batch, in the sync
/// engine) from what they hold, so they grow once instead of doubling (and copying) all the way.
pub const SIZING_ROWS: usize = 1024;

impl Reading<'_, '_> {
    /// Reads row `index`, or handles its fault.
    fn row(&mut self, index: usize, row: &Bound<'_, PyAny>) -> PyResult<()> {
        match append_row(row, self.builders, self.target, self.cx) {
            Ok(()) => {
                self.stored(index..index + 1);
                Ok(())
            }
            Err((column, error)) => {
                self.done.seen += 1;
                for builder in self.builders.iter_mut() {
                    builder.truncate(self.done.rows);
                }
                match error {
                    ConvError::Fault(fault) => {
                        let fault = describe(row.py(), self.target, column, index, *fault);
                        match self.on_fault {
                            OnFault::Raise => Err(to_py_err(CoreError::Row(Box::new(fault)))),
                            OnFault::Skip => {
                                if let Some(errors) = self.errors {
                                    errors.append(row_error_instance(row.py(), &fault)?)?;
                                }
                                Ok(())
                            }
                        }
                    }
                    ConvError::Py(err) => Err(err),
                    ConvError::Core(err) => Err(to_py_err(err)),
                }
            }
        }
    }

    /// Counts input rows `indices` as stored (they never cross a chunk boundary).
    fn stored(&mut self, indices: std::ops::Range<usize>) {
        if indices.is_empty() {
            return;
        }
        self.done.seen += indices.len();
        self.done.rows += indices.len();
        self.done.kept.extend(indices);
        if self.done.rows % CHUNK_ROWS == 0 {
            (self.every_chunk)(self.builders);
        }
        if self.sizing > 0 && self.done.rows >= SIZING_ROWS {
            let more = self.sizing.saturating_sub(self.done.seen);
            for builder in self.builders.iter_mut() {
                builder.reserve_like(more);
            }
            self.sizing = 0;
        }
    }

    /// Where a run of rows stored at once must stop: at the next chunk boundary, or where the
    /// buffers get sized.
    #[cfg_attr(Py_GIL_DISABLED, allow(dead_code))] // only the read-ahead path stores runs
    fn next_stop(&self) -> usize {
        let chunk = CHUNK_ROWS - self.done.rows % CHUNK_ROWS;
        if self.sizing > 0 {
            chunk.min(SIZING_ROWS.saturating_sub(self.done.rows).max(1))
        } else {
            chunk
        }
    }
}

/// The fast path for lists of dict rows: [`ffi_read::read_rows`], which appends runs of rows
/// whose values all take the fast path, reading ahead. A row it declines (a value that needs
/// the general path) is read again the general way, so after one the next rows go the
/// general way for a while, longer each time it happens again in a row: data that always
/// declines pays for the attempt rarely.
#[cfg(not(Py_GIL_DISABLED))]
struct Pipeline {
    /// Rows to read the general way before the next attempt.
    pause: usize,
    /// The pause after the next decline.
    backoff: usize,
}

#[cfg(not(Py_GIL_DISABLED))]
impl Pipeline {
    const FIRST_BACKOFF: usize = 64;
    const MAX_BACKOFF: usize = CHUNK_ROWS;

    fn new() -> Self {
        Self {
            pause: 0,
            backoff: Self::FIRST_BACKOFF,
        }
    }

    /// Appends rows from `index` on, up to the next chunk boundary, and returns how many;
    /// `None` when row `index` is to be read the general way.
    fn read(
        &mut self,
        list: &Bound<'_, PyList>,
        index: usize,
        reading: &mut Reading<'_, '_>,
    ) -> Option<usize> {
        if self.pause > 0 {
            self.pause -= 1;
            return None;
        }
        let end = list.len().min(index + reading.next_stop());
        let target = reading.target;
        let appended = ffi_read::read_rows(
            list,
            index..end,
            target.names,
            reading.cx.known,
            reading.builders,
            target.fast,
        );
        reading.stored(index..index + appended);
        if index + appended < end {
            // Declined at row `index + appended`, which the caller reads next.
            self.backoff = if appended > 0 {
                Self::FIRST_BACKOFF
            } else {
                (self.backoff * 2).min(Self::MAX_BACKOFF)
            };
            self.pause = self.backoff;
        }
        (appended > 0).then_some(appended)
    }
}

/// Why [`append_one`] did not store a row.
#[derive(Debug)]
pub enum RowProblem {
    /// The row does not fit the table: described for a `RowError`.
    Bad(Box<RowFault>),
    /// Reading it raised (user code in a property, `__getattr__`, ...), or the batch itself
    /// is unusable; re-raise it.
    Raised(PyErr),
}

/// Appends one row (input index `index`, for messages) to `builders`. If it does not fit,
/// every column is cut back to where it was, so nothing of the row is left behind.
pub fn append_one(
    row: &Bound<'_, PyAny>,
    builders: &mut [ColumnBuilder],
    target: &Target<'_>,
    cx: Context<'_>,
    index: usize,
) -> Result<(), RowProblem> {
    let before = builders.first().map_or(0, ColumnBuilder::len);
    let Err((column, error)) = append_row(row, builders, target, cx) else {
        return Ok(());
    };
    for builder in builders.iter_mut() {
        builder.truncate(before);
    }
    Err(match error {
        ConvError::Fault(fault) => {
            RowProblem::Bad(Box::new(describe(row.py(), target, column, index, *fault)))
        }
        ConvError::Py(err) => RowProblem::Raised(err),
        ConvError::Core(err) => RowProblem::Raised(to_py_err(err)),
    })
}

type RowResult = Result<(), (Option<usize>, ConvError)>;

fn append_row(
    row: &Bound<'_, PyAny>,
    builders: &mut [ColumnBuilder],
    target: &Target<'_>,
    cx: Context<'_>,
) -> RowResult {
    let py = row.py();
    let push = |builders: &mut [ColumnBuilder], i: usize, value: &Bound<'_, PyAny>| {
        push_value(&mut builders[i], value, cx).map_err(|e| (Some(i), e))
    };
    let none = py.None().into_bound(py);
    if let Ok(dict) = row.cast::<PyDict>() {
        if dict.len() == target.names.len() && walk_in_column_order(dict, builders, target, cx)? {
            return Ok(());
        }
        for (i, name) in target.names.iter().enumerate() {
            let builder = &mut builders[i];
            match ffi_read::lookup(dict, name, cx.known, builder, target.fast[i]) {
                Ok(Entry::Pushed) => {}
                Ok(Entry::Slow(value)) => push(builders, i, &value)?,
                Ok(Entry::Absent) => push(builders, i, &none)?,
                Err(e) => return Err((Some(i), e.into())),
            }
        }
        return Ok(());
    }
    if row.cast::<PyList>().is_ok() || row.cast::<PyTuple>().is_ok() {
        let len = row.len().map_err(|e| (None, e.into()))?;
        if len != target.names.len() {
            return Err((
                None,
                row_shape_fault(
                    row,
                    format!("a row of {} values", target.names.len()),
                    format!("it has {len} values"),
                ),
            ));
        }
        for (i, value) in row.try_iter().map_err(|e| (None, e.into()))?.enumerate() {
            push(builders, i, &value.map_err(|e| (Some(i), e.into()))?)?;
        }
        return Ok(());
    }
    if is_scalar(row) || row.is_none() {
        return Err((
            None,
            row_shape_fault(
                row,
                "a row: a dict, an object, a tuple or a list".into(),
                "this is not a row".into(),
            ),
        ));
    }
    if let Ok(mapping) = row.cast::<PyMapping>() {
        for (i, name) in target.names.iter().enumerate() {
            match mapping.get_item(name.bind(py)) {
                Ok(value) => push(builders, i, &value)?,
                Err(err) if err.is_instance_of::<PyKeyError>(py) => push(builders, i, &none)?,
                Err(err) => return Err((Some(i), err.into())),
            }
        }
        return Ok(());
    }
    // Instance attributes live in `__dict__` for plain objects, dataclasses and pydantic
    // models; reading it once per row beats a full getattr per column.
    let attributes = row
        .getattr(intern!(py, "__dict__"))
        .ok()
        .and_then(|d| d.cast_into::<PyDict>().ok());
    for (i, name) in target.names.iter().enumerate() {
        let found = match &attributes {
            Some(d) => ffi_read::lookup(d, name, cx.known, &mut builders[i], target.fast[i])
                .map_err(|e| (Some(i), e.into()))?,
            None => Entry::Absent,
        };
        match found {
            Entry::Pushed => {}
            Entry::Slow(value) => push(builders, i, &value)?,
            Entry::Absent => {
                let value =
                    lookup_attribute(row, name.bind(py)).map_err(|e| (Some(i), e.into()))?;
                push(builders, i, value.as_ref().unwrap_or(&none))?;
            }
        }
    }
    Ok(())
}

/// Reads a dict whose keys are exactly the column names in column order (rows written as dict
/// literals that mirror the table) in one pass over its entries, without a hash lookup per
/// column. Returns `false`, with nothing appended, as soon as a key is not the next column's
/// (interned) name, for the caller to read the dict by key instead.
fn walk_in_column_order(
    dict: &Bound<'_, PyDict>,
    builders: &mut [ColumnBuilder],
    target: &Target<'_>,
    cx: Context<'_>,
) -> Result<bool, (Option<usize>, ConvError)> {
    let start = builders.first().map_or(0, ColumnBuilder::len);
    let mut walk = DictWalk::new(dict, cx.known);
    let mut from = 0;
    loop {
        match walk.read(target.names, builders, from, target.fast) {
            Step::Done => return Ok(true),
            Step::Slow(i, value) => {
                push_value(&mut builders[i], &value, cx).map_err(|e| (Some(i), e))?;
                from = i + 1;
            }
            Step::Mismatch(i) => {
                for builder in &mut builders[..i] {
                    builder.truncate(start);
                }
                return Ok(false);
            }
            Step::Resized(i) => {
                let err = PyRuntimeError::new_err("dictionary changed size during iteration");
                return Err((Some(i), err.into()));
            }
        }
    }
}

/// `getattr(obj, name)`, with a missing attribute as `None` and any other exception raised.
pub fn lookup_attribute<'py>(
    obj: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    match obj.getattr(name) {
        Ok(value) => Ok(Some(value)),
        Err(err) if err.is_instance_of::<PyAttributeError>(obj.py()) => Ok(None),
        Err(err) => Err(err),
    }
}

fn row_shape_fault(row: &Bound<'_, PyAny>, expected: String, reason: String) -> ConvError {
    ConvError::Fault(Box::new(Fault {
        path: String::new(),
        expected,
        value: row.clone().unbind(),
        reason,
    }))
}

fn describe(
    py: Python<'_>,
    target: &Target<'_>,
    column: Option<usize>,
    row: usize,
    fault: Fault,
) -> RowFault {
    let value = fault.value.bind(py);
    let value_type = value
        .get_type()
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    let value_repr = value
        .repr()
        .map(|r| truncate_chars(r.to_string(), 200))
        .unwrap_or_else(|_| "<repr() failed>".into());
    RowFault {
        table: target.table.to_string(),
        column: column.map(|i| format!("{}{}", target.names[i].bind(py), fault.path)),
        row,
        expected: fault.expected,
        value_type,
        value_repr,
        reason: fault.reason,
    }
}
