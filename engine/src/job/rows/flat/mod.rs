//! The fast path of typed records: rows whose columns are all flat (integers, floats,
//! booleans, text) are read from and written to Arrow arrays directly, column by column,
//! with serde but without serde_arrow.
//!
//! serde_arrow reads and writes any serde type, but through a struct wrapper per row, field
//! names compared per field and a dynamic builder per value: about 69 ns a row for a
//! three-column row in, a pair out (the `typed_rows` criterion bench). Here a struct reads
//! its fields in order as a sequence (serde's derived `visit_seq`) from typed slices, and a
//! pair is written straight into typed builders. Any other column type (lists, structs
//! inside a field, decimals, unions) takes serde_arrow, so nothing a row type could hold is
//! lost: this only decides how fast it goes.

mod read;
mod write;

pub(super) use read::FlatRows;
pub(super) use write::FlatColumns;

use std::fmt;

/// An error raised while reading or writing a row of flat columns.
#[derive(Debug)]
pub(super) struct FlatError(String);

impl fmt::Display for FlatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FlatError {}

impl serde::de::Error for FlatError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        FlatError(message.to_string())
    }
}

impl serde::ser::Error for FlatError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        FlatError(message.to_string())
    }
}

#[cfg(test)]
mod tests;
