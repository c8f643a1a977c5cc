//! Trace export, end to end: the real server with `--otlp-endpoint`'s
//! exporter sends its spans to an in-process OTLP collector. A binary of its
//! own, because the tracing subscriber is global to a process.

#![allow(clippy::wildcard_enum_match_arm)]

#[allow(dead_code)]
mod common;

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use parcel_risk::cli::LogFormat;
use parcel_risk::domain::ReferenceData;
use parcel_risk::grpc::{ServerConfig, ServiceState, serve};
use parcel_risk::model::ModelArtifact;
use parcel_risk::pb;
use parcel_risk::pb::risk_service_client::RiskServiceClient;
use tokio_stream::StreamExt;

/// A collector that keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        self.0.lock().unwrap().extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn int_attribute(span: &Span, key: &str) -> Option<i64> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            Value::IntValue(v) => Some(*v),
            _ => None,
        }
    })
}

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN_ID: &str = "b7ad6b7169203331";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_traced_under_the_callers_trace_with_a_span_per_batch() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let telemetry =
        parcel_risk::telemetry::init(LogFormat::Text, Some(&format!("http://{collector_addr}")))
            .unwrap();

    let state = Arc::new(ServiceState::new(
        ModelArtifact::embedded_default().unwrap(),
        ReferenceData::built_in(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        state,
        ServerConfig::default(),
        std::future::pending(),
    ));
    let mut client = RiskServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut declarations: Vec<pb::Declaration> = (0..3)
        .map(|i| common::full_declaration(&format!("OTLP-{i}")))
        .collect();
    declarations[2].items.clear(); // refused: no goods item
    let requests = declarations
        .into_iter()
        .map(|d| pb::ScoreDeclarationsRequest {
            declaration: Some(d),
        })
        .collect::<Vec<_>>();
    let mut request = tonic::Request::new(tokio_stream::iter(requests));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01")
            .parse()
            .unwrap(),
    );
    let answers: Vec<_> = client
        .score_declarations(request)
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(answers.len(), 3);

    // Dropping the telemetry exports what is left (a blocking call).
    tokio::task::spawn_blocking(move || drop(telemetry))
        .await
        .unwrap();
    let spans = collector.0.lock().unwrap().clone();
    let ours: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == TRACE_ID)
        .collect();
    let named = |name: &str| {
        ours.iter()
            .copied()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in {:?}", names(&spans)))
    };
    let rpc = named("rpc");
    assert_eq!(hex(&rpc.parent_span_id), CALLER_SPAN_ID);
    let call = named("ScoreDeclarations");
    assert_eq!(call.parent_span_id, rpc.span_id);
    let batches: Vec<&&Span> = ours.iter().filter(|s| s.name == "score_batch").collect();
    assert!(!batches.is_empty(), "{:?}", names(&spans));
    assert!(batches.iter().all(|b| b.parent_span_id == call.span_id));
    let total = |key| {
        batches
            .iter()
            .map(|b| int_attribute(b, key).unwrap_or_else(|| panic!("{key} in {:?}", b.attributes)))
            .sum::<i64>()
    };
    assert_eq!(total("declarations"), 3);
    assert_eq!(total("rejected"), 1);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn names(spans: &[Span]) -> Vec<(String, String)> {
    spans
        .iter()
        .map(|s| (s.name.clone(), hex(&s.trace_id)))
        .collect()
}
