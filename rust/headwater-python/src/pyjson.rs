//! Python objects to compact JSON text, serialised in Rust straight into a column's buffer.
//!
//! Accepts what `json.dumps` accepts (dict with str or int keys, list, tuple, str, int, float,
//! bool, None) plus pydantic models (`model_dump(mode="json")`), dataclasses and enums (their
//! value). NaN and infinities, other key types and anything else are faults, never silently
//! stringified.

use arrow_schema::Field;
use headwater_core::json;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::context::Known;
use crate::fault::{ConvError, Fault};
use headwater_core::schema::type_label;

/// Deeper nesting than this is treated as a reference cycle rather than recursed into.
pub const MAX_DEPTH: usize = 256;

fn not_json(field: &Field, v: &Bound<'_, PyAny>, reason: impl Into<String>) -> ConvError {
    ConvError::Fault(Box::new(Fault {
        path: String::new(),
        expected: type_label(field),
        value: v.clone().unbind(),
        reason: reason.into(),
    }))
}

/// Appends `v` as JSON text to `out`.
pub fn write_json(
    out: &mut Vec<u8>,
    field: &Field,
    v: &Bound<'_, PyAny>,
    known: &Known,
    depth: usize,
) -> Result<(), ConvError> {
    if depth > MAX_DEPTH {
        return Err(not_json(
            field,
            v,
            "is nested too deeply (a reference cycle?)",
        ));
    }
    let py = v.py();
    if v.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(b) = v.cast_exact::<PyBool>() {
        out.extend_from_slice(if b.is_true() { b"true" } else { b"false" });
    } else if let Ok(s) = v.cast::<PyString>() {
        let Ok(s) = s.to_str() else {
            return Err(not_json(
                field,
                v,
                "contains a lone surrogate, which is not valid UTF-8",
            ));
        };
        json::write_str(out, s);
    } else if let Ok(i) = v.cast::<PyInt>() {
        match i.extract::<i64>() {
            Ok(x) => json::write_i64(out, x),
            // Python ints are unbounded; JSON numbers are too.
            Err(_) => out.extend_from_slice(i.str()?.to_str()?.as_bytes()),
        }
    } else if let Ok(f) = v.cast::<PyFloat>() {
        json::write_f64(out, f.value()).map_err(|reason| not_json(field, v, reason))?;
    } else if let Ok(d) = v.cast::<PyDict>() {
        out.push(b'{');
        for (n, (key, item)) in d.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            if let Ok(k) = key.cast::<PyString>() {
                let Ok(k) = k.to_str() else {
                    return Err(not_json(field, &key, "a key contains a lone surrogate"));
                };
                json::write_str(out, k);
            } else if key.cast::<PyInt>().is_ok() && !key.is_exact_instance_of::<PyBool>() {
                json::write_str(out, key.str()?.to_str()?);
            } else {
                return Err(not_json(field, &key, "JSON object keys must be str or int"));
            }
            out.push(b':');
            write_json(out, field, &item, known, depth + 1)?;
        }
        out.push(b'}');
    } else if let Ok(list) = v.cast::<PyList>() {
        write_array(out, field, list.iter(), known, depth)?;
    } else if let Ok(tuple) = v.cast::<PyTuple>() {
        write_array(out, field, tuple.iter(), known, depth)?;
    } else if known
        .pydantic_model
        .as_ref()
        .is_some_and(|model| v.is_instance(model.bind(py)).unwrap_or(false))
    {
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "mode"), intern!(py, "json"))?;
        let dumped = v.call_method(intern!(py, "model_dump"), (), Some(&kwargs))?;
        write_json(out, field, &dumped, known, depth + 1)?;
    } else if v.is_instance(known.enum_base.bind(py))? {
        write_json(
            out,
            field,
            &v.getattr(intern!(py, "value"))?,
            known,
            depth + 1,
        )?;
    } else if is_dataclass_instance(v, known)? {
        let dumped = known.dataclasses.1.bind(py).call1((v,))?;
        write_json(out, field, &dumped, known, depth + 1)?;
    } else {
        return Err(not_json(field, v, "is not JSON-serialisable"));
    }
    Ok(())
}

fn write_array<'py>(
    out: &mut Vec<u8>,
    field: &Field,
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    known: &Known,
    depth: usize,
) -> Result<(), ConvError> {
    out.push(b'[');
    for (n, item) in items.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_json(out, field, &item, known, depth + 1)?;
    }
    out.push(b']');
    Ok(())
}

fn is_dataclass_instance(v: &Bound<'_, PyAny>, known: &Known) -> PyResult<bool> {
    // `is_dataclass` is also true for the class itself; only instances are data.
    if v.is_instance_of::<pyo3::types::PyType>() {
        return Ok(false);
    }
    known.dataclasses.0.bind(v.py()).call1((v,))?.is_truthy()
}
