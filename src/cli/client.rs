//! How the CLI's own clients (`replay`) reach a server: plaintext or TLS
//! (a private CA, a client certificate for mutual TLS) and a bearer token.

use std::path::PathBuf;

use anyhow::Context;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::pb::risk_service_client::RiskServiceClient;

#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// CA certificate (PEM) that signed the server's certificate: connect
    /// with TLS (also implied by an https:// address).
    #[arg(long, env = "PARCEL_RISK_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for a server that asks for one (mutual TLS).
    #[arg(long, requires = "tls_client_key", env = "PARCEL_RISK_TLS_CLIENT_CERT")]
    pub tls_client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "tls_client_cert", env = "PARCEL_RISK_TLS_CLIENT_KEY")]
    pub tls_client_key: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host of
    /// the address).
    #[arg(long)]
    pub tls_domain: Option<String>,
    /// Bearer token sent with every call (`parcel-risk token` makes one).
    #[arg(long, env = "PARCEL_RISK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Adds `authorization: Bearer …` to every call when a token is set.
#[derive(Clone)]
pub struct BearerToken(Option<AsciiMetadataValue>);

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Client = RiskServiceClient<InterceptedService<Channel, BearerToken>>;

impl ClientArgs {
    fn tls(&self) -> anyhow::Result<Option<ClientTlsConfig>> {
        let read =
            |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
        let mut tls = ClientTlsConfig::new();
        let mut any = false;
        if let Some(ca) = &self.tls_ca {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            any = true;
        }
        if let (Some(cert), Some(key)) = (&self.tls_client_cert, &self.tls_client_key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            any = true;
        }
        if let Some(domain) = &self.tls_domain {
            tls = tls.domain_name(domain.clone());
            any = true;
        }
        Ok(any.then_some(tls))
    }

    /// Connects to `addr` (HOST:PORT as `serve --addr` takes it, or a URL).
    pub async fn connect(&self, addr: &str) -> anyhow::Result<Client> {
        let tls = self.tls()?;
        let url = if addr.contains("://") {
            addr.to_owned()
        } else if tls.is_some() {
            format!("https://{addr}")
        } else {
            format!("http://{addr}")
        };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .with_context(|| format!("{addr:?} is not an address"))?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).context("TLS settings")?;
        } else if url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_enabled_roots())
                .context("TLS settings")?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        let token = match &self.token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse::<AsciiMetadataValue>()
                    .ok()
                    .context("the token must be printable ASCII")?,
            ),
            None => None,
        };
        Ok(RiskServiceClient::with_interceptor(
            channel,
            BearerToken(token),
        ))
    }
}
