//! Rows written to flat columns: a serde `Serializer` that appends each field to the typed
//! builder of its column.

use std::sync::Arc;

use arrow::array::*;
use arrow::compute::cast;
use arrow::datatypes::{DataType, FieldRef};
use serde::ser::{Impossible, Serialize, SerializeStruct, SerializeTuple, SerializeTupleStruct, Serializer};

use super::FlatError;

/// A typed builder, by the physical type of its column.
enum Builder {
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    U8(UInt8Builder),
    U16(UInt16Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Utf8(StringBuilder),
    LargeUtf8(LargeStringBuilder),
}

impl Builder {
    /// The builder of a column of type `data_type`, or `None` when it is not flat. Dates and
    /// timestamps are built as their integers and cast when the batch is finished.
    fn of(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Int8 => Builder::I8(Int8Builder::new()),
            DataType::Int16 => Builder::I16(Int16Builder::new()),
            DataType::Int32 | DataType::Date32 => Builder::I32(Int32Builder::new()),
            DataType::Int64 | DataType::Date64 | DataType::Timestamp(..) => Builder::I64(Int64Builder::new()),
            DataType::UInt8 => Builder::U8(UInt8Builder::new()),
            DataType::UInt16 => Builder::U16(UInt16Builder::new()),
            DataType::UInt32 => Builder::U32(UInt32Builder::new()),
            DataType::UInt64 => Builder::U64(UInt64Builder::new()),
            DataType::Float32 => Builder::F32(Float32Builder::new()),
            DataType::Float64 => Builder::F64(Float64Builder::new()),
            DataType::Boolean => Builder::Bool(BooleanBuilder::new()),
            DataType::Utf8 => Builder::Utf8(StringBuilder::new()),
            DataType::LargeUtf8 => Builder::LargeUtf8(LargeStringBuilder::new()),
            _ => return None,
        })
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::I8(b) => Arc::new(b.finish()),
            Builder::I16(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::U8(b) => Arc::new(b.finish()),
            Builder::U16(b) => Arc::new(b.finish()),
            Builder::U32(b) => Arc::new(b.finish()),
            Builder::U64(b) => Arc::new(b.finish()),
            Builder::F32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::LargeUtf8(b) => Arc::new(b.finish()),
        }
    }
}

/// One output column: its field, its builder, and the serde name of the struct field that
/// fills it (checked, so a type that serializes its fields in another order than it declares
/// them fails instead of writing values to the wrong columns).
struct ColumnOut {
    field: FieldRef,
    builder: Builder,
    serde_name: Option<String>,
    /// The last `&'static str` key seen to equal `serde_name`: later rows pass by pointer.
    seen: Option<&'static str>,
}

impl ColumnOut {
    #[inline]
    fn check_key(&mut self, key: &'static str) -> Result<(), FlatError> {
        if self.seen.is_some_and(|seen| std::ptr::eq(seen, key)) {
            return Ok(());
        }
        match &self.serde_name {
            Some(name) if name == key => {
                self.seen = Some(key);
                Ok(())
            }
            Some(name) => Err(FlatError(format!("field `{key}` was written where `{name}` belongs"))),
            None => Ok(()),
        }
    }

    #[inline]
    fn int(&mut self, v: i128) -> Result<(), FlatError> {
        let field = &self.field;
        let out_of_range = || mismatch(field, &format!("the integer {v}"));
        macro_rules! fit {
            ($b:expr) => {
                $b.append_value(v.try_into().map_err(|_| out_of_range())?)
            };
        }
        match &mut self.builder {
            Builder::I8(b) => fit!(b),
            Builder::I16(b) => fit!(b),
            Builder::I32(b) => fit!(b),
            Builder::I64(b) => fit!(b),
            Builder::U8(b) => fit!(b),
            Builder::U16(b) => fit!(b),
            Builder::U32(b) => fit!(b),
            Builder::U64(b) => fit!(b),
            _ => return Err(out_of_range()),
        }
        Ok(())
    }

    #[inline]
    fn float(&mut self, v: f64, wide: bool) -> Result<(), FlatError> {
        match &mut self.builder {
            Builder::F64(b) => b.append_value(v),
            // An `f32` fits an `f32` column; an `f64` is not narrowed silently.
            Builder::F32(b) if !wide => b.append_value(v as f32),
            _ => return Err(mismatch(&self.field, &format!("the float {v}"))),
        }
        Ok(())
    }

    #[inline]
    fn append_null(&mut self) -> Result<(), FlatError> {
        if !self.field.is_nullable() {
            return Err(mismatch(&self.field, "a null (its field is not an Option)"));
        }
        match &mut self.builder {
            Builder::I8(b) => b.append_null(),
            Builder::I16(b) => b.append_null(),
            Builder::I32(b) => b.append_null(),
            Builder::I64(b) => b.append_null(),
            Builder::U8(b) => b.append_null(),
            Builder::U16(b) => b.append_null(),
            Builder::U32(b) => b.append_null(),
            Builder::U64(b) => b.append_null(),
            Builder::F32(b) => b.append_null(),
            Builder::F64(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Utf8(b) => b.append_null(),
            Builder::LargeUtf8(b) => b.append_null(),
        }
        Ok(())
    }

    /// The column's array, cast to its field's type where it was built as integers.
    fn finish(&mut self) -> Result<ArrayRef, FlatError> {
        let array = self.builder.finish();
        if array.data_type() == self.field.data_type() {
            return Ok(array);
        }
        cast(&array, self.field.data_type()).map_err(|e| mismatch(&self.field, &format!("its values: {e}")))
    }
}

fn mismatch(field: &FieldRef, what: &str) -> FlatError {
    FlatError(format!("column `{}` of type {} cannot take {what}", field.name(), field.data_type()))
}

/// The columns one serde type is written to, when they are all flat.
pub(in crate::job::rows) struct FlatColumns {
    columns: Vec<ColumnOut>,
    /// The type spreads over the columns (a struct or tuple), rather than being one.
    spread: bool,
}

impl FlatColumns {
    /// Builders for `fields`, or `None` when one is not flat. `serde_names`: the struct's
    /// field names (or a tuple's `0`, `1`, ...) when the type spreads over the fields.
    pub(in crate::job::rows) fn new(fields: &[FieldRef], serde_names: Option<&[String]>) -> Option<Self> {
        let columns = fields
            .iter()
            .enumerate()
            .map(|(i, field)| {
                Some(ColumnOut {
                    field: field.clone(),
                    builder: Builder::of(field.data_type())?,
                    serde_name: serde_names.and_then(|names| names.get(i).cloned()),
                    seen: None,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(FlatColumns { columns, spread: serde_names.is_some() })
    }

    /// Appends `value` as one row.
    #[inline]
    pub(in crate::job::rows) fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FlatError> {
        if self.spread {
            value.serialize(RowSer { columns: &mut self.columns })
        } else {
            value.serialize(CellSer { column: &mut self.columns[0] })
        }
    }

    /// The columns' arrays of the rows pushed since the last call.
    pub(in crate::job::rows) fn finish(&mut self) -> Result<Vec<ArrayRef>, FlatError> {
        self.columns.iter_mut().map(ColumnOut::finish).collect()
    }
}

/// Unsupported by both serializers below: a value that is no flat column's.
macro_rules! refuse {
    ($($method:ident($($arg:ty),*) -> $ret:ty;)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<$ret, FlatError> {
            Err(FlatError(format!("a flat column cannot take a value written by `{}`", stringify!($method))))
        })*
    };
}

/// Integers of every width go through [`ColumnOut::int`], which fits them to the column.
macro_rules! integers {
    ($($method:ident($t:ty)),*) => {
        $(#[inline]
        fn $method(self, v: $t) -> Result<(), FlatError> {
            self.column.int(v.into())
        })*
    };
}

/// What both serializers share: an `Option`'s value and a newtype's content are written as
/// themselves, the format is not human readable (as serde_arrow's), and an enum variant
/// with data has no flat column.
macro_rules! transparent {
    () => {
        #[inline]
        fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), FlatError> {
            value.serialize(self)
        }
        #[inline]
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            value: &T,
        ) -> Result<(), FlatError> {
            value.serialize(self)
        }
        fn is_human_readable(&self) -> bool {
            false
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            _: &T,
        ) -> Result<(), FlatError> {
            Err(FlatError(format!("flat columns cannot take the enum variant `{variant}`")))
        }
    };
}

/// Writes one value into one column.
struct CellSer<'c> {
    column: &'c mut ColumnOut,
}

impl Serializer for CellSer<'_> {
    type Ok = ();
    type Error = FlatError;
    type SerializeSeq = Impossible<(), FlatError>;
    type SerializeTuple = Impossible<(), FlatError>;
    type SerializeTupleStruct = Impossible<(), FlatError>;
    type SerializeTupleVariant = Impossible<(), FlatError>;
    type SerializeMap = Impossible<(), FlatError>;
    type SerializeStruct = Impossible<(), FlatError>;
    type SerializeStructVariant = Impossible<(), FlatError>;

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), FlatError> {
        match &mut self.column.builder {
            Builder::Bool(b) => b.append_value(v),
            _ => return Err(mismatch(&self.column.field, "a bool")),
        }
        Ok(())
    }
    integers!(serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64));
    integers!(serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64));
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<(), FlatError> {
        self.column.float(v.into(), false)
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<(), FlatError> {
        self.column.float(v, true)
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result<(), FlatError> {
        match &mut self.column.builder {
            Builder::U32(b) => b.append_value(v.into()),
            _ => return self.serialize_str(v.encode_utf8(&mut [0; 4])),
        }
        Ok(())
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), FlatError> {
        match &mut self.column.builder {
            Builder::Utf8(b) => b.append_value(v),
            Builder::LargeUtf8(b) => b.append_value(v),
            _ => return Err(mismatch(&self.column.field, "text")),
        }
        Ok(())
    }
    #[inline]
    fn serialize_none(self) -> Result<(), FlatError> {
        self.column.append_null()
    }
    transparent!();
    refuse! {
        serialize_bytes(&[u8]) -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }
}

/// Writes a struct's or tuple's fields into successive columns.
struct RowSer<'c> {
    columns: &'c mut [ColumnOut],
}

impl<'c> Serializer for RowSer<'c> {
    type Ok = ();
    type Error = FlatError;
    type SerializeSeq = Impossible<(), FlatError>;
    type SerializeTuple = FieldsSer<'c>;
    type SerializeTupleStruct = FieldsSer<'c>;
    type SerializeTupleVariant = Impossible<(), FlatError>;
    type SerializeMap = Impossible<(), FlatError>;
    type SerializeStruct = FieldsSer<'c>;
    type SerializeStructVariant = Impossible<(), FlatError>;

    #[inline]
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<FieldsSer<'c>, FlatError> {
        Ok(FieldsSer { columns: self.columns, next: 0 })
    }
    #[inline]
    fn serialize_tuple(self, _: usize) -> Result<FieldsSer<'c>, FlatError> {
        Ok(FieldsSer { columns: self.columns, next: 0 })
    }
    #[inline]
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<FieldsSer<'c>, FlatError> {
        Ok(FieldsSer { columns: self.columns, next: 0 })
    }
    transparent!();
    refuse! {
        serialize_bool(bool) -> ();
        serialize_i8(i8) -> ();
        serialize_i16(i16) -> ();
        serialize_i32(i32) -> ();
        serialize_i64(i64) -> ();
        serialize_u8(u8) -> ();
        serialize_u16(u16) -> ();
        serialize_u32(u32) -> ();
        serialize_u64(u64) -> ();
        serialize_f32(f32) -> ();
        serialize_f64(f64) -> ();
        serialize_char(char) -> ();
        serialize_str(&str) -> ();
        serialize_bytes(&[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }
}

/// The fields of one struct or tuple, each into the next column.
struct FieldsSer<'c> {
    columns: &'c mut [ColumnOut],
    next: usize,
}

impl FieldsSer<'_> {
    #[inline]
    fn column(&mut self, key: Option<&'static str>) -> Result<&mut ColumnOut, FlatError> {
        let count = self.columns.len();
        let column = self
            .columns
            .get_mut(self.next)
            .ok_or_else(|| FlatError(format!("a row wrote more fields than its {count} columns")))?;
        self.next += 1;
        if let Some(key) = key {
            column.check_key(key)?;
        }
        Ok(column)
    }

    #[inline]
    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: Option<&'static str>,
        value: &T,
    ) -> Result<(), FlatError> {
        value.serialize(CellSer { column: self.column(key)? })
    }

    #[inline]
    fn end(self) -> Result<(), FlatError> {
        if self.next == self.columns.len() {
            return Ok(());
        }
        Err(FlatError(format!("a row wrote {} fields into {} columns", self.next, self.columns.len())))
    }
}

impl SerializeStruct for FieldsSer<'_> {
    type Ok = ();
    type Error = FlatError;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), FlatError> {
        self.field(Some(key), value)
    }
    /// A field `skip_serializing_if` left out is a null.
    #[inline]
    fn skip_field(&mut self, key: &'static str) -> Result<(), FlatError> {
        self.column(Some(key))?.append_null()
    }
    #[inline]
    fn end(self) -> Result<(), FlatError> {
        FieldsSer::end(self)
    }
}

/// A tuple's and a tuple struct's elements: by position, without names to check.
macro_rules! positional {
    ($trait:ident, $method:ident) => {
        impl $trait for FieldsSer<'_> {
            type Ok = ();
            type Error = FlatError;
            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FlatError> {
                self.field(None, value)
            }
            #[inline]
            fn end(self) -> Result<(), FlatError> {
                FieldsSer::end(self)
            }
        }
    };
}

positional!(SerializeTuple, serialize_element);
positional!(SerializeTupleStruct, serialize_field);
