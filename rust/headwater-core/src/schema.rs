//! CloudQuery's conventions on Arrow schemas: metadata keys, the internal `_cq_` columns and the
//! extension types (`uuid`, `json`, `inet`, `mac`) recognised from field metadata.

use arrow_schema::{DataType, Field, Schema};

/// Schema metadata key holding the table name.
pub const TABLE_NAME: &str = "cq:table_name";
/// Schema metadata key holding the table title.
pub const TABLE_TITLE: &str = "cq:table_title";
/// Schema metadata key holding the table description.
pub const TABLE_DESCRIPTION: &str = "cq:table_description";
/// Schema metadata key holding the parent table name (empty for top-level tables).
pub const TABLE_DEPENDS_ON: &str = "cq:table_depends_on";
/// Field metadata key: the column is part of the primary key.
pub const PRIMARY_KEY: &str = "cq:extension:primary_key";
/// Field metadata key: the column is unique.
pub const UNIQUE: &str = "cq:extension:unique";
/// Field metadata key: the column is an incremental key.
pub const INCREMENTAL: &str = "cq:extension:incremental";
/// Arrow's field metadata key naming an extension type.
pub const EXTENSION_NAME: &str = "ARROW:extension:name";
/// Arrow's field metadata key holding an extension type's serialised parameters.
pub const EXTENSION_METADATA: &str = "ARROW:extension:metadata";
/// Name of the internal row id column.
pub const CQ_ID: &str = "_cq_id";
/// Name of the internal parent row id column.
pub const CQ_PARENT_ID: &str = "_cq_parent_id";

/// The CloudQuery extension types, stored as plain Arrow arrays plus field metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extension {
    /// `uuid` on `fixed_size_binary(16)`.
    Uuid,
    /// `json` on `binary`: UTF-8 JSON text.
    Json,
    /// `inet` on `binary`: the address with its prefix length, e.g. `192.0.2.1/24`.
    Inet,
    /// `mac` on `binary`: the raw hardware address bytes.
    Mac,
}

impl Extension {
    /// The `ARROW:extension:name` value.
    pub fn name(self) -> &'static str {
        match self {
            Extension::Uuid => "uuid",
            Extension::Json => "json",
            Extension::Inet => "inet",
            Extension::Mac => "mac",
        }
    }

    /// The `ARROW:extension:metadata` value CloudQuery writes.
    pub fn serialized(self) -> &'static str {
        match self {
            Extension::Uuid => "uuid-serialized",
            Extension::Json => "json-serialized",
            Extension::Inet => "inet-serialized",
            Extension::Mac => "mac-serialized",
        }
    }

    /// The storage type CloudQuery uses.
    pub fn storage_type(self) -> DataType {
        match self {
            Extension::Uuid => DataType::FixedSizeBinary(16),
            Extension::Json | Extension::Inet | Extension::Mac => DataType::Binary,
        }
    }

    /// The extension a field carries, if it is one of CloudQuery's.
    pub fn of_field(field: &Field) -> Option<Extension> {
        match field.metadata().get(EXTENSION_NAME).map(String::as_str) {
            Some("uuid") => Some(Extension::Uuid),
            Some("json") => Some(Extension::Json),
            Some("inet") => Some(Extension::Inet),
            Some("mac") => Some(Extension::Mac),
            _ => None,
        }
    }
}

/// Whether a boolean-valued metadata entry of `field` is `"true"`.
pub fn flag(field: &Field, key: &str) -> bool {
    field.metadata().get(key).is_some_and(|v| v == "true")
}

/// The table name recorded in the schema metadata, or `""` when absent.
pub fn table_name(schema: &Schema) -> &str {
    schema
        .metadata()
        .get(TABLE_NAME)
        .map(String::as_str)
        .unwrap_or("")
}

/// Names of the primary-key columns used for `_cq_id`: fields marked primary key, excluding
/// `_cq_id` itself (the Go SDK marks `_cq_id` as the key of tables that have none).
pub fn cq_id_key_columns(schema: &Schema) -> Vec<&str> {
    schema
        .fields()
        .iter()
        .filter(|f| f.name() != CQ_ID && flag(f, PRIMARY_KEY))
        .map(|f| f.name().as_str())
        .collect()
}

/// The type of `field` as a pyarrow user knows it: `int64`, `string`, `timestamp[us, tz=UTC]`,
/// `list<string>`, or the extension name (`uuid`, `json`, `inet`, `mac`).
pub fn type_label(field: &Field) -> String {
    if let Some(extension) = Extension::of_field(field) {
        return extension.name().to_string();
    }
    data_type_label(field.data_type())
}

/// The pyarrow name of an Arrow type (see [`type_label`]).
pub fn data_type_label(data_type: &DataType) -> String {
    let unit = |u: &arrow_schema::TimeUnit| crate::temporal::unit_name(*u);
    match data_type {
        DataType::Boolean => "bool".into(),
        DataType::Utf8 => "string".into(),
        DataType::LargeUtf8 => "large_string".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::FixedSizeBinary(n) => format!("fixed_size_binary[{n}]"),
        DataType::Timestamp(u, None) => format!("timestamp[{}]", unit(u)),
        DataType::Timestamp(u, Some(tz)) => format!("timestamp[{}, tz={tz}]", unit(u)),
        DataType::Time32(u) => format!("time32[{}]", unit(u)),
        DataType::Time64(u) => format!("time64[{}]", unit(u)),
        DataType::Duration(u) => format!("duration[{}]", unit(u)),
        DataType::Decimal128(p, s) => format!("decimal128({p}, {s})"),
        DataType::List(item) => format!("list<{}>", type_label(item)),
        DataType::LargeList(item) => format!("large_list<{}>", type_label(item)),
        DataType::Struct(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|f| format!("{}: {}", f.name(), type_label(f)))
                .collect();
            format!("struct<{}>", inner.join(", "))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!("map<{}, {}>", type_label(&kv[0]), type_label(&kv[1]))
            }
            other => format!("map<{other}>"),
        },
        DataType::Utf8View => "string_view".into(),
        DataType::BinaryView => "binary_view".into(),
        DataType::Dictionary(key, value) => format!(
            "dictionary<values={}, indices={}>",
            data_type_label(value),
            data_type_label(key)
        ),
        other => other.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn labels_read_like_pyarrow() {
        let ts = Field::new(
            "t",
            DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into())),
            true,
        );
        assert_eq!(type_label(&ts), "timestamp[us, tz=UTC]");
        let list = Field::new(
            "l",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        );
        assert_eq!(type_label(&list), "list<string>");
        assert_eq!(type_label(&Field::new("i", DataType::Int64, true)), "int64");
        let uuid = Field::new("u", DataType::FixedSizeBinary(16), true)
            .with_metadata([(EXTENSION_NAME.to_string(), "uuid".to_string())].into());
        assert_eq!(type_label(&uuid), "uuid");
    }
}
