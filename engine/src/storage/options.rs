//! [`StorageOptions`]: one job's object-store settings (`--storage-option key=value`).
//!
//! They travel with the job (in [`RunConfig`](crate::config::RunConfig), the cluster job
//! payload and the submission), never through a process-global, so a driver committing many
//! jobs uses each job's own credentials. Values are secrets: `Debug` shows only the keys,
//! and stores are cached under a digest of the options, never under their text.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Object-store settings of one job: `key=value` pairs, keys as object_store names them
/// (`aws_endpoint`, `aws_region`, `aws_access_key_id`, `google_service_account`,
/// `azure_storage_account_name`, ...). They apply on top of the standard environment
/// variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`), which every store reads too.
///
/// Keys are unique (a later pair replaces an earlier one with the same key) and kept in
/// key order, so equal settings compare equal whatever order they were given in.
///
/// ```
/// use gristmill::storage::StorageOptions;
///
/// let options = StorageOptions::new([("aws_region", "eu-west-1"), ("aws_secret_access_key", "s3cr3t")]);
/// assert_eq!(options.keys().collect::<Vec<_>>(), ["aws_region", "aws_secret_access_key"]);
/// assert!(!format!("{options:?}").contains("s3cr3t"));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<(String, String)>", into = "Vec<(String, String)>")]
pub struct StorageOptions {
    /// Sorted by key, keys unique.
    pairs: Vec<(String, String)>,
}

impl StorageOptions {
    /// Options from `key=value` pairs; for a key given twice, the last value counts.
    pub fn new<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let unique: BTreeMap<String, String> = pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        StorageOptions { pairs: unique.into_iter().collect() }
    }

    /// True when no option is set (the environment alone configures stores).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The keys, in order (safe to show).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(k, _)| k.as_str())
    }

    /// The pairs, values included: for building stores and sending the options to the
    /// job's own processes (over TLS or a pipe), never for messages.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// These options over the object-store variables of this process's environment
    /// (`AWS_*`, `GOOGLE_*`, `AZURE_*`; an option given here wins): what a submitter hands
    /// its job, since the driver acts with the job's options alone.
    pub fn over_environment(&self) -> StorageOptions {
        let environment = super::stores::environment_options();
        StorageOptions::new(environment.into_iter().chain(self.pairs.iter().cloned()))
    }

    /// A SHA-256 digest of the options, identifying them in the store cache without
    /// holding their text.
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        for (key, value) in &self.pairs {
            // Length-prefixed, so no two different lists hash the same bytes.
            for part in [key, value] {
                hash.update((part.len() as u64).to_le_bytes());
                hash.update(part.as_bytes());
            }
        }
        hash.finalize().into()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for StorageOptions {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        StorageOptions::new(pairs)
    }
}

impl From<Vec<(String, String)>> for StorageOptions {
    fn from(pairs: Vec<(String, String)>) -> Self {
        StorageOptions::new(pairs)
    }
}

impl From<StorageOptions> for Vec<(String, String)> {
    fn from(options: StorageOptions) -> Self {
        options.pairs
    }
}

/// Keys only: `StorageOptions { aws_region: <redacted>, ... }`.
impl fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted;
        impl fmt::Debug for Redacted {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("<redacted>")
            }
        }
        let mut map = f.debug_map();
        for key in self.keys() {
            map.entry(&format_args!("{key}"), &Redacted);
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> StorageOptions {
        StorageOptions::new(pairs.iter().copied())
    }

    #[test]
    fn debug_shows_keys_but_never_values() {
        let o = options(&[("aws_secret_access_key", "hunter2-secret"), ("aws_region", "eu-west-1")]);
        let shown = format!("{o:?}");
        assert_eq!(shown, "{aws_region: <redacted>, aws_secret_access_key: <redacted>}");
        assert!(!format!("{o:#?}").contains("hunter2"));
    }

    #[test]
    fn order_does_not_matter_and_the_last_value_of_a_key_counts() {
        let a = options(&[("aws_region", "x"), ("aws_endpoint", "e"), ("aws_region", "y")]);
        let b = options(&[("aws_endpoint", "e"), ("aws_region", "y")]);
        assert_eq!(a, b);
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.iter().collect::<Vec<_>>(), [("aws_endpoint", "e"), ("aws_region", "y")]);
    }

    #[test]
    fn digests_tell_values_apart() {
        let a = options(&[("aws_access_key_id", "one")]);
        let b = options(&[("aws_access_key_id", "two")]);
        let c = options(&[("aws_access_key_idone", "")]);
        assert_ne!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
        assert_ne!(a.digest(), StorageOptions::default().digest());
    }

    #[test]
    fn serialized_as_pairs_for_the_job_payload() {
        let o = options(&[("aws_region", "y")]);
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(json, r#"[["aws_region","y"]]"#);
        assert_eq!(serde_json::from_str::<StorageOptions>(&json).unwrap(), o);
    }
}
