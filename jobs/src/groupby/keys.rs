//! [`KeyTable`]: the mapper's map from group keys to dense group numbers.
//!
//! A batch's key column becomes one group number per row ([`KeyTable::group_ids`]); the
//! aggregates then index their accumulators with those numbers, so a row's key is looked up
//! once whatever the number of aggregates. Groups are numbered in the order they are first
//! seen, and their keys are kept in that order in an Arrow builder, so draining the table
//! is finishing the builder.
//!
//! * Integer keys (any width) are widened to `i64` (`u64` when unsigned) by the cast kernel
//!   and looked up by their 64 bits in a [`GroupTable`], which prefetches ahead.
//! * String keys arrive as `Utf8View`. A view of a string of at most 12 bytes holds the
//!   whole string (length and zero-padded bytes), so such a key *is* its 128-bit view: one
//!   fixed-size lookup in a [`GroupTable`], no string access (db-benchmark's
//!   `id0000012345` keys are 12 bytes). Longer keys go to a `hashbrown` map looked up by
//!   borrowed `&str`: one allocation per group, none per row.
//! * A null key is a group of its own (SQL `GROUP BY` semantics).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, ArrowPrimitiveType, AsArray, MAX_INLINE_VIEW_LEN, PrimitiveBuilder,
    StringBuilder, StringViewArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, UInt64Type};
use gristmill::prelude::JobResult;
use hashbrown::HashMap;

use super::table::GroupTable;

/// Group numbers of keys of one type, and the keys in group order.
pub(super) enum KeyTable {
    /// String keys (read as `Utf8View`, emitted as `Utf8`).
    Strings(StringKeys),
    /// Signed integer keys, widened to `i64`.
    Signed(IntKeys<Int64Type>),
    /// Unsigned integer keys, widened to `u64`.
    Unsigned(IntKeys<UInt64Type>),
}

impl KeyTable {
    /// A table for keys of type `key_type` (as the mapper reads them), drained as
    /// `output_type`.
    pub(super) fn new(key_type: &DataType, output_type: DataType) -> JobResult<Self> {
        Ok(match key_type {
            DataType::Utf8View => KeyTable::Strings(StringKeys::default()),
            t if t.is_signed_integer() => KeyTable::Signed(IntKeys::new(output_type)),
            t if t.is_unsigned_integer() => KeyTable::Unsigned(IntKeys::new(output_type)),
            other => return Err(format!("groupby cannot key on a {other} column").into()),
        })
    }

    /// The number of groups.
    pub(super) fn len(&self) -> usize {
        match self {
            KeyTable::Strings(t) => t.keys.len(),
            KeyTable::Signed(t) => t.keys.len(),
            KeyTable::Unsigned(t) => t.keys.len(),
        }
    }

    /// Sets `ids` to the group number of each row of `keys`, adding new groups.
    pub(super) fn group_ids(&mut self, keys: &ArrayRef, ids: &mut Vec<u32>) -> JobResult<()> {
        ids.clear();
        ids.reserve(keys.len());
        match self {
            KeyTable::Strings(t) => {
                let keys = keys.as_string_view_opt().ok_or("groupby reads string keys as Utf8View")?;
                t.group_ids(keys, ids);
            }
            KeyTable::Signed(t) => t.group_ids(keys, ids)?,
            KeyTable::Unsigned(t) => t.group_ids(keys, ids)?,
        }
        Ok(())
    }

    /// Takes every group's key, in group order, and empties the table.
    pub(super) fn drain(&mut self) -> JobResult<ArrayRef> {
        match self {
            KeyTable::Strings(t) => Ok(t.drain()),
            KeyTable::Signed(t) => t.drain(),
            KeyTable::Unsigned(t) => t.drain(),
        }
    }
}

/// Whether row `row` is null (`nulls` is `None` when the column has no null).
fn is_null(nulls: Option<&arrow::buffer::NullBuffer>, row: usize) -> bool {
    nulls.is_some_and(|n| n.is_null(row))
}

/// Appends a new group's key to `keys`; returns the group's number.
fn add<K, B: Extend<Option<K>> + ArrayBuilder>(keys: &mut B, key: Option<K>) -> u32 {
    let id = keys.len() as u32;
    keys.extend([key]);
    id
}

/// The nulls of `array`, if it has any.
fn nulls_of(array: &dyn Array) -> Option<&arrow::buffer::NullBuffer> {
    array.nulls().filter(|n| n.null_count() > 0)
}

/// String keys: inline views in one table, longer strings in another.
#[derive(Default)]
pub(super) struct StringKeys {
    inline: GroupTable<u128>,
    long: HashMap<Box<str>, u32>,
    null: Option<u32>,
    keys: StringBuilder,
    hashes: Vec<u64>,
}

impl StringKeys {
    fn group_ids(&mut self, keys: &StringViewArray, ids: &mut Vec<u32>) {
        let nulls = nulls_of(keys);
        let StringKeys { inline, long, null, keys: builder, hashes } = self;
        let views = keys.views();
        inline.hash_all(views, hashes);
        for (row, (&view, &hash)) in views.iter().zip(hashes.iter()).enumerate() {
            inline.prefetch_ahead(hashes, row);
            let id = if is_null(nulls, row) {
                *null.get_or_insert_with(|| add(builder, None::<&str>))
            } else if view as u32 <= MAX_INLINE_VIEW_LEN {
                inline.find_or_insert(view, hash, || add(builder, Some(keys.value(row))))
            } else {
                let key = keys.value(row);
                match long.get(key) {
                    Some(&id) => id,
                    None => {
                        let id = add(builder, Some(key));
                        long.insert(key.into(), id);
                        id
                    }
                }
            };
            ids.push(id);
        }
    }

    fn drain(&mut self) -> ArrayRef {
        let keys = Arc::new(self.keys.finish());
        self.inline.clear();
        self.long.clear();
        self.null = None;
        keys
    }
}

/// Integer key values as the table's 64-bit keys: their bits.
pub(super) trait KeyBits: Copy {
    fn bits(self) -> u64;
}

impl KeyBits for i64 {
    fn bits(self) -> u64 {
        self as u64
    }
}

impl KeyBits for u64 {
    fn bits(self) -> u64 {
        self
    }
}

/// Integer keys widened to `T` (`Int64Type` or `UInt64Type`).
pub(super) struct IntKeys<T: ArrowPrimitiveType> {
    table: GroupTable<u64>,
    null: Option<u32>,
    keys: PrimitiveBuilder<T>,
    /// The key type of drained arrays.
    output_type: DataType,
    bits: Vec<u64>,
    hashes: Vec<u64>,
}

impl<T: ArrowPrimitiveType> IntKeys<T>
where
    T::Native: KeyBits,
{
    fn new(output_type: DataType) -> Self {
        IntKeys {
            table: GroupTable::default(),
            null: None,
            keys: PrimitiveBuilder::new(),
            output_type,
            bits: Vec::new(),
            hashes: Vec::new(),
        }
    }

    fn group_ids(&mut self, keys: &ArrayRef, ids: &mut Vec<u32>) -> JobResult<()> {
        let wide = cast(keys, &T::DATA_TYPE)?;
        let wide = wide.as_primitive::<T>();
        let nulls = nulls_of(wide);
        let IntKeys { table, null, keys: builder, bits, hashes, .. } = self;
        bits.clear();
        bits.extend(wide.values().iter().map(|v| v.bits()));
        table.hash_all(bits, hashes);
        for (row, (&key, &hash)) in bits.iter().zip(hashes.iter()).enumerate() {
            table.prefetch_ahead(hashes, row);
            let id = if is_null(nulls, row) {
                *null.get_or_insert_with(|| add(builder, None))
            } else {
                table.find_or_insert(key, hash, || add(builder, Some(wide.value(row))))
            };
            ids.push(id);
        }
        Ok(())
    }

    fn drain(&mut self) -> JobResult<ArrayRef> {
        let wide: ArrayRef = Arc::new(self.keys.finish());
        self.table.clear();
        self.null = None;
        Ok(cast(&wide, &self.output_type)?)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int16Array, StringArray, UInt32Array};

    use super::*;

    fn ids_of(table: &mut KeyTable, keys: ArrayRef) -> Vec<u32> {
        let mut ids = Vec::new();
        table.group_ids(&keys, &mut ids).unwrap();
        ids
    }

    #[test]
    fn short_long_and_null_string_keys_find_their_groups() {
        let long = "a key longer than twelve bytes";
        let mut table = KeyTable::new(&DataType::Utf8View, DataType::Utf8).unwrap();
        let first = StringViewArray::from(vec![Some("id01"), None, Some(long), Some(""), Some("id01")]);
        assert_eq!(ids_of(&mut table, Arc::new(first)), [0, 1, 2, 3, 0]);
        let second = StringViewArray::from(vec![Some(long), Some("twelve bytes"), None, Some("")]);
        assert_eq!(ids_of(&mut table, Arc::new(second)), [2, 4, 1, 3]);
        assert_eq!(table.len(), 5);
        let keys = table.drain().unwrap();
        let expected =
            StringArray::from(vec![Some("id01"), None, Some(long), Some(""), Some("twelve bytes")]);
        assert_eq!(keys.as_string::<i32>(), &expected);
        assert_eq!(table.len(), 0);
        let again = StringViewArray::from(vec!["twelve bytes", "id01"]);
        assert_eq!(ids_of(&mut table, Arc::new(again)), [0, 1], "a drained table starts afresh");
    }

    #[test]
    fn integer_keys_are_widened_and_drained_in_their_own_type() {
        let mut table = KeyTable::new(&DataType::Int16, DataType::Int16).unwrap();
        let keys = Int16Array::from(vec![Some(-3), Some(7), None, Some(-3), Some(i16::MIN), None]);
        assert_eq!(ids_of(&mut table, Arc::new(keys)), [0, 1, 2, 0, 3, 2]);
        let drained = table.drain().unwrap();
        assert_eq!(
            drained.as_ref(),
            &Int16Array::from(vec![Some(-3), Some(7), None, Some(i16::MIN)]) as &dyn Array
        );

        let mut unsigned = KeyTable::new(&DataType::UInt32, DataType::UInt32).unwrap();
        let keys = UInt32Array::from(vec![u32::MAX, 0, u32::MAX]);
        assert_eq!(ids_of(&mut unsigned, Arc::new(keys)), [0, 1, 0]);
        assert_eq!(unsigned.drain().unwrap().data_type(), &DataType::UInt32);
        assert!(KeyTable::new(&DataType::Float64, DataType::Float64).is_err());
    }
}
