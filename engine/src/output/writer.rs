//! [`PartWriter`]: writes one reduce attempt's Parquet part file through `object_store`
//! (a streaming multipart upload on object stores).

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tokio::runtime::Handle;

use super::PartFile;
use crate::error::{Error, Result};
use crate::ids::PartitionId;
use crate::storage::Location;

/// Writes one part file. Called from CPU threads: encoding runs on the caller, uploads on
/// the runtime behind `io`.
pub struct PartWriter {
    writer: AsyncArrowWriter<BufWriter>,
    io: Handle,
    location: Location,
    partition: PartitionId,
    rows: u64,
}

impl PartWriter {
    /// Starts the part file of `partition` at `location`.
    pub fn create(
        io: &Handle,
        location: Location,
        schema: SchemaRef,
        partition: PartitionId,
    ) -> Result<Self> {
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let object = BufWriter::new(location.store().clone(), location.path().clone());
        let writer = AsyncArrowWriter::try_new(object, schema, Some(props))
            .map_err(|e| Error::Write { path: location.display(), source: Box::new(e) })?;
        Ok(PartWriter { writer, io: io.clone(), location, partition, rows: 0 })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        self.io
            .block_on(self.writer.write(batch))
            .map_err(|e| Error::Write { path: self.location.display(), source: Box::new(e) })
    }

    /// Finishes the file (footer, last upload part) and reports what was written.
    pub fn close(self) -> Result<PartFile> {
        let PartWriter { writer, io, location, partition, rows } = self;
        let bytes = writer.bytes_written() as u64;
        io.block_on(writer.close())
            .map_err(|e| Error::Write { path: location.display(), source: Box::new(e) })?;
        let name = location.path().filename().unwrap_or_default().to_owned();
        let bytes = io.block_on(location.store().head(location.path())).map(|m| m.size).unwrap_or(bytes);
        Ok(PartFile { partition, name, rows, bytes })
    }
}
