//! What `/metrics` shows: every documented series from the start, per-RPC
//! calls by status code, reporting outcomes by kind.

use parcel_risk::pb;
use parcel_risk::pb::risk_service_client::RiskServiceClient;

use crate::common::{full_declaration, get_metrics};
use crate::security::{metrics_addr, spawn_serve};

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let response = get_metrics(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the series whose line starts with `series` (name and labels).
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn result(notes: &str) -> pb::InspectionResult {
    pb::InspectionResult {
        declaration_id: "M1".into(),
        inspection_id: "I1".into(),
        selection_reason: pb::SelectionReason::RiskScore as i32,
        control_type: pb::Channel::Red as i32,
        outcome: pb::InspectionOutcome::Compliant as i32,
        officer_notes: notes.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_is_there_from_the_start_and_calls_are_counted_by_method_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, addr, log) = spawn_serve(&data, &["--metrics-addr", "127.0.0.1:0"]);
    let metrics_addr = metrics_addr(&log.lock().unwrap());
    let fresh = scrape(metrics_addr).await;
    for series in [
        "parcel_risk_rpc_total{method=\"RiskService/ScoreDeclarations\",code=\"OK\"} 0",
        "parcel_risk_declarations_scored_total 0",
        "parcel_risk_results_total{outcome=\"conflict\"} 0",
        "parcel_risk_calls_forbidden_total 0",
        "parcel_risk_handshake_failures_total 0",
        "parcel_risk_model_reloads_total{result=\"refused\"} 0",
        "# HELP parcel_risk_rpc_total gRPC calls by method and final status code",
        "# HELP parcel_risk_results_total",
    ] {
        assert!(fresh.contains(series), "missing {series}:\n{fresh}");
    }

    let mut client = RiskServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    client
        .score_declaration(pb::ScoreDeclarationRequest {
            declaration: Some(full_declaration("M1")),
        })
        .await
        .unwrap();
    let report = |r: pb::InspectionResult| pb::ReportInspectionResultRequest { result: Some(r) };
    let mut invalid = result("");
    invalid.declaration_id.clear();
    assert!(
        client
            .report_inspection_result(report(invalid))
            .await
            .is_err()
    );
    client
        .report_inspection_result(report(result("first")))
        .await
        .unwrap();
    client
        .report_inspection_result(report(result("first")))
        .await
        .unwrap();
    let conflict = client
        .report_inspection_result(report(result("changed")))
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), tonic::Code::AlreadyExists);

    let after = scrape(metrics_addr).await;
    for (series, expected) in [
        (
            "parcel_risk_rpc_total{method=\"RiskService/ScoreDeclaration\",code=\"OK\"}",
            1.0,
        ),
        (
            "parcel_risk_rpc_total{method=\"RiskService/ReportInspectionResult\",code=\"INVALID_ARGUMENT\"}",
            1.0,
        ),
        (
            "parcel_risk_rpc_total{method=\"RiskService/ReportInspectionResult\",code=\"OK\"}",
            2.0,
        ),
        (
            "parcel_risk_rpc_total{method=\"RiskService/ReportInspectionResult\",code=\"ALREADY_EXISTS\"}",
            1.0,
        ),
        (
            "parcel_risk_rpc_seconds_count{method=\"RiskService/ScoreDeclaration\"}",
            1.0,
        ),
        ("parcel_risk_results_total{outcome=\"recorded\"}", 1.0),
        ("parcel_risk_results_total{outcome=\"duplicate\"}", 1.0),
        ("parcel_risk_results_total{outcome=\"invalid\"}", 1.0),
        ("parcel_risk_results_total{outcome=\"conflict\"}", 1.0),
        ("parcel_risk_declarations_scored_total", 1.0),
    ] {
        assert_eq!(value(&after, series), Some(expected), "{series}:\n{after}");
    }
    // Unary calls are timed like streamed declarations.
    assert_eq!(
        value(&after, "parcel_risk_scoring_seconds_count"),
        Some(1.0),
        "{after}"
    );
    // Every series the shipped Grafana dashboard reads is exported.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/grafana-dashboard.json"
    ))
    .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut read = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("parcel_risk_"))
            {
                read += 1;
                let series = name.strip_suffix("_bucket").unwrap_or(name);
                assert!(
                    after.contains(&format!("\n{series}")),
                    "the dashboard reads {name}, which /metrics does not show"
                );
            }
        }
    }
    assert!(read >= 15, "{read}");
    child.kill().unwrap();
    child.wait().unwrap();
    // The client's conflict is not the server's error.
    let log = log.lock().unwrap();
    assert!(!log.contains("ERROR"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_of_the_scored_traffic_is_exported_per_column() {
    use tokio_stream::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The built-in model carries a drift baseline; every declaration counts.
    let (mut child, addr, log) = spawn_serve(
        &data,
        &["--metrics-addr", "127.0.0.1:0", "--drift-sample-every", "1"],
    );
    let metrics_addr = metrics_addr(&log.lock().unwrap());
    let mut client = RiskServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let requests: Vec<pb::ScoreDeclarationsRequest> = crate::grpc::traffic_declarations(1100)
        .into_iter()
        .map(|d| pb::ScoreDeclarationsRequest {
            declaration: Some(d),
        })
        .collect();
    let answered = client
        .score_declarations(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(answered.len(), 1100);
    let after = scrape(metrics_addr).await;
    let any = value(&after, "parcel_risk_drift_psi{column=\"score:any\"}");
    assert!(
        any.is_some_and(|psi| psi.is_finite() && psi >= 0.0),
        "{after}"
    );
    assert!(
        value(&after, "parcel_risk_drift_max_psi").is_some(),
        "{after}"
    );
    assert!(after.contains("# HELP parcel_risk_drift_psi"), "{after}");
    // GetModelInfo says the same: every column, largest first, recency
    // columns marked.
    let info = client
        .get_model_info(pb::GetModelInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.drift_sampled, 1100);
    assert!(info.drift.len() > 50, "{}", info.drift.len());
    assert!(info.drift.windows(2).all(|w| w[0].psi >= w[1].psi));
    let any_info = info.drift.iter().find(|c| c.column == "score:any").unwrap();
    assert!(any_info.psi.is_finite() && !any_info.recency);
    assert!(info.drift.iter().any(|c| c.recency));
    assert!(
        info.drift
            .iter()
            .filter(|c| c.recency)
            .all(|c| c.column.contains("days_since") || c.column.ends_with("log_seen"))
    );
    child.kill().unwrap();
}
