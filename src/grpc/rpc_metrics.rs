//! Per-RPC metrics for every service the server mounts: calls by method
//! and final status code, and their duration (for a stream, until its last
//! message), as a tower layer over the HTTP/2 requests. The status is read
//! where gRPC puts it: the response headers of a trailers-only answer, or the
//! trailers after the body. A call whose body ends without a status (the
//! client went away) counts as CANCELLED. The same per-call wrapper keeps
//! the call's connection busy for idle reaping ([`super::idle`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame};

use super::idle::{CallGuard, Connections};

/// The methods the server knows, as metric labels; any other path (a
/// client may send anything) is `other`, so that labels stay few.
const METHODS: [&str; 10] = [
    "RiskService/ScoreDeclarations",
    "RiskService/ScoreDeclaration",
    "RiskService/PlanInspections",
    "RiskService/ReportInspectionResult",
    "RiskService/ReportInspectionResults",
    "RiskService/GetModelInfo",
    "Health/Check",
    "Health/Watch",
    "ServerReflection/ServerReflectionInfo",
    "other",
];

fn method_label(path: &str) -> &'static str {
    let mut parts = path.rsplitn(3, '/');
    let (Some(method), Some(service)) = (parts.next(), parts.next()) else {
        return "other";
    };
    let service = service.rsplit('.').next().unwrap_or(service);
    METHODS
        .iter()
        .find(|m| {
            m.split_once('/')
                .is_some_and(|(s, n)| s == service && n == method)
        })
        .copied()
        .unwrap_or("other")
}

fn code_label(code: &[u8]) -> &'static str {
    let code = std::str::from_utf8(code)
        .ok()
        .and_then(|c| c.parse::<i32>().ok())
        .unwrap_or(2);
    super::status::code_name(tonic::Code::from_i32(code))
}

/// The calls and durations of every method, registered at start (at zero)
/// with their HELP texts.
pub fn describe() {
    metrics::describe_counter!(
        "parcel_risk_rpc_total",
        "gRPC calls by method and final status code"
    );
    metrics::describe_histogram!(
        "parcel_risk_rpc_seconds",
        metrics::Unit::Seconds,
        "gRPC call duration by method, from the request to the last response message"
    );
    for method in METHODS {
        metrics::counter!("parcel_risk_rpc_total", "method" => method, "code" => "OK").absolute(0);
    }
}

/// The layer: `Server::builder().layer(RpcMetricsLayer::new(..))`.
#[derive(Debug, Clone, Default)]
pub struct RpcMetricsLayer {
    /// Open connections, marked busy while a call lasts (none: no reaping).
    connections: Option<Arc<Connections>>,
}

impl RpcMetricsLayer {
    pub fn new(connections: Option<Arc<Connections>>) -> Self {
        Self { connections }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics {
            inner,
            connections: self.connections.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    connections: Option<Arc<Connections>>,
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Body,
{
    type Response = http::Response<MeteredBody<R>>;
    type Error = S::Error;
    type Future = futures_util::future::MapOk<
        S::Future,
        Box<dyn FnOnce(http::Response<R>) -> http::Response<MeteredBody<R>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        use futures_util::TryFutureExt;
        let method = method_label(request.uri().path());
        let started = Instant::now();
        let busy = self.connections.as_ref().and_then(|c| c.busy(&request));
        self.inner
            .call(request)
            .map_ok(Box::new(move |response: http::Response<R>| {
                // Trailers-only: the status is in the headers, and the call is over.
                let status = response
                    .headers()
                    .get("grpc-status")
                    .map(|v| code_label(v.as_bytes()));
                response.map(|body| MeteredBody {
                    body,
                    method,
                    started,
                    status,
                    done: false,
                    _busy: busy,
                })
            }))
    }
}

/// A response body that records its call when it ends.
pub struct MeteredBody<B> {
    body: B,
    method: &'static str,
    started: Instant,
    /// Known from the headers (trailers-only) or the trailers.
    status: Option<&'static str>,
    done: bool,
    /// The call's connection is busy until the body is dropped.
    _busy: Option<CallGuard>,
}

impl<B> MeteredBody<B> {
    fn record(&mut self, status: &'static str) {
        if self.done {
            return;
        }
        self.done = true;
        metrics::counter!("parcel_risk_rpc_total", "method" => self.method, "code" => status)
            .increment(1);
        metrics::histogram!("parcel_risk_rpc_seconds", "method" => self.method)
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        let status = self.status.unwrap_or("CANCELLED");
        self.record(status);
    }
}

impl<B: Body + Unpin> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(|t| t.get("grpc-status")) {
                    self.status = Some(code_label(code.as_bytes()));
                }
            }
            Poll::Ready(None) => {
                let status = self.status.unwrap_or("CANCELLED");
                self.record(status);
            }
            Poll::Ready(Some(Err(_))) => self.record("INTERNAL"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_labelled_and_unknown_paths_are_other() {
        assert_eq!(
            method_label("/parcelrisk.v1.RiskService/ScoreDeclaration"),
            "RiskService/ScoreDeclaration"
        );
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), "Health/Check");
        assert_eq!(method_label("/parcelrisk.v1.RiskService/Nope"), "other");
        assert_eq!(method_label("/x"), "other");
        assert_eq!(method_label(""), "other");
        assert_eq!(code_label(b"0"), "OK");
        assert_eq!(code_label(b"7"), "PERMISSION_DENIED");
        assert_eq!(code_label(b"junk"), "UNKNOWN");
    }
}
