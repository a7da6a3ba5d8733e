//! `_bad_records/`: the rows of input that failed to parse and were skipped
//! (`--max-bad-records`), written as a Parquet file inside the job's output: columns
//! `file`, `line` (null when not counted), `offset`, `reason` and `text`, in file and
//! offset order. The file is staged like a part file and published by the same commit,
//! and the manifest lists it apart from the part files (readers of the output never read
//! it as data).

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use tokio::runtime::Handle;

use super::{OutputDir, OutputLayout, ParquetOutput, PartFile, PartWriter};
use crate::error::{Error, Result};
use crate::ids::{AttemptId, JobId, PartitionId};
use crate::input::BadRecord;

/// The directory of the output that holds the bad records.
pub const BAD_RECORDS_DIR: &str = "_bad_records";

/// The schema of the bad records file.
pub fn bad_records_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("file", DataType::Utf8, false),
        Field::new("line", DataType::UInt64, true),
        Field::new("offset", DataType::UInt64, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
    ]))
}

/// True for the names of bad records files (`_bad_records/...`) in an output.
pub fn is_bad_records_name(name: &str) -> bool {
    name.strip_prefix(BAD_RECORDS_DIR).is_some_and(|rest| rest.starts_with('/'))
}

/// Writes `rows` as the staged file `_bad_records/part-00000-<job>-a<attempt>.parquet` of
/// `output`, to be committed with the part files; `None` when there are no rows.
pub fn write_bad_records(
    io: &Handle,
    output: &OutputDir,
    job: &JobId,
    attempt: AttemptId,
    rows: &[BadRecord],
) -> Result<Option<PartFile>> {
    if rows.is_empty() {
        return Ok(None);
    }
    let layout = OutputLayout::parquet(ParquetOutput::default());
    let name = super::part_name(PartitionId(0), job, attempt, &layout);
    let location = output.location().child(BAD_RECORDS_DIR).child(&name);
    let schema = bad_records_schema();
    let mut writer = PartWriter::create(io, location, name.clone(), schema.clone(), PartitionId(0), &layout)?;
    writer.write(&to_batch(&schema, rows)?)?;
    let mut part = writer.close()?;
    part.name = format!("{BAD_RECORDS_DIR}/{name}");
    Ok(Some(part))
}

fn to_batch(schema: &SchemaRef, rows: &[BadRecord]) -> Result<RecordBatch> {
    let strings = |f: fn(&BadRecord) -> &str| Arc::new(StringArray::from_iter_values(rows.iter().map(f)));
    let columns: Vec<arrow::array::ArrayRef> = vec![
        strings(|r| &r.file),
        Arc::new(UInt64Array::from_iter(rows.iter().map(|r| r.line))),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.offset))),
        strings(|r| &r.reason),
        strings(|r| &r.text),
    ];
    RecordBatch::try_new(schema.clone(), columns).map_err(Error::arrow("building the bad records"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Location;

    #[test]
    fn bad_records_are_staged_under_their_directory_until_committed() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let output = OutputDir::new(Location::parse(dir.path().to_str().unwrap()).unwrap());
        let job = JobId::from_string("job-20260101T000000-0001".into());
        let row = BadRecord {
            file: "/a.csv".into(),
            line: Some(3),
            offset: 8,
            reason: "r".into(),
            text: "x".into(),
        };
        assert!(write_bad_records(rt.handle(), &output, &job, AttemptId(0), &[]).unwrap().is_none());
        let part = write_bad_records(rt.handle(), &output, &job, AttemptId(0), &[row]).unwrap().unwrap();
        assert_eq!(part.name, "_bad_records/part-00000-job-20260101T000000-0001-a0.parquet");
        assert!(is_bad_records_name(&part.name) && !is_bad_records_name("_bad_recordsx/a"));
        assert_eq!(part.rows, 1);
        let listed: Vec<_> = std::fs::read_dir(dir.path().join(BAD_RECORDS_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(listed, [crate::storage::staging_name("part-00000-job-20260101T000000-0001-a0.parquet")]);
    }
}
