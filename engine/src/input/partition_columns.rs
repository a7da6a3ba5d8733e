//! Hive partition columns of input files: a file below `k=v/` directories (of the listed
//! input directory, as `--partition-by` writes them) gets a column per directory, its value
//! the unescaped `v` (null for `__HIVE_DEFAULT_PARTITION__`), read as `Utf8` or cast to the
//! type the job asks for. A job naming the columns it reads gets those it names, where it
//! names them; a job reading every column gets them all, after the file's own.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, FieldRef, Schema};

use crate::error::{Error, Result};
use crate::input::InputSpec;
use crate::storage::InputFile;

/// The partition columns a file's batches get, and where.
#[derive(Debug)]
pub struct PartitionColumns {
    /// The file, for messages.
    path: String,
    /// Position in the batches handed on (`None`: after the file's columns), field, value.
    columns: Vec<(Option<usize>, FieldRef, Option<String>)>,
}

/// The partition columns of `file` that `spec` reads, and the spec to read the file itself
/// with (without them); `None` when the file's rows get no column from its path.
pub fn plan(file: &InputFile, spec: &InputSpec) -> (Option<Arc<PartitionColumns>>, InputSpec) {
    if file.partitions.is_empty() {
        return (None, spec.clone());
    }
    let value_of = |name: &str| file.partitions.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let path = file.display();
    let Some(wanted) = &spec.parquet_columns else {
        let columns = file
            .partitions
            .iter()
            .map(|(name, value)| (None, Arc::new(Field::new(name, DataType::Utf8, true)), value.clone()))
            .collect();
        return (Some(Arc::new(PartitionColumns { path, columns })), spec.clone());
    };
    let mut columns = Vec::new();
    let mut in_file = Vec::new();
    for (position, column) in wanted.iter().enumerate() {
        match value_of(&column.name) {
            Some(value) => {
                let data_type = column.data_type.clone().unwrap_or(DataType::Utf8);
                columns.push((Some(position), Arc::new(Field::new(&column.name, data_type, true)), value));
            }
            None => in_file.push(column.clone()),
        }
    }
    if columns.is_empty() {
        return (None, spec.clone());
    }
    let mut file_spec = spec.clone();
    file_spec.parquet_columns = Some(in_file);
    (Some(Arc::new(PartitionColumns { path, columns })), file_spec)
}

impl PartitionColumns {
    /// `batch` (of the file's columns) with the partition columns added.
    pub fn add_to(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        let schema = batch.schema();
        let mut fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
        let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
        for (position, field, value) in &self.columns {
            if position.is_none() && schema.field_with_name(field.name()).is_ok() {
                continue; // The file has a column of that name: its own wins.
            }
            let text: ArrayRef = Arc::new(StringArray::from(vec![value.as_deref(); rows]));
            let array = if field.data_type() == &DataType::Utf8 {
                text
            } else {
                // Not `safe`: a value that is not of the type fails rather than reads as null.
                let options = CastOptions { safe: false, ..Default::default() };
                cast_with_options(&text, field.data_type(), &options).map_err(|e| Error::ColumnType {
                    path: self.path.clone(),
                    column: field.name().clone(),
                    found: format!("partition value {value:?} ({e})"),
                    expected: field.data_type().to_string(),
                })?
            };
            let at = position.unwrap_or(arrays.len()).min(arrays.len());
            fields.insert(at, field.clone());
            arrays.insert(at, array);
        }
        let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(schema, arrays, &options)
            .map_err(Error::arrow("adding partition columns"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Location;

    fn file(partitions: &[(&str, Option<&str>)]) -> InputFile {
        let mut file = InputFile::new(Location::parse("/data/k=a/part-0.parquet").unwrap(), 1);
        file.partitions = partitions.iter().map(|(k, v)| (k.to_string(), v.map(String::from))).collect();
        file
    }

    fn batch() -> RecordBatch {
        let v: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![1, 2]));
        RecordBatch::try_from_iter([("v", v)]).unwrap()
    }

    #[test]
    fn named_partition_columns_go_where_the_job_reads_them_typed() {
        let spec =
            InputSpec::text_lines().with_parquet_columns([("n", DataType::Int64), ("v", DataType::Int64)]);
        let (columns, file_spec) = plan(&file(&[("k", Some("a")), ("n", Some("7"))]), &spec);
        let names: Vec<String> = file_spec.parquet_columns.unwrap().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["v"], "the file is read without them");
        let out = columns.unwrap().add_to(batch()).unwrap();
        assert_eq!(out.schema().field(0).name(), "n");
        assert_eq!(
            out.column(0).as_ref(),
            &arrow::array::Int64Array::from(vec![7, 7]) as &dyn arrow::array::Array
        );
        assert_eq!(out.num_columns(), 2, "k is not read");
    }

    #[test]
    fn every_column_gets_every_partition_a_null_and_a_bad_value_is_named() {
        let (columns, _) = plan(&file(&[("k", Some("a/b")), ("z", None)]), &InputSpec::text_lines());
        let out = columns.unwrap().add_to(batch()).unwrap();
        let names: Vec<String> = out.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["v", "k", "z"]);
        assert_eq!(
            out.column(1).as_ref(),
            &StringArray::from(vec!["a/b", "a/b"]) as &dyn arrow::array::Array
        );
        assert_eq!(out.column(2).null_count(), 2);

        let spec = InputSpec::text_lines().with_parquet_columns([("k", DataType::Int64)]);
        let (columns, _) = plan(&file(&[("k", Some("x"))]), &spec);
        let err = columns.unwrap().add_to(batch()).unwrap_err().to_string();
        assert!(err.contains("/data/k=a/part-0.parquet") && err.contains("`k`"), "{err}");
        assert!(plan(&file(&[]), &spec).0.is_none());
    }
}
