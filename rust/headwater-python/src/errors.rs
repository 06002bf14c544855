//! Maps [`CoreError`] onto the Python exception hierarchy defined in `headwater.errors`
//! (rooted at `headwater.HeadwaterError`), so Rust and Python raise the very same classes.

use headwater_core::{CoreError, RowFault};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

pyo3::import_exception!(headwater.errors, HeadwaterError);
pyo3::import_exception!(headwater.errors, SchemaError);
pyo3::import_exception!(headwater.errors, IpcError);
pyo3::import_exception!(headwater.errors, RowError);
pyo3::import_exception!(headwater.errors, NotARowError);

/// Converts an engine error into the matching Python exception.
pub fn to_py_err(error: CoreError) -> PyErr {
    match error {
        CoreError::Schema(message) => SchemaError::new_err(message),
        CoreError::Row(fault) => {
            Python::attach(|py| row_error(py, &fault).unwrap_or_else(|err| err))
        }
        err @ CoreError::MessageTooLarge { .. } => IpcError::new_err(err.to_string()),
        CoreError::InvalidArgument(message) => PyValueError::new_err(message),
        CoreError::Arrow(err) => HeadwaterError::new_err(format!("Arrow error: {err}")),
        err @ CoreError::Random(_) => HeadwaterError::new_err(err.to_string()),
    }
}

/// Converts an error of the HTTP transport or rate limiter's set-up into a `ValueError`
/// (a failed request is no such error: the transport raises it by kind).
pub fn http_error(error: headwater_http::Error) -> PyErr {
    PyValueError::new_err(error.to_string())
}

/// A `headwater.RowError` instance (not raised) describing `fault`.
pub fn row_error_instance<'py>(py: Python<'py>, fault: &RowFault) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("table", &fault.table)?;
    kwargs.set_item("column", &fault.column)?;
    kwargs.set_item("row", fault.row)?;
    kwargs.set_item("expected", &fault.expected)?;
    kwargs.set_item("value_type", &fault.value_type)?;
    kwargs.set_item("value_repr", &fault.value_repr)?;
    kwargs.set_item("reason", &fault.reason)?;
    py.get_type::<RowError>().call((), Some(&kwargs))
}

fn row_error(py: Python<'_>, fault: &RowFault) -> PyResult<PyErr> {
    Ok(PyErr::from_value(row_error_instance(py, fault)?))
}

/// `Result::map_err(to_py_err)` as a method.
pub trait IntoPyResult<T> {
    /// Converts the error side into a Python exception.
    fn into_py_result(self) -> PyResult<T>;
}

impl<T, E: Into<CoreError>> IntoPyResult<T> for Result<T, E> {
    fn into_py_result(self) -> PyResult<T> {
        self.map_err(|e| to_py_err(e.into()))
    }
}
