//! The benchmark's 100-byte binary records, their generator and valsort's checksum.
//!
//! Record number `N` (a 128-bit integer) takes its random value `r = x(N + 1)` from the
//! generator of [`rand128`](super::rand128). Two binary layouts exist:
//!
//! [`Layout::Teragen`] (Hadoop's `TeraGen`/`GenSort.generateRecord`, gensort 1.0-1.2 binary
//! mode):
//!
//! | bytes    | content                                                             |
//! |----------|---------------------------------------------------------------------|
//! | 0..10    | the key: the 10 high bytes of `r`, most significant first            |
//! | 10..12   | break: `00 11`                                                      |
//! | 12..44   | `N` as 32 uppercase ASCII hex digits, most significant first         |
//! | 44..48   | break: `88 99 AA BB`                                                |
//! | 48..96   | filler: the 12 hex digits (uppercase ASCII) of `r`'s low 48 bits, most significant first, each repeated 4 times |
//! | 96..100  | break: `CC DD EE FF`                                                |
//!
//! [`Layout::Gensort`] (gensort 1.3, 1.4 and 1.5 binary mode, their default): all 100 bytes
//! are pseudo-random. Bytes `10i..10i+10` (`i` in `0..10`) are the 10 high bytes of
//! `x(N + 1 + i) XOR MASKS[i]`, so the key is the same as in the TeraGen layout.

use super::rand128::Lcg128;

/// Bytes in a record.
pub const RECORD_LEN: usize = 100;
/// Bytes in a key: the record's first bytes, compared as unsigned bytes.
pub const KEY_LEN: usize = 10;

/// A record's key.
pub type Key = [u8; KEY_LEN];

/// The key of `record` (its first [`KEY_LEN`] bytes).
#[inline]
pub fn key_of(record: &[u8]) -> Key {
    record[..KEY_LEN].try_into().expect("a record is longer than its key")
}

/// Which binary layout to generate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// Hadoop TeraGen's records (gensort 1.0-1.2 binary mode): key, break bytes, the
    /// record number in hex, filler from the random value, break bytes.
    #[default]
    Teragen,
    /// gensort 1.3-1.5 binary mode: 100 pseudo-random bytes from 10 consecutive random
    /// values.
    Gensort,
}

impl Layout {
    /// The name used on the command line and in `_SUCCESS`.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Teragen => "teragen",
            Layout::Gensort => "gensort",
        }
    }
}

/// The XOR masks of the ten 10-byte parts of a [`Layout::Gensort`] record (gensort 1.3+
/// `gen_rec`), aligned to the high 80 bits of a 128-bit value.
pub const MASKS: [u128; 10] = [
    0,
    0xF0E8_E4E2_E1D8_D4D2_D1CC_u128 << 48,
    0xCAC9_C6C5_C3B8_B4B2_B1AC_u128 << 48,
    0xAAA9_A6A5_A39C_9A99_9695_u128 << 48,
    0x938E_8D8B_8778_7472_716C_u128 << 48,
    0x6A69_6665_635C_5A59_5655_u128 << 48,
    0x534E_4D4B_473C_3A39_3635_u128 << 48,
    0x332E_2D2B_271E_1D1B_170F_u128 << 48,
    0xC8C4_C2C1_9894_9291_8CE0_u128 << 48,
    0x170F_332E_2D2B_271E_1D1B_u128 << 48,
];

/// gensort's `HEX_DIGIT`: uppercase ASCII.
const HEX_DIGITS: &[u8; 16] = b"0123456789ABCDEF";

/// The two hex digits of every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = hex_pairs();

const fn hex_pairs() -> [[u8; 2]; 256] {
    let mut table = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = [HEX_DIGITS[b >> 4], HEX_DIGITS[b & 0xF]];
        b += 1;
    }
    table
}

/// Writes record `number` of the [`Layout::Teragen`] layout, whose random value is `rand`.
#[inline]
pub fn teragen_record(record: &mut [u8; RECORD_LEN], rand: u128, number: u128) {
    record[..10].copy_from_slice(&rand.to_be_bytes()[..10]);
    record[10..12].copy_from_slice(&[0x00, 0x11]);
    for (i, byte) in number.to_be_bytes().into_iter().enumerate() {
        record[12 + 2 * i..14 + 2 * i].copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    record[44..48].copy_from_slice(&[0x88, 0x99, 0xAA, 0xBB]);
    let low = rand as u64;
    for i in 0..12 {
        let digit = HEX_DIGITS[((low >> (44 - 4 * i)) & 0xF) as usize];
        record[48 + 4 * i..52 + 4 * i].fill(digit);
    }
    record[96..100].copy_from_slice(&[0xCC, 0xDD, 0xEE, 0xFF]);
}

/// Writes a [`Layout::Gensort`] record from its ten random values `x(N + 1) ..= x(N + 10)`,
/// given as `rands[(head + i) % 10]` for `i` in `0..10` (a ring buffer).
#[inline]
pub fn gensort_record(record: &mut [u8; RECORD_LEN], rands: &[u128; 10], head: usize) {
    for (i, mask) in MASKS.iter().enumerate() {
        let slot = if head + i >= 10 { head + i - 10 } else { head + i };
        record[10 * i..10 * i + 10].copy_from_slice(&(rands[slot] ^ mask).to_be_bytes()[..10]);
    }
}

/// Generates consecutive records from any record number on, without allocating.
#[derive(Clone, Debug)]
pub struct RecordGenerator {
    layout: Layout,
    number: u128,
    lcg: Lcg128,
    /// [`Layout::Gensort`] only: the next ten random values, a ring starting at `head`.
    ring: [u128; 10],
    head: usize,
}

impl RecordGenerator {
    /// A generator whose first record is record number `first`.
    pub fn new(layout: Layout, first: u128) -> Self {
        let mut lcg = Lcg128::at(first);
        let mut ring = [0u128; 10];
        if layout == Layout::Gensort {
            for slot in &mut ring {
                *slot = lcg.next_value();
            }
        }
        RecordGenerator { layout, number: first, lcg, ring, head: 0 }
    }

    /// The number of the record the next call writes first.
    pub fn next_number(&self) -> u128 {
        self.number
    }

    /// Fills `out`, a whole number of records, with the next records.
    pub fn fill(&mut self, out: &mut [u8]) {
        assert_eq!(out.len() % RECORD_LEN, 0, "fill takes whole records");
        let records = out.chunks_exact_mut(RECORD_LEN).map(|r| <&mut [u8; RECORD_LEN]>::try_from(r).unwrap());
        match self.layout {
            Layout::Teragen => {
                for record in records {
                    teragen_record(record, self.lcg.next_value(), self.number);
                    self.number = self.number.wrapping_add(1);
                }
            }
            Layout::Gensort => {
                for record in records {
                    gensort_record(record, &self.ring, self.head);
                    self.ring[self.head] = self.lcg.next_value();
                    self.head = if self.head == 9 { 0 } else { self.head + 1 };
                    self.number = self.number.wrapping_add(1);
                }
            }
        }
    }
}

/// Records `first .. first + count` in one buffer, generated sequentially.
pub fn generate(layout: Layout, first: u128, count: usize) -> Vec<u8> {
    let mut out = vec![0u8; count * RECORD_LEN];
    RecordGenerator::new(layout, first).fill(&mut out);
    out
}

/// valsort's (and TeraValidate's) checksum: the 128-bit sum, wrapping, of the CRC-32 of
/// every record. Independent of record order, so a correct sort preserves it.
///
/// `Display` gives 32 lowercase hex digits; valsort prints the same number without
/// leading zeros ([`Checksum::valsort_hex`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Checksum(pub u128);

impl Checksum {
    /// Adds the CRC-32 of one record.
    #[inline]
    pub fn add_record(&mut self, record: &[u8]) {
        self.0 = self.0.wrapping_add(u128::from(crc32fast::hash(record)));
    }

    /// Adds every record of `records`, a whole number of records.
    pub fn add_records(&mut self, records: &[u8]) {
        for record in records.chunks_exact(RECORD_LEN) {
            self.add_record(record);
        }
    }

    /// The checksum of `records`, a whole number of records.
    pub fn of(records: &[u8]) -> Self {
        let mut sum = Checksum::default();
        sum.add_records(records);
        sum
    }

    /// The sum of two checksums (of disjoint sets of records).
    pub fn combine(self, other: Checksum) -> Checksum {
        Checksum(self.0.wrapping_add(other.0))
    }

    /// The checksum as valsort and `gensort -c` print it: lowercase hex, no leading zeros.
    pub fn valsort_hex(&self) -> String {
        format!("{:x}", self.0)
    }
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::rand128::skip_ahead;
    use super::*;

    #[test]
    fn teragen_fields_sit_where_the_layout_says() {
        let number = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210_u128;
        let rand = 0x1122_3344_5566_7788_99aa_bbcc_ddee_ff00_u128;
        let mut record = [0u8; RECORD_LEN];
        teragen_record(&mut record, rand, number);
        assert_eq!(&record[..10], &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa]);
        assert_eq!(&record[10..12], &[0x00, 0x11]);
        assert_eq!(&record[12..44], b"0123456789ABCDEFFEDCBA9876543210");
        assert_eq!(&record[44..48], &[0x88, 0x99, 0xAA, 0xBB]);
        // low 48 bits: 0xbbccddeeff00
        assert_eq!(&record[48..96], b"BBBBBBBBCCCCCCCCDDDDDDDDEEEEEEEEFFFFFFFF00000000");
        assert_eq!(&record[96..], &[0xCC, 0xDD, 0xEE, 0xFF]);
    }

    #[test]
    fn record_zero_starts_with_jim_grays_name() {
        // x(1) = the increment, "JimGrayRIP      \x01" in ASCII.
        let record = generate(Layout::Teragen, 0, 1);
        assert_eq!(&record[..10], b"JimGrayRIP");
        assert_eq!(&record[12..44], b"00000000000000000000000000000000");
        // low 48 bits of 0x...2020_2020_2001: "202020202001"
        assert_eq!(&record[48..96], b"222200002222000022220000222200002222000000001111");
        let record = generate(Layout::Gensort, 0, 1);
        assert_eq!(&record[..10], b"JimGrayRIP");
    }

    #[test]
    fn gensort_parts_are_masked_consecutive_values() {
        let first = 1_000_000_007_u128;
        let records = generate(Layout::Gensort, first, 3);
        for (k, record) in records.chunks_exact(RECORD_LEN).enumerate() {
            for i in 0..10 {
                let value = skip_ahead(first + k as u128 + 1 + i as u128) ^ MASKS[i];
                assert_eq!(&record[10 * i..10 * i + 10], &value.to_be_bytes()[..10], "record {k} part {i}");
            }
        }
        // The masks' published bytes, e.g. part 1 (gensort's F0E8E4E2E1D8D4D2 / D1CC...).
        assert_eq!(
            &MASKS[1].to_be_bytes()[..10],
            &[0xF0, 0xE8, 0xE4, 0xE2, 0xE1, 0xD8, 0xD4, 0xD2, 0xD1, 0xCC]
        );
        assert!(MASKS.iter().all(|m| m & ((1 << 48) - 1) == 0));
    }

    #[test]
    fn generation_resumes_anywhere() {
        for layout in [Layout::Teragen, Layout::Gensort] {
            let all = generate(layout, 500, 300);
            let mut generator = RecordGenerator::new(layout, 500);
            let mut piecewise = vec![0u8; 300 * RECORD_LEN];
            let (a, b) = piecewise.split_at_mut(7 * RECORD_LEN);
            generator.fill(a);
            assert_eq!(generator.next_number(), 507);
            generator.fill(b);
            assert_eq!(piecewise, all);
            assert_eq!(generate(layout, 650, 150), all[150 * RECORD_LEN..]);
        }
    }

    #[test]
    fn crc32_and_checksum_rendering() {
        // The CRC-32 check value.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        let mut sum = Checksum(u128::MAX);
        sum.add_record(b"123456789");
        assert_eq!(sum, Checksum(0xCBF4_3925));
        assert_eq!(Checksum(0xabc).to_string(), format!("{}abc", "0".repeat(29)));
        assert_eq!(Checksum(0xabc).valsort_hex(), "abc");
    }
}
