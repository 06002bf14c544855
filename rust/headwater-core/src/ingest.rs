//! Ready-made Arrow data into a table's schema, and the finishing of every batch.
//!
//! Resolvers may yield Arrow data (pyarrow, polars, DuckDB results) instead of rows.
//! [`conform_columns`] matches its columns to the table by name, keeps buffers whose type is
//! already right (zero copy), and casts the rest only where the cast is exact: widening
//! integers, finer time units, string to binary storage. A cast that could lose information
//! (float to int, nanoseconds to seconds, a narrower decimal scale) is refused with a message
//! naming the column and both types. [`finish_batch`] then adds `_cq_id` and `_cq_parent_id`.

use std::sync::Arc;

use arrow_array::{make_array, new_null_array, Array, ArrayRef, FixedSizeBinaryArray, RecordBatch};
use arrow_cast::{cast_with_options, CastOptions};
use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef};

use crate::cq_id;
use crate::error::{CoreError, Result};
use crate::schema::{self, Extension};
use crate::temporal::nanos_per;

/// Whether `field` is one of the internal `_cq_id` / `_cq_parent_id` columns.
pub fn is_internal(field: &Field) -> bool {
    field.name() == schema::CQ_ID || field.name() == schema::CQ_PARENT_ID
}

/// The table's own columns: every field of `schema` except `_cq_id` and `_cq_parent_id`.
pub fn data_fields(schema: &Schema) -> Vec<FieldRef> {
    schema
        .fields()
        .iter()
        .filter(|f| !is_internal(f))
        .cloned()
        .collect()
}

/// Arrays for each of `target`'s data fields (see [`data_fields`]), taken from `input` by
/// column name. Input columns the table does not have are ignored, as unknown keys of row
/// dicts are; table columns missing from the input become nulls (an error if not nullable).
pub fn conform_columns(input: &RecordBatch, target: &Schema) -> Result<Vec<ArrayRef>> {
    let table = schema::table_name(target);
    let input_schema = input.schema();
    data_fields(target)
        .iter()
        .map(|field| {
            let conformed = match input_schema.index_of(field.name()) {
                Ok(i) => conform_array(input.column(i), input_schema.field(i), field).map_err(
                    |reason| {
                        CoreError::Schema(format!(
                            "table {table:?}, column {:?}: {reason}",
                            field.name()
                        ))
                    },
                )?,
                Err(_) => new_null_array(field.data_type(), input.num_rows()),
            };
            if !field.is_nullable() && conformed.null_count() > 0 {
                let row = (0..conformed.len())
                    .find(|&i| conformed.is_null(i))
                    .unwrap_or_default();
                let missing = if input_schema.index_of(field.name()).is_err() {
                    " (the input has no such column)"
                } else {
                    ""
                };
                return Err(CoreError::Schema(format!(
                    "table {table:?}, column {:?} is not nullable but row {row} is null{missing}",
                    field.name()
                )));
            }
            Ok(conformed)
        })
        .collect()
}

/// [`conform_columns`] over a whole stream of batches (as read from an Arrow C stream): one
/// batch is conformed as it is, several are concatenated first. Returns the arrays and the
/// number of rows.
pub fn conform_batches(batches: &[RecordBatch], target: &Schema) -> Result<(Vec<ArrayRef>, usize)> {
    match batches {
        [] => Ok((
            data_fields(target)
                .iter()
                .map(|f| new_null_array(f.data_type(), 0))
                .collect(),
            0,
        )),
        [batch] => Ok((conform_columns(batch, target)?, batch.num_rows())),
        [first, ..] => {
            let batch = arrow_select::concat::concat_batches(&first.schema(), batches)?;
            Ok((conform_columns(&batch, target)?, batch.num_rows()))
        }
    }
}

fn conform_array(
    array: &ArrayRef,
    from_field: &Field,
    to_field: &Field,
) -> std::result::Result<ArrayRef, String> {
    let (from, to) = (array.data_type(), to_field.data_type());
    if let (Some(got), Some(want)) = (
        Extension::of_field(from_field),
        Extension::of_field(to_field),
    ) {
        if got != want {
            return Err(format!(
                "the input column is a {:?} extension column, the table expects {:?}",
                got.name(),
                want.name()
            ));
        }
    }
    let converted = convert(array, from, to)?;
    match Extension::of_field(to_field) {
        Some(want) if Extension::of_field(from_field) != Some(want) => {
            extension_values(&converted, want, from)
        }
        _ => Ok(converted),
    }
}

/// Arrays of a CloudQuery extension column made from plain columns: values typed as that
/// extension are trusted, but text or bytes becoming one is checked (and put in the canonical
/// form the row path stores) value by value, naming the first bad row.
fn extension_values(
    array: &ArrayRef,
    extension: Extension,
    source: &DataType,
) -> std::result::Result<ArrayRef, String> {
    use arrow_array::builder::BinaryBuilder;
    use arrow_array::cast::AsArray;
    let quoted = |value: &[u8]| {
        format!(
            "{:?}",
            String::from_utf8_lossy(&value[..value.len().min(80)])
        )
    };
    let check = |row: usize, reason: String| format!("row {row}: {reason}");
    let values = match array.data_type() {
        DataType::Binary => array.as_binary::<i32>(),
        // A uuid column is fixed-size binary(16): every 16 bytes are a UUID.
        _ => return Ok(Arc::clone(array)),
    };
    let text_source = matches!(
        source,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) || matches!(source, DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8));
    if extension == Extension::Json {
        for (row, value) in values.iter().enumerate() {
            if let Some(value) = value {
                crate::json::validate(value)
                    .map_err(|reason| check(row, format!("{} {reason}", quoted(value))))?;
            }
        }
        // Valid as it was: keep the original buffers.
        return Ok(Arc::clone(array));
    }
    let mut rebuilt = BinaryBuilder::with_capacity(values.len(), values.value_data().len());
    for (row, value) in values.iter().enumerate() {
        let Some(value) = value else {
            rebuilt.append_null();
            continue;
        };
        match extension {
            Extension::Inet => {
                let text = std::str::from_utf8(value)
                    .map_err(|_| check(row, format!("{} is not UTF-8 text", quoted(value))))?;
                let canonical =
                    crate::net::canonical_inet(text).map_err(|reason| check(row, reason))?;
                rebuilt.append_value(canonical);
            }
            Extension::Mac if text_source => {
                let text = std::str::from_utf8(value)
                    .map_err(|_| check(row, format!("{} is not UTF-8 text", quoted(value))))?;
                let bytes = crate::net::parse_mac(text).map_err(|reason| check(row, reason))?;
                rebuilt.append_value(bytes);
            }
            Extension::Mac => {
                if !matches!(value.len(), 6 | 8 | 20) {
                    return Err(check(
                        row,
                        format!(
                            "{} has {} bytes; a MAC address has 6, 8 or 20",
                            quoted(value),
                            value.len()
                        ),
                    ));
                }
                rebuilt.append_value(value);
            }
            Extension::Json | Extension::Uuid => unreachable!("handled above"),
        }
    }
    Ok(Arc::new(rebuilt.finish()))
}

/// `array` as type `to`, by an exact cast (see [`cast_problem`]).
fn convert(
    array: &ArrayRef,
    from: &DataType,
    to: &DataType,
) -> std::result::Result<ArrayRef, String> {
    if from == to {
        return Ok(Arc::clone(array));
    }
    if let Some(problem) = cast_problem(from, to) {
        return Err(problem);
    }
    let options = CastOptions {
        // `safe: true` would turn failed values into nulls; we want the error.
        safe: false,
        ..CastOptions::default()
    };
    let source = match (from, to) {
        // Arrow's cast reads tz-less values as wall time in the target zone; headwater (and
        // pyarrow) read them as UTC. Relabelling the zone first leaves only the unit to change.
        (DataType::Timestamp(unit, from_tz), DataType::Timestamp(_, to_tz)) if from_tz != to_tz => {
            let relabelled = array
                .to_data()
                .into_builder()
                .data_type(DataType::Timestamp(*unit, to_tz.clone()))
                .build()
                .map_err(|e| format!("cannot convert {from} to {to}: {e}"))?;
            make_array(relabelled)
        }
        _ => Arc::clone(array),
    };
    if source.data_type() == to {
        return Ok(source);
    }
    cast_with_options(&source, to, &options).map_err(|e| {
        format!(
            "cannot convert {} to {}: {e}",
            schema::data_type_label(from),
            schema::data_type_label(to)
        )
    })
}

fn int_bits(data_type: &DataType) -> Option<u32> {
    Some(match data_type {
        DataType::Int8 | DataType::UInt8 => 8,
        DataType::Int16 | DataType::UInt16 => 16,
        DataType::Int32 | DataType::UInt32 => 32,
        DataType::Int64 | DataType::UInt64 => 64,
        _ => return None,
    })
}

fn is_text_or_bytes(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    )
}

/// Why converting `from` into `to` is not allowed, or `None` when it is exact (value-level
/// failures such as an integer overflow are still caught by the cast itself).
fn cast_problem(from: &DataType, to: &DataType) -> Option<String> {
    use DataType as D;
    let finer_or_equal = |a, b| nanos_per(b) <= nanos_per(a);
    let lossy = |what: &str| {
        Some(format!(
            "cannot convert {} to {}: {what}",
            schema::data_type_label(from),
            schema::data_type_label(to)
        ))
    };
    match (from, to) {
        _ if from == to => None,
        (D::Null, _) => None,
        (D::Dictionary(_, values), _) => cast_problem(values, to),
        (_, D::Int8 | D::Int16 | D::Int32 | D::Int64)
        | (_, D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64)
            if int_bits(from).is_some() =>
        {
            None
        }
        (_, D::Float32) if int_bits(from).is_some_and(|b| b <= 16) => None,
        (_, D::Float64) if int_bits(from).is_some_and(|b| b <= 32) || from == &D::Float32 => None,
        (_, D::Float32 | D::Float64) if int_bits(from).is_some() => {
            lossy("integers this wide do not all fit the float's mantissa")
        }
        (D::Float64, D::Float32) => lossy("float32 cannot hold every float64"),
        (D::Utf8 | D::LargeUtf8 | D::Utf8View, D::Utf8 | D::LargeUtf8) => None,
        (_, D::Binary | D::LargeBinary) if is_text_or_bytes(from) => None,
        (D::FixedSizeBinary(_), D::Binary | D::LargeBinary) => None,
        (D::Timestamp(a, _), D::Timestamp(b, _))
        | (D::Duration(a), D::Duration(b))
        | (D::Time32(a) | D::Time64(a), D::Time32(b) | D::Time64(b)) => {
            if finer_or_equal(*a, *b) {
                None
            } else {
                lossy("the target unit is coarser and would drop precision")
            }
        }
        (D::Date32, D::Date64) => None,
        (D::Decimal128(_, s1), D::Decimal128(_, s2)) => {
            if s2 >= s1 {
                None
            } else {
                lossy("the target scale is smaller and would round")
            }
        }
        (_, D::Decimal128(_, _)) if int_bits(from).is_some() => None,
        (
            D::List(a) | D::LargeList(a) | D::ListView(a) | D::LargeListView(a),
            D::List(b) | D::LargeList(b),
        )
        | (D::FixedSizeList(a, _), D::List(b) | D::LargeList(b)) => {
            cast_problem(a.data_type(), b.data_type())
        }
        (D::Struct(a), D::Struct(b)) => {
            if a.len() != b.len() || a.iter().zip(b.iter()).any(|(x, y)| x.name() != y.name()) {
                return lossy("struct fields differ in names or order");
            }
            a.iter()
                .zip(b.iter())
                .find_map(|(x, y)| cast_problem(x.data_type(), y.data_type()))
        }
        (D::Map(a, _), D::Map(b, _)) => cast_problem(a.data_type(), b.data_type()),
        _ => lossy("no exact conversion exists"),
    }
}

/// How `_cq_id` is filled in by [`finish_batch`].
#[derive(Debug)]
pub enum CqIds {
    /// From the primary keys when the table has any (as the Go SDK's `CalculateCQID` does with
    /// `deterministic_cq_id`), random otherwise.
    Deterministic,
    /// Random UUIDv4s.
    Random,
    /// Already computed: the deterministic ids of the first rows, hashed while the rows were
    /// still being read; the remaining rows are hashed here.
    Partial(Vec<FixedSizeBinaryArray>),
}

impl CqIds {
    /// [`CqIds::Deterministic`] or [`CqIds::Random`], per a `deterministic_cq_id` option.
    pub fn from_flag(deterministic: bool) -> Self {
        if deterministic {
            CqIds::Deterministic
        } else {
            CqIds::Random
        }
    }
}

/// Assembles the output batch of a table: `_cq_id` (see [`CqIds`]), `_cq_parent_id`
/// (`parent_ids`, or nulls), then `columns` in the order of [`data_fields`].
pub fn finish_batch(
    schema: &SchemaRef,
    columns: Vec<ArrayRef>,
    parent_ids: Option<FixedSizeBinaryArray>,
    num_rows: usize,
    cq_ids: CqIds,
) -> Result<RecordBatch> {
    let mut columns = columns.into_iter();
    let mut data = Vec::with_capacity(schema.fields().len());
    let mut key_columns: Vec<(FieldRef, ArrayRef)> = Vec::new();
    let mut cq_id_at = None;
    let mut parent_ids = parent_ids;
    for (i, field) in schema.fields().iter().enumerate() {
        let array: ArrayRef = if field.name() == schema::CQ_ID {
            cq_id_at = Some(i);
            new_null_array(field.data_type(), 0) // placeholder, replaced below
        } else if field.name() == schema::CQ_PARENT_ID {
            match parent_ids.take() {
                Some(ids) if ids.len() == num_rows => Arc::new(ids),
                Some(ids) => {
                    return Err(CoreError::InvalidArgument(format!(
                        "{} parent ids for {num_rows} rows",
                        ids.len()
                    )))
                }
                None => new_null_array(field.data_type(), num_rows),
            }
        } else {
            let array = columns.next().ok_or_else(|| {
                CoreError::InvalidArgument(format!("no array for column {:?}", field.name()))
            })?;
            if schema::flag(field, schema::PRIMARY_KEY) {
                key_columns.push((Arc::clone(field), Arc::clone(&array)));
            }
            array
        };
        data.push(array);
    }
    if let Some(i) = cq_id_at {
        let ids = match cq_ids {
            CqIds::Random => cq_id::random_cq_ids(num_rows)?,
            _ if key_columns.is_empty() => cq_id::random_cq_ids(num_rows)?,
            CqIds::Deterministic => deterministic_ids(&key_columns, 0, num_rows)?,
            CqIds::Partial(mut done) => {
                let hashed: usize = done.iter().map(Array::len).sum();
                if hashed > num_rows {
                    return Err(CoreError::InvalidArgument(format!(
                        "{hashed} precomputed _cq_ids for {num_rows} rows"
                    )));
                }
                done.push(deterministic_ids(&key_columns, hashed, num_rows - hashed)?);
                let mut bytes = Vec::with_capacity(num_rows * 16);
                for part in &done {
                    bytes.extend_from_slice(part.value_data());
                }
                FixedSizeBinaryArray::try_new(16, bytes.into(), None)?
            }
        };
        data[i] = Arc::new(ids);
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), data)?)
}

fn deterministic_ids(
    key_columns: &[(FieldRef, ArrayRef)],
    offset: usize,
    len: usize,
) -> Result<FixedSizeBinaryArray> {
    let sliced: Vec<(&Field, ArrayRef)> = key_columns
        .iter()
        .map(|(f, a)| (f.as_ref(), a.slice(offset, len)))
        .collect();
    let keys: Vec<(&Field, &ArrayRef)> = sliced.iter().map(|(f, a)| (*f, a)).collect();
    cq_id::deterministic_cq_ids(&keys, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    use arrow_array::{Float64Array, Int32Array, StringArray, TimestampNanosecondArray};
    use arrow_schema::TimeUnit;

    fn target() -> Schema {
        let uuid = |name: &str, nullable| {
            Field::new(name, DataType::FixedSizeBinary(16), nullable)
                .with_metadata([(schema::EXTENSION_NAME.into(), "uuid".into())].into())
        };
        Schema::new(vec![
            uuid(schema::CQ_ID, false),
            uuid(schema::CQ_PARENT_ID, true),
            Field::new("id", DataType::Int64, false)
                .with_metadata([(schema::PRIMARY_KEY.into(), "true".into())].into()),
            Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("name", DataType::Utf8, true),
        ])
        .with_metadata([(schema::TABLE_NAME.into(), "t".into())].into())
    }

    #[test]
    fn widens_and_fills_missing_columns() {
        let input = RecordBatch::try_from_iter([(
            "id",
            Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef,
        )])
        .unwrap();
        let columns = conform_columns(&input, &target()).unwrap();
        assert_eq!(columns[0].as_primitive::<Int64Type>().values(), &[1, 2]);
        assert_eq!(columns[1].null_count(), 2);
        let batch =
            finish_batch(&Arc::new(target()), columns, None, 2, CqIds::Deterministic).unwrap();
        assert_eq!(batch.num_columns(), 5);
        assert_eq!(batch.column(0).null_count(), 0);
    }

    #[test]
    fn partially_precomputed_ids_equal_ids_computed_at_once() {
        let schema = Arc::new(target());
        let ids = Arc::new(arrow_array::Int64Array::from_iter_values(0..100)) as ArrayRef;
        let columns = || {
            vec![
                Arc::clone(&ids),
                new_null_array(&DataType::Timestamp(TimeUnit::Microsecond, None), 100),
                new_null_array(&DataType::Utf8, 100),
            ]
        };
        let whole = finish_batch(&schema, columns(), None, 100, CqIds::Deterministic).unwrap();
        let key = schema.field_with_name("id").unwrap().clone();
        let head = ids.slice(0, 30);
        let first = cq_id::deterministic_cq_ids(&[(&key, &head)], 30).unwrap();
        let parts =
            finish_batch(&schema, columns(), None, 100, CqIds::Partial(vec![first])).unwrap();
        assert_eq!(whole.column(0), parts.column(0));
        let random = finish_batch(&schema, columns(), None, 100, CqIds::Random).unwrap();
        assert_ne!(whole.column(0), random.column(0));
    }

    #[test]
    fn refuses_lossy_casts() {
        let input = RecordBatch::try_from_iter([(
            "id",
            Arc::new(Float64Array::from(vec![1.5])) as ArrayRef,
        )])
        .unwrap();
        let err = conform_columns(&input, &target()).unwrap_err().to_string();
        assert!(err.contains("column \"id\""), "{err}");
        assert!(err.contains("cannot convert double to int64"), "{err}");

        let ns = TimestampNanosecondArray::from(vec![1_000]);
        let input = RecordBatch::try_from_iter([
            ("id", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
            ("at", Arc::new(ns) as ArrayRef),
        ])
        .unwrap();
        let err = conform_columns(&input, &target()).unwrap_err().to_string();
        assert!(err.contains("coarser"), "{err}");
    }

    #[test]
    fn finer_units_and_view_strings_convert() {
        let at = arrow_array::TimestampSecondArray::from(vec![2]);
        let input = RecordBatch::try_from_iter([
            ("id", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
            ("at", Arc::new(at) as ArrayRef),
            (
                "name",
                Arc::new(arrow_array::StringViewArray::from(vec!["x"])) as ArrayRef,
            ),
        ])
        .unwrap();
        let columns = conform_columns(&input, &target()).unwrap();
        assert_eq!(
            columns[1]
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            2_000_000
        );
        assert_eq!(columns[2].as_string::<i32>().value(0), "x");
    }

    #[test]
    fn naive_timestamps_are_utc_when_the_column_has_a_zone() {
        let tokyo = Some("Asia/Tokyo".into());
        let target = Schema::new(vec![Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, tokyo),
            true,
        )]);
        let input = RecordBatch::try_from_iter([(
            "at",
            Arc::new(arrow_array::TimestampSecondArray::from(vec![2])) as ArrayRef,
        )])
        .unwrap();
        let columns = conform_columns(&input, &target).unwrap();
        assert_eq!(
            columns[0]
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            2_000_000
        );
    }

    #[test]
    fn null_in_not_null_column_names_the_row() {
        let input = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(arrow_array::Int64Array::from(vec![Some(1), None])) as ArrayRef,
            ),
            (
                "name",
                Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
            ),
        ])
        .unwrap();
        let err = conform_columns(&input, &target()).unwrap_err().to_string();
        assert!(err.contains("row 1 is null"), "{err}");
    }

    #[test]
    fn overflow_is_an_error_not_a_null() {
        let input = RecordBatch::try_from_iter([(
            "id",
            Arc::new(arrow_array::UInt64Array::from(vec![u64::MAX])) as ArrayRef,
        )])
        .unwrap();
        assert!(conform_columns(&input, &target()).is_err());
    }
}
