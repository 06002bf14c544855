//! Rows (dicts, objects, dataclasses, pydantic models, tuples, lists) into column builders.
//!
//! Each row is read column by column; when a value does not fit, every column is cut back to
//! the last complete row, so a bad row never leaves half of itself behind. Dicts are read by
//! key (a missing key is null; keys the table does not have are ignored, or a fault for a
//! strict table), sequences by position (their length must match), anything else by
//! attribute (a missing one is null). A generator, coroutine or other iterator where a row
//! belongs is refused with `NotARowError`: it is a forgotten `yield from` or `await`, whose
//! attributes would otherwise read as a row of nulls.

use headwater_core::builder::ColumnBuilder;
use headwater_core::{CoreError, RowFault};
use pyo3::exceptions::{PyKeyError, PyRuntimeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyIterator, PyList, PyMapping, PyString, PyTuple};

use crate::context::Known;
use crate::errors::{row_error_instance, to_py_err, NotARowError};
use crate::fault::{ConvError, Fault};
use crate::ffi_read::{self, DictWalk, Entry, FastPush, Step};
use crate::values::{is_scalar, lookup_attribute, push_value, short_repr, truncate_chars, Context};

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
    /// Keys (and public attributes) of a row that match no column are a fault, not ignored.
    pub strict: bool,
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

/// Rows read before the buffers are sized for the rest of a list from what they hold: the
/// engine's batches use the same count.
pub use headwater_engine::accumulate::SIZING_ROWS;

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
                    ConvError::NotARow(kind) => {
                        Err(not_a_row_error(self.target.table, index, row, kind))
                    }
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
        ConvError::NotARow(kind) => {
            RowProblem::Raised(not_a_row_error(target.table, index, row, kind))
        }
    })
}

/// What kind of iterator `row` is, if it is one: a generator, an async generator, a coroutine
/// or any other iterator (`map`, `zip`, `iter(list)`). Rows never are; such an object where a
/// row belongs is a resolver that forgot a `yield from` or an `await`.
pub fn iterator_kind(row: &Bound<'_, PyAny>, known: &Known) -> Option<&'static str> {
    let py = row.py();
    let kind = row.get_type();
    if kind.is(known.generator.bind(py)) {
        Some("generator")
    } else if kind.is(known.coroutine.bind(py)) {
        Some("coroutine")
    } else if kind.is(known.async_generator.bind(py)) {
        Some("async generator")
    } else if row.cast::<PyIterator>().is_ok() {
        Some("iterator")
    } else {
        None
    }
}

/// The `NotARowError` for row `index` of `table`, an iterator of `kind` (see
/// [`iterator_kind`]), saying what to write instead. A coroutine is closed.
pub fn not_a_row_error(table: &str, index: usize, row: &Bound<'_, PyAny>, kind: &str) -> PyErr {
    let py = row.py();
    // Generators and coroutines carry the name of the function that made them.
    let name = row
        .getattr(intern!(py, "__qualname__"))
        .ok()
        .and_then(|n| n.extract::<String>().ok());
    let type_name = row
        .get_type()
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    let call = name
        .as_deref()
        .map_or_else(|| "rows(...)".to_string(), |n| format!("{n}(...)"));
    let (what, advice) = match kind {
        "generator" => (
            format!("a generator object of {call}"),
            format!(
                "to yield the rows of another generator, write `yield from {call}` (or `yield \
                 list({call})` to yield them as one page)"
            ),
        ),
        "async generator" => (
            format!("an async generator object of {call}"),
            format!(
                "to yield the rows of another async generator, write `async for row in {call}: \
                 yield row`"
            ),
        ),
        "coroutine" => {
            // It will never run now: closed, it does not add a "never awaited" warning to
            // this error.
            if let Err(err) = row.call_method0(intern!(py, "close")) {
                err.write_unraisable(py, Some(row));
            }
            (
                format!("a coroutine object of {call}"),
                format!("it was never awaited: write `yield await {call}`"),
            )
        }
        _ => (
            format!("an iterator ({type_name})"),
            "to yield its rows, write `yield from rows` (or `yield list(rows)` to yield them as \
             one page)"
                .to_string(),
        ),
    };
    NotARowError::new_err(format!(
        "table '{table}', row {index}: got {what} where a row belongs; {advice}"
    ))
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
        let mut found = 0;
        for (i, name) in target.names.iter().enumerate() {
            let builder = &mut builders[i];
            match ffi_read::lookup(dict, name, cx.known, builder, target.fast[i]) {
                Ok(Entry::Pushed) => found += 1,
                Ok(Entry::Slow(value)) => {
                    found += 1;
                    push(builders, i, &value)?;
                }
                Ok(Entry::Absent) => push(builders, i, &none)?,
                Err(e) => return Err((Some(i), e.into())),
            }
        }
        // Every key is a column when as many were found as there are keys.
        if target.strict && found < dict.len() {
            return unknown_names(row, target, dict.keys().iter(), "key");
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
        let mut found = 0;
        for (i, name) in target.names.iter().enumerate() {
            match mapping.get_item(name.bind(py)) {
                Ok(value) => {
                    found += 1;
                    push(builders, i, &value)?;
                }
                Err(err) if err.is_instance_of::<PyKeyError>(py) => push(builders, i, &none)?,
                Err(err) => return Err((Some(i), err.into())),
            }
        }
        if target.strict && found < mapping.len().map_err(|e| (None, e.into()))? {
            let keys = mapping.keys().map_err(|e| (None, e.into()))?;
            return unknown_names(row, target, keys.iter(), "key");
        }
        return Ok(());
    }
    // Instance attributes live in `__dict__` for plain objects, dataclasses and pydantic
    // models; reading it once per row beats a full getattr per column.
    let attributes = row
        .getattr(intern!(py, "__dict__"))
        .ok()
        .and_then(|d| d.cast_into::<PyDict>().ok());
    // Generators, coroutines and the built-in iterators have no `__dict__`: rows that have one
    // (dataclasses, models, plain objects) pay nothing for this check.
    if attributes.is_none() {
        if let Some(kind) = iterator_kind(row, cx.known) {
            return Err((None, ConvError::NotARow(kind)));
        }
    }
    let mut in_dict = 0;
    for (i, name) in target.names.iter().enumerate() {
        let found = match &attributes {
            Some(d) => ffi_read::lookup(d, name, cx.known, &mut builders[i], target.fast[i])
                .map_err(|e| (Some(i), e.into()))?,
            None => Entry::Absent,
        };
        match found {
            Entry::Pushed => in_dict += 1,
            Entry::Slow(value) => {
                in_dict += 1;
                push(builders, i, &value)?;
            }
            Entry::Absent => {
                let value =
                    lookup_attribute(row, name.bind(py)).map_err(|e| (Some(i), e.into()))?;
                push(builders, i, value.as_ref().unwrap_or(&none))?;
            }
        }
    }
    if target.strict {
        check_attributes(row, target, cx.known, attributes.as_ref(), in_dict)?;
    }
    Ok(())
}

/// For a strict table: the fault of an object row with public instance attributes (in its
/// `__dict__`, or a pydantic model's extra fields) that match no column. Attributes whose
/// names start with `_` are private by convention and never reported.
fn check_attributes(
    row: &Bound<'_, PyAny>,
    target: &Target<'_>,
    known: &Known,
    attributes: Option<&Bound<'_, PyDict>>,
    in_dict: usize,
) -> RowResult {
    let py = row.py();
    let mut names: Vec<Bound<'_, PyAny>> = Vec::new();
    if let Some(d) = attributes.filter(|d| d.len() > in_dict) {
        names.extend(d.keys().iter());
    }
    // Looked up in the type's MRO: `isinstance` goes through pydantic's ABC metaclass, which
    // costs more than reading the whole row.
    let model = known.pydantic_model.as_ref().map(|m| m.bind(py));
    if model.is_some_and(|m| row.get_type().mro().iter().any(|t| t.is(m))) {
        // pydantic keeps the fields a model allows beyond its declared ones apart.
        let extra = row
            .getattr(intern!(py, "__pydantic_extra__"))
            .map_err(|e| (None, e.into()))?;
        if let Some(extra) = extra.cast::<PyDict>().ok().filter(|e| !e.is_empty()) {
            names.extend(extra.keys().iter());
        }
    }
    let private = |name: &Bound<'_, PyAny>| {
        name.cast::<PyString>()
            .is_ok_and(|s| s.to_cow().is_ok_and(|s| s.starts_with('_')))
    };
    let public: Vec<Bound<'_, PyAny>> = names.into_iter().filter(|n| !private(n)).collect();
    if public.is_empty() {
        return Ok(());
    }
    unknown_names(row, target, public.into_iter(), "attribute")
}

/// Most names listed in the message of a strict table's fault.
const LISTED_NAMES: usize = 10;

/// The fault of a row of a strict table whose `names` (keys, or attributes) include some that
/// match no column; `Ok` if they all match one.
fn unknown_names<'py>(
    row: &Bound<'py, PyAny>,
    target: &Target<'_>,
    names: impl Iterator<Item = Bound<'py, PyAny>>,
    what: &str,
) -> RowResult {
    let columns: Vec<&str> = target
        .names
        .iter()
        .map(|n| n.bind(row.py()).to_str().unwrap_or("?"))
        .collect();
    let unknown: Vec<String> = names
        .filter(|name| {
            name.cast::<PyString>()
                .ok()
                .and_then(|s| s.to_str().ok())
                .is_none_or(|s| !columns.contains(&s))
        })
        .map(|name| short_repr(&name))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let listed = list_names(unknown.iter().map(String::as_str), LISTED_NAMES);
    let plural = if unknown.len() == 1 { "" } else { "s" };
    let reason = format!(
        "the table is strict, and {what}{plural} {listed} match{} no column; its columns are \
         {}",
        if unknown.len() == 1 { "es" } else { "" },
        list_names(columns.iter().copied(), 4 * LISTED_NAMES),
    );
    Err((
        None,
        row_shape_fault(row, "only the table's columns".into(), reason),
    ))
}

/// `names` joined with `, `, the ones past the first `most` counted instead.
fn list_names<'a>(names: impl ExactSizeIterator<Item = &'a str>, most: usize) -> String {
    let total = names.len();
    let listed: Vec<&str> = names.take(most).collect();
    let more = total - listed.len();
    let mut text = listed.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
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
