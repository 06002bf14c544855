//! Arrow column builders that take one value at a time and can roll a row back.
//!
//! Rows arrive from Python one value at a time; when the fifth value of a row is bad, the four
//! already appended must go again, or the columns drift apart. Arrow's own builders cannot
//! shrink, so these keep plain `Vec`s (values, offsets, validity) that [`ColumnBuilder::truncate`]
//! cuts back to the last complete row, and turn them into arrays without copying at the end.
//!
//! A [`ColumnBuilder`] is made from an Arrow [`Field`]; its [`Values`] say which Rust values the
//! column takes. Conversion from the caller's values (Python objects, JSON, ...) happens outside
//! this module: it matches on [`Values`] and pushes typed values.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::{
    make_array, ArrayRef, GenericBinaryArray, GenericListArray, GenericStringArray, OffsetSizeTrait,
};
use arrow_buffer::{
    ArrowNativeType, BooleanBuffer, Buffer, NullBuffer, NullBufferBuilder, OffsetBuffer,
    ScalarBuffer,
};
use arrow_data::{ArrayData, ArrayDataBuilder};
use arrow_schema::{DataType, Field, FieldRef, TimeUnit};

use crate::error::{CoreError, Result};
use crate::schema::Extension;

/// A column under construction: the field it is for and the values appended so far.
#[derive(Debug)]
pub struct ColumnBuilder {
    field: FieldRef,
    /// The typed storage; match on it to push values.
    pub values: Values,
}

/// The storage of a column, one variant per kind of value it accepts.
///
/// Extension types get their own variants (their storage is an ordinary binary column) because
/// what a caller may put in them differs: a `uuid` takes a UUID, not any 16 bytes.
#[derive(Debug)]
#[allow(missing_docs)] // the variant names are the Arrow type names
pub enum Values {
    Boolean(BoolColumn),
    Int8(PrimitiveColumn<i8>),
    Int16(PrimitiveColumn<i16>),
    Int32(PrimitiveColumn<i32>),
    Int64(PrimitiveColumn<i64>),
    UInt8(PrimitiveColumn<u8>),
    UInt16(PrimitiveColumn<u16>),
    UInt32(PrimitiveColumn<u32>),
    UInt64(PrimitiveColumn<u64>),
    Float32(PrimitiveColumn<f32>),
    Float64(PrimitiveColumn<f64>),
    /// Days since the Unix epoch.
    Date32(PrimitiveColumn<i32>),
    /// Milliseconds since the Unix epoch (a whole number of days).
    Date64(PrimitiveColumn<i64>),
    /// Time of day in seconds or milliseconds.
    Time32(PrimitiveColumn<i32>, TimeUnit),
    /// Time of day in microseconds or nanoseconds.
    Time64(PrimitiveColumn<i64>, TimeUnit),
    /// Instant since the Unix epoch in the unit; the time zone is on the field.
    Timestamp(PrimitiveColumn<i64>, TimeUnit),
    Duration(PrimitiveColumn<i64>, TimeUnit),
    /// Unscaled value, with the column's precision and scale.
    Decimal128(PrimitiveColumn<i128>, u8, i8),
    Utf8(BytesColumn<i32>),
    LargeUtf8(BytesColumn<i64>),
    Binary(BytesColumn<i32>),
    LargeBinary(BytesColumn<i64>),
    FixedSizeBinary(FixedColumn),
    /// CloudQuery `uuid`: 16 bytes.
    Uuid(FixedColumn),
    /// CloudQuery `json`: UTF-8 JSON text.
    Json(BytesColumn<i32>),
    /// CloudQuery `inet`: `address/prefix` text.
    Inet(BytesColumn<i32>),
    /// CloudQuery `mac`: raw hardware address bytes.
    Mac(BytesColumn<i32>),
    List(ListColumn<i32>),
    LargeList(ListColumn<i64>),
    Struct(StructColumn),
    Map(MapColumn),
}

impl ColumnBuilder {
    /// A builder for `field`, or a schema error naming the field when its type is unsupported.
    pub fn new(field: FieldRef) -> Result<Self> {
        let values = Values::for_field(&field)?;
        Ok(Self { field, values })
    }

    /// The field this column is built for.
    pub fn field(&self) -> &FieldRef {
        &self.field
    }

    /// The field and the storage at once, to read the one while pushing into the other.
    pub fn parts_mut(&mut self) -> (&Field, &mut Values) {
        (&self.field, &mut self.values)
    }

    /// Number of values appended.
    pub fn len(&self) -> usize {
        self.values.storage().len()
    }

    /// Whether no value was appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a null.
    pub fn push_null(&mut self) {
        self.values.storage_mut().push_null();
    }

    /// Drops every value after the first `len`, so a half-appended row disappears.
    pub fn truncate(&mut self, len: usize) {
        self.values.storage_mut().truncate(len);
    }

    /// Makes room for `additional` more values, to avoid regrowing when the count is known.
    pub fn reserve(&mut self, additional: usize) {
        self.values.storage_mut().reserve(additional);
    }

    /// Makes room for `additional` more values like those appended so far: as many bytes and
    /// nested items per value as they had on average (and an eighth more), so a batch whose
    /// size is known grows its buffers once instead of doubling them (each doubling copies,
    /// and touches fresh pages) all the way. A no-op while the builder is empty; never more
    /// than 256 MiB per buffer, and nothing if that much cannot be had.
    pub fn reserve_like(&mut self, additional: usize) {
        self.values.storage_mut().reserve_like(additional);
    }

    /// A copy of the values `start..end` as an array of the field's type, without finishing the
    /// builder, for work that can start before the batch is complete (hashing primary keys on
    /// another thread). Available for flat columns: primitives, strings, binary and fixed-size
    /// binary (the extension types included); `None` for booleans and nested columns.
    pub fn snapshot(&self, start: usize, end: usize) -> Option<Result<ArrayRef>> {
        self.values
            .storage()
            .snapshot(self.field.data_type().clone(), start..end)
    }

    /// Approximate bytes held, for flushing batches by size.
    pub fn byte_size(&self) -> usize {
        self.values.storage().byte_size()
    }

    /// Turns the appended values into an array of the field's type and empties the builder.
    pub fn finish(&mut self) -> Result<ArrayRef> {
        self.values.storage_mut().finish(self.field.data_type())
    }
}

impl Values {
    fn for_field(field: &Field) -> Result<Self> {
        if let Some(extension) = Extension::of_field(field) {
            let storage = extension.storage_type();
            if field.data_type() != &storage {
                return Err(CoreError::Schema(format!(
                    "field {:?}: extension {:?} must be stored as {storage}, not {}",
                    field.name(),
                    extension.name(),
                    field.data_type()
                )));
            }
            return Ok(match extension {
                Extension::Uuid => Values::Uuid(FixedColumn::new(16)),
                Extension::Json => Values::Json(BytesColumn::default()),
                Extension::Inet => Values::Inet(BytesColumn::default()),
                Extension::Mac => Values::Mac(BytesColumn::default()),
            });
        }
        let unsupported = || {
            CoreError::Schema(format!(
                "field {:?}: Arrow type {} is not supported",
                field.name(),
                field.data_type()
            ))
        };
        Ok(match field.data_type() {
            DataType::Boolean => Values::Boolean(BoolColumn::default()),
            DataType::Int8 => Values::Int8(PrimitiveColumn::default()),
            DataType::Int16 => Values::Int16(PrimitiveColumn::default()),
            DataType::Int32 => Values::Int32(PrimitiveColumn::default()),
            DataType::Int64 => Values::Int64(PrimitiveColumn::default()),
            DataType::UInt8 => Values::UInt8(PrimitiveColumn::default()),
            DataType::UInt16 => Values::UInt16(PrimitiveColumn::default()),
            DataType::UInt32 => Values::UInt32(PrimitiveColumn::default()),
            DataType::UInt64 => Values::UInt64(PrimitiveColumn::default()),
            DataType::Float32 => Values::Float32(PrimitiveColumn::default()),
            DataType::Float64 => Values::Float64(PrimitiveColumn::default()),
            DataType::Date32 => Values::Date32(PrimitiveColumn::default()),
            DataType::Date64 => Values::Date64(PrimitiveColumn::default()),
            DataType::Time32(unit @ (TimeUnit::Second | TimeUnit::Millisecond)) => {
                Values::Time32(PrimitiveColumn::default(), *unit)
            }
            DataType::Time64(unit @ (TimeUnit::Microsecond | TimeUnit::Nanosecond)) => {
                Values::Time64(PrimitiveColumn::default(), *unit)
            }
            DataType::Timestamp(unit, _) => Values::Timestamp(PrimitiveColumn::default(), *unit),
            DataType::Duration(unit) => Values::Duration(PrimitiveColumn::default(), *unit),
            DataType::Decimal128(precision, scale) => {
                Values::Decimal128(PrimitiveColumn::default(), *precision, *scale)
            }
            DataType::Utf8 => Values::Utf8(BytesColumn::default()),
            DataType::LargeUtf8 => Values::LargeUtf8(BytesColumn::default()),
            DataType::Binary => Values::Binary(BytesColumn::default()),
            DataType::LargeBinary => Values::LargeBinary(BytesColumn::default()),
            DataType::FixedSizeBinary(width) => {
                let width = usize::try_from(*width).map_err(|_| unsupported())?;
                Values::FixedSizeBinary(FixedColumn::new(width))
            }
            DataType::List(item) => Values::List(ListColumn::new(item.clone())?),
            DataType::LargeList(item) => Values::LargeList(ListColumn::new(item.clone())?),
            DataType::Struct(fields) => Values::Struct(StructColumn {
                children: fields
                    .iter()
                    .map(|f| ColumnBuilder::new(f.clone()))
                    .collect::<Result<_>>()?,
                nulls: NullBufferBuilder::new(0),
            }),
            DataType::Map(entries, _) => Values::Map(MapColumn::new(entries)?),
            _ => return Err(unsupported()),
        })
    }

    /// The storage behind the variant, for the operations every column has.
    fn storage(&self) -> &dyn Storage {
        match self {
            Values::Boolean(c) => c,
            Values::Int8(c) => c,
            Values::Int16(c) => c,
            Values::Int32(c) | Values::Date32(c) | Values::Time32(c, _) => c,
            Values::Int64(c)
            | Values::Date64(c)
            | Values::Time64(c, _)
            | Values::Timestamp(c, _)
            | Values::Duration(c, _) => c,
            Values::UInt8(c) => c,
            Values::UInt16(c) => c,
            Values::UInt32(c) => c,
            Values::UInt64(c) => c,
            Values::Float32(c) => c,
            Values::Float64(c) => c,
            Values::Decimal128(c, _, _) => c,
            Values::Utf8(c) | Values::Binary(c) | Values::Json(c) | Values::Inet(c) => c,
            Values::Mac(c) => c,
            Values::LargeUtf8(c) | Values::LargeBinary(c) => c,
            Values::FixedSizeBinary(c) | Values::Uuid(c) => c,
            Values::List(c) => c,
            Values::LargeList(c) => c,
            Values::Struct(c) => c,
            Values::Map(c) => c,
        }
    }

    /// [`Values::storage`], mutably.
    fn storage_mut(&mut self) -> &mut dyn Storage {
        match self {
            Values::Boolean(c) => c,
            Values::Int8(c) => c,
            Values::Int16(c) => c,
            Values::Int32(c) | Values::Date32(c) | Values::Time32(c, _) => c,
            Values::Int64(c)
            | Values::Date64(c)
            | Values::Time64(c, _)
            | Values::Timestamp(c, _)
            | Values::Duration(c, _) => c,
            Values::UInt8(c) => c,
            Values::UInt16(c) => c,
            Values::UInt32(c) => c,
            Values::UInt64(c) => c,
            Values::Float32(c) => c,
            Values::Float64(c) => c,
            Values::Decimal128(c, _, _) => c,
            Values::Utf8(c) | Values::Binary(c) | Values::Json(c) | Values::Inet(c) => c,
            Values::Mac(c) => c,
            Values::LargeUtf8(c) | Values::LargeBinary(c) => c,
            Values::FixedSizeBinary(c) | Values::Uuid(c) => c,
            Values::List(c) => c,
            Values::LargeList(c) => c,
            Values::Struct(c) => c,
            Values::Map(c) => c,
        }
    }
}

/// What every column storage does, whatever values it holds.
trait Storage {
    /// Number of values.
    fn len(&self) -> usize;
    /// Appends a null.
    fn push_null(&mut self);
    /// Keeps the first `len` values, and whatever nested items belong to them.
    fn truncate(&mut self, len: usize);
    /// Makes room for `additional` more values.
    fn reserve(&mut self, _additional: usize) {}
    /// See [`ColumnBuilder::reserve_like`].
    fn reserve_like(&mut self, additional: usize) {
        self.reserve(additional);
    }
    /// Approximate bytes held.
    fn byte_size(&self) -> usize;
    /// The values as an array of `data_type`, emptying the storage.
    fn finish(&mut self, data_type: &DataType) -> Result<ArrayRef>;
    /// See [`ColumnBuilder::snapshot`]; `None` where a flat copy is not possible.
    fn snapshot(&self, _data_type: DataType, _range: Range<usize>) -> Option<Result<ArrayRef>> {
        None
    }
}

/// The most one [`ColumnBuilder::reserve_like`] reserves for one buffer: an estimate from the
/// first rows can be far off, and past this the buffer grows by doubling as usual.
const RESERVE_LIKE_MAX_BYTES: usize = 256 << 20;

/// Reserves room for `additional` more elements, up to [`RESERVE_LIKE_MAX_BYTES`], and not at
/// all if the allocation fails: this only saves regrowing later, so it must never abort.
fn reserve_bounded<T>(values: &mut Vec<T>, additional: usize) {
    let most = RESERVE_LIKE_MAX_BYTES / std::mem::size_of::<T>().max(1);
    let _ = values.try_reserve(additional.min(most));
}

fn finish_array(builder: ArrayDataBuilder) -> Result<ArrayRef> {
    Ok(make_array(builder.build()?))
}

/// Offsets as Arrow's checked offset buffer (non-negative, non-decreasing: true by
/// construction here, and checked again by `OffsetBuffer::new`).
fn offsets_buffer<O: ArrowNativeType>(offsets: Vec<O>) -> OffsetBuffer<O> {
    OffsetBuffer::new(ScalarBuffer::from(offsets))
}

/// The validity of values `range` of `nulls`, as a buffer of its own.
fn nulls_of(nulls: &NullBufferBuilder, range: &Range<usize>) -> Option<NullBuffer> {
    let bits = nulls.as_slice()?;
    let all = BooleanBuffer::new(Buffer::from(bits), 0, nulls.len());
    Some(NullBuffer::new(all.slice(range.start, range.len())))
}

/// Fixed-width values (integers, floats, temporal counts, decimals) and their validity.
#[derive(Debug)]
pub struct PrimitiveColumn<T> {
    values: Vec<T>,
    nulls: NullBufferBuilder,
}

impl<T> Default for PrimitiveColumn<T> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            nulls: NullBufferBuilder::new(0),
        }
    }
}

impl<T: ArrowNativeType> PrimitiveColumn<T> {
    /// Appends a value.
    #[inline(always)]
    pub fn push(&mut self, value: T) {
        self.values.push(value);
        self.nulls.append_non_null();
    }
}

impl<T: ArrowNativeType> Storage for PrimitiveColumn<T> {
    fn reserve(&mut self, additional: usize) {
        self.values.reserve(additional);
    }

    fn push_null(&mut self) {
        self.values.push(T::default());
        self.nulls.append_null();
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn truncate(&mut self, len: usize) {
        self.values.truncate(len);
        self.nulls.truncate(len);
    }

    fn byte_size(&self) -> usize {
        self.values.len() * std::mem::size_of::<T>()
    }

    fn snapshot(&self, data_type: DataType, range: Range<usize>) -> Option<Result<ArrayRef>> {
        Some(finish_array(
            ArrayDataBuilder::new(data_type)
                .len(range.len())
                .add_buffer(Buffer::from_vec(self.values[range.clone()].to_vec()))
                .nulls(nulls_of(&self.nulls, &range)),
        ))
    }

    fn finish(&mut self, data_type: &DataType) -> Result<ArrayRef> {
        let values = std::mem::take(&mut self.values);
        finish_array(
            ArrayDataBuilder::new(data_type.clone())
                .len(values.len())
                .add_buffer(Buffer::from_vec(values))
                .nulls(self.nulls.finish()),
        )
    }
}

/// Booleans and their validity.
#[derive(Debug)]
pub struct BoolColumn {
    /// The values, eight to a byte, least significant bit first; bits past `len` are clear.
    bits: Vec<u8>,
    len: usize,
    nulls: NullBufferBuilder,
}

impl Default for BoolColumn {
    fn default() -> Self {
        Self {
            bits: Vec::new(),
            len: 0,
            nulls: NullBufferBuilder::new(0),
        }
    }
}

impl BoolColumn {
    /// Appends a value.
    #[inline(always)]
    pub fn push(&mut self, value: bool) {
        self.push_bit(value);
        self.nulls.append_non_null();
    }

    #[inline(always)]
    fn push_bit(&mut self, value: bool) {
        let bit = self.len % 8;
        if bit == 0 {
            self.bits.push(0);
        }
        if let Some(last) = self.bits.last_mut() {
            *last |= u8::from(value) << bit;
        }
        self.len += 1;
    }
}

impl Storage for BoolColumn {
    fn reserve(&mut self, additional: usize) {
        self.bits.reserve(additional.div_ceil(8));
    }

    fn byte_size(&self) -> usize {
        self.len().div_ceil(8) * 2
    }

    fn push_null(&mut self) {
        self.push_bit(false);
        self.nulls.append_null();
    }

    fn len(&self) -> usize {
        self.len
    }

    fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.bits.truncate(len.div_ceil(8));
            if let Some(last) = self.bits.last_mut() {
                if len % 8 != 0 {
                    *last &= (1u8 << (len % 8)) - 1;
                }
            }
            self.len = len;
            self.nulls.truncate(len);
        }
    }

    fn finish(&mut self, _data_type: &DataType) -> Result<ArrayRef> {
        let len = std::mem::take(&mut self.len);
        finish_array(
            ArrayDataBuilder::new(DataType::Boolean)
                .len(len)
                .add_buffer(Buffer::from_vec(std::mem::take(&mut self.bits)))
                .nulls(self.nulls.finish()),
        )
    }
}

/// Variable-length bytes (strings, binary, extension text) with `O`-sized offsets.
#[derive(Debug)]
pub struct BytesColumn<O> {
    offsets: Vec<O>,
    data: Vec<u8>,
    nulls: NullBufferBuilder,
}

impl<O: OffsetSizeTrait> Default for BytesColumn<O> {
    fn default() -> Self {
        Self {
            offsets: vec![O::zero()],
            data: Vec::new(),
            nulls: NullBufferBuilder::new(0),
        }
    }
}

impl<O: OffsetSizeTrait> BytesColumn<O> {
    /// Appends a value.
    #[inline(always)]
    pub fn push(&mut self, value: &[u8]) -> Result<()> {
        // Checked before copying, so a value that does not fit leaves nothing behind.
        let Some(end) = O::from_usize(self.data.len() + value.len()) else {
            return Err(Self::too_many_bytes());
        };
        self.data.extend_from_slice(value);
        self.offsets.push(end);
        self.nulls.append_non_null();
        Ok(())
    }

    /// Appends a value written straight into the data buffer by `write`, which must append
    /// exactly the bytes of one value to the vector it is given (and nothing else). If `write`
    /// fails, whatever it appended is removed again.
    #[inline]
    pub fn push_with<E>(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), E>,
    ) -> std::result::Result<Result<()>, E> {
        let start = self.data.len();
        match write(&mut self.data) {
            Ok(()) => Ok(self.close_value()),
            Err(e) => {
                self.data.truncate(start);
                Err(e)
            }
        }
    }

    #[inline]
    fn close_value(&mut self) -> Result<()> {
        match O::from_usize(self.data.len()) {
            Some(end) => {
                self.offsets.push(end);
                self.nulls.append_non_null();
                Ok(())
            }
            None => {
                let start = self.offsets.last().map_or(0, |o| o.as_usize());
                self.data.truncate(start);
                Err(Self::too_many_bytes())
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn too_many_bytes() -> CoreError {
        CoreError::InvalidArgument(format!(
            "a column holds more than {} bytes in one batch; \
             use large_string/large_binary or smaller batches",
            O::MAX_OFFSET
        ))
    }
}

impl<O: OffsetSizeTrait> Storage for BytesColumn<O> {
    fn push_null(&mut self) {
        let last = *self.offsets.last().expect("offsets start with 0");
        self.offsets.push(last);
        self.nulls.append_null();
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.data.truncate(self.offsets[len].as_usize());
            self.offsets.truncate(len + 1);
            self.nulls.truncate(len);
        }
    }

    fn byte_size(&self) -> usize {
        self.data.len() + self.offsets.len() * std::mem::size_of::<O>()
    }

    fn reserve(&mut self, n: usize) {
        const TYPICAL_VALUE_BYTES: usize = 16;
        self.offsets.reserve(n);
        self.data.reserve(n.saturating_mul(TYPICAL_VALUE_BYTES));
    }

    fn reserve_like(&mut self, n: usize) {
        reserve_bounded(&mut self.offsets, n);
        let bytes = n.saturating_mul(self.data.len().div_ceil(self.len().max(1)));
        // More than the offsets can address would never be used.
        let room = O::MAX_OFFSET.saturating_sub(self.data.len());
        reserve_bounded(&mut self.data, bytes.saturating_add(bytes / 8).min(room));
    }

    fn snapshot(&self, data_type: DataType, range: Range<usize>) -> Option<Result<ArrayRef>> {
        let base = self.offsets[range.start];
        let offsets: Vec<O> = self.offsets[range.start..=range.end]
            .iter()
            .map(|&o| o - base)
            .collect();
        let data = &self.data[base.as_usize()..self.offsets[range.end].as_usize()];
        Some(finish_array(
            ArrayDataBuilder::new(data_type)
                .len(range.len())
                .add_buffer(Buffer::from_vec(offsets))
                .add_buffer(Buffer::from(data))
                .nulls(nulls_of(&self.nulls, &range)),
        ))
    }

    fn finish(&mut self, data_type: &DataType) -> Result<ArrayRef> {
        let offsets = std::mem::replace(&mut self.offsets, vec![O::zero()]);
        let data = Buffer::from_vec(std::mem::take(&mut self.data));
        let nulls = self.nulls.finish();
        // The typed constructors check what ArrayData's generic validation checks, in one
        // tight pass over the offsets instead of an iterator chain per value.
        match data_type {
            DataType::Utf8 | DataType::LargeUtf8 => Ok(Arc::new(GenericStringArray::<O>::try_new(
                offsets_buffer(offsets),
                data,
                nulls,
            )?)),
            DataType::Binary | DataType::LargeBinary => Ok(Arc::new(
                GenericBinaryArray::<O>::try_new(offsets_buffer(offsets), data, nulls)?,
            )),
            _ => finish_array(
                ArrayDataBuilder::new(data_type.clone())
                    .len(offsets.len() - 1)
                    .add_buffer(Buffer::from_vec(offsets))
                    .add_buffer(data)
                    .nulls(nulls),
            ),
        }
    }
}

/// Fixed-size binary values (and `uuid`).
#[derive(Debug)]
pub struct FixedColumn {
    width: usize,
    values: Vec<u8>,
    nulls: NullBufferBuilder,
}

impl FixedColumn {
    fn new(width: usize) -> Self {
        Self {
            width,
            values: Vec::new(),
            nulls: NullBufferBuilder::new(0),
        }
    }

    /// The number of bytes every value has.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Appends a value; it must be exactly [`FixedColumn::width`] bytes long.
    #[inline(always)]
    pub fn push(&mut self, value: &[u8]) -> Result<()> {
        if value.len() != self.width {
            return Err(self.wrong_width(value.len()));
        }
        self.values.extend_from_slice(value);
        self.nulls.append_non_null();
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn wrong_width(&self, len: usize) -> CoreError {
        CoreError::InvalidArgument(format!("expected {} bytes, got {len}", self.width))
    }
}

impl Storage for FixedColumn {
    fn reserve(&mut self, additional: usize) {
        self.values.reserve(additional * self.width);
    }

    fn byte_size(&self) -> usize {
        self.values.len() + self.len().div_ceil(8)
    }

    fn push_null(&mut self) {
        self.values.resize(self.values.len() + self.width, 0);
        self.nulls.append_null();
    }

    fn len(&self) -> usize {
        self.nulls.len()
    }

    fn truncate(&mut self, len: usize) {
        self.values.truncate(len * self.width);
        self.nulls.truncate(len);
    }

    fn snapshot(&self, data_type: DataType, range: Range<usize>) -> Option<Result<ArrayRef>> {
        let bytes = &self.values[range.start * self.width..range.end * self.width];
        Some(finish_array(
            ArrayDataBuilder::new(data_type)
                .len(range.len())
                .add_buffer(Buffer::from(bytes))
                .nulls(nulls_of(&self.nulls, &range)),
        ))
    }

    fn finish(&mut self, data_type: &DataType) -> Result<ArrayRef> {
        let len = self.len();
        finish_array(
            ArrayDataBuilder::new(data_type.clone())
                .len(len)
                .add_buffer(Buffer::from_vec(std::mem::take(&mut self.values)))
                .nulls(self.nulls.finish()),
        )
    }
}

/// Offsets and validity of a column of variable-length entries (lists, maps) whose items live
/// in child columns: entry `i` spans items `offsets[i]..offsets[i + 1]`.
#[derive(Debug)]
struct Spans<O> {
    offsets: Vec<O>,
    nulls: NullBufferBuilder,
}

impl<O: OffsetSizeTrait> Spans<O> {
    fn new() -> Self {
        Self {
            offsets: vec![O::zero()],
            nulls: NullBufferBuilder::new(0),
        }
    }

    /// Ends an entry whose items run up to `items` (the child length); `what` names the
    /// column kind in the overflow error.
    fn close(&mut self, items: usize, what: &str) -> Result<()> {
        let end = O::from_usize(items).ok_or_else(|| {
            CoreError::InvalidArgument(format!(
                "a {what} column holds more than {} items in one batch",
                O::MAX_OFFSET
            ))
        })?;
        self.offsets.push(end);
        self.nulls.append_non_null();
        Ok(())
    }

    fn push_null(&mut self) {
        let last = *self.offsets.last().expect("offsets start with 0");
        self.offsets.push(last);
        self.nulls.append_null();
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Keeps the first `len` entries; returns how many child items they span (items of an
    /// unclosed entry sit past the last offset and must go too).
    fn truncate(&mut self, len: usize) -> usize {
        let items = self.offsets[len.min(self.len())].as_usize();
        if len < self.len() {
            self.offsets.truncate(len + 1);
            self.nulls.truncate(len);
        }
        items
    }

    fn reserve(&mut self, additional: usize) {
        self.offsets.reserve(additional);
    }

    /// `data_type`'s array data over `children`, emptying the spans.
    fn finish(&mut self, data_type: &DataType, children: Vec<ArrayData>) -> Result<ArrayRef> {
        let offsets = std::mem::replace(&mut self.offsets, vec![O::zero()]);
        finish_array(
            ArrayDataBuilder::new(data_type.clone())
                .len(offsets.len() - 1)
                .add_buffer(Buffer::from_vec(offsets))
                .child_data(children)
                .nulls(self.nulls.finish()),
        )
    }
}

/// Lists: offsets into one child column.
///
/// Append a list by pushing its items into [`ListColumn::items`] and then calling
/// [`ListColumn::close`].
#[derive(Debug)]
pub struct ListColumn<O> {
    spans: Spans<O>,
    child: Box<ColumnBuilder>,
}

impl<O: OffsetSizeTrait> ListColumn<O> {
    fn new(item: FieldRef) -> Result<Self> {
        Ok(Self {
            spans: Spans::new(),
            child: Box::new(ColumnBuilder::new(item)?),
        })
    }

    /// The column the items go into.
    pub fn items(&mut self) -> &mut ColumnBuilder {
        &mut self.child
    }

    /// The number of items of the lists closed so far: where the next list's items start.
    pub fn closed_items(&self) -> usize {
        self.spans.offsets.last().map_or(0, |o| o.as_usize())
    }

    /// Ends the list whose items were pushed since the previous list ended.
    pub fn close(&mut self) -> Result<()> {
        self.spans.close(self.child.len(), "list (use large_list)")
    }
}

impl<O: OffsetSizeTrait> Storage for ListColumn<O> {
    fn reserve(&mut self, additional: usize) {
        self.spans.reserve(additional);
    }

    fn reserve_like(&mut self, additional: usize) {
        reserve_bounded(&mut self.spans.offsets, additional);
        let items = additional.saturating_mul(self.child.len().div_ceil(self.len().max(1)));
        self.child.reserve_like(items.saturating_add(items / 8));
    }

    fn byte_size(&self) -> usize {
        self.spans.offsets.len() * std::mem::size_of::<O>() + self.child.byte_size()
    }

    fn push_null(&mut self) {
        self.spans.push_null();
    }

    fn len(&self) -> usize {
        self.spans.len()
    }

    fn truncate(&mut self, len: usize) {
        let items = self.spans.truncate(len);
        self.child.truncate(items);
    }

    fn finish(&mut self, data_type: &DataType) -> Result<ArrayRef> {
        let child = self.child.finish()?;
        match data_type {
            DataType::List(item) | DataType::LargeList(item) => {
                let offsets = std::mem::replace(&mut self.spans.offsets, vec![O::zero()]);
                let nulls = self.spans.nulls.finish();
                Ok(Arc::new(GenericListArray::<O>::try_new(
                    Arc::clone(item),
                    offsets_buffer(offsets),
                    child,
                    nulls,
                )?))
            }
            _ => self.spans.finish(data_type, vec![child.to_data()]),
        }
    }
}

/// Structs: one child column per field, all of the struct's length.
///
/// Append a struct by pushing exactly one value (or null) into every child, then calling
/// [`StructColumn::close`].
#[derive(Debug)]
pub struct StructColumn {
    children: Vec<ColumnBuilder>,
    nulls: NullBufferBuilder,
}

impl StructColumn {
    /// The child columns, in field order.
    pub fn children(&mut self) -> &mut [ColumnBuilder] {
        &mut self.children
    }

    /// Ends the struct whose fields were pushed.
    pub fn close(&mut self) {
        self.nulls.append_non_null();
    }
}

impl Storage for StructColumn {
    fn reserve(&mut self, additional: usize) {
        for child in &mut self.children {
            child.reserve(additional);
        }
    }

    fn reserve_like(&mut self, additional: usize) {
        for child in &mut self.children {
            child.reserve_like(additional);
        }
    }

    fn byte_size(&self) -> usize {
        self.children.iter().map(ColumnBuilder::byte_size).sum()
    }

    fn push_null(&mut self) {
        for child in &mut self.children {
            child.push_null();
        }
        self.nulls.append_null();
    }

    fn len(&self) -> usize {
        self.nulls.len()
    }

    fn truncate(&mut self, len: usize) {
        let len = len.min(self.len());
        for child in &mut self.children {
            child.truncate(len);
        }
        self.nulls.truncate(len);
    }

    fn finish(&mut self, data_type: &DataType) -> Result<ArrayRef> {
        let len = self.len();
        let mut builder = ArrayDataBuilder::new(data_type.clone())
            .len(len)
            .nulls(self.nulls.finish());
        for child in &mut self.children {
            builder = builder.add_child_data(child.finish()?.to_data());
        }
        finish_array(builder)
    }
}

/// Maps: offsets into key and value columns.
///
/// Append a map by pushing each entry's key and value into [`MapColumn::keys_and_values`],
/// then calling [`MapColumn::close`].
#[derive(Debug)]
pub struct MapColumn {
    entries: FieldRef,
    spans: Spans<i32>,
    keys: Box<ColumnBuilder>,
    values: Box<ColumnBuilder>,
}

impl MapColumn {
    fn new(entries: &FieldRef) -> Result<Self> {
        let DataType::Struct(fields) = entries.data_type() else {
            return Err(CoreError::Schema(format!(
                "map entries field {:?} must be a struct, not {}",
                entries.name(),
                entries.data_type()
            )));
        };
        if fields.len() != 2 {
            return Err(CoreError::Schema(format!(
                "map entries field {:?} must have a key and a value field",
                entries.name()
            )));
        }
        Ok(Self {
            entries: entries.clone(),
            spans: Spans::new(),
            keys: Box::new(ColumnBuilder::new(fields[0].clone())?),
            values: Box::new(ColumnBuilder::new(fields[1].clone())?),
        })
    }

    /// The key and value columns.
    pub fn keys_and_values(&mut self) -> (&mut ColumnBuilder, &mut ColumnBuilder) {
        (&mut self.keys, &mut self.values)
    }

    /// Ends the map whose entries were pushed since the previous map ended.
    pub fn close(&mut self) -> Result<()> {
        self.spans.close(self.keys.len(), "map")
    }
}

impl Storage for MapColumn {
    fn reserve(&mut self, additional: usize) {
        self.spans.reserve(additional);
    }

    fn reserve_like(&mut self, additional: usize) {
        reserve_bounded(&mut self.spans.offsets, additional);
        let entries = additional.saturating_mul(self.keys.len().div_ceil(self.len().max(1)));
        let entries = entries.saturating_add(entries / 8);
        self.keys.reserve_like(entries);
        self.values.reserve_like(entries);
    }

    fn byte_size(&self) -> usize {
        self.spans.offsets.len() * 4 + self.keys.byte_size() + self.values.byte_size()
    }

    fn push_null(&mut self) {
        self.spans.push_null();
    }

    fn len(&self) -> usize {
        self.spans.len()
    }

    fn truncate(&mut self, len: usize) {
        let items = self.spans.truncate(len);
        self.keys.truncate(items);
        self.values.truncate(items);
    }

    fn finish(&mut self, data_type: &DataType) -> Result<ArrayRef> {
        let keys = self.keys.finish()?;
        let values = self.values.finish()?;
        let entries = ArrayDataBuilder::new(self.entries.data_type().clone())
            .len(keys.len())
            .add_child_data(keys.to_data())
            .add_child_data(values.to_data())
            .build()?;
        self.spans.finish(data_type, vec![entries])
    }
}

/// Builders for every field of `fields`, in order.
pub fn builders_for(fields: &[FieldRef]) -> Result<Vec<ColumnBuilder>> {
    fields
        .iter()
        .map(|f| ColumnBuilder::new(Arc::clone(f)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::Array;
    use arrow_schema::Fields;

    fn field(name: &str, data_type: DataType) -> FieldRef {
        Arc::new(Field::new(name, data_type, true))
    }

    #[test]
    fn primitive_push_null_truncate_finish() {
        let mut b = ColumnBuilder::new(field("x", DataType::Int64)).unwrap();
        let Values::Int64(c) = &mut b.values else {
            panic!()
        };
        c.push(1);
        c.push_null();
        c.push(3);
        b.truncate(2);
        let a = b.finish().unwrap();
        let a = a.as_primitive::<Int64Type>();
        assert_eq!(a.len(), 2);
        assert_eq!(a.value(0), 1);
        assert!(a.is_null(1));
        assert!(b.is_empty());
    }

    #[test]
    fn snapshots_copy_a_range_with_its_nulls() {
        let mut b = ColumnBuilder::new(field("s", DataType::Utf8)).unwrap();
        let Values::Utf8(c) = &mut b.values else {
            panic!()
        };
        c.push(b"a").unwrap();
        c.push_null();
        c.push(b"cd").unwrap();
        let part = b.snapshot(1, 3).unwrap().unwrap();
        let part = part.as_string::<i32>();
        assert!(part.is_null(0));
        assert_eq!(part.value(1), "cd");

        let mut n = ColumnBuilder::new(field("n", DataType::Int64)).unwrap();
        let Values::Int64(c) = &mut n.values else {
            panic!()
        };
        c.push(1);
        c.push(2);
        let part = n.snapshot(1, 2).unwrap().unwrap();
        assert_eq!(part.as_primitive::<Int64Type>().values(), &[2]);
        assert_eq!(part.null_count(), 0);
        assert!(ColumnBuilder::new(field("b", DataType::Boolean))
            .unwrap()
            .snapshot(0, 0)
            .is_none());
    }

    #[test]
    fn strings_truncate_drops_bytes() {
        let mut b = ColumnBuilder::new(field("s", DataType::Utf8)).unwrap();
        let Values::Utf8(c) = &mut b.values else {
            panic!()
        };
        c.push(b"ab").unwrap();
        c.push(b"cde").unwrap();
        b.truncate(1);
        let Values::Utf8(c) = &mut b.values else {
            panic!()
        };
        c.push(b"z").unwrap();
        let a = b.finish().unwrap();
        let a = a.as_string::<i32>();
        assert_eq!(a.value(0), "ab");
        assert_eq!(a.value(1), "z");
    }

    #[test]
    fn booleans_truncate_and_finish() {
        use arrow_array::cast::AsArray;
        let mut b = ColumnBuilder::new(field("b", DataType::Boolean)).unwrap();
        let pattern = [
            true, false, true, true, false, false, true, true, true, false, true,
        ];
        for &v in &pattern {
            let Values::Boolean(c) = &mut b.values else {
                panic!()
            };
            c.push(v);
        }
        b.push_null();
        b.truncate(10); // into the second byte, dropping a set bit and the null
        let Values::Boolean(c) = &mut b.values else {
            panic!()
        };
        c.push(false);
        c.push(true);
        let a = b.finish().unwrap();
        a.to_data().validate_full().unwrap();
        let got: Vec<Option<bool>> = a.as_boolean().iter().collect();
        let mut want: Vec<Option<bool>> = pattern[..10].iter().map(|&v| Some(v)).collect();
        want.extend([Some(false), Some(true)]);
        assert_eq!(got, want);
        assert!(b.is_empty());
    }

    #[test]
    fn reserve_like_makes_room_in_proportion() {
        let item = Arc::new(Field::new("item", DataType::Utf8, true));
        let mut b = ColumnBuilder::new(field("l", DataType::List(item))).unwrap();
        b.reserve_like(100); // empty: nothing to go by, no panic
        let Values::List(l) = &mut b.values else {
            panic!()
        };
        for _ in 0..2 {
            let Values::Utf8(items) = &mut l.items().values else {
                panic!()
            };
            items.push(b"abcd").unwrap();
            items.push(b"efgh").unwrap();
            l.close().unwrap();
        }
        b.reserve_like(1000);
        let Values::List(l) = &mut b.values else {
            panic!()
        };
        assert!(l.spans.offsets.capacity() >= 1002);
        let Values::Utf8(items) = &l.items().values else {
            panic!()
        };
        // Two items of four bytes per list: room for 2000 more items, 8000 more bytes.
        assert!(items.offsets.capacity() >= 2004);
        assert!(items.data.capacity() >= 8016);

        // An estimate far beyond memory is cut short, not an abort.
        let mut huge = ColumnBuilder::new(field("s", DataType::LargeUtf8)).unwrap();
        let Values::LargeUtf8(c) = &mut huge.values else {
            panic!()
        };
        c.push(&[b'x'; 4096]).unwrap();
        huge.reserve_like(usize::MAX / 2);
        let Values::LargeUtf8(c) = &huge.values else {
            panic!()
        };
        assert!(c.data.capacity() <= 4096 + RESERVE_LIKE_MAX_BYTES);
    }

    #[test]
    fn push_with_failure_leaves_no_bytes() {
        let mut c = BytesColumn::<i32>::default();
        let r: std::result::Result<_, &str> = c.push_with(|buf| {
            buf.extend_from_slice(b"partial");
            Err("bad")
        });
        assert!(r.is_err());
        c.push(b"ok").unwrap();
        assert_eq!(c.data, b"ok");
    }

    #[test]
    fn list_rollback_of_unclosed_items() {
        let item = Arc::new(Field::new("item", DataType::Int64, true));
        let mut b = ColumnBuilder::new(field("l", DataType::List(item))).unwrap();
        let Values::List(l) = &mut b.values else {
            panic!()
        };
        let Values::Int64(items) = &mut l.items().values else {
            panic!()
        };
        items.push(1);
        items.push(2);
        l.close().unwrap();
        let Values::Int64(items) = &mut l.items().values else {
            panic!()
        };
        items.push(9); // a second list that fails half-way
        b.truncate(1);
        let a = b.finish().unwrap();
        let a = a.as_list::<i32>();
        assert_eq!(a.len(), 1);
        assert_eq!(a.values().len(), 2);
    }

    #[test]
    fn struct_and_map_and_bool_build() {
        let fields = Fields::from(vec![
            Field::new("a", DataType::Boolean, true),
            Field::new("b", DataType::Utf8, true),
        ]);
        let mut s = ColumnBuilder::new(field("s", DataType::Struct(fields))).unwrap();
        let Values::Struct(sc) = &mut s.values else {
            panic!()
        };
        if let Values::Boolean(c) = &mut sc.children()[0].values {
            c.push(true);
        }
        sc.children()[1].push_null();
        sc.close();
        sc.push_null();
        let a = s.finish().unwrap();
        assert_eq!(a.len(), 2);
        assert!(a.is_null(1));

        let entries = Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Int64, true),
            ])),
            false,
        );
        let mut m =
            ColumnBuilder::new(field("m", DataType::Map(Arc::new(entries), false))).unwrap();
        let Values::Map(mc) = &mut m.values else {
            panic!()
        };
        let (k, v) = mc.keys_and_values();
        if let (Values::Utf8(k), Values::Int64(v)) = (&mut k.values, &mut v.values) {
            k.push(b"x").unwrap();
            v.push(1);
        }
        mc.close().unwrap();
        mc.push_null();
        let a = m.finish().unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a.as_map().value(0).len(), 1);
    }

    #[test]
    fn extension_storage_is_checked() {
        let f = Field::new("id", DataType::Binary, true).with_metadata(
            [(
                crate::schema::EXTENSION_NAME.to_string(),
                "uuid".to_string(),
            )]
            .into(),
        );
        let err = ColumnBuilder::new(Arc::new(f)).unwrap_err();
        assert!(
            err.to_string().contains("fixed_size_binary")
                || err.to_string().contains("FixedSizeBinary")
        );
    }

    #[test]
    fn unsupported_type_is_a_schema_error() {
        let err = ColumnBuilder::new(field("h", DataType::Float16)).unwrap_err();
        assert!(matches!(err, CoreError::Schema(_)));
        assert!(err.to_string().contains("\"h\""));
    }
}
