//! Transport security and access control: TLS (rustls), client identities
//! from certificates or bearer tokens, roles, and quotas per identity.
//! Independent of gRPC: the service applies it at its edge.

pub mod access;
pub mod quota;
pub mod tls;

use std::path::PathBuf;

use arc_swap::ArcSwap;

pub use access::{AccessError, AccessList, AccessPolicy, Caller, Credential, Role, Roles};
pub use tls::{ServerTls, TlsError, TlsFiles};

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    AccessFile(#[from] access::AccessFileError),
}

/// A server's security: its TLS configuration (None: plaintext) and who
/// may call what. Both reload from their files.
#[derive(Debug)]
pub struct Security {
    tls: Option<std::sync::Arc<ServerTls>>,
    access_file: Option<PathBuf>,
    policy: ArcSwap<AccessPolicy>,
}

impl Security {
    /// Plaintext, no credentials: every caller may do everything. For
    /// development on loopback and for tests.
    pub fn open() -> Security {
        Security {
            tls: None,
            access_file: None,
            policy: ArcSwap::from_pointee(AccessPolicy::open()),
        }
    }

    /// Loads the TLS files and the access file; any error is returned, and
    /// nothing starts without them.
    pub fn load(
        tls: Option<TlsFiles>,
        access_file: Option<PathBuf>,
    ) -> Result<Security, SecurityError> {
        let tls = tls
            .map(|files| ServerTls::load(files, tls::ALPN_GRPC))
            .transpose()?
            .map(std::sync::Arc::new);
        let list = access_file.as_deref().map(AccessList::load).transpose()?;
        let policy = AccessPolicy {
            list,
            mutual_tls: tls.as_ref().is_some_and(|t| t.mutual()),
        };
        Ok(Security {
            tls,
            access_file,
            policy: ArcSwap::from_pointee(policy),
        })
    }

    pub fn tls(&self) -> Option<&std::sync::Arc<ServerTls>> {
        self.tls.as_ref()
    }

    pub fn policy(&self) -> arc_swap::Guard<std::sync::Arc<AccessPolicy>> {
        self.policy.load()
    }

    /// Reads the certificate files and the access file again (SIGHUP). Each
    /// one that fails keeps what is in use, and the error is returned.
    pub fn reload(&self) -> Vec<SecurityError> {
        let mut errors = Vec::new();
        if let Some(tls) = &self.tls
            && let Err(e) = tls.reload()
        {
            errors.push(e.into());
        }
        if let Some(path) = &self.access_file {
            match AccessList::load(path) {
                Ok(list) => {
                    let policy = AccessPolicy {
                        list: Some(list),
                        mutual_tls: self.policy.load().mutual_tls,
                    };
                    self.policy.store(std::sync::Arc::new(policy));
                }
                Err(e) => errors.push(e.into()),
            }
        }
        errors
    }
}
