//! A key's bytes for the in-memory combining table: a serde `Serializer` whose output two
//! values of one type share only when they are equal, so the bytes can be hashed and
//! compared in place of the key (whose type need not be `Hash` or `Eq`).
//!
//! Numbers are written as their fixed-width little-endian bytes (floats by their bits, as
//! Arrow's row format orders them: `-0.0` and `0.0` are two keys), text and bytes with their
//! length first, an `Option` and each element of a sequence or map behind a marker byte, and
//! an enum variant by its index. Nothing is written that a decoder would need to know the
//! type: the type is fixed per table.

use std::fmt;

use serde::ser::{self, Serialize};

/// Appends the bytes of `key` to `out`.
pub(super) fn append_key_bytes<K: Serialize + ?Sized>(
    key: &K,
    out: &mut Vec<u8>,
) -> Result<(), KeyBytesError> {
    key.serialize(&mut KeyBytes { out })
}

/// A key type's `Serialize` failed (a custom impl returned an error).
#[derive(Debug)]
pub(super) struct KeyBytesError(String);

impl fmt::Display for KeyBytesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a key did not serialize: {}", self.0)
    }
}

impl std::error::Error for KeyBytesError {}

impl ser::Error for KeyBytesError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        KeyBytesError(msg.to_string())
    }
}

struct KeyBytes<'a> {
    out: &'a mut Vec<u8>,
}

impl KeyBytes<'_> {
    #[inline]
    fn bytes(&mut self, v: &[u8]) {
        self.out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        self.out.extend_from_slice(v);
    }
}

/// `serialize_*` of fixed-width numbers: their little-endian bytes.
macro_rules! numbers {
    ($($method:ident($ty:ty) => $bytes:expr;)*) => {
        $(
            #[inline]
            fn $method(self, v: $ty) -> Result<(), KeyBytesError> {
                let bytes = $bytes(v);
                self.out.extend_from_slice(&bytes);
                Ok(())
            }
        )*
    };
}

/// Serializes each element of a compound value behind a marker byte (`1`), ended by `0`.
macro_rules! compound {
    ($($trait:ident :: $method:ident ($($name:ident: $arg:ty),*);)*) => {
        $(
            impl ser::$trait for &mut KeyBytes<'_> {
                type Ok = ();
                type Error = KeyBytesError;
                #[inline]
                fn $method<T: Serialize + ?Sized>(&mut self, $($name: $arg,)* value: &T) -> Result<(), KeyBytesError> {
                    $(let _ = $name;)*
                    self.out.push(1);
                    value.serialize(&mut **self)
                }
                #[inline]
                fn end(self) -> Result<(), KeyBytesError> {
                    self.out.push(0);
                    Ok(())
                }
            }
        )*
    };
}

compound! {
    SerializeSeq::serialize_element();
    SerializeTuple::serialize_element();
    SerializeTupleStruct::serialize_field();
    SerializeTupleVariant::serialize_field();
    SerializeStruct::serialize_field(_key: &'static str);
    SerializeStructVariant::serialize_field(_key: &'static str);
}

impl ser::SerializeMap for &mut KeyBytes<'_> {
    type Ok = ();
    type Error = KeyBytesError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), KeyBytesError> {
        self.out.push(1);
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyBytesError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), KeyBytesError> {
        self.out.push(0);
        Ok(())
    }
}

impl<'a, 'b> ser::Serializer for &'a mut KeyBytes<'b> {
    type Ok = ();
    type Error = KeyBytesError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    numbers! {
        serialize_bool(bool) => |v: bool| [v as u8];
        serialize_i8(i8) => i8::to_le_bytes;
        serialize_i16(i16) => i16::to_le_bytes;
        serialize_i32(i32) => i32::to_le_bytes;
        serialize_i64(i64) => i64::to_le_bytes;
        serialize_i128(i128) => i128::to_le_bytes;
        serialize_u8(u8) => u8::to_le_bytes;
        serialize_u16(u16) => u16::to_le_bytes;
        serialize_u32(u32) => u32::to_le_bytes;
        serialize_u64(u64) => u64::to_le_bytes;
        serialize_u128(u128) => u128::to_le_bytes;
        serialize_f32(f32) => |v: f32| v.to_bits().to_le_bytes();
        serialize_f64(f64) => |v: f64| v.to_bits().to_le_bytes();
        serialize_char(char) => |v: char| u32::from(v).to_le_bytes();
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), KeyBytesError> {
        self.bytes(v.as_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), KeyBytesError> {
        self.bytes(v);
        Ok(())
    }
    #[inline]
    fn serialize_none(self) -> Result<(), KeyBytesError> {
        self.out.push(0);
        Ok(())
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), KeyBytesError> {
        self.out.push(1);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), KeyBytesError> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), KeyBytesError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
    ) -> Result<(), KeyBytesError> {
        self.serialize_u32(index)
    }
    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), KeyBytesError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), KeyBytesError> {
        self.out.extend_from_slice(&index.to_le_bytes());
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, KeyBytesError> {
        Ok(self)
    }
    #[inline]
    fn serialize_tuple(self, _: usize) -> Result<Self, KeyBytesError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, KeyBytesError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, KeyBytesError> {
        self.out.extend_from_slice(&index.to_le_bytes());
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, KeyBytesError> {
        Ok(self)
    }
    #[inline]
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, KeyBytesError> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, KeyBytesError> {
        self.out.extend_from_slice(&index.to_le_bytes());
        Ok(self)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<K: Serialize>(key: &K) -> Vec<u8> {
        let mut out = Vec::new();
        append_key_bytes(key, &mut out).unwrap();
        out
    }

    #[derive(serde::Serialize)]
    struct Pair {
        name: String,
        n: Option<i32>,
    }

    #[test]
    fn equal_keys_share_their_bytes_and_different_keys_do_not() {
        assert_eq!(bytes(&7i64), 7i64.to_le_bytes());
        assert_ne!(bytes(&0.0f64), bytes(&-0.0f64));
        // Text boundaries cannot shift between fields: ("ab", "c") is not ("a", "bc").
        assert_ne!(bytes(&("ab", "c")), bytes(&("a", "bc")));
        assert_ne!(bytes(&vec![1u8, 2]), bytes(&vec![1u8, 2, 0]));
        assert_ne!(bytes(&Some(0u8)), bytes(&None::<u8>));
        let a = Pair { name: "x".into(), n: Some(1) };
        let b = Pair { name: "x".into(), n: None };
        assert_ne!(bytes(&a), bytes(&b));
        assert_eq!(bytes(&a), bytes(&Pair { name: "x".into(), n: Some(1) }));
    }
}
