//! [`WordTable`]: counts byte strings (or keeps a `u64` per string) in an open-addressing
//! hash table built for words.
//!
//! Words of up to 7 bytes (most words of most text) live in a table of 16-byte slots keyed
//! by one `u64` that holds the bytes and the length: a lookup is one multiply, one compare
//! and one cache line. Words of 8 to 16 bytes live inside the slots of a second table, so
//! a lookup still never chases a pointer; longer words go to an arena. This is word
//! count's inner loop, about six times faster than a `HashMap<Box<str>, u64>`.

use std::ops::Range;

/// Longest word stored inline in a slot.
const INLINE: usize = 16;
/// Longest word of the short table: its bytes and its length fit one `u64`.
pub const SHORT: usize = 7;
/// Marks an empty slot (no word has this length).
const EMPTY: u32 = u32::MAX;

/// 32 bytes: two slots per cache line.
#[derive(Clone, Copy)]
struct Slot {
    /// Inline words: the bytes, zero-padded. Long words: `lo` is the arena offset.
    lo: u64,
    hi: u64,
    /// The word's count, or what the user of [`WordTable::value`] keeps there.
    value: u64,
    /// The low half of the word's hash (compared first for long words; kept to grow).
    hash: u32,
    len: u32,
}

const EMPTY_SLOT: Slot = Slot { hash: 0, lo: 0, hi: 0, len: EMPTY, value: 0 };

/// A slot of the short table; `key == 0` marks it empty (no key is 0: lengths start at 1).
#[derive(Clone, Copy, Default)]
struct ShortSlot {
    /// The word's bytes, zero-padded, with its length in the top byte.
    key: u64,
    value: u64,
}

/// A word of 1 to [`SHORT`] bytes as the table looks it up ([`WordTable::prefetch_short`]).
#[derive(Clone, Copy, Debug)]
pub struct ShortKey {
    key: u64,
    hash: u64,
}

/// Counts of distinct byte strings.
pub struct WordTable {
    /// Words of 1 to [`SHORT`] bytes.
    short: Vec<ShortSlot>,
    short_len: usize,
    /// Every other word.
    slots: Vec<Slot>,
    arena: Vec<u8>,
    len: usize,
}

impl Default for WordTable {
    fn default() -> Self {
        WordTable {
            short: vec![ShortSlot::default(); 1024],
            short_len: 0,
            slots: vec![EMPTY_SLOT; 64],
            arena: Vec::new(),
            len: 0,
        }
    }
}

/// The short-table key of a word of 1 to [`SHORT`] bytes whose zero-padded bytes are `lo`.
#[inline(always)]
fn short_key(lo: u64, len: usize) -> u64 {
    debug_assert!((1..=SHORT).contains(&len));
    lo | (len as u64) << 56
}

#[inline(always)]
fn hash_short(key: u64) -> u64 {
    mix(key ^ K0, K1)
}

fn load8(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

fn load4(bytes: &[u8]) -> u64 {
    u64::from(u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")))
}

/// A word of at most 16 bytes as two little-endian words, zero-padded, with overlapping
/// loads instead of a byte copy (a `memcpy` call per word was a fifth of word count's time).
#[inline]
fn inline_parts(word: &[u8]) -> (u64, u64) {
    let n = word.len();
    debug_assert!(n <= INLINE);
    if n >= 8 {
        let hi = if n == 8 { 0 } else { load8(&word[n - 8..]) >> (8 * (16 - n)) };
        (load8(word), hi)
    } else if n >= 4 {
        (load4(word) | (load4(&word[n - 4..]) << (8 * (n - 4))), 0)
    } else if n > 0 {
        let (a, b, c) = (u64::from(word[0]), u64::from(word[n / 2]), u64::from(word[n - 1]));
        (a | (b << (8 * (n / 2))) | (c << (8 * (n - 1))), 0)
    } else {
        (0, 0)
    }
}

fn mix(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;
const K2: u64 = 0xa409_3822_299f_31d0;

/// The hash of a word of at most 16 bytes, from its parts.
#[inline]
fn hash_inline(lo: u64, hi: u64, len: usize) -> u64 {
    mix(lo ^ K0, hi ^ K1 ^ len as u64)
}

/// The hash of a longer word.
fn hash_long(word: &[u8]) -> u64 {
    let mut h = K2 ^ word.len() as u64;
    let mut chunks = word.chunks_exact(INLINE);
    for chunk in &mut chunks {
        h = mix(h ^ load8(chunk) ^ K0, load8(&chunk[8..]) ^ K1);
    }
    let (lo, hi) = inline_parts(chunks.remainder());
    mix(h ^ lo ^ K0, hi ^ K2)
}

impl WordTable {
    /// Distinct words counted.
    pub fn len(&self) -> usize {
        self.short_len + self.len
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds one occurrence of `word`.
    #[inline]
    pub fn add(&mut self, word: &[u8]) {
        *self.value(word) += 1;
    }

    /// The short key of the word of `len` bytes (1 to 7) at the start of `eight`, whose
    /// slot is prefetched: pass it to [`WordTable::add_short`] a few words later, so that
    /// the lookups of several words wait on memory together.
    #[inline(always)]
    pub fn prefetch_short(&self, eight: [u8; 8], len: usize) -> ShortKey {
        debug_assert!((1..=SHORT).contains(&len));
        let key = short_key(u64::from_le_bytes(eight) & (u64::MAX >> (64 - 8 * (len & 7))), len);
        let hash = hash_short(key);
        crate::prefetch::slot(&self.short, hash as usize & (self.short.len() - 1));
        ShortKey { key, hash }
    }

    /// Adds one occurrence of the short word `key` stands for: the same as `add(word)`.
    #[inline(always)]
    pub fn add_short(&mut self, key: ShortKey) {
        *self.short_value_hashed(key.key, key.hash) += 1;
    }

    /// Adds one occurrence of the word `buf[word]`: the same as `add(&buf[word])`, faster
    /// (see [`WordTable::value_in`]).
    #[inline(always)]
    pub fn add_in(&mut self, buf: &[u8], word: Range<usize>) {
        *self.value_in(buf, word) += 1;
    }

    /// The value kept with `word` (its count, for [`WordTable::add`]); 0 for a new word.
    #[inline]
    pub fn value(&mut self, word: &[u8]) -> &mut u64 {
        if (1..=SHORT).contains(&word.len()) {
            let (lo, _) = inline_parts(word);
            self.short_value(short_key(lo, word.len()))
        } else if word.len() <= INLINE {
            let (lo, hi) = inline_parts(word);
            self.value_hashed(word, lo, hi, hash_inline(lo, hi, word.len()))
        } else {
            self.value_hashed(word, 0, 0, hash_long(word))
        }
    }

    /// The value kept with the word `buf[word]`: the same as `value(&buf[word])`, faster for
    /// words with at least 8 (up to 7 bytes long) or 16 bytes of `buf` from their start: their
    /// key is one load and a mask, or their parts are two
    /// loads and masks, and the probe compares them without looking at `buf` again.
    #[inline(always)]
    pub fn value_in(&mut self, buf: &[u8], word: Range<usize>) -> &mut u64 {
        let n = word.len();
        if let (Some(eight), 1..=SHORT) = (buf.get(word.start..).and_then(|rest| rest.first_chunk::<8>()), n)
        {
            let lo = u64::from_le_bytes(*eight) & (u64::MAX >> (64 - 8 * n));
            return self.short_value(short_key(lo, n));
        }
        self.value_in_long(buf, word)
    }

    /// [`WordTable::value_in`] for words that are not short (or near the end of `buf`).
    #[inline(never)]
    fn value_in_long(&mut self, buf: &[u8], word: Range<usize>) -> &mut u64 {
        let n = word.len();
        let window = buf.get(word.start..).and_then(|rest| rest.first_chunk::<INLINE>());
        let (Some(window), 1..=INLINE) = (window, n) else {
            return self.value(&buf[word]);
        };
        let (first, second) = window.split_at(8);
        let lo = load8(first) & (u64::MAX >> (64 - 8 * n.min(8)));
        let hi = if n <= 8 { 0 } else { load8(second) & (u64::MAX >> (128 - 8 * n)) };
        let h = hash_inline(lo, hi, n);
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let slot = &self.slots[i];
            if slot.lo == lo && slot.hi == hi && slot.len as usize == n {
                return &mut self.slots[i].value;
            }
            if slot.len == EMPTY {
                let i = self.insert_at(i, h, &window[..n], lo, hi);
                return &mut self.slots[i].value;
            }
            i = (i + 1) & mask;
        }
    }

    /// The value of the short word with this key.
    #[inline(always)]
    fn short_value(&mut self, key: u64) -> &mut u64 {
        self.short_value_hashed(key, hash_short(key))
    }

    #[inline(always)]
    fn short_value_hashed(&mut self, key: u64, hash: u64) -> &mut u64 {
        let mask = self.short.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let found = self.short[i].key;
            if found == key {
                return &mut self.short[i].value;
            }
            if found == 0 {
                return self.insert_short(i, key);
            }
            i = (i + 1) & mask;
        }
    }

    /// Inserts `key` with value 0 at the empty short slot `i`, growing the table past 3/4 full.
    #[cold]
    #[inline(never)]
    fn insert_short(&mut self, i: usize, key: u64) -> &mut u64 {
        self.short[i].key = key;
        self.short_len += 1;
        if self.short_len * 4 > self.short.len() * 3 {
            let doubled = vec![ShortSlot::default(); self.short.len() * 2];
            let old = std::mem::replace(&mut self.short, doubled);
            for slot in old.into_iter().filter(|s| s.key != 0) {
                let at = self.free_short_slot(slot.key);
                self.short[at] = slot;
            }
        }
        let mask = self.short.len() - 1;
        let mut at = hash_short(key) as usize & mask;
        while self.short[at].key != key {
            at = (at + 1) & mask;
        }
        &mut self.short[at].value
    }

    /// The first empty short slot on `key`'s probe sequence.
    fn free_short_slot(&self, key: u64) -> usize {
        let mask = self.short.len() - 1;
        let mut i = hash_short(key) as usize & mask;
        while self.short[i].key != 0 {
            i = (i + 1) & mask;
        }
        i
    }

    /// The value of `word`, whose inline parts (zero for long words) and hash are given.
    #[inline]
    fn value_hashed(&mut self, word: &[u8], lo: u64, hi: u64, h: u64) -> &mut u64 {
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let slot = &self.slots[i];
            if slot.len == EMPTY {
                break;
            }
            if slot.hash == h as u32 && slot.len as usize == word.len() && self.same(slot, word, lo, hi) {
                return &mut self.slots[i].value;
            }
            i = (i + 1) & mask;
        }
        let i = self.insert_at(i, h, word, lo, hi);
        &mut self.slots[i].value
    }

    fn same(&self, slot: &Slot, word: &[u8], lo: u64, hi: u64) -> bool {
        if word.len() <= INLINE {
            slot.lo == lo && slot.hi == hi
        } else {
            let start = slot.lo as usize;
            &self.arena[start..start + word.len()] == word
        }
    }

    /// Inserts `word` with value 0 at the empty slot `i`; returns its slot, which moves
    /// when the table grows.
    #[cold]
    #[inline(never)]
    fn insert_at(&mut self, i: usize, hash: u64, word: &[u8], lo: u64, hi: u64) -> usize {
        let slot = if word.len() <= INLINE {
            Slot { hash: hash as u32, lo, hi, len: word.len() as u32, value: 0 }
        } else {
            let offset = self.arena.len() as u64;
            self.arena.extend_from_slice(word);
            Slot { hash: hash as u32, lo: offset, hi: 0, len: word.len() as u32, value: 0 }
        };
        self.slots[i] = slot;
        self.len += 1;
        if self.len * 8 <= self.slots.len() * 5 {
            return i;
        }
        self.grow();
        let mask = self.slots.len() - 1;
        let mut j = hash as usize & mask;
        while !(self.slots[j].len == slot.len && self.slots[j].lo == slot.lo && self.slots[j].hi == slot.hi) {
            j = (j + 1) & mask;
        }
        j
    }

    fn grow(&mut self) {
        let doubled = vec![EMPTY_SLOT; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        let mask = self.slots.len() - 1;
        for slot in old.into_iter().filter(|s| s.len != EMPTY) {
            let mut i = slot.hash as usize & mask;
            while self.slots[i].len != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
    }

    /// Calls `f` with each word and its value (count), then empties the table.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8], u64)) {
        for slot in self.short.iter().filter(|s| s.key != 0) {
            let len = (slot.key >> 56) as usize;
            f(&slot.key.to_le_bytes()[..len], slot.value);
        }
        for slot in self.slots.iter().filter(|s| s.len != EMPTY) {
            let len = slot.len as usize;
            if len <= INLINE {
                let mut buf = [0u8; INLINE];
                buf[..8].copy_from_slice(&slot.lo.to_le_bytes());
                buf[8..].copy_from_slice(&slot.hi.to_le_bytes());
                f(&buf[..len], slot.value);
            } else {
                let start = slot.lo as usize;
                f(&self.arena[start..start + len], slot.value);
            }
        }
        *self = WordTable::default();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn inline_parts_equal_a_zero_padded_copy() {
        let bytes = b"abcdefghijklmnopq";
        for n in 0..=16 {
            let mut buf = [0u8; 16];
            buf[..n].copy_from_slice(&bytes[..n]);
            let expect = (
                u64::from_le_bytes(buf[..8].try_into().unwrap()),
                u64::from_le_bytes(buf[8..].try_into().unwrap()),
            );
            assert_eq!(inline_parts(&bytes[..n]), expect, "length {n}");
        }
    }

    #[test]
    fn counts_like_a_btreemap() {
        let mut table = WordTable::default();
        let mut oracle = BTreeMap::new();
        let long = "a-very-long-word-over-sixteen-bytes";
        for i in 0..20_000u32 {
            let word = match i % 7 {
                0 => format!("{long}{}", i % 13),
                1 => String::new(),
                _ => format!("w{}", (i * 7919) % 3001),
            };
            table.add(word.as_bytes());
            *oracle.entry(word.into_bytes()).or_insert(0u64) += 1;
        }
        assert_eq!(table.len(), oracle.len());
        let mut got = BTreeMap::new();
        table.drain(|w, n| {
            got.insert(w.to_vec(), n);
        });
        assert_eq!(got, oracle);
        assert!(table.is_empty());
    }

    #[test]
    fn add_in_counts_like_add() {
        let text = b"a bb ccc dddddddd eeeeeeeee ffffffffffffffff ggggggggggggggggg a bb x\0 x x\0\0";
        let words: Vec<Range<usize>> = {
            let mut ranges = Vec::new();
            let mut start = 0;
            for (i, &b) in text.iter().chain(b" ").enumerate() {
                if b == b' ' {
                    if i > start {
                        ranges.push(start..i);
                    }
                    start = i + 1;
                }
            }
            ranges
        };
        let (mut by_add, mut by_add_in) = (WordTable::default(), WordTable::default());
        for w in &words {
            by_add.add(&text[w.clone()]);
            by_add_in.add_in(text, w.clone());
            by_add_in.add(&text[w.clone()]);
            by_add.add_in(text, w.clone());
        }
        let drain = |table: &mut WordTable| {
            let mut counts = BTreeMap::new();
            table.drain(|w, n| {
                counts.insert(w.to_vec(), n);
            });
            counts
        };
        let expected = drain(&mut by_add);
        assert_eq!(expected.len(), 10);
        assert_eq!(expected[&b"x\0".to_vec()], 2);
        assert_eq!(drain(&mut by_add_in), expected);
    }
}
