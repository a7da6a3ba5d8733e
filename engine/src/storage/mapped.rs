//! Local files mapped into memory, as shared bytes: the project's one use of `unsafe`.

use std::fs::File;

use bytes::Bytes;

/// The whole of `file` mapped read-only into memory. Slices of the result share the
/// mapping, which is unmapped when the last of them is dropped. Pages come from the page
/// cache: reading them copies nothing and allocates nothing.
#[allow(unsafe_code)]
pub fn map_file(file: &File) -> std::io::Result<Bytes> {
    // SAFETY: the mapping is read-only and private to this process. What `memmap2` cannot
    // rule out is another process changing the file under it: input files must not change
    // while a job reads them (as with every engine), and a file cut short would fault on
    // access rather than yield stale bytes.
    let map = unsafe { memmap2::MmapOptions::new().map(file) }?;
    Ok(Bytes::from_owner(map))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn maps_a_file_and_slices_share_it() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let content: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        file.write_all(&content).unwrap();
        let bytes = map_file(file.as_file()).unwrap();
        let slice = bytes.slice(4096..4200);
        drop(bytes);
        assert_eq!(&slice[..], &content[4096..4200]);
        assert!(map_file(tempfile::tempfile().as_ref().unwrap()).unwrap().is_empty());
    }
}
