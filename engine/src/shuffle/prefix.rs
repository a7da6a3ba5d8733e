//! Key prefixes: the first bytes of encoded keys as integers, so most key comparisons are
//! one integer comparison instead of a `memcmp` through the row format's offsets.
//!
//! A prefix is the first [`EXACT_KEY_BYTES`] bytes of an encoded key, zero-padded, in the
//! high bytes of a big-endian `u128` (the low 4 bytes are zero, free for a row number).
//! Zero-padding keeps prefix order consistent with key order: a smaller prefix is a
//! smaller key; equal prefixes need the whole keys compared, unless both keys are *exact*:
//! of one length of at most [`EXACT_KEY_BYTES`] (integers, dates), so the prefix is the key.

use std::cmp::Ordering;

use arrow::row::Rows;

/// The longest encoded key a prefix holds whole: 12 bytes of key and a 4-byte row number
/// fill a `u128` (an `Int64` key encodes in 9 bytes).
pub(super) const EXACT_KEY_BYTES: usize = 12;

/// The prefix of one encoded key (low 32 bits zero).
pub(super) fn key_prefix(bytes: &[u8]) -> u128 {
    let mut buf = [0u8; 16];
    let n = bytes.len().min(EXACT_KEY_BYTES);
    buf[..n].copy_from_slice(&bytes[..n]);
    u128::from_be_bytes(buf)
}

/// The prefixes of a batch of keys.
pub(super) struct Prefixes {
    pub(super) prefixes: Vec<u128>,
    /// `Some(len)` when every key is exact with this length.
    pub(super) exact_len: Option<usize>,
}

impl Prefixes {
    /// The prefixes of every key in `rows`.
    pub(super) fn of(rows: &Rows) -> Self {
        let first_len = rows.iter().next().map_or(0, |r| r.data().len());
        let mut same_len = first_len <= EXACT_KEY_BYTES;
        let prefixes = rows
            .iter()
            .map(|row| {
                same_len &= row.data().len() == first_len;
                key_prefix(row.data())
            })
            .collect();
        Prefixes { prefixes, exact_len: same_len.then_some(first_len) }
    }

    /// Compares key `i` of `self` (rows `rows`) with key `j` of `other` (rows `other_rows`).
    pub(super) fn compare(
        &self,
        rows: &Rows,
        i: usize,
        other: &Prefixes,
        other_rows: &Rows,
        j: usize,
    ) -> Ordering {
        self.prefixes[i].cmp(&other.prefixes[j]).then_with(|| {
            if self.exact_len.is_some() && self.exact_len == other.exact_len {
                Ordering::Equal
            } else {
                rows.row(i).cmp(&other_rows.row(j))
            }
        })
    }
}
