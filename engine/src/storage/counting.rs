//! [`CountingStore`]: an [`ObjectStore`] decorator that counts the read requests made
//! through it (GETs and their bytes, HEADs, LISTs), so a job can report how many requests
//! its input cost (the `storage_*` job counters).
//!
//! Every store the engine builds is wrapped; the counts are process-wide
//! ([`request_stats`]), and a job reports the difference between its start and its end.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use crate::job::Counters;

/// Job counter: GET requests (whole objects and byte ranges) sent to object stores.
pub const STORAGE_GET_REQUESTS: &str = "storage_get_requests";
/// Job counter: bytes those GET requests asked for.
pub const STORAGE_GET_BYTES: &str = "storage_get_bytes";
/// Job counter: HEAD requests (object sizes and existence checks).
pub const STORAGE_HEAD_REQUESTS: &str = "storage_head_requests";
/// Job counter: listings started (one per listed prefix; a store may page through it).
pub const STORAGE_LIST_REQUESTS: &str = "storage_list_requests";

static STATS: RequestCounts = RequestCounts::new();

struct RequestCounts {
    gets: AtomicU64,
    get_bytes: AtomicU64,
    heads: AtomicU64,
    lists: AtomicU64,
}

impl RequestCounts {
    const fn new() -> Self {
        RequestCounts {
            gets: AtomicU64::new(0),
            get_bytes: AtomicU64::new(0),
            heads: AtomicU64::new(0),
            lists: AtomicU64::new(0),
        }
    }
}

/// Read requests made through every store of this process so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// GET requests (whole or ranged).
    pub gets: u64,
    /// Bytes the GET requests returned.
    pub get_bytes: u64,
    /// HEAD requests.
    pub heads: u64,
    /// Listings.
    pub lists: u64,
}

impl RequestStats {
    /// The requests made between `earlier` and `self`, added to `counters` under the
    /// `storage_*` names.
    pub fn add_since(&self, earlier: &RequestStats, counters: &mut Counters) {
        counters.add(STORAGE_GET_REQUESTS, self.gets.saturating_sub(earlier.gets));
        counters.add(STORAGE_GET_BYTES, self.get_bytes.saturating_sub(earlier.get_bytes));
        counters.add(STORAGE_HEAD_REQUESTS, self.heads.saturating_sub(earlier.heads));
        counters.add(STORAGE_LIST_REQUESTS, self.lists.saturating_sub(earlier.lists));
    }
}

/// The read requests made through the engine's stores in this process so far.
pub fn request_stats() -> RequestStats {
    RequestStats {
        gets: STATS.gets.load(Ordering::Relaxed),
        get_bytes: STATS.get_bytes.load(Ordering::Relaxed),
        heads: STATS.heads.load(Ordering::Relaxed),
        lists: STATS.lists.load(Ordering::Relaxed),
    }
}

/// Counts the read requests made through `inner`.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    /// Local files: `get_ranges` goes to the store's own implementation (one open file,
    /// no coalescing gaps), counted as one request.
    local: bool,
}

impl CountingStore {
    /// Wraps `inner`; `local` for the local file system.
    pub fn new(inner: Arc<dyn ObjectStore>, local: bool) -> Self {
        CountingStore { inner, local }
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// Counts a read of a local file made without the object store, as a GET of `range`.
pub(crate) fn count_local_read(range: &Range<u64>) {
    count_get(range);
}

/// Appends bytes `range` of a local file to `buf` with plain reads into its spare capacity
/// (`object_store`'s local `get_range` zero-fills a fresh buffer per request), counted as
/// a GET.
pub(crate) fn read_local_range(
    file: &mut std::fs::File,
    range: &Range<u64>,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = range.end - range.start;
    let before = buf.len();
    buf.reserve(len as usize);
    file.seek(SeekFrom::Start(range.start))?;
    file.take(len).read_to_end(buf)?;
    if (buf.len() - before) as u64 != len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file shrank while read"));
    }
    count_local_read(range);
    Ok(())
}

fn count_get(range: &Range<u64>) {
    STATS.gets.fetch_add(1, Ordering::Relaxed);
    STATS.get_bytes.fetch_add(range.end - range.start, Ordering::Relaxed);
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let head = options.head;
        let result = self.inner.get_opts(location, options).await;
        if head {
            STATS.heads.fetch_add(1, Ordering::Relaxed);
        } else {
            match &result {
                Ok(r) => count_get(&r.range),
                Err(_) => count_get(&(0..0)),
            }
        }
        result
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if self.local {
            STATS.gets.fetch_add(1, Ordering::Relaxed);
            let bytes: u64 = ranges.iter().map(|r| r.end - r.start).sum();
            STATS.get_bytes.fetch_add(bytes, Ordering::Relaxed);
            return self.inner.get_ranges(location, ranges).await;
        }
        // What remote stores do by default, through `self` so each request is counted.
        object_store::coalesce_ranges(
            ranges,
            |range| self.get_range(location, range),
            object_store::OBJECT_STORE_COALESCE_DEFAULT,
        )
        .await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        STATS.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        STATS.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        STATS.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn reads_are_counted_and_data_passes_through() {
        let store = CountingStore::new(Arc::new(InMemory::new()), false);
        let path = Path::from("a/b.bin");
        store.put(&path, PutPayload::from(vec![7u8; 4 << 20])).await.unwrap();
        let before = request_stats();
        assert_eq!(store.head(&path).await.unwrap().size, 4 << 20);
        assert_eq!(store.get_range(&path, 10..20).await.unwrap().len(), 10);
        // Two ranges 3 MiB apart are two requests; two adjacent ones coalesce into one.
        let got = store.get_ranges(&path, &[0..5, 5..9, (3 << 20)..(3 << 20) + 4]).await.unwrap();
        assert_eq!(got.iter().map(Bytes::len).collect::<Vec<_>>(), [5, 4, 4]);
        assert_eq!(store.list(None).collect::<Vec<_>>().await.len(), 1);
        let mut counters = Counters::default();
        request_stats().add_since(&before, &mut counters);
        // Other tests may read concurrently: at least ours.
        assert!(counters.get(STORAGE_GET_REQUESTS) >= 3, "{counters:?}");
        assert!(counters.get(STORAGE_GET_BYTES) >= 10 + 9 + 4, "{counters:?}");
        assert!(counters.get(STORAGE_HEAD_REQUESTS) >= 1, "{counters:?}");
        assert!(counters.get(STORAGE_LIST_REQUESTS) >= 1, "{counters:?}");
    }
}
