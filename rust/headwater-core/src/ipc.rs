//! Arrow IPC streams as CloudQuery messages carry them: a schema-only stream for `GetTables` and
//! `migrate_table`, and for `insert` one stream per record batch, split into contiguous
//! zero-copy slices so that no message exceeds the gRPC size limit.
//!
//! Schema and field metadata (`cq:*`, `ARROW:extension:*`) are written as they are.

use arrow_array::RecordBatch;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::Schema;

use crate::error::{CoreError, Result};

/// An IPC stream holding only `schema` (and the end-of-stream marker).
pub fn encode_schema(schema: &Schema) -> Result<Vec<u8>> {
    let mut writer = StreamWriter::try_new(Vec::new(), schema)?;
    writer.finish()?;
    Ok(writer.into_inner()?)
}

/// One complete IPC stream (schema, the batch, end-of-stream marker).
fn encode_stream(batch: &RecordBatch, capacity: usize) -> Result<Vec<u8>> {
    let mut writer = StreamWriter::try_new(Vec::with_capacity(capacity), batch.schema_ref())?;
    writer.write(batch)?;
    writer.finish()?;
    Ok(writer.into_inner()?)
}

/// Encodes `batch` as one or more complete IPC streams (schema + one record batch + EOS), each
/// at most `max_message_bytes` long. Decoding them in order and concatenating the batches gives
/// back the original rows in order.
///
/// The split is estimated from the size of the whole encoding, and a slice that still encodes
/// too large is halved until it fits. A zero-row batch gives one stream with an empty batch.
///
/// Errors: [`CoreError::InvalidArgument`] for a limit of zero, or when even the schema with an
/// empty batch exceeds the limit; [`CoreError::MessageTooLarge`] naming the first row (index in
/// `batch`) that alone encodes larger than the limit.
pub fn encode_batch(batch: &RecordBatch, max_message_bytes: usize) -> Result<Vec<Vec<u8>>> {
    if max_message_bytes == 0 {
        return Err(CoreError::InvalidArgument(
            "the IPC message size limit must be at least 1 byte".into(),
        ));
    }
    let num_rows = batch.num_rows();
    let whole = encode_stream(batch, 0)?;
    if whole.len() <= max_message_bytes {
        return Ok(vec![whole]);
    }
    if num_rows == 0 {
        return Err(CoreError::InvalidArgument(format!(
            "the schema with an empty batch alone encodes to {} bytes, more than the \
             {max_message_bytes}-byte message limit",
            whole.len()
        )));
    }

    // Aim a little under the limit: per-row sizes vary and every stream repeats the schema.
    let bytes_per_row = whole.len().div_ceil(num_rows).max(1);
    let target_rows = (max_message_bytes / 10 * 9 / bytes_per_row).clamp(1, num_rows);
    let mut messages = Vec::with_capacity(num_rows.div_ceil(target_rows));
    let mut start = 0;
    while start < num_rows {
        let mut len = target_rows.min(num_rows - start);
        loop {
            let capacity = (len * bytes_per_row).min(max_message_bytes);
            let encoded = encode_stream(&batch.slice(start, len), capacity)?;
            if encoded.len() <= max_message_bytes {
                messages.push(encoded);
                start += len;
                break;
            }
            if len == 1 {
                return Err(CoreError::MessageTooLarge {
                    row: start,
                    bytes: encoded.len(),
                    limit: max_message_bytes,
                });
            }
            len /= 2;
        }
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{
        BinaryBuilder, FixedSizeBinaryBuilder, Int64Builder, ListBuilder, StringBuilder,
    };
    use arrow_array::{
        Array, ArrayRef, BooleanArray, Float64Array, Int64Array, LargeStringArray, StructArray,
        TimestampMicrosecondArray,
    };
    use arrow_ipc::reader::StreamReader;
    use arrow_schema::{DataType, Field, Fields, TimeUnit};
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn decode(stream: &[u8]) -> (Arc<Schema>, Vec<RecordBatch>) {
        let reader = StreamReader::try_new(stream, None).unwrap();
        let schema = reader.schema();
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>().unwrap();
        (schema, batches)
    }

    fn cq_schema() -> Schema {
        let uuid_meta = HashMap::from([
            ("ARROW:extension:name".to_string(), "uuid".to_string()),
            (
                "ARROW:extension:metadata".to_string(),
                "uuid-serialized".to_string(),
            ),
            ("cq:extension:primary_key".to_string(), "true".to_string()),
        ]);
        let json_meta = HashMap::from([
            ("ARROW:extension:name".to_string(), "json".to_string()),
            (
                "ARROW:extension:metadata".to_string(),
                "json-serialized".to_string(),
            ),
        ]);
        let item = Arc::new(Field::new("item", DataType::Utf8, true));
        let struct_fields = Fields::from(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::LargeUtf8, true),
        ]);
        Schema::new(vec![
            Field::new("_cq_id", DataType::FixedSizeBinary(16), false).with_metadata(uuid_meta),
            Field::new("name", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("x", DataType::Float64, true),
            Field::new("doc", DataType::Binary, true).with_metadata(json_meta),
            Field::new("tags", DataType::List(item), true),
            Field::new("s", DataType::Struct(struct_fields), true),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ])
        .with_metadata(HashMap::from([
            ("cq:table_name".to_string(), "t1".to_string()),
            ("cq:table_depends_on".to_string(), String::new()),
        ]))
    }

    /// A batch of `cq_schema()` whose row `i` is derived from `sizes[i]` (string lengths) and has
    /// nulls sprinkled in every column.
    fn cq_batch(sizes: &[usize]) -> RecordBatch {
        let schema = Arc::new(cq_schema());
        let n = sizes.len();
        let mut ids = FixedSizeBinaryBuilder::new(16);
        let mut names = StringBuilder::new();
        let mut docs = BinaryBuilder::new();
        let mut tags = ListBuilder::new(StringBuilder::new());
        for (i, &size) in sizes.iter().enumerate() {
            ids.append_value([i as u8; 16]).unwrap();
            if i % 5 == 3 {
                names.append_null();
                docs.append_null();
                tags.append_null();
            } else {
                names.append_value("n".repeat(size));
                docs.append_value(format!("{{\"k\": \"{}\"}}", "d".repeat(size)));
                tags.append_value((0..size % 4).map(|j| Some(format!("{i}-{j}"))));
            }
        }
        let a: Int64Array = (0..n).map(|i| (i % 3 != 0).then_some(i as i64)).collect();
        let b: LargeStringArray = (0..n)
            .map(|i| (i % 4 != 0).then(|| "b".repeat(sizes[i])))
            .collect();
        let s = StructArray::new(
            match schema.field(7).data_type() {
                DataType::Struct(f) => f.clone(),
                _ => unreachable!(),
            },
            vec![Arc::new(a) as ArrayRef, Arc::new(b)],
            Some((0..n).map(|i| i % 7 != 6).collect()),
        );
        let columns: Vec<ArrayRef> = vec![
            Arc::new(ids.finish()),
            Arc::new(names.finish()),
            Arc::new(
                (0..n)
                    .map(|i| (i % 2 == 0).then_some(i as i64))
                    .collect::<Int64Array>(),
            ),
            Arc::new(
                (0..n)
                    .map(|i| (i % 6 != 1).then_some(i % 2 == 0))
                    .collect::<BooleanArray>(),
            ),
            Arc::new(
                (0..n)
                    .map(|i| (i % 9 != 2).then_some(i as f64 / 3.0))
                    .collect::<Float64Array>(),
            ),
            Arc::new(docs.finish()),
            Arc::new(tags.finish()),
            Arc::new(s),
            Arc::new(
                (0..n)
                    .map(|i| (i % 8 != 5).then_some(1_700_000_000_000_000 + i as i64))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone("UTC"),
            ),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn reassemble(messages: &[Vec<u8>], limit: usize) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        for message in messages {
            assert!(message.len() <= limit, "{} > {limit}", message.len());
            let (schema, batches) = decode(message);
            assert_eq!(schema.as_ref(), &cq_schema());
            assert_eq!(batches.len(), 1);
            out.extend(batches);
        }
        out
    }

    #[test]
    fn schema_stream_round_trips_with_metadata() {
        let schema = cq_schema();
        let bytes = encode_schema(&schema).unwrap();
        assert_eq!(
            &bytes[bytes.len() - 8..],
            &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]
        );
        let (decoded, batches) = decode(&bytes);
        assert_eq!(decoded.as_ref(), &schema);
        assert_eq!(decoded.field(0).metadata()["ARROW:extension:name"], "uuid");
        assert_eq!(decoded.metadata()["cq:table_name"], "t1");
        assert!(batches.is_empty());
    }

    #[test]
    fn small_batch_is_one_stream() {
        let batch = cq_batch(&[1, 2, 3]);
        let messages = encode_batch(&batch, 1 << 20).unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(reassemble(&messages, 1 << 20), vec![batch]);
    }

    #[test]
    fn empty_batch_is_one_stream() {
        let batch = cq_batch(&[]);
        let messages = encode_batch(&batch, 1 << 20).unwrap();
        assert_eq!(messages.len(), 1);
        let batches = reassemble(&messages, 1 << 20);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].num_rows(), 0);
        assert!(matches!(
            encode_batch(&batch, 10),
            Err(CoreError::InvalidArgument(_))
        ));
    }

    #[test]
    fn zero_limit_is_invalid() {
        let err = encode_batch(&cq_batch(&[1]), 0).unwrap_err();
        assert!(matches!(err, CoreError::InvalidArgument(_)));
    }

    #[test]
    fn splits_under_the_limit_in_order() {
        let sizes: Vec<usize> = (0..2000).map(|i| (i * 37) % 300).collect();
        let batch = cq_batch(&sizes);
        let whole = encode_batch(&batch, usize::MAX).unwrap();
        let limit = whole[0].len() / 10;
        let messages = encode_batch(&batch, limit).unwrap();
        assert!(messages.len() >= 10, "{}", messages.len());
        let parts = reassemble(&messages, limit);
        let total: usize = parts.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(total, batch.num_rows());
        let mut offset = 0;
        for part in &parts {
            assert_eq!(part, &batch.slice(offset, part.num_rows()));
            offset += part.num_rows();
        }
    }

    #[test]
    fn a_single_huge_row_is_reported() {
        let mut sizes = vec![10; 50];
        sizes[37] = 100_000;
        let batch = cq_batch(&sizes);
        match encode_batch(&batch, 50_000) {
            Err(CoreError::MessageTooLarge { row, bytes, limit }) => {
                assert_eq!(row, 37);
                assert!(bytes > 100_000, "{bytes}");
                assert_eq!(limit, 50_000);
            }
            other => panic!("expected MessageTooLarge, got {other:?}"),
        }
    }

    /// Every column type we emit must encode only its slice, or splitting would not shrink
    /// messages.
    #[test]
    fn slices_encode_only_their_rows() {
        let sizes = vec![50; 5000];
        let batch = cq_batch(&sizes);
        for (i, field) in batch.schema().fields().iter().enumerate() {
            let single = batch.project(&[i]).unwrap();
            let empty = encode_stream(&single.slice(0, 0), 0).unwrap().len();
            let full = encode_stream(&single, 0).unwrap().len() - empty;
            for offset in [0, 1, 333, 4998] {
                let sliced = encode_stream(&single.slice(offset, 2), 0).unwrap().len() - empty;
                assert!(
                    sliced * 4 < full,
                    "column {} ({}): slice at {offset} adds {sliced} bytes, the whole column {full}",
                    field.name(),
                    field.data_type()
                );
            }
        }
        // Nested children and null bitmaps at odd offsets decode to exactly the slice.
        let sliced = batch.slice(333, 7);
        let (_, decoded) = decode(&encode_stream(&sliced, 0).unwrap());
        assert_eq!(decoded, vec![sliced]);
    }

    #[test]
    fn fixed_size_binary_and_list_slices_shrink() {
        let mut fsb = FixedSizeBinaryBuilder::new(64);
        let mut list = ListBuilder::new(Int64Builder::new());
        for i in 0..1000 {
            fsb.append_value([i as u8; 64]).unwrap();
            list.append_value((0..50).map(|j| Some(i * j)));
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("f", DataType::FixedSizeBinary(64), false),
            Field::new("l", list.finish_cloned().data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(fsb.finish()), Arc::new(list.finish())],
        )
        .unwrap();
        let full = encode_stream(&batch, 0).unwrap().len();
        let sliced = encode_stream(&batch.slice(500, 10), 0).unwrap().len();
        assert!(sliced * 50 < full, "{sliced} vs {full}");
        let (_, decoded) = decode(&encode_stream(&batch.slice(500, 10), 0).unwrap());
        assert_eq!(decoded, vec![batch.slice(500, 10)]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn random_batches_split_under_the_limit(
            sizes in prop::collection::vec(0usize..400, 0..300),
            limit in 3_000usize..60_000,
        ) {
            let batch = cq_batch(&sizes);
            match encode_batch(&batch, limit) {
                Ok(messages) => {
                    let parts = reassemble(&messages, limit);
                    let mut offset = 0;
                    for part in &parts {
                        prop_assert_eq!(part, &batch.slice(offset, part.num_rows()));
                        offset += part.num_rows();
                    }
                    prop_assert_eq!(offset, batch.num_rows());
                }
                Err(CoreError::MessageTooLarge { row, bytes, limit: l }) => {
                    prop_assert_eq!(l, limit);
                    prop_assert!(bytes > limit);
                    let alone = encode_stream(&batch.slice(row, 1), 0).unwrap();
                    prop_assert_eq!(alone.len(), bytes);
                }
                Err(CoreError::InvalidArgument(_)) => prop_assert_eq!(batch.num_rows(), 0),
                Err(other) => prop_assert!(false, "unexpected error {}", other),
            }
        }
    }
}
