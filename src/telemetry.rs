//! Tracing set-up, once, from `main`: `RUST_LOG` filters (default `info`),
//! text or JSON lines on stderr, and, when an OTLP endpoint is given, the
//! same spans exported as OpenTelemetry traces (OTLP over gRPC).

use std::future::Future;
use std::io::IsTerminal;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot install the log subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
    #[error("cannot start the OTLP exporter's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot make the OTLP exporter for {endpoint}: {message}")]
    Exporter { endpoint: String, message: String },
}

/// What telemetry keeps running; dropping it sends the spans not yet
/// exported (call it at the end of `main`, outside any async runtime).
#[must_use = "dropping it stops the trace export"]
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: the last traces were not exported: {e}");
        }
    }
}

/// Installs the global subscriber: logs, plus OTLP trace export when
/// `otlp_endpoint` is given (e.g. `http://localhost:4317`).
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in log files.
        .with_ansi(std::io::stderr().is_terminal());
    let logs: Box<dyn tracing_subscriber::Layer<_> + Send + Sync> = match format {
        LogFormat::Text => Box::new(logs),
        LogFormat::Json => Box::new(logs.json()),
    };
    let provider = otlp_endpoint.map(tracer_provider).transpose()?;
    let traces = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("parcel-risk")));
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .try_init()?;
    Ok(Telemetry { provider })
}

/// A tracer provider that batches spans and sends them to `endpoint`.
fn tracer_provider(endpoint: &str) -> Result<SdkTracerProvider, TelemetryError> {
    // The SDK exports from a thread of its own, outside any Tokio runtime,
    // and the gRPC exporter needs one: it gets a small runtime of its own,
    // so that export never competes with the server's executor.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()
        .map_err(TelemetryError::Runtime)?;
    let exporter = {
        let _inside = runtime.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| TelemetryError::Exporter {
                endpoint: endpoint.to_owned(),
                message: e.to_string(),
            })?
    };
    let exporter = InRuntime {
        runtime: Some(runtime),
        inner: exporter,
    };
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name("parcel-risk")
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        )
        .build())
}

/// A span exporter whose calls run inside the runtime it owns.
#[derive(Debug)]
struct InRuntime<E> {
    /// Dropped without waiting (the SDK may drop the exporter on one of
    /// its threads, where a blocking runtime drop is not allowed).
    runtime: Option<tokio::runtime::Runtime>,
    inner: E,
}

impl<E> Drop for InRuntime<E> {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl<E: SpanExporter> SpanExporter for InRuntime<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let handle = self
            .runtime
            .as_ref()
            .map(|r| r.handle().clone())
            .expect("the runtime lives as long as the exporter");
        Entered {
            handle,
            future: self.inner.export(batch),
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _inside = self.runtime.as_ref().map(|r| r.enter());
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _inside = self.runtime.as_ref().map(|r| r.enter());
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

pin_project_lite::pin_project! {
    /// Polls a future with a runtime entered, so that the I/O and timers it
    /// creates belong to that runtime (whose worker drives them) whatever
    /// thread polls it. The guard is held for one poll only, so the future
    /// stays `Send`.
    struct Entered<F> {
        handle: tokio::runtime::Handle,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Entered<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _inside = this.handle.enter();
        this.future.poll(cx)
    }
}

/// Makes `span` a child of the W3C trace context (`traceparent`,
/// `tracestate`) that a caller sent in its request headers, if any; a
/// no-op when traces are not exported.
pub fn continue_remote_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let context = TraceContextPropagator::new().extract(&Headers(headers));
    // Without the OpenTelemetry layer there is nothing to attach to.
    let _ = span.set_parent(context);
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The process's peak resident memory (Linux `VmHWM`); `None` elsewhere.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
