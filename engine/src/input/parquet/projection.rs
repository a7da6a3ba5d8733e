//! Which columns of a Parquet file a job reads, and how each becomes the declared type.
//!
//! Where the Parquet decoder can produce the declared type itself (a string column as
//! `Utf8View` or dictionary, an `INT64` decimal as `Decimal64`), the reader is given a
//! schema hint and the column arrives ready: no second pass over the batch. Other lossless
//! conversions are cast after decoding.

use std::sync::Arc;

use arrow::datatypes::{DataType, Schema};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::basic::Type as PhysicalType;

use crate::error::{Error, Result};
use crate::input::ParquetColumn;
use crate::storage::InputFile;

/// The columns to read from one file: root indices to decode, and how to turn decoded
/// batches (in file order) into the declared columns (in declared order, declared types).
#[derive(Debug)]
pub(super) struct Projection {
    pub(super) roots: Vec<usize>,
    /// For each declared column: its index among the decoded columns, and a type to cast to.
    pub(super) columns: Vec<(usize, Option<DataType>)>,
}

/// Resolves the job's columns against `metadata`'s schema. Returns the projection and the
/// metadata to decode with: `metadata` itself, or a copy whose schema carries the declared
/// types the decoder produces directly.
pub(super) fn resolve(
    file: &InputFile,
    metadata: &ArrowReaderMetadata,
    wanted: Option<&[ParquetColumn]>,
) -> Result<(Projection, ArrowReaderMetadata)> {
    let schema = metadata.schema();
    let Some(wanted) = wanted else {
        let all: Vec<usize> = (0..schema.fields().len()).collect();
        let columns = all.iter().map(|&i| (i, None)).collect();
        return Ok((Projection { columns, roots: all }, metadata.clone()));
    };
    let mut indices = Vec::with_capacity(wanted.len());
    for column in wanted {
        let index = crate::input::column_index(file, schema, &column.name)?;
        let found = schema.field(index).data_type();
        let convert_to = match &column.data_type {
            Some(expected) if expected != found => {
                if !convertible(found, expected) {
                    return Err(Error::ColumnType {
                        path: file.display(),
                        column: column.name.clone(),
                        found: found.to_string(),
                        expected: expected.to_string(),
                    });
                }
                Some(expected.clone())
            }
            _ => None,
        };
        indices.push((index, convert_to));
    }
    let (indices, decode_with) = hint_decoder(metadata, indices);
    let mut roots: Vec<usize> = indices.iter().map(|(i, _)| *i).collect();
    roots.sort_unstable();
    roots.dedup();
    let columns = indices
        .into_iter()
        .map(|(index, cast_to)| (roots.binary_search(&index).expect("root was added"), cast_to))
        .collect();
    Ok((Projection { roots, columns }, decode_with))
}

/// Moves the conversions the decoder can do into a schema hint. Returns what is left to
/// cast, and the metadata to decode with. A column read twice with different types, or a
/// hint the decoder turns down, keeps its cast.
fn hint_decoder(
    metadata: &ArrowReaderMetadata,
    mut indices: Vec<(usize, Option<DataType>)>,
) -> (Vec<(usize, Option<DataType>)>, ArrowReaderMetadata) {
    let schema = metadata.schema();
    let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
    let mut hinted = Vec::new();
    for (position, (index, convert_to)) in indices.iter().enumerate() {
        let Some(to) = convert_to else { continue };
        let read_twice = indices.iter().filter(|(other, _)| other == index).count() > 1;
        // The decoder narrows decimals stored as integers, not as variable-length bytes.
        let root = &metadata.parquet_schema().root_schema().get_fields()[*index];
        let byte_array = root.is_primitive() && root.get_physical_type() == PhysicalType::BYTE_ARRAY;
        let decodes =
            decodes_as(schema.field(*index).data_type(), to) && !(byte_array && decimal(to).is_some());
        if !read_twice && decodes {
            fields[*index] = Arc::new(fields[*index].as_ref().clone().with_data_type(to.clone()));
            hinted.push(position);
        }
    }
    if hinted.is_empty() {
        return (indices, metadata.clone());
    }
    let hint = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let options = ArrowReaderOptions::new().with_schema(hint);
    match ArrowReaderMetadata::try_new(metadata.metadata().clone(), options) {
        Ok(decode_with) => {
            for position in hinted {
                indices[position].1 = None;
            }
            (indices, decode_with)
        }
        Err(refused) => {
            tracing::debug!(%refused, "the Parquet decoder refused the type hint; casting instead");
            (indices, metadata.clone())
        }
    }
}

/// Conversions that never lose information: between string (or binary) encodings, to a
/// dictionary of them, and between decimal widths of the same precision and scale.
fn convertible(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let string = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    let binary = |t: &DataType| matches!(t, Binary | LargeBinary | BinaryView);
    match (from, to) {
        (_, Dictionary(key, value)) => key.is_dictionary_key_type() && convertible(from, value),
        _ if string(from) && string(to) => true,
        _ if binary(from) && binary(to) => true,
        _ => match (decimal(from), decimal(to)) {
            (Some(found), Some(declared)) => found == declared && fits_width(to, found.0),
            _ => false,
        },
    }
}

/// Conversions (among the [`convertible`] ones) the Parquet decoder performs itself.
fn decodes_as(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    match (from, to) {
        (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8 | Utf8View) => true,
        (Binary | LargeBinary | BinaryView, Binary | LargeBinary | BinaryView) => true,
        (Utf8 | LargeUtf8 | Utf8View, Dictionary(_, value)) => matches!(**value, Utf8 | LargeUtf8),
        // From a file's Decimal128 to a narrower or wider width: the decoder reinterprets
        // the stored integers, so only an identical precision and scale is allowed here.
        (Decimal128(..), Decimal32(..) | Decimal64(..) | Decimal256(..)) => convertible(from, to),
        _ => false,
    }
}

/// The precision and scale of a decimal type.
fn decimal(t: &DataType) -> Option<(u8, i8)> {
    use DataType::*;
    match t {
        Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s) | Decimal256(p, s) => Some((*p, *s)),
        _ => None,
    }
}

/// True when decimals of `precision` digits fit `t`'s width.
fn fits_width(t: &DataType, precision: u8) -> bool {
    use arrow::datatypes::{
        DECIMAL32_MAX_PRECISION, DECIMAL64_MAX_PRECISION, DECIMAL128_MAX_PRECISION, DECIMAL256_MAX_PRECISION,
    };
    let max = match t {
        DataType::Decimal32(..) => DECIMAL32_MAX_PRECISION,
        DataType::Decimal64(..) => DECIMAL64_MAX_PRECISION,
        DataType::Decimal128(..) => DECIMAL128_MAX_PRECISION,
        DataType::Decimal256(..) => DECIMAL256_MAX_PRECISION,
        _ => return false,
    };
    precision <= max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_decimals_and_dictionaries_convert_losslessly_only() {
        use DataType::*;
        let dict = |value: DataType| Dictionary(Box::new(Int32), Box::new(value));
        assert!(convertible(&Utf8, &Utf8View) && decodes_as(&Utf8, &Utf8View));
        assert!(convertible(&Utf8, &dict(Utf8)) && decodes_as(&Utf8, &dict(Utf8)));
        assert!(convertible(&Decimal128(15, 2), &Decimal64(15, 2)));
        assert!(decodes_as(&Decimal128(15, 2), &Decimal64(15, 2)));
        // A different scale or precision, or a width too narrow for the precision: refused.
        assert!(!convertible(&Decimal128(15, 2), &Decimal64(15, 3)));
        assert!(!convertible(&Decimal128(15, 2), &Decimal64(16, 2)));
        assert!(!convertible(&Decimal128(20, 2), &Decimal64(20, 2)));
        assert!(!convertible(&Decimal128(15, 2), &Decimal32(15, 2)));
        assert!(!convertible(&Int64, &Utf8) && !convertible(&Utf8, &dict(Binary)));
    }
}
