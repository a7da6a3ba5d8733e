//! Job binaries by content: SHA-256 digests, and a directory that stores each binary
//! under its digest (the driver's store and each worker's cache).

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::shuffle_service::is_safe_id;
use crate::error::{Error, Result};

/// The SHA-256 of a file, lower-case hex.
pub fn file_digest(path: &Path) -> Result<String> {
    let fail =
        |e: std::io::Error| Error::Rpc { what: format!("hashing {}", path.display()), cause: e.to_string() };
    let mut file = std::fs::File::open(path).map_err(fail)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(fail)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// [`file_digest`], remembered per (path, size, modification time) in the temp dir, so a
/// job binary submitted again is not hashed again.
pub fn cached_file_digest(path: &Path) -> Result<String> {
    let key = std::fs::metadata(path).ok().and_then(|m| {
        let modified = m.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(bytes_digest(format!("{}|{}|{}", path.display(), m.len(), modified.as_nanos()).as_bytes()))
    });
    let cache = key.map(|k| std::env::temp_dir().join("gristmill-digests").join(k));
    if let Some(digest) = cache.as_ref().and_then(|c| std::fs::read_to_string(c).ok())
        && is_digest(digest.trim())
    {
        return Ok(digest.trim().to_owned());
    }
    let digest = file_digest(path)?;
    if let Some(cache) = cache
        && let Some(dir) = cache.parent()
        && std::fs::create_dir_all(dir).is_ok()
    {
        let tmp = cache.with_extension(format!("{}.tmp", std::process::id()));
        let _ = std::fs::write(&tmp, &digest).and_then(|_| std::fs::rename(&tmp, &cache));
    }
    Ok(digest)
}

/// The SHA-256 of `bytes`, lower-case hex.
pub fn bytes_digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True for a well-formed digest (64 hex digits).
pub fn is_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) && is_safe_id(text)
}

/// A directory of binaries named by their digests.
#[derive(Clone, Debug)]
pub struct BinaryStore {
    dir: PathBuf,
}

impl BinaryStore {
    /// A store in `dir` (created).
    pub fn open(dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Rpc { what: format!("creating {}", dir.display()), cause: e.to_string() })?;
        Ok(BinaryStore { dir })
    }

    /// Where the binary with `digest` is (or would be).
    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(digest)
    }

    /// True if the binary is stored.
    pub fn contains(&self, digest: &str) -> bool {
        is_digest(digest) && self.path(digest).is_file()
    }

    /// Stores `bytes` if their digest is `digest`; an executable file, renamed into place.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf> {
        if !is_digest(digest) || bytes_digest(bytes) != digest {
            return Err(Error::Rpc {
                what: "storing a job binary".into(),
                cause: format!("its content does not have the digest {digest}"),
            });
        }
        let path = self.path(digest);
        let tmp = self.dir.join(format!(".{digest}.{}.tmp", std::process::id()));
        let fail = |e: std::io::Error| Error::Rpc {
            what: format!("storing {}", path.display()),
            cause: e.to_string(),
        };
        std::fs::write(&tmp, bytes).map_err(fail)?;
        set_executable(&tmp).map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)?;
        Ok(path)
    }
}

#[cfg(unix)]
fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> std::io::Result<()> {
    Ok(())
}
