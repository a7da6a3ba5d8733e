//! Who a verified peer is, from its certificate's common name, and what it may do.
//!
//! Node certificates (driver and workers) carry the common name [`NODE_NAME`]; client
//! certificates carry the user's name, which is their identity. `admin` is the user who may
//! cancel anyone's job. Without TLS (plaintext on loopback) every peer is
//! [`Identity::Anonymous`] and may do everything: there is nothing to check it against.

use std::fmt;

use x509_parser::prelude::{FromDer, X509Certificate};

/// The common name of node certificates.
pub const NODE_NAME: &str = "node";
/// The user who may cancel any job.
pub const ADMIN_USER: &str = "admin";

/// A peer, as its certificate names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A driver or worker.
    Node,
    /// A user (job binaries, the `gristmill` client commands, browsers with a token).
    Client(String),
    /// A plaintext peer on loopback: no certificate to check.
    Anonymous,
}

/// What a request needs to be allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Attach as a worker, fetch job binaries, fetch shuffle data.
    Node,
    /// Submit jobs, list them, cancel one's own.
    Client,
}

impl Identity {
    /// The identity a verified certificate (DER) names.
    pub fn from_certificate(der: &[u8]) -> Result<Identity, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("unreadable certificate: {e}"))?;
        let name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or("the certificate has no common name")?;
        Ok(if name == NODE_NAME { Identity::Node } else { Identity::Client(name.to_owned()) })
    }

    /// True if this identity may act in `role`.
    pub fn may(&self, role: Role) -> bool {
        matches!(
            (self, role),
            (Identity::Anonymous, _) | (Identity::Node, Role::Node) | (Identity::Client(_), Role::Client)
        )
    }

    /// Checks `role`, with an error message saying who was refused what.
    pub fn require(&self, role: Role, what: &str) -> Result<(), String> {
        if self.may(role) {
            return Ok(());
        }
        let needed = match role {
            Role::Node => "a node certificate",
            Role::Client => "a client certificate",
        };
        Err(format!("{self} may not {what}: it needs {needed}"))
    }

    /// The owner name recorded on jobs this identity submits.
    pub fn user(&self) -> &str {
        match self {
            Identity::Node => NODE_NAME,
            Identity::Client(user) => user,
            Identity::Anonymous => "anonymous",
        }
    }

    /// True if this identity may cancel a job owned by `owner`.
    pub fn may_cancel(&self, owner: &str) -> bool {
        match self {
            Identity::Anonymous => true,
            Identity::Client(user) => user == owner || user == ADMIN_USER,
            Identity::Node => false,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Node => f.write_str("a node certificate"),
            Identity::Client(user) => write!(f, "user {user}"),
            Identity::Anonymous => f.write_str("an anonymous plaintext peer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_certificate_kind() {
        let alice = Identity::Client("alice".into());
        assert!(alice.may(Role::Client) && !alice.may(Role::Node));
        assert!(Identity::Node.may(Role::Node) && !Identity::Node.may(Role::Client));
        assert!(alice.may_cancel("alice") && !alice.may_cancel("bob"));
        assert!(Identity::Client(ADMIN_USER.into()).may_cancel("bob"));
        assert!(!Identity::Node.may_cancel("bob"));
        let refused = Identity::Node.require(Role::Client, "submit jobs").unwrap_err();
        assert!(refused.contains("needs a client certificate"), "{refused}");
    }
}
