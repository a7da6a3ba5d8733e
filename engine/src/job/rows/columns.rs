//! How a serde type lies in Arrow columns: a struct's or tuple's fields one column each (so a
//! composite key sorts by its fields in order), any other type one column.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StructArray};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use serde::de::DeserializeOwned;
use serde_arrow::schema::{SchemaLike, TracingOptions};
use serde_arrow::utils::Item;

use crate::error::JobResult;

/// The Arrow columns of one serde type.
///
/// ```
/// use gristmill::arrow::datatypes::DataType;
/// use gristmill::job::rows::RowColumns;
///
/// #[derive(serde::Deserialize)]
/// struct Sale { country: String, amount: f64 }
///
/// let sale = RowColumns::of::<Sale>("value")?;
/// assert_eq!((sale.len(), sale.is_empty()), (2, false));
/// assert_eq!(sale.projection(), Some(vec!["country", "amount"]));
/// assert_eq!(sale.fields()[1].data_type(), &DataType::Float64);
/// // A tuple's columns are numbered; a scalar is one column of the given name.
/// let pair = RowColumns::of::<(String, i64)>("key")?;
/// assert_eq!(pair.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["key_0", "key_1"]);
/// assert_eq!(RowColumns::of::<u64>("value")?.projection(), None);
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
#[derive(Clone, Debug)]
pub struct RowColumns {
    /// The columns as they appear in batches, traced from the type.
    columns: Vec<FieldRef>,
    /// The names serde gives them (a struct's fields, a tuple's `0`, `1`, ...), or `None`
    /// when the type is one column of its own.
    serde_names: Option<Vec<String>>,
}

impl RowColumns {
    /// Traces `T`. A struct's columns are named after its fields; a tuple's are
    /// `{name}_0`, `{name}_1`, ...; any other type is one column `name`. Text is `Utf8`
    /// and bytes `Binary`.
    pub fn of<T: DeserializeOwned>(name: &str) -> JobResult<Self> {
        let options = TracingOptions::default().strings_as_large_utf8(false).bytes_as_large_binary(false);
        let traced = Vec::<FieldRef>::from_type::<Item<T>>(options)
            .map_err(|e| format!("{} has no Arrow columns: {e}", std::any::type_name::<T>()))?;
        let item = traced.into_iter().next().ok_or("serde_arrow traced no field")?;
        match item.data_type() {
            DataType::Struct(children) if !item.is_nullable() && !children.is_empty() => {
                let serde_names: Vec<String> = children.iter().map(|c| c.name().clone()).collect();
                let columns = children
                    .iter()
                    .map(|child| {
                        let column = match child.name().parse::<usize>() {
                            Ok(i) => format!("{name}_{i}"),
                            Err(_) => child.name().clone(),
                        };
                        Arc::new(child.as_ref().clone().with_name(column))
                    })
                    .collect();
                Ok(RowColumns { columns, serde_names: Some(serde_names) })
            }
            _ => Ok(RowColumns {
                columns: vec![Arc::new(item.as_ref().clone().with_name(name))],
                serde_names: None,
            }),
        }
    }

    /// The columns, as traced from the type.
    pub fn fields(&self) -> &[FieldRef] {
        &self.columns
    }

    /// How many columns the type takes.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Never true: a type takes at least one column.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The names of a struct's columns, for projecting input by field name; `None` for a
    /// type that is one column.
    pub fn projection(&self) -> Option<Vec<&str>> {
        self.serde_names.as_ref().map(|_| self.columns.iter().map(|f| f.name().as_str()).collect())
    }

    /// The single field `item` through which serde_arrow reads or writes the type, over
    /// `fields` (the actual columns: the traced ones, or a declared schema's).
    pub fn item_field(&self, fields: &[FieldRef]) -> FieldRef {
        match &self.serde_names {
            Some(names) => {
                let children: Fields = fields
                    .iter()
                    .zip(names)
                    .map(|(field, name)| Arc::new(field.as_ref().clone().with_name(name)))
                    .collect::<Vec<FieldRef>>()
                    .into();
                Arc::new(Field::new("item", DataType::Struct(children), false))
            }
            None => Arc::new(fields[0].as_ref().clone().with_name("item")),
        }
    }

    /// The columns of the single array serde_arrow wrote through [`RowColumns::item_field`].
    pub fn split(&self, item: ArrayRef) -> JobResult<Vec<ArrayRef>> {
        if self.serde_names.is_none() {
            return Ok(vec![item]);
        }
        let array = item.as_any().downcast_ref::<StructArray>().ok_or("serde_arrow wrote no struct array")?;
        Ok(array.columns().to_vec())
    }

    /// `columns` (in the type's column order), each cast to the traced type where it
    /// differs, with no nulls where the field is not an `Option`.
    pub(super) fn cast(&self, columns: &[ArrayRef]) -> JobResult<Vec<ArrayRef>> {
        columns.iter().zip(&self.columns).map(|(column, field)| read_as(column, field)).collect()
    }

    /// A struct's field names (a tuple's `0`, `1`, ...) when the type spreads over its
    /// columns; `None` when it is one column.
    pub(super) fn serde_names(&self) -> Option<&[String]> {
        self.serde_names.as_deref()
    }

    /// The single array serde_arrow reads the type from, made of `columns` (in the type's
    /// column order), each cast to the traced type where it differs (a decimal read as
    /// `f64`, a timestamp as `i64`, a view or dictionary of strings as a `String`).
    pub fn join(&self, columns: &[ArrayRef]) -> JobResult<(FieldRef, ArrayRef)> {
        let cast_columns = self.cast(columns)?;
        let item = self.item_field(&self.columns);
        let array: ArrayRef = match (&self.serde_names, item.data_type()) {
            (Some(_), DataType::Struct(children)) => Arc::new(
                StructArray::try_new(children.clone(), cast_columns, None)
                    .map_err(|e| format!("the columns do not fit the row type: {e}"))?,
            ),
            _ => cast_columns.into_iter().next().ok_or("no column to read")?,
        };
        Ok((item, array))
    }
}

/// `column` as the traced `field`: cast where the types differ, with no nulls where the
/// field is not an `Option`.
fn read_as(column: &ArrayRef, field: &FieldRef) -> JobResult<ArrayRef> {
    let column = if column.data_type() == field.data_type() {
        column.clone()
    } else {
        // Not `safe`: a value that does not convert is an error, not a null.
        let strict = CastOptions { safe: false, ..Default::default() };
        cast_with_options(column, field.data_type(), &strict).map_err(|e| {
            format!(
                "column `{}` of type {} cannot be read as {}: {e}",
                field.name(),
                column.data_type(),
                field.data_type()
            )
        })?
    };
    if !field.is_nullable() && column.null_count() > 0 {
        let row = (0..column.len()).find(|&i| column.is_null(i)).unwrap_or(0);
        let name = field.name();
        return Err(format!(
            "column `{name}` is null at row {row} of the batch, but its field is not an Option"
        )
        .into());
    }
    Ok(column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Click {
        user_id: i64,
        url: String,
        referrer: Option<String>,
    }

    fn names(columns: &RowColumns) -> Vec<(String, DataType, bool)> {
        columns.fields().iter().map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable())).collect()
    }

    #[test]
    fn structs_spread_over_columns_named_after_their_fields() {
        let columns = RowColumns::of::<Click>("key").unwrap();
        assert_eq!(
            names(&columns),
            [
                ("user_id".into(), DataType::Int64, false),
                ("url".into(), DataType::Utf8, false),
                ("referrer".into(), DataType::Utf8, true)
            ]
        );
        assert_eq!(columns.projection().unwrap(), ["user_id", "url", "referrer"]);
    }

    #[test]
    fn tuples_spread_over_numbered_columns_and_scalars_take_one() {
        let pair = RowColumns::of::<(String, u32)>("key").unwrap();
        assert_eq!(
            names(&pair),
            [("key_0".into(), DataType::Utf8, false), ("key_1".into(), DataType::UInt32, false)]
        );
        let scalar = RowColumns::of::<f64>("value").unwrap();
        assert_eq!(names(&scalar), [("value".into(), DataType::Float64, false)]);
        assert!(scalar.projection().is_none());
    }
}
