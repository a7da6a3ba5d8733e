//! Creating the cluster's certificates (`gristmill cert ...`), CockroachDB's layout:
//!
//! | file | what |
//! |---|---|
//! | `ca.crt`, `ca.key` | the cluster CA (the key signs the others; keep it off nodes) |
//! | `node.crt`, `node.key` | the driver's and workers' certificate, naming their hosts and IPs |
//! | `client.USER.crt`, `client.USER.key` | a user's certificate; USER is the identity |
//! | `tokens` | hashes of bearer tokens for the status pages ([`super::tokens`]) |
//!
//! Keys are written with mode 0600 and no file is replaced without `overwrite`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use super::identity::NODE_NAME;
use super::{SecurityError, SecurityResult};

/// A certificates directory and the names of the files in it.
#[derive(Clone, Debug)]
pub struct CertsDir {
    dir: PathBuf,
}

impl CertsDir {
    /// The directory at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CertsDir { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The CA key.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// The node certificate.
    pub fn node_cert(&self) -> PathBuf {
        self.dir.join("node.crt")
    }

    /// The node key.
    pub fn node_key(&self) -> PathBuf {
        self.dir.join("node.key")
    }

    /// `user`'s certificate.
    pub fn client_cert(&self, user: &str) -> PathBuf {
        self.dir.join(format!("client.{user}.crt"))
    }

    /// `user`'s key.
    pub fn client_key(&self, user: &str) -> PathBuf {
        self.dir.join(format!("client.{user}.key"))
    }

    /// The hashed bearer tokens.
    pub fn tokens(&self) -> PathBuf {
        self.dir.join("tokens")
    }

    /// The users with a client certificate here, sorted.
    pub fn client_users(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut users: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                Some(name.strip_prefix("client.")?.strip_suffix(".crt")?.to_owned())
            })
            .collect();
        users.sort();
        users
    }
}

/// How long a certificate is valid, in days relative to now (negative: in the past).
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    /// First valid day (usually -1, so clocks a little behind still accept it).
    pub from_days: i64,
    /// Last valid day.
    pub until_days: i64,
}

impl Validity {
    /// Valid from yesterday for `days`.
    pub fn days(days: i64) -> Self {
        Validity { from_days: -1, until_days: days }
    }

    fn apply(&self, params: &mut CertificateParams) {
        let now = OffsetDateTime::now_utc();
        params.not_before = now + Duration::days(self.from_days);
        params.not_after = now + Duration::days(self.until_days);
    }
}

/// The CA lives ten years, node and client certificates five (as CockroachDB's do).
pub const CA_DAYS: i64 = 3653;
/// See [`CA_DAYS`].
pub const CERT_DAYS: i64 = 1826;

/// Creates `ca.crt` and `ca.key` in `dir`.
pub fn create_ca(dir: &CertsDir, overwrite: bool) -> SecurityResult<()> {
    prepare(dir, &[dir.ca_cert(), dir.ca_key()], overwrite)?;
    let key = KeyPair::generate().map_err(cert_error("generating the CA key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name("Gristmill CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Validity::days(CA_DAYS).apply(&mut params);
    let cert = params.self_signed(&key).map_err(cert_error("signing the CA certificate"))?;
    write_file(&dir.ca_key(), key.serialize_pem().as_bytes(), true)?;
    write_file(&dir.ca_cert(), cert.pem().as_bytes(), false)
}

/// Creates `node.crt` and `node.key`, valid for `hosts` (names and IP addresses).
pub fn create_node(dir: &CertsDir, hosts: &[String], overwrite: bool) -> SecurityResult<()> {
    if hosts.is_empty() {
        return Err(SecurityError::Certificate {
            what: "creating the node certificate".into(),
            cause: "name at least one host or IP address the driver and workers are reached at".into(),
        });
    }
    let (cert, key) = sign(
        dir,
        NODE_NAME,
        hosts,
        &[ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        Validity::days(CERT_DAYS),
        overwrite,
        (dir.node_cert(), dir.node_key()),
    )?;
    write_file(&dir.node_key(), key.as_bytes(), true)?;
    write_file(&dir.node_cert(), cert.as_bytes(), false)
}

/// Creates `client.USER.crt` and `client.USER.key`.
pub fn create_client(dir: &CertsDir, user: &str, overwrite: bool) -> SecurityResult<()> {
    create_client_valid(dir, user, Validity::days(CERT_DAYS), overwrite)
}

/// [`create_client`] with a chosen validity (tests make expired certificates with it).
pub fn create_client_valid(
    dir: &CertsDir,
    user: &str,
    validity: Validity,
    overwrite: bool,
) -> SecurityResult<()> {
    check_user_name(user)?;
    let files = (dir.client_cert(user), dir.client_key(user));
    let (cert, key) =
        sign(dir, user, &[], &[ExtendedKeyUsagePurpose::ClientAuth], validity, overwrite, files)?;
    write_file(&dir.client_key(user), key.as_bytes(), true)?;
    write_file(&dir.client_cert(user), cert.as_bytes(), false)
}

/// User names are identities in file names and job records: letters, digits, `.`, `_`, `-`.
pub fn check_user_name(user: &str) -> SecurityResult<()> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && !user.starts_with('.')
        && user != NODE_NAME
        && user.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        return Ok(());
    }
    Err(SecurityError::Certificate {
        what: format!("user name `{user}`"),
        cause: format!("use letters, digits, `.`, `_` and `-` (and not `{NODE_NAME}`, the nodes' name)"),
    })
}

/// Signs a certificate for `common_name` with the CA in `dir`; returns (cert PEM, key PEM).
fn sign(
    dir: &CertsDir,
    common_name: &str,
    hosts: &[String],
    usages: &[ExtendedKeyUsagePurpose],
    validity: Validity,
    overwrite: bool,
    files: (PathBuf, PathBuf),
) -> SecurityResult<(String, String)> {
    prepare(dir, &[files.0, files.1], overwrite)?;
    let ca_key_pem = read_file(&dir.ca_key())?;
    let ca_cert_pem = read_file(&dir.ca_cert())?;
    let ca_key =
        KeyPair::from_pem(&ca_key_pem).map_err(cert_error(format!("reading {}", dir.ca_key().display())))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key)
        .map_err(cert_error(format!("reading {}", dir.ca_cert().display())))?;
    let mut params = CertificateParams::new(hosts.to_vec()).map_err(cert_error("naming the hosts"))?;
    params.distinguished_name = name(common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = usages.to_vec();
    params.use_authority_key_identifier_extension = true;
    validity.apply(&mut params);
    let key = KeyPair::generate().map_err(cert_error("generating a key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(cert_error(format!("signing {common_name}'s certificate")))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Gristmill");
    name.push(DnType::CommonName, common_name);
    name
}

fn cert_error(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> SecurityError {
    let what = what.into();
    move |e| SecurityError::Certificate { what, cause: e.to_string() }
}

/// Creates `dir` (0700) and refuses to replace any of `files` unless `overwrite`.
fn prepare(dir: &CertsDir, files: &[PathBuf], overwrite: bool) -> SecurityResult<()> {
    create_private_dir(dir.path())?;
    if overwrite {
        return Ok(());
    }
    match files.iter().find(|f| f.exists()) {
        Some(existing) => Err(SecurityError::Exists { path: existing.display().to_string() }),
        None => Ok(()),
    }
}

/// Creates a directory only its owner may read (0700), with its parents; an existing one is
/// made 0700, one of another user refused ([`crate::cluster::private_dir`]).
pub fn create_private_dir(dir: &Path) -> SecurityResult<()> {
    crate::cluster::private_dir::create_private_dir(dir)
        .map(|_| ())
        .map_err(|e| SecurityError::File { path: dir.display().to_string(), cause: e.to_string() })
}

pub(super) fn read_file(path: &Path) -> SecurityResult<String> {
    std::fs::read_to_string(path)
        .map_err(|e| SecurityError::File { path: path.display().to_string(), cause: e.to_string() })
}

/// Writes `bytes` to `path` (replacing it), mode 0600 if `private` else 0644.
pub(super) fn write_file(path: &Path, bytes: &[u8], private: bool) -> SecurityResult<()> {
    let fail =
        |e: std::io::Error| SecurityError::File { path: path.display().to_string(), cause: e.to_string() };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if private { 0o600 } else { 0o644 });
    let mut file = options.open(path).map_err(fail)?;
    // An existing file keeps its mode on open: set it again.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if private { 0o600 } else { 0o644 };
        file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(fail)?;
    }
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::Identity;

    fn der(pem: &str) -> Vec<u8> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
    }

    #[test]
    fn creates_the_cockroach_layout_with_private_keys_and_no_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CertsDir::new(tmp.path().join("certs"));
        create_ca(&dir, false).unwrap();
        create_node(&dir, &["localhost".into(), "127.0.0.1".into()], false).unwrap();
        create_client(&dir, "alice", false).unwrap();
        for file in [
            dir.ca_cert(),
            dir.ca_key(),
            dir.node_cert(),
            dir.node_key(),
            dir.client_cert("alice"),
            dir.client_key("alice"),
        ] {
            assert!(file.is_file(), "{}", file.display());
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in [dir.ca_key(), dir.node_key(), dir.client_key("alice")] {
                assert_eq!(
                    std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
                    0o600,
                    "{}",
                    key.display()
                );
            }
            assert_eq!(std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777, 0o700);
        }
        let before = std::fs::read(dir.client_key("alice")).unwrap();
        let refused = create_client(&dir, "alice", false).unwrap_err().to_string();
        assert!(refused.contains("--overwrite"), "{refused}");
        assert_eq!(std::fs::read(dir.client_key("alice")).unwrap(), before);
        create_client(&dir, "alice", true).unwrap();
        assert_ne!(std::fs::read(dir.client_key("alice")).unwrap(), before);
        assert!(create_ca(&dir, false).is_err());

        let node = Identity::from_certificate(&der(&read_file(&dir.node_cert()).unwrap())).unwrap();
        assert_eq!(node, Identity::Node);
        let alice = Identity::from_certificate(&der(&read_file(&dir.client_cert("alice")).unwrap())).unwrap();
        assert_eq!(alice, Identity::Client("alice".into()));
        assert_eq!(dir.client_users(), vec!["alice".to_owned()]);
    }

    #[test]
    fn bad_user_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CertsDir::new(tmp.path());
        for bad in ["", "node", "../x", "a b", ".hidden"] {
            assert!(create_client(&dir, bad, false).is_err(), "{bad:?}");
        }
    }
}
