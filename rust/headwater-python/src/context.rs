//! Python types the converters recognise (`uuid.UUID`, `decimal.Decimal`, the `ipaddress`
//! classes, `datetime.timezone.utc`, the exact `datetime` and `date` types, generators and
//! coroutines), imported once per interpreter and then compared by pointer, which is far
//! cheaper than `isinstance` through the import system per value.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType};

use crate::ffi_read::layout::{DictLayout, UuidLayout};

/// The recognised Python types, all owned references valid for the interpreter's life.
#[derive(Debug)]
pub struct Known {
    /// `uuid.UUID`.
    pub uuid: Py<PyType>,
    /// Where a `uuid.UUID` keeps its value, when it can be read in place.
    pub uuid_layout: Option<UuidLayout>,
    /// Whether dict entries can be read in place (see `ffi_read::DictLayout`).
    pub dict_layout: Option<DictLayout>,
    /// `decimal.Decimal`.
    pub decimal: Py<PyType>,
    /// The six `ipaddress` address, network and interface classes.
    pub ip_types: Py<PyTuple>,
    /// `datetime.timezone.utc`.
    pub utc: Py<PyAny>,
    /// `datetime.datetime`.
    pub datetime: Py<PyType>,
    /// `datetime.date`.
    pub date: Py<PyType>,
    /// `enum.Enum`.
    pub enum_base: Py<PyType>,
    /// `pydantic.BaseModel`, when pydantic is installed.
    pub pydantic_model: Option<Py<PyType>>,
    /// `dataclasses.is_dataclass`, `dataclasses.asdict`.
    pub dataclasses: (Py<PyAny>, Py<PyAny>),
    /// `types.GeneratorType`, `types.AsyncGeneratorType` and `types.CoroutineType`: what a
    /// resolver yields where it forgot a `yield from` or an `await`.
    pub generator: Py<PyType>,
    /// See [`Known::generator`].
    pub async_generator: Py<PyType>,
    /// See [`Known::generator`].
    pub coroutine: Py<PyType>,
}

static KNOWN: PyOnceLock<Known> = PyOnceLock::new();

/// The recognised types, imported on first use.
pub fn known(py: Python<'_>) -> PyResult<&'static Known> {
    if let Some(known) = KNOWN.get(py) {
        return Ok(known);
    }
    let ty = |module: &str, name: &str| -> PyResult<Py<PyType>> {
        Ok(py
            .import(module)?
            .getattr(name)?
            .cast_into::<PyType>()?
            .unbind())
    };
    let ipaddress = py.import("ipaddress")?;
    let ip_types = PyTuple::new(
        py,
        [
            "IPv4Address",
            "IPv6Address",
            "IPv4Network",
            "IPv6Network",
            "IPv4Interface",
            "IPv6Interface",
        ]
        .iter()
        .map(|name| ipaddress.getattr(*name))
        .collect::<PyResult<Vec<_>>>()?,
    )?;
    let pydantic_model = match py.import("pydantic") {
        Ok(module) => Some(module.getattr("BaseModel")?.cast_into::<PyType>()?.unbind()),
        Err(_) => None,
    };
    let dataclasses = py.import("dataclasses")?;
    let uuid = ty("uuid", "UUID")?;
    let known = Known {
        uuid_layout: UuidLayout::of(uuid.bind(py))?,
        dict_layout: DictLayout::probe(py)?,
        uuid,
        decimal: ty("decimal", "Decimal")?,
        ip_types: ip_types.unbind(),
        utc: py
            .import("datetime")?
            .getattr("timezone")?
            .getattr("utc")?
            .unbind(),
        datetime: ty("datetime", "datetime")?,
        date: ty("datetime", "date")?,
        enum_base: ty("enum", "Enum")?,
        pydantic_model,
        dataclasses: (
            dataclasses.getattr("is_dataclass")?.unbind(),
            dataclasses.getattr("asdict")?.unbind(),
        ),
        generator: ty("types", "GeneratorType")?,
        async_generator: ty("types", "AsyncGeneratorType")?,
        coroutine: ty("types", "CoroutineType")?,
    };
    Ok(KNOWN.get_or_init(py, || known))
}
