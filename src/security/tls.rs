//! TLS for the server with rustls (the ring provider, as tonic's
//! `tls-ring`): certificate and key from PEM files, optionally a client CA
//! for mutual TLS, reloaded on demand so that certificates rotate without
//! a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

/// Where the server's TLS material is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to: mutual
    /// TLS. None: clients present no certificate.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Pem { path: String, message: String },
    #[error("{path} holds no certificate")]
    NoCertificate { path: String },
    #[error("the client CA {path}: {source}")]
    ClientCa {
        path: String,
        #[source]
        source: rustls::Error,
    },
    #[error("the client CA {path}: {message}")]
    Verifier { path: String, message: String },
    #[error("the certificate {cert} and key {key} do not make a TLS configuration: {source}")]
    Config {
        cert: String,
        key: String,
        #[source]
        source: rustls::Error,
    },
}

fn pem_error(path: &Path, e: &rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, &e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// The application protocol of gRPC, HTTP/2, as ALPN names it.
pub const ALPN_GRPC: &[u8] = b"h2";
/// HTTP/1.1, for the metrics endpoint.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A rustls server configuration from `files`, offering the application
/// protocol `alpn` only.
pub fn server_config(files: &TlsFiles, alpn: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| pem_error(&files.key, &e))?;
    let config_error = |source| TlsError::Config {
        cert: files.cert.display().to_string(),
        key: files.key.display().to_string(),
        source,
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(config_error)?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certificates(ca)? {
                roots.add(cert).map_err(|source| TlsError::ClientCa {
                    path: ca.display().to_string(),
                    source,
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Verifier {
                    path: ca.display().to_string(),
                    message: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(config_error)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// The server's TLS configuration, swapped whole by [`ServerTls::reload`]:
/// handshakes already under way finish with the configuration they began
/// with; new ones take the new one.
pub struct ServerTls {
    files: TlsFiles,
    alpn: &'static [u8],
    current: ArcSwap<ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads `files` for a server of the application protocol `alpn`
    /// ([`ALPN_GRPC`], [`ALPN_HTTP1`]).
    pub fn load(files: TlsFiles, alpn: &'static [u8]) -> Result<ServerTls, TlsError> {
        let config = server_config(&files, alpn)?;
        Ok(ServerTls {
            files,
            alpn,
            current: ArcSwap::new(config),
        })
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// Reads the files again; on error the configuration in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files, self.alpn)?;
        self.current.store(config);
        Ok(())
    }
}

/// The names a client certificate goes by: its subject common names, then
/// its subject alternative names (DNS, e-mail, URI). Empty when it does not
/// parse (the TLS layer has verified it already).
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) = name
            {
                names.push((*s).to_owned());
            }
        }
    }
    names
}
