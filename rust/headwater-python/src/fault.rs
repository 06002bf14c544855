//! Why a Python value could not be stored: the error type shared by the value converters
//! ([`crate::values`], [`crate::pyjson`]) and the row reader ([`crate::rows`]).

use arrow_schema::Field;
use headwater_core::schema::type_label;
use headwater_core::CoreError;
use pyo3::prelude::*;

/// A value that does not fit its column.
#[derive(Debug)]
pub struct Fault {
    /// Where inside the column, for nested values: `[2]`, `.city`, `[2].city`; empty at the top.
    pub path: String,
    /// The type the (nested) column expects, as [`type_label`] prints it.
    pub expected: String,
    /// The offending (nested) value.
    pub value: Py<PyAny>,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a value could not be pushed.
#[derive(Debug)]
pub enum ConvError {
    /// The value does not fit; the row is bad.
    Fault(Box<Fault>),
    /// User code raised while the value was read; re-raised unchanged.
    Py(PyErr),
    /// The batch itself is unusable (e.g. more than 2 GiB of strings in one column).
    Core(CoreError),
    /// The row is a generator, coroutine or other iterator: a forgotten `yield from` or
    /// `await` in the resolver, not bad data (see `rows::not_a_row_error`). Holds its kind.
    NotARow(&'static str),
}

impl From<PyErr> for ConvError {
    fn from(err: PyErr) -> Self {
        ConvError::Py(err)
    }
}

impl From<CoreError> for ConvError {
    fn from(err: CoreError) -> Self {
        ConvError::Core(err)
    }
}

impl ConvError {
    /// Prefixes the path of a fault found inside a nested value.
    pub fn nested(mut self, step: impl FnOnce() -> String) -> Self {
        if let ConvError::Fault(fault) = &mut self {
            fault.path.insert_str(0, &step());
        }
        self
    }
}

/// A conversion's result.
pub type Conv<T> = Result<T, ConvError>;

/// A [`Fault`] of `value` at the top of a column of `field`.
pub fn fault<T>(field: &Field, value: &Bound<'_, PyAny>, reason: impl Into<String>) -> Conv<T> {
    Err(ConvError::Fault(Box::new(Fault {
        path: String::new(),
        expected: type_label(field),
        value: value.clone().unbind(),
        reason: reason.into(),
    })))
}
