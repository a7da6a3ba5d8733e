//! Bearer tokens for the driver's status pages, so a browser or `curl -H "Authorization:
//! Bearer ..."` works without importing a certificate. `gristmill cert create-token USER`
//! prints a token once and appends only its SHA-256 (and the user) to `tokens` in the
//! certificates directory; the driver reads that file when a request shows a token.

use std::io::Write as _;

use super::certs::{CertsDir, check_user_name, create_private_dir};
use super::secret::{random_hex, sha256_hex};
use super::{SecurityError, SecurityResult};

/// Prefix of every token, so they are recognizable (and greppable) in leaked text.
const PREFIX: &str = "gmt_";

/// Creates a token for `user`, stores its hash and returns the token (shown once).
pub fn create_token(dir: &CertsDir, user: &str) -> SecurityResult<String> {
    check_user_name(user)?;
    create_private_dir(dir.path())?;
    let token = format!("{PREFIX}{}", random_hex(32));
    let path = dir.tokens();
    let fail =
        |e: std::io::Error| SecurityError::File { path: path.display().to_string(), cause: e.to_string() };
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(fail)?;
    writeln!(file, "{} {user}", sha256_hex(&token)).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    Ok(token)
}

/// The user a token belongs to, if it is one of `dir`'s.
pub fn verify_token(dir: &CertsDir, token: &str) -> Option<String> {
    if !token.starts_with(PREFIX) {
        return None;
    }
    let hash = sha256_hex(token);
    let stored = std::fs::read_to_string(dir.tokens()).ok()?;
    stored.lines().find_map(|line| {
        let (stored_hash, user) = line.split_once(' ')?;
        (stored_hash == hash).then(|| user.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_and_verify_to_their_user() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CertsDir::new(tmp.path());
        let token = create_token(&dir, "alice").unwrap();
        let stored = std::fs::read_to_string(dir.tokens()).unwrap();
        assert!(!stored.contains(&token), "the token itself is not stored");
        assert_eq!(verify_token(&dir, &token).as_deref(), Some("alice"));
        assert_eq!(verify_token(&dir, &format!("{token}x")), None);
        assert_eq!(verify_token(&dir, "gmt_00"), None);
    }
}
