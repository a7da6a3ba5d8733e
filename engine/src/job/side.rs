//! What a task may read besides its split: the values its job's [`Job::plan`] broadcast
//! ([`Broadcasts`], Hadoop's distributed cache for small data), and the engine's I/O
//! runtime and the job's storage options, for side files a task reads itself.
//!
//! [`Job::plan`]: super::Job::plan

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::error::JobResult;
use crate::storage::StorageOptions;

/// The most bytes (as JSON) all of a job's broadcast values may take together. They travel
/// with the job's settings to every task; larger side data belongs in files tasks read.
pub const BROADCAST_LIMIT_BYTES: usize = 8 << 20;

/// The values a job's plan broadcast to its tasks, by name, as JSON (shared, not copied,
/// by the tasks of a process).
///
/// ```
/// use gristmill::job::Broadcasts;
///
/// // What a task receives when its job's plan called `ctx.broadcast("stopwords", &words)`.
/// let broadcasts: Broadcasts = serde_json::from_str(r#"{"stopwords": ["a", "the"]}"#).unwrap();
/// let words: Vec<String> = broadcasts.get("stopwords").unwrap();
/// assert_eq!(words, ["a", "the"]);
/// assert_eq!(broadcasts.names().collect::<Vec<_>>(), ["stopwords"]);
/// assert!(broadcasts.get::<u64>("stopwords").is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Broadcasts {
    values: Arc<BTreeMap<String, serde_json::Value>>,
}

impl Serialize for Broadcasts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.values.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Broadcasts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Broadcasts { values: Arc::new(BTreeMap::deserialize(deserializer)?) })
    }
}

impl Broadcasts {
    /// Adds `value` under `name`, refusing a name already taken or a total past
    /// [`BROADCAST_LIMIT_BYTES`].
    pub(crate) fn insert(&mut self, name: &str, value: &impl Serialize) -> JobResult<()> {
        let value = serde_json::to_value(value)
            .map_err(|e| format!("broadcast value `{name}` cannot be serialized: {e}"))?;
        if self.values.contains_key(name) {
            return Err(format!("a broadcast value named `{name}` was already given").into());
        }
        let values = Arc::make_mut(&mut self.values);
        values.insert(name.to_owned(), value);
        let bytes = serde_json::to_vec(values).map_or(0, |json| json.len());
        if bytes > BROADCAST_LIMIT_BYTES {
            values.remove(name);
            return Err(format!(
                "broadcast value `{name}` brings the job's broadcast values to {bytes} bytes, over the \
                 limit of {BROADCAST_LIMIT_BYTES}: read larger side data in the tasks instead"
            )
            .into());
        }
        Ok(())
    }

    /// The value named `name`, as a `T`.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> JobResult<T> {
        let Some(value) = self.values.get(name) else {
            let names: Vec<&str> = self.values.keys().map(String::as_str).collect();
            return Err(format!(
                "no broadcast value named `{name}` (the job's plan broadcast: {})",
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            )
            .into());
        };
        T::deserialize(value).map_err(|e| format!("broadcast value `{name}` does not parse: {e}").into())
    }

    /// The names of the values.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

/// What every task of a job may read besides its split ([`super::TaskInfo`] carries it).
///
/// ```
/// use gristmill::job::SideInputs;
///
/// // A task built outside the engine (a unit test, a bench) has no I/O runtime.
/// let side = SideInputs::default();
/// assert!(side.io.is_none());
/// assert_eq!(side.broadcasts.names().count(), 0);
/// ```
#[derive(Clone, Debug, Default)]
pub struct SideInputs {
    /// The values the job's plan broadcast.
    pub broadcasts: Broadcasts,
    /// The engine's I/O runtime (`None` where a task is built without one, e.g. a bench).
    pub io: Option<Handle>,
    /// The job's object-store options.
    pub storage: StorageOptions,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_the_trip_to_a_task_and_misses_name_what_there_is() {
        let mut broadcasts = Broadcasts::default();
        broadcasts.insert("words", &vec!["a", "the"]).unwrap();
        broadcasts.insert("limit", &7u32).unwrap();
        let err = broadcasts.insert("limit", &8u32).unwrap_err().to_string();
        assert!(err.contains("`limit` was already given"), "{err}");
        let back: Broadcasts = serde_json::from_slice(&serde_json::to_vec(&broadcasts).unwrap()).unwrap();
        assert_eq!(back, broadcasts);
        assert_eq!(back.get::<Vec<String>>("words").unwrap(), ["a", "the"]);
        assert_eq!(back.get::<u32>("limit").unwrap(), 7);
        let err = back.get::<u32>("nope").unwrap_err().to_string();
        assert!(err.contains("`nope`") && err.contains("limit, words"), "{err}");
        let err = back.get::<u32>("words").unwrap_err().to_string();
        assert!(err.contains("`words` does not parse"), "{err}");
    }

    #[test]
    fn values_past_the_limit_are_refused_and_not_kept() {
        let mut broadcasts = Broadcasts::default();
        broadcasts.insert("small", &"x").unwrap();
        let err = broadcasts.insert("big", &"y".repeat(BROADCAST_LIMIT_BYTES)).unwrap_err().to_string();
        assert!(err.contains("`big`") && err.contains("over the limit"), "{err}");
        assert_eq!(broadcasts.names().collect::<Vec<_>>(), ["small"]);
    }
}
