//! Rows read from flat columns: each row a serde `Deserializer` over typed slices.

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, LargeStringArray, StringArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::*;
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;

use super::FlatError;

/// What both deserializers share: a newtype is its content, the format is not human
/// readable (as serde_arrow's), and every other request reads the value as it lies
/// (`deserialize_any`). `char` is left to each.
macro_rules! newtype_and_the_rest {
    () => {
        #[inline]
        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            visitor: V,
        ) -> Result<V::Value, FlatError> {
            visitor.visit_newtype_struct(self)
        }

        fn is_human_readable(&self) -> bool {
            false
        }

        forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 str string bytes byte_buf unit
            unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
        }
    };
}

/// One column's values, typed.
#[derive(Clone, Copy)]
enum Values<'a> {
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    F32(&'a [f32]),
    F64(&'a [f64]),
    Bool(&'a BooleanArray),
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
}

struct Column<'a> {
    values: Values<'a>,
    nulls: Option<&'a NullBuffer>,
}

impl<'a> Column<'a> {
    /// The column, or `None` when its type is not flat.
    fn of(array: &'a ArrayRef) -> Option<Self> {
        let values = match array.data_type() {
            DataType::Int8 => Values::I8(array.as_primitive::<Int8Type>().values()),
            DataType::Int16 => Values::I16(array.as_primitive::<Int16Type>().values()),
            DataType::Int32 => Values::I32(array.as_primitive::<Int32Type>().values()),
            DataType::Int64 => Values::I64(array.as_primitive::<Int64Type>().values()),
            DataType::UInt8 => Values::U8(array.as_primitive::<UInt8Type>().values()),
            DataType::UInt16 => Values::U16(array.as_primitive::<UInt16Type>().values()),
            DataType::UInt32 => Values::U32(array.as_primitive::<UInt32Type>().values()),
            DataType::UInt64 => Values::U64(array.as_primitive::<UInt64Type>().values()),
            DataType::Float32 => Values::F32(array.as_primitive::<Float32Type>().values()),
            DataType::Float64 => Values::F64(array.as_primitive::<Float64Type>().values()),
            DataType::Boolean => Values::Bool(array.as_boolean()),
            DataType::Utf8 => Values::Utf8(array.as_string::<i32>()),
            DataType::LargeUtf8 => Values::LargeUtf8(array.as_string::<i64>()),
            _ => return None,
        };
        Some(Column { values, nulls: array.nulls() })
    }

    #[inline]
    fn is_null(&self, row: usize) -> bool {
        self.nulls.is_some_and(|nulls| nulls.is_null(row))
    }
}

/// The rows of a batch's flat columns, each deserialized on its own by [`FlatRows::row`].
pub(in crate::job::rows) struct FlatRows<'a> {
    columns: Vec<Column<'a>>,
    /// The type spreads over the columns (a struct or tuple), rather than being one.
    spread: bool,
    len: usize,
}

impl<'a> FlatRows<'a> {
    /// The rows of `arrays` (already cast to the row type's columns), or `None` when one of
    /// them is not flat. `spread`: the row type is a struct or tuple of the columns.
    pub(in crate::job::rows) fn new(arrays: &'a [ArrayRef], spread: bool) -> Option<Self> {
        let columns = arrays.iter().map(Column::of).collect::<Option<Vec<_>>>()?;
        let len = arrays.first().map_or(0, |a| a.len());
        (!columns.is_empty()).then_some(FlatRows { columns, spread, len })
    }

    /// How many rows there are.
    #[inline]
    pub(in crate::job::rows) fn len(&self) -> usize {
        self.len
    }

    /// Row `row`, to deserialize a row type from.
    #[inline]
    pub(in crate::job::rows) fn row(&self, row: usize) -> FlatRow<'_, 'a> {
        FlatRow { rows: self, row }
    }
}

/// One row: a struct or tuple read as the sequence of its columns, or one column's value.
pub(in crate::job::rows) struct FlatRow<'r, 'a> {
    rows: &'r FlatRows<'a>,
    row: usize,
}

impl<'r, 'a> FlatRow<'r, 'a> {
    #[inline]
    fn cell(&self, column: usize) -> Cell<'r, 'a> {
        Cell { column: &self.rows.columns[column], row: self.row }
    }

    #[inline]
    fn fields(self) -> Fields<'r, 'a> {
        Fields { row: self, next: 0 }
    }
}

impl<'de> Deserializer<'de> for FlatRow<'_, '_> {
    type Error = FlatError;

    #[inline]
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FlatError> {
        if self.rows.spread {
            visitor.visit_seq(self.fields())
        } else {
            self.cell(0).deserialize_any(visitor)
        }
    }

    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FlatError> {
        if self.rows.spread { visitor.visit_some(self) } else { self.cell(0).deserialize_option(visitor) }
    }

    newtype_and_the_rest!();

    #[inline]
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FlatError> {
        if self.rows.spread { self.deserialize_any(visitor) } else { self.cell(0).deserialize_char(visitor) }
    }
}

/// A struct's or tuple's fields, in column order (serde's derived `visit_seq`).
struct Fields<'r, 'a> {
    row: FlatRow<'r, 'a>,
    next: usize,
}

impl<'de> SeqAccess<'de> for Fields<'_, '_> {
    type Error = FlatError;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, FlatError> {
        if self.next == self.row.rows.columns.len() {
            return Ok(None);
        }
        self.next += 1;
        seed.deserialize(self.row.cell(self.next - 1)).map(Some)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        Some(self.row.rows.columns.len() - self.next)
    }
}

/// One value of one column.
struct Cell<'r, 'a> {
    column: &'r Column<'a>,
    row: usize,
}

impl<'de> Deserializer<'de> for Cell<'_, '_> {
    type Error = FlatError;

    #[inline]
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FlatError> {
        let i = self.row;
        if self.column.is_null(i) {
            // Only an `Option` takes a null; any other type refuses it with a clear error.
            return visitor.visit_none();
        }
        match self.column.values {
            Values::I8(v) => visitor.visit_i8(v[i]),
            Values::I16(v) => visitor.visit_i16(v[i]),
            Values::I32(v) => visitor.visit_i32(v[i]),
            Values::I64(v) => visitor.visit_i64(v[i]),
            Values::U8(v) => visitor.visit_u8(v[i]),
            Values::U16(v) => visitor.visit_u16(v[i]),
            Values::U32(v) => visitor.visit_u32(v[i]),
            Values::U64(v) => visitor.visit_u64(v[i]),
            Values::F32(v) => visitor.visit_f32(v[i]),
            Values::F64(v) => visitor.visit_f64(v[i]),
            Values::Bool(v) => visitor.visit_bool(v.value(i)),
            Values::Utf8(v) => visitor.visit_str(v.value(i)),
            Values::LargeUtf8(v) => visitor.visit_str(v.value(i)),
        }
    }

    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FlatError> {
        if self.column.is_null(self.row) { visitor.visit_none() } else { visitor.visit_some(self) }
    }

    /// A `char` lies in a `UInt32` column (as serde_arrow traces it).
    #[inline]
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FlatError> {
        match self.column.values {
            Values::U32(v) if !self.column.is_null(self.row) => match char::from_u32(v[self.row]) {
                Some(c) => visitor.visit_char(c),
                None => Err(FlatError(format!("{:#x} is not a char", v[self.row]))),
            },
            _ => self.deserialize_any(visitor),
        }
    }

    newtype_and_the_rest!();
}
