//! The keyed schema of a job's map output (what it reads is an
//! [`InputSpec`](crate::input::InputSpec), owned by `input`).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{Error, Result};

/// The keyed schema of map output: the columns, and which of them form the key.
///
/// Key columns sort the map output. By default they also route rows to reduce partitions
/// and define the groups a reducer sees; [`KeyedSchema::group_by`] narrows both to a prefix
/// of the key (a secondary sort).
///
/// ```
/// use gristmill::prelude::*;
///
/// // Clicks keyed by (user, time), grouped by user: each reducer call gets one user's
/// // clicks in time order.
/// let clicks = KeyedSchema::new([("user", DataType::Int64), ("ts", DataType::Int64), ("url", DataType::Utf8)])
///     .key(["user", "ts"])
///     .group_by(1);
/// assert_eq!(clicks.key_indices()?, [0, 1]);
/// assert_eq!(clicks.grouping_columns()?, Some(1));
/// assert_eq!(clicks.schema().fields().len(), 3);
///
/// // Over an Arrow schema of one's own: the key defaults to the first column.
/// let counts = KeyedSchema::from_schema(clicks.schema().clone());
/// assert_eq!((counts.key_indices()?, counts.grouping_columns()?), (vec![0], None));
/// # Ok::<(), gristmill::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct KeyedSchema {
    schema: SchemaRef,
    key_names: Vec<String>,
    /// How many leading key columns form the grouping key; `None`: all of them.
    grouping: Option<usize>,
}

impl KeyedSchema {
    /// A schema of non-nullable columns; the key defaults to the first column.
    pub fn new<'a>(columns: impl IntoIterator<Item = (&'a str, DataType)>) -> Self {
        let fields: Vec<Field> = columns.into_iter().map(|(name, ty)| Field::new(name, ty, false)).collect();
        Self::from_schema(Arc::new(Schema::new(fields)))
    }

    /// A keyed schema over an existing Arrow schema; the key defaults to the first column.
    pub fn from_schema(schema: SchemaRef) -> Self {
        let key_names = schema.fields().first().map(|f| f.name().clone()).into_iter().collect();
        KeyedSchema { schema, key_names, grouping: None }
    }

    /// Sets the key columns, by name.
    pub fn key<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        self.key_names = names.into_iter().map(str::to_owned).collect();
        self
    }

    /// Groups rows by the first `columns` key columns only: Hadoop's secondary sort (its
    /// grouping comparator beside the sort comparator). Rows are still sorted by the whole
    /// key, so a reducer sees each group's values ordered by the remaining key columns;
    /// rows are routed to partitions by the grouping columns alone, so a group is never
    /// split. `columns` must be between 1 and the number of key columns.
    pub fn group_by(mut self, columns: usize) -> Self {
        self.grouping = Some(columns);
        self
    }

    /// How many leading key columns form the grouping key, if it is narrower than the key.
    pub fn grouping_columns(&self) -> Result<Option<usize>> {
        let Some(columns) = self.grouping else { return Ok(None) };
        let keys = self.key_names.len();
        if columns == 0 || columns > keys {
            return Err(Error::InvalidJob(format!(
                "the grouping key must be 1 to {keys} leading key columns, not {columns}"
            )));
        }
        Ok((columns < keys).then_some(columns))
    }

    /// The Arrow schema of map output.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The key columns' indices, checked against the schema.
    pub fn key_indices(&self) -> Result<Vec<usize>> {
        if self.key_names.is_empty() {
            return Err(Error::InvalidJob("the map output has no key column".into()));
        }
        self.key_names
            .iter()
            .map(|name| {
                self.schema.index_of(name).map_err(|_| {
                    Error::InvalidJob(format!("key column `{name}` is not in the map output schema"))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_resolve_by_name() {
        let s = KeyedSchema::new([("a", DataType::Utf8), ("b", DataType::UInt64)]).key(["b"]);
        assert_eq!(s.key_indices().unwrap(), vec![1]);
        let bad = s.clone().key(["zz"]);
        assert!(bad.key_indices().unwrap_err().to_string().contains("`zz`"));
    }
}
