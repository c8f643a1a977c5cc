//! The Prometheus endpoint (`GET /metrics`), over plaintext or TLS with the
//! service's own certificate (HTTP/1.1; reloaded with it on SIGHUP).
//! Served here rather than by the exporter's listener, which has no TLS.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::security::ServerTls;

/// How long a scraper gets to send its request (and finish its TLS
/// handshake): an idle socket is closed.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often histograms are folded (the exporter's listener did this).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

fn answer(
    handle: &PrometheusHandle,
    request: &hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (status, body) = if request.uri().path() == "/metrics" {
        (hyper::StatusCode::OK, handle.render())
    } else {
        (hyper::StatusCode::NOT_FOUND, "see /metrics\n".to_owned())
    };
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

async fn serve_connection<IO>(io: IO, handle: PrometheusHandle)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let response = answer(&handle, &request);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "metrics connection ended");
    }
}

/// Serves `handle`'s metrics on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle, tls: Option<Arc<ServerTls>>) {
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP_EVERY).await;
            upkeep.run_upkeep();
        }
    });
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = handle.clone();
        match &tls {
            None => {
                tokio::spawn(serve_connection(stream, handle));
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                tokio::spawn(async move {
                    match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, handle).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "metrics: TLS handshake failed"),
                        Err(_) => tracing::debug!("metrics: no TLS handshake in time"),
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn metrics_are_served_and_other_paths_are_not_found() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("parcel_risk_test_total").increment(3);
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, handle, None));
        let get = |path: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        };
        let metrics = get("/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("parcel_risk_test_total 3"), "{metrics}");
        assert!(get("/").await.starts_with("HTTP/1.1 404"));
    }
}
