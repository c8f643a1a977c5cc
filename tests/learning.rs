//! The learning loop: results in (validated, idempotent, durable), training
//! data out, and models swapped under load.

use std::sync::Arc;

use parcel_risk::domain::ReferenceData;
use parcel_risk::grpc::{ServerConfig, ServiceState};
use parcel_risk::pb;
use parcel_risk::pb::score_declarations_response::Outcome;
use parcel_risk::scoring::{PriorityConfig, PriorityParams};
use parcel_risk::store::{self, Store};
use tokio_stream::StreamExt;

use crate::common::{full_declaration, party, trained, ts};
use crate::grpc::TestServer;

fn result(declaration_id: &str, inspection_id: &str) -> pb::InspectionResult {
    pb::InspectionResult {
        declaration_id: declaration_id.into(),
        inspection_id: inspection_id.into(),
        selection_reason: pb::SelectionReason::RiskScore as i32,
        control_type: pb::Channel::Red as i32,
        outcome: pb::InspectionOutcome::NonCompliant as i32,
        fraud_kinds: vec![pb::FraudKind::Undervaluation as i32],
        findings: vec![pb::ItemFinding {
            goods_item_number: 1,
            undervalued: true,
            corrected_intrinsic_value: Some(pb::Money {
                currency: "EUR".into(),
                amount_minor: 9_900,
            }),
            ..Default::default()
        }],
        inspected_at: Some(pbjson_types::Timestamp {
            seconds: 1_790_000_000,
            nanos: 0,
        }),
        officer_notes: "phone declared as case".into(),
    }
}

/// Channels where every declaration is a random compliance pick: each is
/// routed RED, and so stored for results to join (risk picks wait for the
/// allocator's warm-up).
pub fn every_declaration_a_random_pick() -> PriorityConfig {
    PriorityParams {
        compliance_share: 1.0,
        red_share: 1.0,
        yellow_share: 0.0,
        ..PriorityParams::default()
    }
    .check()
    .unwrap()
}

fn state_with_store(dir: &std::path::Path, priority: PriorityConfig) -> Arc<ServiceState> {
    let (model, _) = trained();
    Arc::new(
        ServiceState::with_priority((**model).clone(), ReferenceData::built_in(), priority)
            .with_store(Store::open(dir, chrono::Duration::days(30)).unwrap()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_upload_stores_nothing_and_a_finished_one_everything() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_with_store(dir.path(), PriorityConfig::default());
    let server = TestServer::start_state(state, ServerConfig::default()).await;
    for round in 0..10 {
        let mut client = server.client().await;
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::ReportInspectionResultsRequest>(64);
        for i in 0..30 {
            tx.send(pb::ReportInspectionResultsRequest {
                result: Some(result(&format!("C{round}-{i}"), "I1")),
            })
            .await
            .unwrap();
        }
        let call = tokio::spawn(async move {
            client
                .report_inspection_results(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // The client gives up mid-upload: the call is cancelled.
        call.abort();
        let _ = call.await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        drop(tx);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        store::counts(dir.path()).unwrap().1,
        0,
        "results of cancelled uploads were stored"
    );
    // An upload the client finishes is stored whole.
    let mut client = server.client().await;
    let answer = client
        .report_inspection_results(tokio_stream::iter((0..30).map(|i| {
            pb::ReportInspectionResultsRequest {
                result: Some(result(&format!("F{i}"), "I1")),
            }
        })))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.recorded_count, 30);
    assert_eq!(store::counts(dir.path()).unwrap().1, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_validated_idempotent_and_joined_to_what_was_scored() {
    let dir = tempfile::tempdir().unwrap();
    let priority = every_declaration_a_random_pick();
    let state = state_with_store(dir.path(), priority);
    let server = TestServer::start_state(state, ServerConfig::default()).await;
    let mut client = server.client().await;

    // Score two declarations; they are routed and stored.
    for id in ["L1", "L2"] {
        client
            .score_declaration(pb::ScoreDeclarationRequest {
                declaration: Some(full_declaration(id)),
            })
            .await
            .unwrap();
    }

    // Invalid: the field is named under `result.`.
    let mut bad = result("L1", "I1");
    bad.outcome = 0;
    let status = client
        .report_inspection_result(pb::ReportInspectionResultRequest { result: Some(bad) })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("result.outcome"),
        "{}",
        status.message()
    );

    // New, then an idempotent retry.
    for expected in [true, false] {
        let answer = client
            .report_inspection_result(pb::ReportInspectionResultRequest {
                result: Some(result("L1", "I1")),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.newly_recorded, expected);
    }
    // The same inspection with other content is refused.
    let mut changed = result("L1", "I1");
    changed.officer_notes = "something else".into();
    let status = client
        .report_inspection_result(pb::ReportInspectionResultRequest {
            result: Some(changed),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::AlreadyExists);

    // A flood of findings is one bounded error, not a result.
    let mut flood = result("L1", "I5");
    let finding = flood.findings[0].clone();
    flood.findings = (1..=5_000)
        .map(|n| pb::ItemFinding {
            goods_item_number: n,
            ..finding.clone()
        })
        .collect();
    let status = client
        .report_inspection_result(pb::ReportInspectionResultRequest {
            result: Some(flood),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("result.findings: 5000 findings; at most 999"),
        "{}",
        status.message()
    );

    // Bulk: an invalid result names its index and nothing is stored.
    let mut third_bad = result("L2", "I9");
    third_bad.declaration_id.clear();
    let bulk = vec![result("L2", "I1"), result("X9", "I1"), third_bad];
    let status = client
        .report_inspection_results(tokio_stream::iter(
            bulk.into_iter()
                .map(|r| pb::ReportInspectionResultsRequest { result: Some(r) }),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("results[2].declaration_id"),
        "{}",
        status.message()
    );
    assert_eq!(store::counts(dir.path()).unwrap().1, 1);

    // Bulk that is valid: counts of new and duplicate.
    let bulk = vec![result("L2", "I1"), result("X9", "I1"), result("L1", "I1")];
    let answer = client
        .report_inspection_results(tokio_stream::iter(
            bulk.into_iter()
                .map(|r| pb::ReportInspectionResultsRequest { result: Some(r) }),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((answer.recorded_count, answer.duplicate_count), (2, 1));

    // Export joins each result to its declaration as scored; X9 was never
    // scored here, so it cannot become a training example.
    let mut examples = Vec::new();
    let counts = store::export(
        dir.path(),
        chrono::DateTime::<chrono::Utc>::MIN_UTC,
        &[],
        |e| {
            examples.push(e);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!((counts.exported, counts.without_declaration), (2, 1));
    let ids: Vec<&str> = examples
        .iter()
        .map(|e| e.declaration.as_ref().unwrap().declaration_id.as_str())
        .collect();
    assert_eq!(ids, vec!["L1", "L2"]);
    assert_eq!(
        examples[0].declaration.as_ref().unwrap(),
        &pb::Declaration::from(
            &parcel_risk::domain::Declaration::try_from(full_declaration("L1")).unwrap()
        )
    );
    let r = examples[0].result.as_ref().unwrap();
    assert_eq!(r.selection_reason, pb::SelectionReason::RiskScore as i32);
    assert_eq!(r.officer_notes, "phone declared as case");
}

/// The live record: what the service's own controls find about a trader
/// the model never saw reaches the next declarations of that trader,
/// without a retrain; a frozen record does not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_results_teach_the_served_record_about_new_traders_and_survive_a_restart() {
    let priority = every_declaration_a_random_pick();
    let now = chrono::Utc::now().timestamp() - 3_600;
    // A trader pair the training traffic never had, lodged after it.
    let declaration = |id: &str, i: i64| {
        let mut d = full_declaration(id);
        d.lodged_at = ts(now + i);
        d.arrival_at = ts(now + i + 3_600);
        d.importer = party("Newcomer Imports Sprl", "BE");
        if let Some(e) = d.exporter.as_mut() {
            e.name = "Never Seen Before Trading".into();
            e.identification_number = "CN99999999".into();
        }
        d
    };
    let mut last_scores = Vec::new();
    for frozen in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        // The built-in model reads the record (the small test model's
        // learners may not use it at all).
        let model = parcel_risk::model::ModelArtifact::embedded_default().unwrap();
        let mut state =
            ServiceState::with_priority(model, ReferenceData::built_in(), priority.clone())
                .with_store(Store::open(dir.path(), chrono::Duration::days(30)).unwrap());
        if frozen {
            state = state.with_frozen_record();
        }
        let state = Arc::new(state);
        let server = TestServer::start_state(Arc::clone(&state), ServerConfig::default()).await;
        let mut client = server.client().await;
        let scoring = client.clone();
        let score = |id: String, i: i64| {
            let request = pb::ScoreDeclarationRequest {
                declaration: Some(declaration(&id, i)),
            };
            let mut client = scoring.clone();
            async move {
                client
                    .score_declaration(request)
                    .await
                    .unwrap()
                    .into_inner()
                    .assessment
                    .unwrap()
                    .overall_score
            }
        };
        let mut before = 0.0;
        for i in 0..6 {
            before = score(format!("N{i}"), i).await;
        }
        // Controls of the six find fraud each time.
        let answer = client
            .report_inspection_results(tokio_stream::iter((0..6).map(|i| {
                pb::ReportInspectionResultsRequest {
                    result: Some(result(&format!("N{i}"), "I1")),
                }
            })))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.recorded_count, 6);
        // The store's replay (as at a model swap racing the report) brings
        // the six again: the report counted them already.
        assert_eq!(state.learn_from_store().unwrap(), 0);
        let after = score("N6".into(), 6).await;
        last_scores.push((before, after));
        if !frozen {
            restarted_over(dir.path(), &declaration("N7", 7), &priority);
        }
    }
    let [(live_before, live_after), (frozen_before, frozen_after)] = last_scores[..] else {
        unreachable!()
    };
    // In log-odds (a model may already be nearly sure). The windows see
    // the same parcels either way; only the record tells the two apart.
    assert!(
        logit(live_after) - logit(live_before) > logit(frozen_after) - logit(frozen_before) + 0.5,
        "live record: {live_before} -> {live_after}; frozen: {frozen_before} -> {frozen_after}"
    );
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

/// A service restarted over the store in `dir` learns the results stored
/// there: it scores `next` above a twin on the frozen record (both start
/// with empty windows).
fn restarted_over(dir: &std::path::Path, next: &pb::Declaration, priority: &PriorityConfig) {
    let model = parcel_risk::model::ModelArtifact::embedded_default().unwrap();
    let restarted =
        ServiceState::with_priority(model.clone(), ReferenceData::built_in(), priority.clone())
            .with_store(Store::open(dir, chrono::Duration::days(30)).unwrap());
    assert_eq!(restarted.learn_from_store().unwrap(), 6);
    assert_eq!(restarted.learn_from_store().unwrap(), 0, "a replay twice");
    let frozen = ServiceState::with_priority(model, ReferenceData::built_in(), priority.clone())
        .with_frozen_record();
    let d =
        parcel_risk::wire::declaration_from_pb(next.clone(), &ReferenceData::built_in()).unwrap();
    let learnt = restarted.score(&restarted.scorer(), &d).overall_score;
    let fresh = frozen.score(&frozen.scorer(), &d).overall_score;
    assert!(
        logit(learnt) > logit(fresh) + 0.5,
        "restarted {learnt}, frozen {fresh}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_swapped_under_a_live_stream_changes_versions_at_one_point() {
    let dir = tempfile::tempdir().unwrap();
    let (model, examples) = trained();
    let mut next = (**model).clone();
    next.model_version = "test-model-2".into();
    let next_dir = dir.path().join("next");
    next.save(&next_dir).unwrap();
    let corrupt_dir = dir.path().join("corrupt");
    std::fs::create_dir_all(&corrupt_dir).unwrap();
    std::fs::write(
        corrupt_dir.join("model.json"),
        b"{\"format_version\": 1, \"trunc",
    )
    .unwrap();

    let state = Arc::new(ServiceState::new(
        (**model).clone(),
        ReferenceData::built_in(),
    ));
    let server = TestServer::start_state(Arc::clone(&state), ServerConfig::default()).await;
    let mut client = server.client().await;
    let requests: Vec<pb::ScoreDeclarationsRequest> = examples
        .iter()
        .cycle()
        .take(6_000)
        .enumerate()
        .map(|(i, e)| {
            let mut d = pb::Declaration::from(&e.declaration);
            d.declaration_id = format!("S{i}");
            pb::ScoreDeclarationsRequest {
                declaration: Some(d),
            }
        })
        .collect();
    let mut responses = client
        .score_declarations(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut versions = Vec::new();
    let mut swap = None;
    while let Some(response) = responses.next().await {
        let response = response.expect("no stream error during a swap");
        match response.outcome.unwrap() {
            Outcome::Assessment(a) => versions.push(a.model_version),
            Outcome::Error(e) => panic!("error during a swap: {e:?}"),
        }
        if versions.len() == 1_500 {
            // Swap while the rest of the stream is in flight.
            let state = Arc::clone(&state);
            let path = next_dir.clone();
            swap = Some(tokio::task::spawn_blocking(move || state.reload(&path)));
        }
    }
    assert_eq!(swap.unwrap().await.unwrap().unwrap(), "test-model-2");
    assert_eq!(versions.len(), 6_000);
    let changes = versions.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(changes, 1, "versions changed {changes} times");
    assert_eq!(versions.first().unwrap(), "test-model");
    assert_eq!(versions.last().unwrap(), "test-model-2");

    // A corrupt artifact is refused and the new model keeps serving.
    let refused = {
        let state = Arc::clone(&state);
        tokio::task::spawn_blocking(move || state.reload(&corrupt_dir))
            .await
            .unwrap()
    };
    assert!(refused.is_err());
    // So is a model whose intercepts were blown up: it passes every format
    // check and scores every parcel 1.0.
    let degenerate_dir = dir.path().join("degenerate");
    std::fs::create_dir_all(&degenerate_dir).unwrap();
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(next_dir.join("model.json")).unwrap()).unwrap();
    fn blow_up(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    if (key == "intercept" || key == "base") && value.is_number() {
                        *value = serde_json::json!(1e6);
                    } else {
                        blow_up(value);
                    }
                }
            }
            serde_json::Value::Array(list) => list.iter_mut().for_each(blow_up),
            _ => {}
        }
    }
    blow_up(&mut json["classifiers"]);
    std::fs::write(
        degenerate_dir.join("model.json"),
        serde_json::to_vec(&json).unwrap(),
    )
    .unwrap();
    let refused = {
        let state = Arc::clone(&state);
        tokio::task::spawn_blocking(move || state.reload(&degenerate_dir))
            .await
            .unwrap()
    };
    let why = refused.unwrap_err().to_string();
    assert!(why.contains("degenerate"), "{why}");
    let info = client
        .get_model_info(pb::GetModelInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.model_version, "test-model-2");
}

/// Reads the server's log until it says where it listens.
fn wait_for_addr(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.split("addr=").nth(1)
            && line.contains("serving")
        {
            let addr = rest.split_whitespace().next().unwrap().to_owned();
            // Keep draining the log so that the server never blocks on it.
            std::thread::spawn(move || for _ in lines {});
            return addr;
        }
    }
    panic!("the server exited before listening");
}

fn spawn_server(data_dir: &std::path::Path) -> (std::process::Child, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_parcel-risk"))
        .args(["serve", "--addr", "127.0.0.1:0", "--metrics-addr", "off"])
        .args(["--model-poll-seconds", "0", "--data-dir"])
        .arg(data_dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = wait_for_addr(&mut child);
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_its_built_in_model_from_any_directory_on_a_named_host() {
    use parcel_risk::pb::risk_service_client::RiskServiceClient;
    let elsewhere = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_parcel-risk"))
        .current_dir(elsewhere.path())
        .env_remove("PARCEL_RISK_MODEL")
        // A host name is an address too.
        .args(["serve", "--addr", "localhost:0", "--metrics-addr", "off"])
        .args(["--data-dir", "store"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = wait_for_addr(&mut child);
    let mut client = RiskServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let info = client
        .get_model_info(pb::GetModelInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    child.kill().unwrap();
    child.wait().unwrap();
    let shipped: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/default/model.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        info.model_version,
        shipped["model_version"].as_str().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_result_survives_sigkill_exactly_once() {
    use parcel_risk::pb::risk_service_client::RiskServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_server(dir.path());
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut senders = Vec::new();
    for worker in 0..4 {
        let acked = Arc::clone(&acked);
        let addr = addr.clone();
        senders.push(tokio::spawn(async move {
            let mut client = RiskServiceClient::connect(format!("http://{addr}"))
                .await
                .unwrap();
            for i in 0.. {
                let id = format!("K{worker}-{i}");
                let answer = client
                    .report_inspection_result(pb::ReportInspectionResultRequest {
                        result: Some(result(&id, "I1")),
                    })
                    .await;
                match answer {
                    Ok(a) => {
                        assert!(a.into_inner().newly_recorded);
                        acked.lock().unwrap().push(id);
                    }
                    // The server died mid-call: that result is not acknowledged.
                    Err(_) => return,
                }
            }
        }));
    }
    // Kill it mid-ingestion, with calls in flight.
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    // Restarted on the same data directory: every acknowledged result is
    // there, exactly once (a retry is a duplicate, not a second row).
    let (mut child, addr) = spawn_server(dir.path());
    let mut client = RiskServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    for id in &acked {
        let answer = client
            .report_inspection_result(pb::ReportInspectionResultRequest {
                result: Some(result(id, "I1")),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!answer.newly_recorded, "{id} was acknowledged but lost");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (_, stored) = store::counts(dir.path()).unwrap();
    // Calls cut off by the kill may have committed without their answer.
    assert!(stored as usize >= acked.len() && stored as usize <= acked.len() + 4);
    for id in &acked {
        assert!(
            store::stored_result(dir.path(), id, "I1")
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_controls_are_recorded_and_a_shared_ioss_number_is_seen_online() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_with_store(dir.path(), PriorityConfig::default());
    let server = TestServer::start_state(state, ServerConfig::default()).await;
    let mut client = server.client().await;

    // A manifest of five with capacity two: two RED and two YELLOW are
    // controls, recorded so that their results join.
    // (One item each: the fixture's second item has a code HS 2022 does not
    // know, which would make every entry a control that is never released.)
    let manifest: Vec<pb::Declaration> = (0..5)
        .map(|i| {
            let mut d = full_declaration(&format!("M{i}"));
            d.items.truncate(1);
            d
        })
        .collect();
    client
        .plan_inspections(pb::PlanInspectionsRequest {
            declarations: manifest,
            capacity: 2,
        })
        .await
        .unwrap();
    let mut routed = 0;
    for _ in 0..100 {
        routed = store::counts(dir.path()).unwrap().0;
        if routed == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(routed, 4);

    // Six sellers start using one IOSS number after the model was trained:
    // the service counts them as they come.
    let requests: Vec<pb::ScoreDeclarationsRequest> = (0..6)
        .map(|i| {
            let mut d = full_declaration(&format!("I{i}"));
            d.ioss_number = "IM2509999999".into();
            d.exporter.as_mut().unwrap().name = format!("New Seller {i} Trading Co., Ltd");
            pb::ScoreDeclarationsRequest {
                declaration: Some(d),
            }
        })
        .collect();
    let responses: Vec<pb::ScoreDeclarationsResponse> = client
        .score_declarations(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.unwrap())
        .collect()
        .await;
    let shared = |r: &pb::ScoreDeclarationsResponse| -> Option<String> {
        let Some(Outcome::Assessment(a)) = &r.outcome else {
            panic!("{r:?}")
        };
        let reason = a
            .reasons
            .iter()
            .find(|x| x.code == "FIS_IOSS_SHARED_ACROSS_SELLERS")?;
        reason
            .evidence
            .iter()
            .find(|e| e.key == "distinct_sellers")
            .map(|e| e.value.clone())
    };
    assert_eq!(shared(&responses[0]), None);
    assert_eq!(shared(&responses[5]).as_deref(), Some("6"));
}

#[test]
fn replay_streams_a_file_through_the_binary_and_reports_what_red_controls_find() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("traffic.jsonl");
    let bin = env!("CARGO_BIN_EXE_parcel-risk");
    let generated = std::process::Command::new(bin)
        .args([
            "generate",
            "--parcels",
            "3000",
            "--days",
            "1",
            "--seed",
            "9",
            "--quiet",
            "--out",
        ])
        .arg(&data)
        .status()
        .unwrap();
    assert!(generated.success());
    // A broken line among them is skipped and counted.
    let mut text = std::fs::read_to_string(&data).unwrap();
    text.insert_str(0, "{not json\n");
    std::fs::write(&data, text).unwrap();
    let store = dir.path().join("store");
    let (mut server, addr) = spawn_server(&store);
    let out = std::process::Command::new(bin)
        .args(["replay", "--addr", &addr, "--report-results", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("1 records rejected"), "{stderr}");
    let scored_line = stdout.lines().find(|l| l.starts_with("scored")).unwrap();
    assert!(
        scored_line.starts_with("scored 3000, errors 0, RED "),
        "{stdout}"
    );
    let red: u64 = scored_line
        .split("RED ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(red > 0, "{stdout}");
    let (routed, results) = store::counts(&store).unwrap();
    assert_eq!(results, red, "{stdout}");
    assert!(routed >= red);
}
