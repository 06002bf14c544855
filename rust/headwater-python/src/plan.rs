//! A table compiled for conversion: its schema, data fields and the Python names they are
//! read by. Made once per table and shared by `BatchBuilder` and the sync engine.

use arrow_schema::{FieldRef, Schema, SchemaRef};
use headwater_core::builder::{builders_for, ColumnBuilder};
use headwater_core::{ingest, schema, CoreError};
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::context::Known;
use crate::errors::IntoPyResult;
use crate::ffi_read::FastPush;
use crate::rows::Target;
use crate::values::{fast_push_for, Context, FieldNames};

/// One table's conversion plan.
#[derive(Debug)]
pub struct TablePlan {
    /// The CloudQuery schema, `_cq_id` and `_cq_parent_id` included.
    pub schema: SchemaRef,
    /// The table name.
    pub table: String,
    /// The table's own columns, in builder order.
    pub data_fields: Vec<FieldRef>,
    /// Interned Python names of `data_fields`.
    pub names: Vec<Py<PyString>>,
    /// The fast path of each data column (see [`fast_push_for`]).
    pub fast: Vec<FastPush>,
    /// Interned names of struct fields anywhere in the columns.
    pub struct_fields: FieldNames,
    /// Builder indices of the primary-key columns, when there are some and all can be
    /// snapshotted for hashing while rows are read.
    pub pipelined_keys: Option<Vec<usize>>,
    /// Keys and attributes of a row that match no column are a fault (`Table(strict=True)`).
    pub strict: bool,
}

impl TablePlan {
    /// Compiles the plan of a CloudQuery table schema (`Table.arrow_schema`); a `strict` one
    /// refuses rows with keys or attributes that match no column.
    pub fn new(py: Python<'_>, schema: SchemaRef, strict: bool) -> PyResult<Self> {
        let data_fields = ingest::data_fields(&schema);
        let builders = builders_for(&data_fields).into_py_result()?;
        let names = data_fields
            .iter()
            .map(|f| PyString::intern(py, f.name()).unbind())
            .collect();
        Ok(Self {
            fast: builders.iter().map(fast_push_for).collect(),
            table: schema::table_name(&schema).to_string(),
            struct_fields: FieldNames::of(py, &data_fields),
            pipelined_keys: pipelined_keys(&builders),
            schema,
            data_fields,
            names,
            strict,
        })
    }

    /// Fresh, empty column builders.
    pub fn builders(&self) -> PyResult<Vec<ColumnBuilder>> {
        builders_for(&self.data_fields).into_py_result()
    }

    /// What row conversion needs to name this table and its columns.
    pub fn target(&self) -> Target<'_> {
        Target {
            table: &self.table,
            names: &self.names,
            fast: &self.fast,
            strict: self.strict,
        }
    }

    /// For a strict table, refuses Arrow data with columns the table does not have (other
    /// than `_cq_id` and `_cq_parent_id`), which a lenient one ignores.
    pub fn check_arrow_columns(&self, input: &Schema) -> Result<(), CoreError> {
        if !self.strict {
            return Ok(());
        }
        let unknown: Vec<String> = input
            .fields()
            .iter()
            .filter(|f| !ingest::is_internal(f))
            .filter(|f| !self.data_fields.iter().any(|d| d.name() == f.name()))
            .map(|f| format!("'{}'", f.name()))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let columns: Vec<&str> = self.data_fields.iter().map(|f| f.name().as_str()).collect();
        Err(CoreError::Schema(format!(
            "table '{}' is strict, and the Arrow data's column{} {} match{} no column; its \
             columns are {}",
            self.table,
            if unknown.len() == 1 { "" } else { "s" },
            unknown.join(", "),
            if unknown.len() == 1 { "es" } else { "" },
            columns.join(", ")
        )))
    }

    /// The conversion context of this table.
    pub fn context<'a>(&'a self, known: &'a Known) -> Context<'a> {
        Context {
            known,
            names: &self.struct_fields,
        }
    }
}

/// Indices of the builders of primary-key columns, if there are some and all of them can be
/// snapshotted.
fn pipelined_keys(builders: &[ColumnBuilder]) -> Option<Vec<usize>> {
    let keys: Vec<usize> = builders
        .iter()
        .enumerate()
        .filter(|(_, b)| schema::flag(b.field(), schema::PRIMARY_KEY))
        .map(|(i, _)| i)
        .collect();
    let flat = keys.iter().all(|&i| builders[i].snapshot(0, 0).is_some());
    (flat && !keys.is_empty()).then_some(keys)
}
