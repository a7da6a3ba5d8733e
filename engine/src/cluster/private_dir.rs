//! Directories only their owner may read or change (mode 0700): the worker's data
//! directory (job binaries it executes, map output, task scratch space), the binary stores,
//! and the submitter's digest cache in the user's own cache directory.
//!
//! ```no_run
//! # fn main() -> gristmill::error::Result<()> {
//! use gristmill::cluster::private_dir::create_private_dir;
//! let dir = create_private_dir(std::path::Path::new("/var/lib/gristmill/binaries"))?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Creates `dir` (and missing parents) with mode 0700, or makes an existing one 0700;
/// refuses a directory another user owns. Returns `dir`.
pub fn create_private_dir(dir: &Path) -> Result<PathBuf> {
    let fail =
        |e: std::io::Error| Error::Config(format!("cannot create the directory {}: {e}", dir.display()));
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    match private_builder().create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(fail(e)),
    }
    make_private(dir)?;
    Ok(dir.to_path_buf())
}

/// The user's own cache directory for gristmill: `$XDG_CACHE_HOME/gristmill`, else
/// `$HOME/.cache/gristmill` (not created; `None` without either variable).
pub fn user_cache_dir() -> Option<PathBuf> {
    let absolute = |name: &str| std::env::var_os(name).map(PathBuf::from).filter(|p| p.is_absolute());
    let base = absolute("XDG_CACHE_HOME").or_else(|| absolute("HOME").map(|home| home.join(".cache")))?;
    Some(base.join("gristmill"))
}

/// True if `dir` is a directory of this user that no one else may access (mode 0700).
#[cfg(unix)]
pub fn is_private_dir(dir: &Path) -> bool {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(meta) = std::fs::symlink_metadata(dir) else { return false };
    meta.is_dir() && meta.permissions().mode() & 0o077 == 0 && owned_by_us(dir, meta.uid()).unwrap_or(false)
}

/// True if `dir` is a directory (no owners or modes to check here).
#[cfg(not(unix))]
pub fn is_private_dir(dir: &Path) -> bool {
    dir.is_dir()
}

#[cfg(unix)]
fn private_builder() -> std::fs::DirBuilder {
    use std::os::unix::fs::DirBuilderExt;
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    builder
}

#[cfg(not(unix))]
fn private_builder() -> std::fs::DirBuilder {
    std::fs::DirBuilder::new()
}

#[cfg(unix)]
fn make_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fail = |e: std::io::Error| Error::Config(format!("cannot make {} private: {e}", dir.display()));
    let meta = std::fs::metadata(dir).map_err(fail)?;
    if !owned_by_us(dir, meta.uid()).map_err(fail)? {
        return Err(Error::Config(format!(
            "{} belongs to another user (uid {}); use a directory of your own",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.permissions().mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_private(_: &Path) -> Result<()> {
    Ok(())
}

/// True if `owner` is this process's user: the owner of a file it creates in `dir`
/// (which avoids `unsafe` calls to `geteuid`).
#[cfg(unix)]
fn owned_by_us(dir: &Path, owner: u32) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let probe = dir.join(format!(".owner-probe-{}-{}", std::process::id(), unique()));
    let created = std::fs::OpenOptions::new().write(true).create_new(true).open(&probe);
    let ours = created.and_then(|file| file.metadata()).map(|meta| meta.uid());
    let _ = std::fs::remove_file(&probe);
    Ok(ours? == owner)
}

#[cfg(unix)]
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_and_existing_directories_become_private() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("a/b/data");
        create_private_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        assert!(is_private_dir(&fresh));

        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!is_private_dir(&open));
        create_private_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700);
        assert!(is_private_dir(&open));
        assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0, "the owner probe is removed");
    }

    #[test]
    fn a_file_in_the_way_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(create_private_dir(&file).is_err());
    }
}
