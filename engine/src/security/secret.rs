//! Per-job secrets: random, shown to nobody, handed only to the job's own tasks.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// A job's secret: 32 random bytes, hex. A worker serves a job's shuffle data only to a
/// caller presenting it. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct JobSecret(String);

impl JobSecret {
    /// A fresh random secret.
    pub fn generate() -> JobSecret {
        JobSecret(random_hex(32))
    }

    /// The secret a task received.
    pub fn from_string(secret: String) -> JobSecret {
        JobSecret(secret)
    }

    /// The secret itself, to send over TLS or a pipe; never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for JobSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JobSecret(<redacted>)")
    }
}

/// `bytes` random bytes from the operating system, as lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The system's random source failing is not something to carry on through.
    SystemRandom::new().fill(&mut buf).expect("the operating system's random source works");
    hex(&buf)
}

/// SHA-256 of `text`, lower-case hex.
pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_never_printed() {
        let (a, b) = (JobSecret::generate(), JobSecret::generate());
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 64);
        assert!(!format!("{a:?}").contains(a.expose()));
    }
}
