//! Sealing the secret parts of journal records with AES-256-GCM.
//!
//! The key is 32 random bytes in `<data-dir>/journal.key` (mode 0600), created on the
//! driver's first start. This protects a journal copied or backed up *without* its key
//! (the storage options and job settings, which may carry credentials, are unreadable
//! there); it does not protect against anyone who can read the data directory itself.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use super::JournalError;

const KEY_BYTES: usize = 32;

/// The journal's sealing key.
pub struct SealingKey {
    key: LessSafeKey,
    path: PathBuf,
}

impl SealingKey {
    /// Reads the key at `path`, or creates it (0600) when there is none.
    pub fn open_or_create(path: &Path) -> Result<Self, JournalError> {
        let failed = |cause: String| JournalError::Key { path: path.to_owned(), cause };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key(path).map_err(failed)?,
            Err(e) => return Err(failed(e.to_string())),
        };
        if bytes.len() != KEY_BYTES {
            return Err(failed(format!("holds {} bytes, not {KEY_BYTES}", bytes.len())));
        }
        let unbound =
            UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| failed("not an AES-256 key".into()))?;
        Ok(SealingKey { key: LessSafeKey::new(unbound), path: path.to_owned() })
    }

    /// `plain` encrypted and authenticated, bound to `context` (a job id): nonce || ciphertext || tag.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<Vec<u8>, JournalError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| self.error("no random nonce"))?;
        let mut sealed = plain.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context), &mut sealed)
            .map_err(|_| self.error("sealing failed"))?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    /// The plaintext of what [`seal`](Self::seal) made for `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, JournalError> {
        if sealed.len() < NONCE_LEN {
            return Err(self.error("a sealed field is too short"));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| self.error("a bad nonce"))?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context), &mut body)
            .map_err(|_| self.error(&format!("the sealed data of {context} does not open with this key")))?;
        Ok(plain.to_vec())
    }

    fn error(&self, cause: &str) -> JournalError {
        JournalError::Key { path: self.path.clone(), cause: cause.to_owned() }
    }
}

fn create_key(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut key = vec![0u8; KEY_BYTES];
    SystemRandom::new().fill(&mut key).map_err(|_| "no random key".to_owned())?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| e.to_string())?;
    file.write_all(&key).and_then(|()| file.sync_all()).map_err(|e| e.to_string())?;
    Ok(key)
}

/// Lower-case hex (sealed bytes in JSON records).
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of [`to_hex`]'s output; `None` if it is not hex.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}
