//! Small files packed into one split, as Hadoop's `CombineFileInputFormat` packs them: a
//! directory of 10,000 files of 4 KiB runs as a few map tasks, not 10,000.
//!
//! Planning cuts every file as before; then consecutive splits that are each a whole file
//! smaller than the split size are packed, in file order, until a pack weighs the split
//! size. A file weighs its bytes plus [`FILE_OPEN_COST`], so a pack of tiny files still
//! holds a bounded number of them. Larger files keep their own splits.

use arrow::array::RecordBatch;
use tokio::runtime::Handle;

use super::bad::BadRecords;
use super::{ReadOptions, Split};
use crate::error::{Error, Result};

/// What opening one more file costs a task, in bytes of reading (a request, a footer):
/// added to each file's size when packing.
pub const FILE_OPEN_COST: u64 = 64 << 10;

/// Whole small files read one after the other by one map task.
#[derive(Clone, Debug)]
pub struct CombinedSplit {
    /// The files' splits, in file order; none of them is combined.
    pub parts: Vec<Split>,
}

/// Packs the whole-file splits of `splits` smaller than `split_size` into combined splits
/// of about `split_size` (each file weighing its bytes plus [`FILE_OPEN_COST`]), keeping
/// the splits' order; a pack of one file stays that file's split.
pub(super) fn pack(splits: Vec<Split>, split_size: u64) -> Vec<Split> {
    let mut packed = Vec::new();
    let mut pack = Pack::default();
    for split in splits {
        if split.is_whole_file() && split.bytes() < split_size {
            pack.add(split);
            if pack.weight >= split_size {
                packed.extend(pack.take());
            }
        } else {
            packed.extend(pack.take());
            packed.push(split);
        }
    }
    packed.extend(pack.take());
    packed
}

/// The small files being packed.
#[derive(Default)]
struct Pack {
    parts: Vec<Split>,
    weight: u64,
}

impl Pack {
    fn add(&mut self, split: Split) {
        self.weight += split.bytes() + FILE_OPEN_COST;
        self.parts.push(split);
    }

    /// The pack as a split, if it holds any file; empties it.
    fn take(&mut self) -> Option<Split> {
        self.weight = 0;
        let mut parts = std::mem::take(&mut self.parts);
        match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Split::Combined(CombinedSplit { parts })),
        }
    }
}

impl CombinedSplit {
    /// The bytes of all the files.
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(Split::bytes).sum()
    }

    /// `3 packed files (12288 bytes): /d/a.txt [bytes 0..4096] … /d/c.txt [bytes 0..4096]`.
    pub fn describe(&self) -> String {
        let (first, last) = match (self.parts.first(), self.parts.last()) {
            (Some(first), Some(last)) => (first.describe(), last.describe()),
            _ => return "no files".to_owned(),
        };
        format!("{} packed files ({} bytes): {first} … {last}", self.parts.len(), self.bytes())
    }

    /// Reads every file in order, as one stream of batches to `sink`, until it returns
    /// `false`; returns the input bytes read. An error of user code names the file it
    /// was reading (the engine's own errors name theirs).
    pub fn read(
        &self,
        io: &Handle,
        options: ReadOptions,
        bad: &BadRecords,
        sink: &mut dyn FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<u64> {
        let mut total = 0;
        let mut wants_more = true;
        for part in &self.parts {
            let mut pass = |batch| {
                wants_more = sink(batch)?;
                Ok(wants_more)
            };
            total += part.read_keeping_bad(io, options, bad, &mut pass).map_err(|e| in_part(part, e))?;
            if !wants_more {
                break;
            }
        }
        Ok(total)
    }
}

/// `error`, from reading `part`, naming the part where it would not name it itself.
fn in_part(part: &Split, error: Error) -> Error {
    match error {
        Error::UserCode { stage, message } => {
            Error::UserCode { stage, message: format!("{message} (reading {})", part.describe()) }
        }
        Error::Internal(message) => Error::Internal(format!("{message} (reading {})", part.describe())),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::TextSplit;
    use super::*;
    use crate::input::TextShape;
    use crate::storage::{InputFile, Location};

    fn text(name: &str, start: u64, end: u64, size: u64) -> Split {
        let location = Location::parse(&format!("/d/{name}")).unwrap();
        let file = Arc::new(InputFile { location, size, partitions: Vec::new() });
        Split::Text(TextSplit { file, start, end, shape: TextShape::Lines, codec: None })
    }

    fn shape(splits: &[Split]) -> Vec<usize> {
        splits
            .iter()
            .map(|s| match s {
                Split::Combined(c) => c.parts.len(),
                _ => 1,
            })
            .collect()
    }

    #[test]
    fn small_whole_files_are_packed_in_order_up_to_the_split_size() {
        let size = 4 * (4096 + FILE_OPEN_COST);
        let splits: Vec<Split> = (0..10).map(|i| text(&format!("f{i}"), 0, 4096, 4096)).collect();
        let packed = pack(splits, size);
        assert_eq!(shape(&packed), [4, 4, 2]);
        let Split::Combined(first) = &packed[0] else { panic!("packed") };
        let names: Vec<String> = first.parts.iter().map(|p| p.file().display()).collect();
        assert_eq!(names, ["/d/f0", "/d/f1", "/d/f2", "/d/f3"]);
        assert_eq!(packed[0].bytes(), 4 * 4096);
        assert!(
            packed[0].describe().starts_with("4 packed files (16384 bytes): /d/f0 [bytes 0..4096] … /d/f3")
        );
    }

    #[test]
    fn large_files_and_parts_of_files_keep_their_splits() {
        let splits = vec![
            text("a", 0, 10, 10),
            text("b", 0, 10, 10),
            text("big", 0, 1000, 1500),
            text("big", 1000, 1500, 1500),
            text("c", 0, 10, 10),
            text("whole-but-large", 0, 1 << 20, 1 << 20),
            text("d", 0, 10, 10),
        ];
        assert_eq!(shape(&pack(splits, 1 << 20)), [2, 1, 1, 1, 1, 1]);
    }
}
