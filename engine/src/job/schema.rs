//! Schemas a job declares: what it reads and the keyed schema of its map output.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{Error, Result};

/// The keyed schema of map output: the columns, and which of them form the key.
///
/// Key columns route rows to reduce partitions and define the groups a reducer sees.
#[derive(Clone, Debug)]
pub struct KeyedSchema {
    schema: SchemaRef,
    key_names: Vec<String>,
}

impl KeyedSchema {
    /// A schema of non-nullable columns; the key defaults to the first column.
    pub fn new<'a>(columns: impl IntoIterator<Item = (&'a str, DataType)>) -> Self {
        let fields: Vec<Field> = columns.into_iter().map(|(name, ty)| Field::new(name, ty, false)).collect();
        Self::from_schema(Arc::new(Schema::new(fields)))
    }

    /// A keyed schema over an existing Arrow schema; the key defaults to the first column.
    pub fn from_schema(schema: SchemaRef) -> Self {
        let key_names = schema.fields().first().map(|f| f.name().clone()).into_iter().collect();
        KeyedSchema { schema, key_names }
    }

    /// Sets the key columns, by name.
    pub fn key<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        self.key_names = names.into_iter().map(str::to_owned).collect();
        self
    }

    /// The Arrow schema of map output.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The key columns' indices, checked against the schema.
    pub fn key_indices(&self) -> Result<Vec<usize>> {
        if self.key_names.is_empty() {
            return Err(Error::InvalidJob("the map output has no key column".into()));
        }
        self.key_names
            .iter()
            .map(|name| {
                self.schema.index_of(name).map_err(|_| {
                    Error::InvalidJob(format!("key column `{name}` is not in the map output schema"))
                })
            })
            .collect()
    }
}

/// A column a job reads from Parquet input.
#[derive(Clone, Debug, PartialEq)]
pub struct ParquetColumn {
    /// The column's name in the file.
    pub name: String,
    /// The type the mapper expects; `None` takes the file's type. Lossless conversions are
    /// made: between string (or binary) encodings (`Utf8`, `LargeUtf8`, `Utf8View`), from
    /// strings to a dictionary of strings, and between decimal widths of the same precision
    /// and scale (e.g. a file's `Decimal128(15, 2)` read as `Decimal64(15, 2)`). Where the
    /// Parquet decoder can produce the declared type itself, it does (no second pass).
    pub data_type: Option<DataType>,
}

/// What a job's mappers read.
///
/// Text input arrives as batches with one `Utf8` column `line` (terminators removed), or
/// as fixed-size records when [`InputSpec::fixed_records`] says so.
/// Parquet input arrives as batches of the declared columns, in the declared order.
#[derive(Clone, Debug)]
pub struct InputSpec {
    /// Columns read from Parquet files; `None` reads every column.
    pub parquet_columns: Option<Vec<ParquetColumn>>,
    /// Read non-Parquet files as fixed-size binary records instead of text lines.
    pub records: Option<crate::input::RecordFormat>,
}

impl InputSpec {
    /// Lines of text (and every column of Parquet input).
    pub fn text_lines() -> Self {
        InputSpec { parquet_columns: None, records: None }
    }

    /// Fixed-size binary records of `record_len` bytes, arriving as batches of two
    /// `FixedSizeBinary` columns: `key` (the first `key_len` bytes) and `value` (the rest).
    pub fn fixed_records(record_len: usize, key_len: usize) -> Self {
        let format = crate::input::RecordFormat { record_len, key_len: key_len.min(record_len) };
        InputSpec { parquet_columns: None, records: Some(format) }
    }

    /// From Parquet input, read these columns with these types.
    pub fn with_parquet_columns<'a>(
        mut self,
        columns: impl IntoIterator<Item = (&'a str, DataType)>,
    ) -> Self {
        let columns = columns
            .into_iter()
            .map(|(name, ty)| ParquetColumn { name: name.to_owned(), data_type: Some(ty) })
            .collect();
        self.parquet_columns = Some(columns);
        self
    }

    /// The schema of text-input batches.
    pub fn text_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, false)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_resolve_by_name() {
        let s = KeyedSchema::new([("a", DataType::Utf8), ("b", DataType::UInt64)]).key(["b"]);
        assert_eq!(s.key_indices().unwrap(), vec![1]);
        let bad = s.clone().key(["zz"]);
        assert!(bad.key_indices().unwrap_err().to_string().contains("`zz`"));
    }
}
