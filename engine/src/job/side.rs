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
    /// The bytes of the entries as compact JSON, `"name":value` each and the commas
    /// between them (the braces around them not counted): kept as values are added, so
    /// that checking the limit serializes the new value only, not all of them again.
    entry_bytes: usize,
}

/// The bytes of `value` as compact JSON, counted without keeping them.
fn json_len(value: &impl Serialize) -> usize {
    /// An [`std::io::Write`] that only counts.
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // A string or a JSON value always serializes.
    serde_json::to_writer(&mut count, value).map_or(0, |()| count.0)
}

/// The bytes of the entry `"name":value` in the map's compact JSON.
fn entry_len(name: &str, value: &serde_json::Value) -> usize {
    json_len(&name) + ":".len() + json_len(value)
}

impl Serialize for Broadcasts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.values.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Broadcasts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let values = BTreeMap::<String, serde_json::Value>::deserialize(deserializer)?;
        let entries: Vec<usize> = values.iter().map(|(name, value)| entry_len(name, value)).collect();
        let entry_bytes = entries.iter().sum::<usize>() + entries.len().saturating_sub(1);
        Ok(Broadcasts { values: Arc::new(values), entry_bytes })
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
        let comma = usize::from(!self.values.is_empty());
        let entry_bytes = self.entry_bytes + comma + entry_len(name, &value);
        let bytes = "{}".len() + entry_bytes;
        if bytes > BROADCAST_LIMIT_BYTES {
            return Err(format!(
                "broadcast value `{name}` brings the job's broadcast values to {bytes} bytes, over the \
                 limit of {BROADCAST_LIMIT_BYTES}: read larger side data in the tasks instead"
            )
            .into());
        }
        Arc::make_mut(&mut self.values).insert(name.to_owned(), value);
        self.entry_bytes = entry_bytes;
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

    impl Broadcasts {
        /// The bytes of the values as JSON, as they travel (`{"name":value,...}`), by the
        /// running count.
        fn json_bytes(&self) -> usize {
            "{}".len() + self.entry_bytes
        }
    }

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
        assert_eq!(broadcasts.json_bytes(), serde_json::to_vec(&broadcasts).unwrap().len());
    }

    #[test]
    fn the_running_byte_count_is_the_length_of_the_json_that_travels() {
        let mut broadcasts = Broadcasts::default();
        assert_eq!(broadcasts.json_bytes(), b"{}".len());
        let values = [
            ("words", serde_json::json!(["a", "th\"e", "\u{e9}\n"])),
            ("n", serde_json::json!(7)),
            ("quo\"te", serde_json::json!({"k": [1.5, null]})),
        ];
        for (name, value) in &values {
            broadcasts.insert(name, value).unwrap();
            let json = serde_json::to_vec(&broadcasts).unwrap();
            assert_eq!(broadcasts.json_bytes(), json.len(), "{}", String::from_utf8_lossy(&json));
            let back: Broadcasts = serde_json::from_slice(&json).unwrap();
            assert_eq!(back.json_bytes(), json.len());
        }
        // Up to exactly the limit is allowed; one byte more is not.
        let room = BROADCAST_LIMIT_BYTES - broadcasts.json_bytes() - r#","fill":"""#.len();
        broadcasts.insert("fill", &"f".repeat(room)).unwrap();
        assert_eq!(broadcasts.json_bytes(), BROADCAST_LIMIT_BYTES);
        assert_eq!(serde_json::to_vec(&broadcasts).unwrap().len(), BROADCAST_LIMIT_BYTES);
        assert!(broadcasts.insert("x", &0).is_err());
        assert_eq!(broadcasts.names().count(), values.len() + 1);
    }
}
