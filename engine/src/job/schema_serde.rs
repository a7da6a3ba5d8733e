//! An Arrow schema in a job's serialized fields: `#[serde(with = "gristmill::job::schema_serde")]`
//! on a `SchemaRef` (e.g. a schema [`Job::plan`](super::Job::plan) read, for the tasks). It
//! travels as an Arrow IPC stream without batches, so every type and metadata survives.
//!
//! ```
//! use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Learned {
//!     #[serde(with = "gristmill::job::schema_serde")]
//!     schema: SchemaRef,
//! }
//!
//! let schema = Schema::new(vec![Field::new("ts", DataType::Int64, true)]);
//! let json = serde_json::to_string(&Learned { schema: schema.clone().into() }).unwrap();
//! let back: Learned = serde_json::from_str(&json).unwrap();
//! assert_eq!(*back.schema, schema);
//! ```

use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Deserializer, Serializer};

/// Writes `schema` as the bytes of an Arrow IPC stream.
///
/// ```
/// use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
///
/// let schema: SchemaRef = Schema::new(vec![Field::new("id", DataType::Int64, false)]).into();
/// let json = gristmill::job::schema_serde::serialize(&schema, serde_json::value::Serializer).unwrap();
/// assert!(json.is_array(), "IPC bytes: {json}");
/// ```
pub fn serialize<S: Serializer>(schema: &SchemaRef, serializer: S) -> Result<S::Ok, S::Error> {
    let bytes = crate::input::text_rows::schema_to_bytes(schema).map_err(serde::ser::Error::custom)?;
    serializer.serialize_bytes(&bytes)
}

/// Reads what [`serialize`] wrote.
///
/// ```
/// use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
/// use gristmill::job::schema_serde;
///
/// let schema: SchemaRef = Schema::new(vec![Field::new("id", DataType::Int64, false)]).into();
/// let json = schema_serde::serialize(&schema, serde_json::value::Serializer).unwrap();
/// assert_eq!(schema_serde::deserialize(json).unwrap(), schema);
/// ```
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SchemaRef, D::Error> {
    let bytes = Vec::<u8>::deserialize(deserializer)?;
    crate::input::text_rows::schema_from_bytes(&bytes).map_err(serde::de::Error::custom)
}
