//! [`ObjectReader`]: Parquet's async file reader over an object store, with the file size
//! from the listing so the footer is read with a bounded range (no suffix requests, which
//! some stores reject).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::Location;

/// Bytes read from the end of a file for its footer in one request (most footers fit).
const FOOTER_PREFETCH: usize = 64 << 10;

/// Reads one Parquet object through `object_store`.
#[derive(Clone, Debug)]
pub struct ObjectReader {
    location: Location,
    size: u64,
}

impl ObjectReader {
    /// A reader of the `size`-byte object at `location`.
    pub fn new(location: Location, size: u64) -> Self {
        ObjectReader { location, size }
    }
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move { self.location.store().get_range(self.location.path(), range).await.map_err(external) }
            .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        // object_store coalesces nearby ranges into fewer requests.
        async move { self.location.store().get_ranges(self.location.path(), &ranges).await.map_err(external) }
            .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(FOOTER_PREFETCH))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
