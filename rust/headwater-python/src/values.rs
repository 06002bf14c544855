//! Python values into column builders, one value at a time.
//!
//! [`push_value`] looks at the column's storage and accepts exactly the Python values that fit
//! it without losing information: `3` into a float column is fine, `"3"` into an int column,
//! `3.5` into an int column or a microsecond into `timestamp[s]` are
//! [`Fault`](crate::fault::Fault)s that name the reason. Exceptions raised by user code while
//! reading a value (a failing `utcoffset`, a property) pass through unchanged as
//! [`ConvError::Py`]. An `enum.Enum` member is stored as its `value`, under the same rules: str
//! and int enums are strs and ints already, and any other member is looked at only once its
//! own value did not fit, which costs the common values nothing.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::OffsetSizeTrait;
use arrow_schema::{DataType, Field, FieldRef, TimeUnit};
use headwater_core::builder::{BytesColumn, ColumnBuilder, FixedColumn, ListColumn, Values};
use headwater_core::schema::type_label;
use headwater_core::{decimal, json, net, temporal};
use pyo3::exceptions::{PyAttributeError, PyOverflowError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDate, PyDateAccess, PyDateTime, PyDelta, PyDeltaAccess, PyDict,
    PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTime, PyTimeAccess, PyTuple,
    PyTzInfoAccess,
};

use crate::context::Known;
use crate::fault::{fault, Conv, ConvError};
use crate::ffi_read::{FastPush, Inert, Json};
use crate::pyjson::{self, write_json};

/// What converting a value needs besides the value: the recognised Python types, and the
/// interned names of struct fields.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// See [`Known`].
    pub known: &'a Known,
    /// Interned struct field names, looked up by field.
    pub names: &'a FieldNames,
}

/// The interned Python names of every struct field of a schema, found by the address of the
/// field (builders share their schema's `Arc<Field>`s), so struct values are read without
/// making a Python string per field per row.
#[derive(Debug, Default)]
pub struct FieldNames(HashMap<usize, Py<PyString>>);

impl FieldNames {
    /// Names of the struct fields found anywhere inside `fields`.
    pub fn of(py: Python<'_>, fields: &[FieldRef]) -> Self {
        let mut names = FieldNames::default();
        for field in fields {
            names.collect(py, field.data_type());
        }
        names
    }

    fn collect(&mut self, py: Python<'_>, data_type: &DataType) {
        match data_type {
            DataType::Struct(children) => {
                for child in children {
                    let key = Arc::as_ptr(child) as usize;
                    self.0
                        .insert(key, PyString::intern(py, child.name()).unbind());
                    self.collect(py, child.data_type());
                }
            }
            DataType::List(item) | DataType::LargeList(item) | DataType::Map(item, _) => {
                self.collect(py, item.data_type());
            }
            _ => {}
        }
    }

    /// The interned name of `field`.
    fn get<'py>(&self, py: Python<'py>, field: &FieldRef) -> Bound<'py, PyString> {
        match self.0.get(&(Arc::as_ptr(field) as usize)) {
            Some(name) => name.bind(py).clone(),
            None => PyString::intern(py, field.name()),
        }
    }
}

/// Appends `value` to `builder`, or says why it cannot be.
pub fn push_value(
    builder: &mut ColumnBuilder,
    value: &Bound<'_, PyAny>,
    cx: Context<'_>,
) -> Conv<()> {
    match push_plain(builder, value, cx) {
        // Only a fault of the value itself, which left nothing in the builder (nested values,
        // which may have, fault with a path).
        Err(ConvError::Fault(fault)) if fault.path.is_empty() && is_enum(value, cx.known)? => {
            push_enum_value(builder, value, cx)
        }
        done => done,
    }
}

fn is_enum(value: &Bound<'_, PyAny>, known: &Known) -> Conv<bool> {
    Ok(value.is_instance(known.enum_base.bind(value.py()))?)
}

/// Appends the `value` of the enum member `member`, or says why it does not fit, naming the
/// member.
fn push_enum_value(
    builder: &mut ColumnBuilder,
    member: &Bound<'_, PyAny>,
    cx: Context<'_>,
) -> Conv<()> {
    let value = member.getattr(intern!(member.py(), "value"))?;
    push_value(builder, &value, cx).map_err(|error| match error {
        ConvError::Fault(mut fault) => {
            fault.reason = format!(
                "an Enum member is stored as its value, {}, which does not fit: {}",
                short_repr(&value),
                fault.reason
            );
            fault.value = member.clone().unbind();
            ConvError::Fault(fault)
        }
        other => other,
    })
}

/// [`push_value`] without the enum rule.
fn push_plain(builder: &mut ColumnBuilder, value: &Bound<'_, PyAny>, cx: Context<'_>) -> Conv<()> {
    let known = cx.known;
    let (field, values) = builder.parts_mut();
    if value.is_none() {
        if !field.is_nullable() {
            return fault(field, value, "the column is not nullable");
        }
        builder.push_null();
        return Ok(());
    }
    let v = value;
    match values {
        Values::Boolean(c) => match v.cast_exact::<PyBool>() {
            Ok(b) => c.push(b.is_true()),
            Err(_) => return fault(field, v, "expected a bool"),
        },
        Values::Int8(c) => c.push(narrow(field, v, signed(field, v)?)?),
        Values::Int16(c) => c.push(narrow(field, v, signed(field, v)?)?),
        Values::Int32(c) => c.push(narrow(field, v, signed(field, v)?)?),
        Values::Int64(c) => c.push(signed(field, v)?),
        Values::UInt8(c) => c.push(narrow(field, v, unsigned(field, v)?)?),
        Values::UInt16(c) => c.push(narrow(field, v, unsigned(field, v)?)?),
        Values::UInt32(c) => c.push(narrow(field, v, unsigned(field, v)?)?),
        Values::UInt64(c) => c.push(unsigned(field, v)?),
        Values::Float32(c) => {
            let x = float(field, v, true)?;
            if x.is_finite() && x.abs() > f64::from(f32::MAX) {
                return fault(field, v, "is beyond the range of a 32-bit float");
            }
            #[allow(clippy::cast_possible_truncation)]
            // range checked above; rounding is float32's nature
            c.push(x as f32)
        }
        Values::Float64(c) => c.push(float(field, v, false)?),
        Values::Utf8(c) => c.push(text(field, v)?.as_bytes())?,
        Values::LargeUtf8(c) => c.push(text(field, v)?.as_bytes())?,
        Values::Binary(c) => bytes(field, v, |b| c.push(b))??,
        Values::LargeBinary(c) => bytes(field, v, |b| c.push(b))??,
        Values::FixedSizeBinary(c) => {
            let width = c.width();
            bytes(field, v, |b| {
                if b.len() == width {
                    c.push(b).map(|_| None)
                } else {
                    Ok(Some(b.len()))
                }
            })??
            .map_or(Ok(()), |len| {
                fault(
                    field,
                    v,
                    format!("has {len} bytes, the column holds exactly {width}"),
                )
            })?
        }
        Values::Date32(c) => {
            let days = date_days(field, v)?;
            match i32::try_from(days) {
                Ok(days) => c.push(days),
                Err(_) => return fault(field, v, "is out of range for date32"),
            }
        }
        Values::Date64(c) => c.push(date_days(field, v)? * 86_400_000),
        Values::Time32(c, unit) => {
            let t = time_of_day(field, v, *unit)?;
            c.push(i32::try_from(t).expect("a time of day in s or ms fits i32"))
        }
        Values::Time64(c, unit) => c.push(time_of_day(field, v, *unit)?),
        Values::Timestamp(c, unit) => c.push(timestamp(field, v, *unit, known)?),
        Values::Duration(c, unit) => c.push(duration(field, v, *unit)?),
        Values::Decimal128(c, precision, scale) => {
            c.push(decimal_value(field, v, *precision, *scale, known)?)
        }
        Values::Uuid(c) => c.push(&uuid_bytes(field, v, known)?)?,
        Values::Json(c) => {
            if v.cast::<PyString>().is_ok() {
                let text = text(field, v)?;
                if let Err(reason) = json::validate_str(text) {
                    return fault(
                        field,
                        v,
                        format!(
                            "a str in a json column is JSON text, and this {reason}; \
                             to store a JSON string, pass json.dumps(value)"
                        ),
                    );
                }
                c.push(text.as_bytes())?
            } else if let Ok(b) = v.cast::<PyBytes>() {
                if let Err(reason) = json::validate(b.as_bytes()) {
                    return fault(
                        field,
                        v,
                        format!(
                            "bytes in a json column are JSON text, and these are not: {reason}"
                        ),
                    );
                }
                c.push(b.as_bytes())?
            } else {
                c.push_with(|out| write_json(out, field, v, known, 0))??
            }
        }
        Values::Inet(c) => {
            let canonical = inet_text(field, v, known)?;
            c.push(canonical.as_bytes())?
        }
        Values::Mac(c) => {
            let address = mac_bytes(field, v)?;
            c.push(&address)?
        }
        Values::List(list) => {
            for_each_item(field, v, |k, item| push_item(list.items(), k, item, cx))?;
            list.close()?
        }
        Values::LargeList(list) => {
            for_each_item(field, v, |k, item| push_item(list.items(), k, item, cx))?;
            list.close()?
        }
        Values::Struct(s) => {
            let py = v.py();
            let dict = v.cast::<PyDict>().ok();
            if dict.is_none()
                && (is_scalar(v) || v.cast::<PyList>().is_ok() || v.cast::<PyTuple>().is_ok())
            {
                return fault(field, v, "expected a dict or an object with attributes");
            }
            if dict.is_none() && is_enum(v, known)? {
                // Its attributes are the enum's (`name`, `value`), not the struct's fields:
                // this fault makes push_value store its value instead.
                return fault(field, v, "expected a dict or an object with attributes");
            }
            for child in s.children() {
                let name = cx.names.get(py, child.field());
                let item = match dict {
                    Some(d) => d.get_item(&name)?,
                    None => lookup_attribute(v, &name)?,
                };
                let item = item.unwrap_or_else(|| py.None().into_bound(py));
                push_value(child, &item, cx)
                    .map_err(|e| e.nested(|| format!(".{}", child.field().name())))?;
            }
            s.close()
        }
        Values::Map(map) => {
            let mut push_entry = |key: &Bound<'_, PyAny>, item: &Bound<'_, PyAny>| -> Conv<()> {
                let (keys, items) = map.keys_and_values();
                if key.is_none() {
                    return fault(field, v, "map keys cannot be None");
                }
                let label = || format!("[{}]", short_repr(key));
                push_value(keys, key, cx).map_err(|e| e.nested(label))?;
                push_value(items, item, cx).map_err(|e| e.nested(label))
            };
            if let Ok(d) = v.cast::<PyDict>() {
                for (key, item) in d.iter() {
                    push_entry(&key, &item)?;
                }
            } else if v.cast::<PyList>().is_ok() || v.cast::<PyTuple>().is_ok() {
                for pair in v.try_iter()? {
                    let pair = pair?;
                    match pair.cast::<PyTuple>() {
                        Ok(t) if t.len() == 2 => push_entry(&t.get_item(0)?, &t.get_item(1)?)?,
                        _ => return fault(field, &pair, "map entries must be (key, value) tuples"),
                    }
                }
            } else {
                return fault(field, v, "expected a dict or a list of (key, value) tuples");
            }
            map.close()?
        }
    }
    Ok(())
}

/// The fast path of [`push_value`] for values read in place ([`Inert`]): appends `v` and
/// returns `true` when it is an exact built-in value that fits the column as it is, exactly as
/// [`push_value`] would store it; returns `false`, having appended nothing, for anything else
/// (other types, values out of range, faults, full columns), which [`push_value`] then
/// converts or explains. A [`FastPush`](crate::ffi_read::FastPush).
pub fn push_inert(builder: &mut ColumnBuilder, v: Inert<'_>) -> bool {
    if v.is_none() {
        if !builder.field().is_nullable() {
            return false;
        }
        builder.push_null();
        return true;
    }
    match &mut builder.values {
        Values::Boolean(c) => v.as_bool().map(|b| c.push(b)).is_some(),
        Values::Int8(c) => v
            .as_i64()
            .and_then(|x| x.try_into().ok())
            .map(|x| c.push(x))
            .is_some(),
        Values::Int16(c) => v
            .as_i64()
            .and_then(|x| x.try_into().ok())
            .map(|x| c.push(x))
            .is_some(),
        Values::Int32(c) => v
            .as_i64()
            .and_then(|x| x.try_into().ok())
            .map(|x| c.push(x))
            .is_some(),
        Values::Int64(c) => v.as_i64().map(|x| c.push(x)).is_some(),
        Values::UInt8(c) => v
            .as_i64()
            .and_then(|x| x.try_into().ok())
            .map(|x| c.push(x))
            .is_some(),
        Values::UInt16(c) => v
            .as_i64()
            .and_then(|x| x.try_into().ok())
            .map(|x| c.push(x))
            .is_some(),
        Values::UInt32(c) => v
            .as_i64()
            .and_then(|x| x.try_into().ok())
            .map(|x| c.push(x))
            .is_some(),
        Values::UInt64(c) => v
            .as_i64()
            .and_then(|x| x.try_into().ok())
            .map(|x| c.push(x))
            .is_some(),
        Values::Float64(c) => inert_float(v, false).map(|x| c.push(x)).is_some(),
        Values::Float32(c) => match inert_float(v, true) {
            #[allow(clippy::cast_possible_truncation)] // range checked; rounding as push_value
            Some(x) if !(x.is_finite() && x.abs() > f64::from(f32::MAX)) => {
                c.push(x as f32);
                true
            }
            _ => false,
        },
        Values::Utf8(c) => v.as_str().is_some_and(|s| c.push(s.as_bytes()).is_ok()),
        Values::LargeUtf8(c) => v.as_str().is_some_and(|s| c.push(s.as_bytes()).is_ok()),
        Values::Binary(c) => v.as_bytes().is_some_and(|b| c.push(b).is_ok()),
        Values::LargeBinary(c) => v.as_bytes().is_some_and(|b| c.push(b).is_ok()),
        Values::FixedSizeBinary(c) => push_inert_fixed(c, v),
        Values::Uuid(c) => match v.as_uuid() {
            Some(bytes) => c.push(&bytes).is_ok(),
            None => push_inert_fixed(c, v),
        },
        Values::Json(c) => push_json_inert(c, v),
        Values::Timestamp(c, unit) => {
            let Some(dt) = v.as_utc_datetime() else {
                return false;
            };
            let days = temporal::days_from_civil(dt.year, dt.month, dt.day);
            let micros = (days * 86_400 + dt.seconds) * 1_000_000 + dt.micros;
            let value = if *unit == TimeUnit::Microsecond {
                micros
            } else {
                // The label only goes into a message, and a failure goes the general way.
                match temporal::convert(micros, TimeUnit::Microsecond, *unit, "") {
                    Ok(value) => value,
                    Err(_) => return false,
                }
            };
            c.push(value);
            true
        }
        Values::Date32(c) => v
            .as_date()
            .and_then(|(y, m, d)| i32::try_from(temporal::days_from_civil(y, m, d)).ok())
            .map(|days| c.push(days))
            .is_some(),
        Values::List(list) => push_inert_list(list, v),
        Values::LargeList(list) => push_inert_list(list, v),
        _ => false,
    }
}

/// The fast path for a column, chosen once per table: a [`FastPush`] specialised for the
/// column's storage and the value type it usually receives, which hands anything else to
/// [`push_inert`]. Small enough to inline the push, unlike the general dispatch.
pub fn fast_push_for(builder: &ColumnBuilder) -> FastPush {
    match &builder.values {
        Values::Int64(_) => fast_int64,
        Values::Float64(_) => fast_float64,
        Values::Boolean(_) => fast_bool,
        Values::Utf8(_) => fast_utf8,
        Values::Timestamp(_, TimeUnit::Microsecond) => fast_timestamp_us,
        Values::Json(_) => fast_json,
        Values::Uuid(_) => fast_uuid,
        Values::List(_) => fast_list,
        _ => push_inert,
    }
}

fn fast_int64(builder: &mut ColumnBuilder, v: Inert<'_>) -> bool {
    if let (Values::Int64(c), Some(x)) = (&mut builder.values, v.as_i64()) {
        c.push(x);
        return true;
    }
    push_inert(builder, v)
}

fn fast_float64(builder: &mut ColumnBuilder, v: Inert<'_>) -> bool {
    if let (Values::Float64(c), Some(x)) = (&mut builder.values, v.as_f64()) {
        c.push(x);
        return true;
    }
    push_inert(builder, v)
}

fn fast_bool(builder: &mut ColumnBuilder, v: Inert<'_>) -> bool {
    if let (Values::Boolean(c), Some(b)) = (&mut builder.values, v.as_bool()) {
        c.push(b);
        return true;
    }
    push_inert(builder, v)
}

fn fast_utf8(builder: &mut ColumnBuilder, v: Inert<'_>) -> bool {
    if let (Values::Utf8(c), Some(s)) = (&mut builder.values, v.as_str()) {
        return c.push(s.as_bytes()).is_ok();
    }
    push_inert(builder, v)
}

fn fast_timestamp_us(builder: &mut ColumnBuilder, v: Inert<'_>) -> bool {
    if let (Values::Timestamp(c, TimeUnit::Microsecond), Some(dt)) =
        (&mut builder.values, v.as_utc_datetime())
    {
        let days = temporal::days_from_civil(dt.year, dt.month, dt.day);
        c.push((days * 86_400 + dt.seconds) * 1_000_000 + dt.micros);
        return true;
    }
    push_inert(builder, v)
}

fn fast_json(builder: &mut ColumnBuilder, v: Inert<'_>) -> bool {
    match &mut builder.values {
        Values::Json(c) if !v.is_none() => push_json_inert(c, v),
        _ => push_inert(builder, v),
    }
}

/// A json column's value read in place: str or bytes as JSON text (checked; invalid text goes
/// the general way, which explains it), anything else serialised by [`write_json_inert`].
fn push_json_inert(c: &mut BytesColumn<i32>, v: Inert<'_>) -> bool {
    if let Some(text) = v.as_bytes().or_else(|| v.as_str().map(str::as_bytes)) {
        return json::is_valid(text) && c.push(text).is_ok();
    }
    let written = c.push_with(|out| {
        if write_json_inert(out, v, 0) {
            Ok(())
        } else {
            Err(())
        }
    });
    matches!(written, Ok(Ok(())))
}

/// [`write_json`] for values read in place: exact dicts with str or int keys, lists and
/// tuples, str, int within i64, finite float, bool and None, written exactly as `write_json`
/// writes them. `false`, leaving a partial text for the caller to drop, for anything else
/// (subclasses, enums, models, big ints, NaN, other keys, nesting too deep), which
/// `write_json` then takes, faults included.
fn write_json_inert(out: &mut Vec<u8>, v: Inert<'_>, depth: usize) -> bool {
    match v.json() {
        Json::Str(s) => json::write_str(out, s),
        Json::Int(i) => json::write_i64(out, i),
        Json::Object(entries) => {
            if depth >= pyjson::MAX_DEPTH {
                return false;
            }
            out.push(b'{');
            let mut first = true;
            for (key, item) in entries {
                if !first {
                    out.push(b',');
                }
                first = false;
                if let Some(key) = key.as_str() {
                    json::write_str(out, key);
                } else if let Some(key) = key.as_i64() {
                    // As `write_json` writes str(key).
                    out.push(b'"');
                    json::write_i64(out, key);
                    out.push(b'"');
                } else {
                    return false;
                }
                out.push(b':');
                if !write_json_inert(out, item, depth + 1) {
                    return false;
                }
            }
            out.push(b'}');
        }
        Json::Array(items) => {
            if depth >= pyjson::MAX_DEPTH {
                return false;
            }
            out.push(b'[');
            let mut first = true;
            for item in items {
                if !first {
                    out.push(b',');
                }
                first = false;
                if !write_json_inert(out, item, depth + 1) {
                    return false;
                }
            }
            out.push(b']');
        }
        Json::Float(x) => return json::write_f64(out, x).is_ok(),
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Json::Other => return false,
    }
    true
}

fn fast_uuid(builder: &mut ColumnBuilder, v: Inert<'_>) -> bool {
    if let (Values::Uuid(c), Some(bytes)) = (&mut builder.values, v.as_uuid()) {
        return c.push(&bytes).is_ok();
    }
    push_inert(builder, v)
}

/// Lists of strings (tags, names, ids: the most common nested values) item by item without
/// the general dispatch; any other list as [`push_inert`] takes it.
fn fast_list(builder: &mut ColumnBuilder, v: Inert<'_>) -> bool {
    if let Values::List(list) = &mut builder.values {
        let start = list.closed_items();
        if let (Values::Utf8(strings), Some(items)) = (&mut list.items().values, v.items()) {
            let mut all = true;
            for item in items {
                match item.as_str() {
                    Some(s) if strings.push(s.as_bytes()).is_ok() => {}
                    _ => {
                        all = false;
                        break;
                    }
                }
            }
            if all && list.close().is_ok() {
                return true;
            }
            list.items().truncate(start);
        }
    }
    push_inert(builder, v)
}

/// [`push_inert`] for exact bytes of a fixed-size binary column's width.
fn push_inert_fixed(c: &mut FixedColumn, v: Inert<'_>) -> bool {
    v.as_bytes()
        .is_some_and(|b| b.len() == c.width() && c.push(b).is_ok())
}

/// [`push_inert`] for an exact list or tuple: all of its items, or nothing.
fn push_inert_list<O: OffsetSizeTrait>(list: &mut ListColumn<O>, v: Inert<'_>) -> bool {
    let Some(items) = v.items() else {
        return false;
    };
    let start = list.items().len();
    for item in items {
        if !push_inert(list.items(), item) {
            list.items().truncate(start);
            return false;
        }
    }
    if list.close().is_err() {
        list.items().truncate(start);
        return false;
    }
    true
}

/// What [`float`] takes, read in place: an exact float, or an exact int a float holds exactly.
fn inert_float(v: Inert<'_>, single: bool) -> Option<f64> {
    if let Some(x) = v.as_f64() {
        return Some(x);
    }
    let i = v.as_i64()?;
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)] // checked: exact
    let exact = if single {
        (i as f32) as i128 == i128::from(i)
    } else {
        (i as f64) as i128 == i128::from(i)
    };
    #[allow(clippy::cast_precision_loss)] // exact, checked above
    exact.then_some(i as f64)
}

/// Appends item `k` of a list. Strings in string lists (tags, names, ids: the most common
/// nested values) go straight in; everything else takes [`push_value`] and its rules.
fn push_item(
    items: &mut ColumnBuilder,
    k: usize,
    item: &Bound<'_, PyAny>,
    cx: Context<'_>,
) -> Conv<()> {
    if let Values::Utf8(strings) = &mut items.values {
        if let Ok(Ok(text)) = item.cast::<PyString>().map(|s| s.to_str()) {
            return Ok(strings.push(text.as_bytes())?);
        }
    }
    push_value(items, item, cx).map_err(|e| e.nested(|| format!("[{k}]")))
}

/// Whether `v` is a plain scalar (str, bytes, bytearray, int, float, bool): never a row or a
/// struct, however it is iterated or what attributes it has.
pub fn is_scalar(v: &Bound<'_, PyAny>) -> bool {
    v.cast::<PyString>().is_ok()
        || v.cast::<PyBytes>().is_ok()
        || v.cast::<PyByteArray>().is_ok()
        || v.cast::<PyInt>().is_ok()
        || v.cast::<PyFloat>().is_ok()
}

/// `repr(value)` cut to 80 characters, for labels inside messages.
pub fn short_repr(value: &Bound<'_, PyAny>) -> String {
    let text = value
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "<unrepresentable>".to_string());
    truncate_chars(text, 80)
}

/// `text` cut to at most `max` characters, marking the cut with `...`.
pub fn truncate_chars(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn signed(field: &Field, v: &Bound<'_, PyAny>) -> Conv<i64> {
    if let Some(x) = integer_from_non_int(field, v)? {
        return Ok(x);
    }
    v.extract::<i64>()
        .or_else(|err| integer_error(field, v, &err))
}

fn unsigned(field: &Field, v: &Bound<'_, PyAny>) -> Conv<u64> {
    if let Some(x) = integer_from_non_int(field, v)? {
        return u64::try_from(x).or_else(|_| fault(field, v, "is negative"));
    }
    v.extract::<u64>()
        .or_else(|err| integer_error(field, v, &err))
}

/// The cases before an int extraction: a bool is refused, an integral float is taken.
fn integer_from_non_int(field: &Field, v: &Bound<'_, PyAny>) -> Conv<Option<i64>> {
    if v.is_exact_instance_of::<PyBool>() {
        return fault(field, v, "a bool is not an integer");
    }
    match v.cast::<PyFloat>() {
        Ok(f) => integral_float(field, v, f.value()).map(Some),
        Err(_) => Ok(None),
    }
}

/// Why an int extraction failed, as a fault.
fn integer_error<T>(field: &Field, v: &Bound<'_, PyAny>, err: &PyErr) -> Conv<T> {
    if err.is_instance_of::<PyOverflowError>(v.py()) {
        out_of_range(field, v)
    } else if v.cast::<PyString>().is_ok() {
        fault(
            field,
            v,
            "a str is not converted to a number; parse it first",
        )
    } else {
        fault(field, v, "expected an int")
    }
}

fn out_of_range<T>(field: &Field, v: &Bound<'_, PyAny>) -> Conv<T> {
    let negative = v.lt(0).unwrap_or(false);
    let what = if negative { " is negative and" } else { "" };
    fault(
        field,
        v,
        format!(
            "{}{what} is out of range for {}",
            short_repr(v),
            type_label(field)
        ),
    )
}

fn integral_float(field: &Field, v: &Bound<'_, PyAny>, x: f64) -> Conv<i64> {
    if x.is_nan() {
        return fault(field, v, "NaN cannot be stored in an integer column");
    }
    // 2^63 is exactly representable; anything at or beyond it does not fit i64.
    if x.fract() != 0.0 || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&x) {
        return fault(
            field,
            v,
            "is not an integral value in range of a 64-bit integer",
        );
    }
    #[allow(clippy::cast_possible_truncation)] // integral and in range: exact
    Ok(x as i64)
}

fn narrow<W, N>(field: &Field, v: &Bound<'_, PyAny>, wide: W) -> Conv<N>
where
    N: TryFrom<W>,
    W: std::fmt::Display + Copy,
{
    N::try_from(wide).or_else(|_| {
        fault(
            field,
            v,
            format!("{wide} is out of range for {}", type_label(field)),
        )
    })
}

fn float(field: &Field, v: &Bound<'_, PyAny>, single: bool) -> Conv<f64> {
    if let Ok(f) = v.cast::<PyFloat>() {
        return Ok(f.value());
    }
    if v.is_exact_instance_of::<PyBool>() {
        return fault(field, v, "a bool is not a number");
    }
    if v.cast::<PyInt>().is_ok() {
        let Ok(i) = v.extract::<i64>() else {
            return fault(
                field,
                v,
                "is too large to be represented exactly as a float",
            );
        };
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)] // checked below
        let exact = if single {
            (i as f32) as i128 == i128::from(i)
        } else {
            (i as f64) as i128 == i128::from(i)
        };
        if !exact {
            return fault(field, v, "cannot be represented exactly as a float");
        }
        #[allow(clippy::cast_precision_loss)] // exact, checked above
        return Ok(i as f64);
    }
    if v.cast::<PyString>().is_ok() {
        return fault(
            field,
            v,
            "a str is not converted to a number; parse it first",
        );
    }
    fault(field, v, "expected a float or an int")
}

fn text<'a>(field: &Field, v: &'a Bound<'_, PyAny>) -> Conv<&'a str> {
    match v.cast::<PyString>() {
        Ok(s) => match s.to_str() {
            Ok(s) => Ok(s),
            Err(_) => fault(
                field,
                v,
                "contains a lone surrogate, which is not valid UTF-8",
            ),
        },
        Err(_) => fault(field, v, "expected a str"),
    }
}

fn bytes<T>(field: &Field, v: &Bound<'_, PyAny>, use_bytes: impl FnOnce(&[u8]) -> T) -> Conv<T> {
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(use_bytes(b.as_bytes()));
    }
    if let Ok(b) = v.cast::<PyByteArray>() {
        return Ok(use_bytes(&b.to_vec()));
    }
    if v.cast::<PyString>().is_ok() {
        return fault(field, v, "expected bytes; encode the str first");
    }
    fault(field, v, "expected bytes or bytearray")
}

fn date_days(field: &Field, v: &Bound<'_, PyAny>) -> Conv<i64> {
    if v.cast::<PyDateTime>().is_ok() {
        return fault(
            field,
            v,
            "a datetime would lose its time of day; pass .date()",
        );
    }
    if let Ok(d) = v.cast::<PyDate>() {
        return Ok(temporal::days_from_civil(
            d.get_year(),
            u32::from(d.get_month()),
            u32::from(d.get_day()),
        ));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return temporal::parse_date(&s.to_cow()?).or_else(|reason| fault(field, v, reason));
    }
    fault(field, v, "expected a datetime.date or an ISO 8601 date str")
}

fn time_of_day(field: &Field, v: &Bound<'_, PyAny>, unit: TimeUnit) -> Conv<i64> {
    let label = type_label(field);
    let micros = if let Ok(t) = v.cast::<PyTime>() {
        if t.get_tzinfo().is_some() {
            return fault(
                field,
                v,
                "a time with tzinfo has no fixed meaning without a date",
            );
        }
        ((i64::from(t.get_hour()) * 60 + i64::from(t.get_minute())) * 60
            + i64::from(t.get_second()))
            * 1_000_000
            + i64::from(t.get_microsecond())
    } else if let Ok(s) = v.cast::<PyString>() {
        let nanos = temporal::parse_time(&s.to_cow()?).or_else(|reason| fault(field, v, reason))?;
        return temporal::convert(nanos, TimeUnit::Nanosecond, unit, &label)
            .or_else(|reason| fault(field, v, reason));
    } else {
        return fault(field, v, "expected a datetime.time or an ISO 8601 time str");
    };
    temporal::convert(micros, TimeUnit::Microsecond, unit, &label)
        .or_else(|reason| fault(field, v, reason))
}

fn timestamp(field: &Field, v: &Bound<'_, PyAny>, unit: TimeUnit, known: &Known) -> Conv<i64> {
    if let Ok(dt) = v.cast::<PyDateTime>() {
        let days = temporal::days_from_civil(
            dt.get_year(),
            u32::from(dt.get_month()),
            u32::from(dt.get_day()),
        );
        let seconds = days * 86_400
            + i64::from(dt.get_hour()) * 3600
            + i64::from(dt.get_minute()) * 60
            + i64::from(dt.get_second());
        let mut micros = seconds * 1_000_000 + i64::from(dt.get_microsecond());
        if let Some(tz) = dt.get_tzinfo() {
            if !tz.is(known.utc.bind(v.py())) {
                let offset = dt.call_method0(intern!(v.py(), "utcoffset"))?;
                if let Ok(delta) = offset.cast::<PyDelta>() {
                    micros -= delta_micros(delta).expect("a UTC offset is less than a day");
                }
            }
        }
        if unit == TimeUnit::Microsecond {
            return Ok(micros);
        }
        return temporal::convert(micros, TimeUnit::Microsecond, unit, &type_label(field))
            .or_else(|reason| fault(field, v, reason));
    }
    if let Ok(s) = v.cast::<PyString>() {
        let (seconds, nanos) =
            temporal::parse_datetime(&s.to_cow()?).or_else(|reason| fault(field, v, reason))?;
        return temporal::instant_in(seconds, nanos, unit, &type_label(field))
            .or_else(|reason| fault(field, v, reason));
    }
    if v.cast::<PyDate>().is_ok() {
        return fault(field, v, "a date is not an instant; pass a datetime");
    }
    fault(field, v, "expected a datetime.datetime or an RFC 3339 str")
}

fn delta_micros(delta: &Bound<'_, PyDelta>) -> Option<i64> {
    i64::from(delta.get_days())
        .checked_mul(86_400_000_000)?
        .checked_add(i64::from(delta.get_seconds()) * 1_000_000)?
        .checked_add(i64::from(delta.get_microseconds()))
}

fn duration(field: &Field, v: &Bound<'_, PyAny>, unit: TimeUnit) -> Conv<i64> {
    let Ok(delta) = v.cast::<PyDelta>() else {
        return fault(field, v, "expected a datetime.timedelta");
    };
    // timedelta spans +-999999999 days, beyond i64 microseconds but within i64 seconds: count
    // in i128 nanoseconds, then in the column's unit.
    let nanos = (i128::from(delta.get_days()) * 86_400 + i128::from(delta.get_seconds()))
        * 1_000_000_000
        + i128::from(delta.get_microseconds()) * 1_000;
    let per_unit = i128::from(temporal::nanos_per(unit));
    if nanos % per_unit != 0 {
        return fault(
            field,
            v,
            format!(
                "has sub-{} precision that {} cannot hold",
                temporal::unit_name(unit),
                type_label(field)
            ),
        );
    }
    i64::try_from(nanos / per_unit).or_else(|_| {
        fault(
            field,
            v,
            format!("is out of range for {}", type_label(field)),
        )
    })
}

fn decimal_value(
    field: &Field,
    v: &Bound<'_, PyAny>,
    precision: u8,
    scale: i8,
    known: &Known,
) -> Conv<i128> {
    let exact = (v.cast::<PyInt>().is_ok() && !v.is_exact_instance_of::<PyBool>())
        || v.cast::<PyString>().is_ok()
        || v.is_instance(known.decimal.bind(v.py()))?;
    if !exact {
        let reason = if v.cast::<PyFloat>().is_ok() {
            "a float is inexact; pass a decimal.Decimal, an int or a str"
        } else {
            "expected a decimal.Decimal, an int or a numeric str"
        };
        return fault(field, v, reason);
    }
    let text = v.str()?.to_string();
    decimal::parse_decimal(&text, precision, scale).or_else(|reason| fault(field, v, reason))
}

fn uuid_bytes(field: &Field, v: &Bound<'_, PyAny>, known: &Known) -> Conv<[u8; 16]> {
    match uuid_like(v, known)? {
        Ok(id) => Ok(id),
        Err(reason) => fault(field, v, reason),
    }
}

/// The 16 bytes of a `uuid.UUID`, a UUID str or 16 raw bytes; `Err` holds the reason otherwise.
pub fn uuid_like(v: &Bound<'_, PyAny>, known: &Known) -> PyResult<Result<[u8; 16], String>> {
    // Cheapest checks first: bytes and str are type-flag tests, `isinstance` is not.
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(<[u8; 16]>::try_from(b.as_bytes())
            .map_err(|_| format!("has {} bytes, a UUID has 16", b.as_bytes().len())));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(uuid::Uuid::try_parse(&s.to_cow()?)
            .map(uuid::Uuid::into_bytes)
            .map_err(|_| "is not a valid UUID".to_string()));
    }
    let uuid_type = known.uuid.bind(v.py());
    if v.get_type().is(uuid_type) || v.is_instance(uuid_type)? {
        // Always an int in 0..2**128, unless replaced with `object.__setattr__`.
        let int = v.getattr(intern!(v.py(), "int"))?;
        return Ok(match int.extract::<u128>() {
            Ok(int) => Ok(int.to_be_bytes()),
            Err(_) => Err(format!(
                "is a uuid.UUID whose int, {}, is not an int in 0..2**128",
                truncate_chars(int.repr()?.to_string(), 60)
            )),
        });
    }
    Ok(Err(
        "expected a uuid.UUID, a UUID str or 16 bytes".to_string()
    ))
}

fn inet_text(field: &Field, v: &Bound<'_, PyAny>, known: &Known) -> Conv<String> {
    let text = if let Ok(s) = v.cast::<PyString>() {
        s.to_cow()?.into_owned()
    } else if v.is_instance(known.ip_types.bind(v.py()))? {
        v.str()?.to_string()
    } else {
        return fault(
            field,
            v,
            "expected an ipaddress address, network or interface, or a str",
        );
    };
    net::canonical_inet(&text).or_else(|reason| fault(field, v, reason))
}

fn mac_bytes(field: &Field, v: &Bound<'_, PyAny>) -> Conv<Vec<u8>> {
    if let Ok(s) = v.cast::<PyString>() {
        return net::parse_mac(&s.to_cow()?).or_else(|reason| fault(field, v, reason));
    }
    if let Ok(b) = v.cast::<PyBytes>() {
        let b = b.as_bytes();
        return if matches!(b.len(), 6 | 8 | 20) {
            Ok(b.to_vec())
        } else {
            fault(
                field,
                v,
                format!("has {} bytes; a MAC address has 6, 8 or 20", b.len()),
            )
        };
    }
    fault(field, v, "expected a MAC address str or its bytes")
}

fn for_each_item(
    field: &Field,
    v: &Bound<'_, PyAny>,
    mut each: impl FnMut(usize, &Bound<'_, PyAny>) -> Conv<()>,
) -> Conv<()> {
    if let Ok(list) = v.cast::<PyList>() {
        for (k, item) in list.iter().enumerate() {
            each(k, &item)?;
        }
    } else if let Ok(tuple) = v.cast::<PyTuple>() {
        for (k, item) in tuple.iter().enumerate() {
            each(k, &item)?;
        }
    } else if v.cast::<PySet>().is_ok() || v.cast::<PyFrozenSet>().is_ok() {
        for (k, item) in v.try_iter()?.enumerate() {
            each(k, &item?)?;
        }
    } else {
        return fault(field, v, "expected a list, tuple or set");
    }
    Ok(())
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
