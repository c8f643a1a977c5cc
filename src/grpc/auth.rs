//! Access control at the gRPC edge: every call to `RiskService` is
//! authenticated (client certificate or bearer token, see
//! [`crate::security::access`]) and checked against the role its method
//! needs before any handler runs. Health and reflection stay open.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready, ready};
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::security::{AccessError, Caller, Role, Security, access::authorize};

/// The role a method of `parcelrisk.v1.RiskService` needs. A method this
/// list does not know needs `admin`: new methods are closed until named.
pub fn required_role(method: &str) -> Role {
    match method {
        "ScoreDeclarations" | "ScoreDeclaration" | "PlanInspections" | "GetModelInfo" => {
            Role::Score
        }
        "ReportInspectionResult" | "ReportInspectionResults" => Role::Report,
        _ => Role::Admin,
    }
}

/// `inner` behind authentication and roles; the [`Caller`] goes into the
/// request's extensions for the handlers (who reported a result).
#[derive(Debug, Clone)]
pub struct Authorized<S> {
    inner: S,
    security: Arc<Security>,
}

impl<S> Authorized<S> {
    pub fn new(inner: S, security: Arc<Security>) -> Self {
        Self { inner, security }
    }
}

impl<S: NamedService> NamedService for Authorized<S> {
    const NAME: &'static str = S::NAME;
}

/// The caller of `request`, from its `authorization` header and the
/// connection it came on.
fn caller<B>(security: &Security, request: &http::Request<B>) -> Result<Caller, AccessError> {
    let extensions = request.extensions();
    let tls = extensions.get::<TlsConnectInfo<TcpConnectInfo>>();
    let peer = tls
        .and_then(|t| t.get_ref().remote_addr())
        .or_else(|| extensions.get::<TcpConnectInfo>()?.remote_addr());
    let names = tls.and_then(TlsConnectInfo::peer_certs).and_then(|chain| {
        chain
            .first()
            .map(|leaf| crate::security::tls::certificate_names(leaf))
    });
    let authorization = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(http::HeaderValue::as_bytes);
    security
        .policy()
        .authenticate(authorization, names.as_deref(), peer)
}

fn refusal(error: &AccessError) -> tonic::Status {
    match error {
        AccessError::NoCredentials | AccessError::BadToken => {
            metrics::counter!("parcel_risk_calls_unauthenticated_total").increment(1);
            tonic::Status::unauthenticated(error.to_string())
        }
        AccessError::Forbidden { caller, method, .. } => {
            metrics::counter!("parcel_risk_calls_forbidden_total").increment(1);
            tracing::warn!(%caller, %method, "call refused: role missing");
            tonic::Status::permission_denied(error.to_string())
        }
    }
}

impl<S, B> tower::Service<http::Request<B>> for Authorized<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().rsplit('/').next().unwrap_or("");
        let checked = caller(&self.security, &request).and_then(|caller| {
            authorize(&caller, required_role(method), method)?;
            Ok(caller)
        });
        match checked {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Either::Right(self.inner.call(request))
            }
            Err(e) => Either::Left(ready(Ok(refusal(&e).into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_of_the_contract_has_its_role_and_unknown_ones_need_admin() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let methods: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| &f.service)
            .filter(|s| s.name() == "RiskService")
            .flat_map(|s| &s.method)
            .map(|m| m.name().to_owned())
            .collect();
        assert_eq!(methods.len(), 6, "{methods:?}");
        // Every RPC of the contract is given a role on purpose: a new one
        // falls to admin until it is named here.
        for method in &methods {
            assert_ne!(required_role(method), Role::Admin, "{method} has no role");
        }
        assert_eq!(required_role("ReportInspectionResults"), Role::Report);
        assert_eq!(required_role("GetModelInfo"), Role::Score);
        assert_eq!(required_role("Reload"), Role::Admin);
    }
}
