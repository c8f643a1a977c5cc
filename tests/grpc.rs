//! The gRPC service, in-process on 127.0.0.1:0, through the generated client.

use std::net::SocketAddr;
use std::sync::Arc;

use parcel_risk::domain::ReferenceData;
use parcel_risk::grpc::{ServerConfig, ServiceState, serve};
use parcel_risk::pb;
use parcel_risk::pb::risk_service_client::RiskServiceClient;
use parcel_risk::pb::score_declarations_response::Outcome;
use parcel_risk::scoring::{PriorityConfig, PriorityParams};
use tokio::sync::oneshot;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::common::{full_declaration, trained};

pub(crate) struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub(crate) async fn start(config: ServerConfig) -> TestServer {
        Self::start_with(config, PriorityConfig::default()).await
    }

    pub async fn start_with(config: ServerConfig, priority: PriorityConfig) -> TestServer {
        let (model, _) = trained();
        let state = Arc::new(ServiceState::with_priority(
            (**model).clone(),
            ReferenceData::built_in(),
            priority,
        ));
        Self::start_state(state, config).await
    }

    pub(crate) async fn start_state(state: Arc<ServiceState>, config: ServerConfig) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            serve(listener, state, config, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            addr,
            stop: Some(stop),
            handle,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub(crate) async fn client(&self) -> RiskServiceClient<Channel> {
        RiskServiceClient::new(self.channel().await).max_decoding_message_size(64 * 1024 * 1024)
    }
}

/// Scores one declaration with the unary call, which must refuse it with
/// `code`; the status, for the caller's further checks.
async fn refused_unary(
    client: &mut RiskServiceClient<Channel>,
    declaration: pb::Declaration,
    code: tonic::Code,
) -> tonic::Status {
    let status = client
        .score_declaration(pb::ScoreDeclarationRequest {
            declaration: Some(declaration),
        })
        .await
        .expect_err("the unary call must be refused");
    assert_eq!(status.code(), code, "{status}");
    status
}

/// Streams `declarations` through `ScoreDeclarations` and collects every
/// answer (the stream must end without an error).
pub(crate) async fn score_stream(
    client: &mut RiskServiceClient<Channel>,
    declarations: Vec<pb::Declaration>,
) -> Vec<pb::ScoreDeclarationsResponse> {
    let requests = declarations
        .into_iter()
        .map(|d| pb::ScoreDeclarationsRequest {
            declaration: Some(d),
        })
        .collect::<Vec<_>>();
    client
        .score_declarations(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.unwrap())
        .collect()
        .await
}

pub fn traffic_declarations(n: usize) -> Vec<pb::Declaration> {
    let (_, examples) = trained();
    examples
        .iter()
        .take(n)
        .map(|e| pb::Declaration::from(&e.declaration))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_thousands_comes_back_in_order_with_errors_only_for_bad_declarations() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut client = server.client().await;
    let mut requests = Vec::new();
    let mut bad = std::collections::HashSet::new();
    for (i, mut d) in traffic_declarations(3000).into_iter().enumerate() {
        if i % 97 == 5 {
            d.items[0].hs6 = "12AB56".into();
            bad.insert(d.declaration_id.clone());
        }
        let declaration = if i % 499 == 7 { None } else { Some(d) };
        requests.push(pb::ScoreDeclarationsRequest { declaration });
    }
    let expected: Vec<String> = requests
        .iter()
        .map(|r| {
            r.declaration
                .as_ref()
                .map(|d| d.declaration_id.clone())
                .unwrap_or_default()
        })
        .collect();
    let response = client
        .score_declarations(tokio_stream::iter(requests))
        .await
        .unwrap();
    let responses: Vec<pb::ScoreDeclarationsResponse> =
        response.into_inner().map(|r| r.unwrap()).collect().await;
    assert_eq!(responses.len(), expected.len());
    for (response, id) in responses.iter().zip(&expected) {
        assert_eq!(&response.declaration_id, id);
        match response.outcome.as_ref().unwrap() {
            Outcome::Assessment(a) => {
                assert!(!bad.contains(id), "{id} should have failed");
                assert_eq!(&a.declaration_id, id);
                assert_eq!(a.model_version, "test-model");
                assert!((0.0..=1.0).contains(&a.overall_score));
            }
            Outcome::Error(e) => {
                assert_eq!(e.code, "INVALID_ARGUMENT");
                if id.is_empty() {
                    assert_eq!(e.field_violations[0].field, "declaration");
                } else {
                    assert!(bad.contains(id), "{id}: {e:?}");
                    assert_eq!(e.field_violations[0].field, "items[0].hs6");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_scoring_and_invalid_argument_with_bad_request_details() {
    use tonic_types::StatusExt;
    let server = TestServer::start(ServerConfig::default()).await;
    let mut client = server.client().await;
    let ok = client
        .score_declaration(pb::ScoreDeclarationRequest {
            declaration: Some(full_declaration("U1")),
        })
        .await
        .unwrap()
        .into_inner();
    let assessment = ok.assessment.unwrap();
    assert_eq!(assessment.declaration_id, "U1");
    assert!(
        assessment
            .reasons
            .iter()
            .any(|r| r.code == "DESC_STOP_WORD"),
        "{:?}",
        assessment.reasons
    );

    let mut bad = full_declaration("U2");
    bad.lrn.clear();
    bad.items[0].intrinsic_value = None;
    let status = refused_unary(&mut client, bad, tonic::Code::InvalidArgument).await;
    let details = status.get_error_details();
    let fields: Vec<String> = details
        .bad_request()
        .expect("BadRequest details")
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(fields, vec!["lrn", "items[0].intrinsic_value"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_model_info() {
    let server = TestServer::start(ServerConfig::default()).await;
    let channel = server.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let check = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "parcelrisk.v1.RiskService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        check.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("no service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"parcelrisk.v1.RiskService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );

    // The error details a status carries are served too: grpcurl decodes
    // google.rpc.BadRequest through reflection.
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "google.rpc.BadRequest".into(),
        )),
    };
    let answer = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            answer.message_response,
            Some(MessageResponse::FileDescriptorResponse(ref files)) if !files.file_descriptor_proto.is_empty()
        ),
        "{:?}",
        answer.message_response
    );

    // grpcurl 1.8 speaks only v1alpha.
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    let mut alpha = AlphaClient::new(channel.clone());
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let first = alpha
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert!(first.message_response.is_some());

    let mut client = server.client().await;
    let info = client
        .get_model_info(pb::GetModelInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.model_version, "test-model");
    assert_eq!(info.feature_names.len(), trained().0.schema.len());
    assert!(!info.metrics.is_empty());
    // A server without a store says so rather than losing results.
    let no_store = client
        .report_inspection_result(pb::ReportInspectionResultRequest::default())
        .await
        .unwrap_err();
    assert_eq!(no_store.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_on_items_and_message_size() {
    let server = TestServer::start(ServerConfig {
        max_message_bytes: 256 * 1024,
        ..ServerConfig::default()
    })
    .await;
    let mut client = server.client().await;
    let mut many = full_declaration("M1");
    let item = many.items[0].clone();
    many.items = (1..=1000)
        .map(|n| pb::GoodsItem {
            goods_item_number: n,
            ..item.clone()
        })
        .collect();
    let responses = score_stream(&mut client, vec![many, full_declaration("M2")]).await;
    let Some(Outcome::Error(e)) = &responses[0].outcome else {
        panic!("{:?}", responses[0])
    };
    assert_eq!(e.field_violations[0].field, "items");
    assert!(matches!(responses[1].outcome, Some(Outcome::Assessment(_))));

    let mut huge = full_declaration("H1");
    huge.items[0].description = "x".repeat(300 * 1024);
    // gRPC's code for a message over the limit (tonic says OUT_OF_RANGE).
    refused_unary(&mut client, huge, tonic::Code::ResourceExhausted).await;

    // In a stream, a message over the transport limit cannot be read past:
    // what came before is answered, then the stream ends with the same code.
    let mut huge = full_declaration("H2");
    huge.items[0].description = "x".repeat(300 * 1024);
    let requests = vec![
        pb::ScoreDeclarationsRequest {
            declaration: Some(full_declaration("H1")),
        },
        pb::ScoreDeclarationsRequest {
            declaration: Some(huge),
        },
    ];
    let answers: Vec<Result<pb::ScoreDeclarationsResponse, tonic::Status>> = client
        .score_declarations(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0].as_ref().unwrap().declaration_id, "H1");
    let end = answers[1].as_ref().unwrap_err();
    assert_eq!(end.code(), tonic::Code::ResourceExhausted, "{end}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_and_the_others_keep_working() {
    let server = TestServer::start(ServerConfig {
        max_connections: 2,
        ..ServerConfig::default()
    })
    .await;
    let mut first = server.client().await;
    let mut second = server.client().await;
    let score = |id: &str| pb::ScoreDeclarationRequest {
        declaration: Some(full_declaration(id)),
    };
    first.score_declaration(score("C1")).await.unwrap();
    second.score_declaration(score("C2")).await.unwrap();
    // A third connection is accepted and closed: its call fails...
    let third = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = third {
        // (tonic's client says UNAVAILABLE, UNKNOWN or CANCELLED, by when
        // and how it notices.)
        let refused = RiskServiceClient::new(channel)
            .score_declaration(score("C3"))
            .await
            .unwrap_err();
        assert_ne!(refused.code(), tonic::Code::Ok, "{refused}");
    }
    // ... and the first two are still served.
    first.score_declaration(score("C4")).await.unwrap();
    second.score_declaration(score("C5")).await.unwrap();
    // A slot frees when its connection closes.
    drop(first);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut again = server.client().await;
    again.score_declaration(score("C6")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_do_not_decode_are_the_clients_fault() {
    use tower::Service;
    let server = TestServer::start(ServerConfig::default()).await;
    let mut channel = server.channel().await;
    // One gRPC frame (uncompressed, 3 bytes) that is not a protobuf message.
    let frame = bytes::Bytes::from_static(&[0, 0, 0, 0, 3, 0xff, 0xff, 0xff]);
    let body = tonic::body::Body::new(http_body_util::Full::new(frame));
    let request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{}/parcelrisk.v1.RiskService/ScoreDeclaration",
            server.addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .unwrap();
    futures_util::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .unwrap();
    let response = channel.call(request).await.unwrap();
    let status =
        tonic::Status::from_header_map(response.headers()).expect("a trailers-only status");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_breaking_declarations_are_never_released() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut client = server.client().await;
    let mut declarations = Vec::new();
    // The case a team lead found GREEN: EUR 215.70 in an H7, HS6 999999, "gift".
    let mut gift = full_declaration("G1");
    gift.items.truncate(1);
    gift.items[0].intrinsic_value = crate::common::money("EUR", 21_570);
    gift.items[0].hs6 = "999999".into();
    gift.items[0].description = "gift".into();
    gift.items[0].additional_procedure_codes = vec!["C07".into()];
    declarations.push(gift);
    // Each rule alone: over EUR 150, an unknown code, forbidden procedure codes.
    for (i, cents) in [15_001, 60_000, 150_000].into_iter().enumerate() {
        let mut over = full_declaration(&format!("V{i}"));
        over.items.truncate(1);
        over.items[0].intrinsic_value = crate::common::money("EUR", cents);
        over.items[0].additional_procedure_codes = vec!["C07".into()];
        declarations.push(over);
    }
    let mut unknown = full_declaration("U1");
    unknown.items.truncate(1);
    unknown.items[0].hs6 = "999999".into();
    declarations.push(unknown);
    let mut forbidden = full_declaration("P1");
    forbidden.items.truncate(1);
    forbidden.items[0].additional_procedure_codes = vec!["C08".into(), "F48".into()];
    declarations.push(forbidden);
    for a in score_stream(&mut client, declarations).await {
        let Some(Outcome::Assessment(a)) = &a.outcome else {
            panic!("{a:?}")
        };
        let channel = a.priority.as_ref().unwrap().channel;
        assert_ne!(
            channel,
            pb::Channel::Green as i32,
            "{} released: {:?}",
            a.declaration_id,
            a.reasons.iter().map(|r| &r.code).collect::<Vec<_>>()
        );
        // Something is always at stake: the undervaluation stake of its
        // declared value at least, so it can rank into RED by expected loss.
        assert!(
            a.revenue_at_risk_eur_cents > 0 && a.priority.as_ref().unwrap().priority_value > 0.0,
            "{} has no stake: {a:?}",
            a.declaration_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_declaration_scores_as_the_first_send() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut client = server.client().await;
    let responses = score_stream(&mut client, vec![full_declaration("R1"); 12]).await;
    let scored: Vec<pb::RiskAssessment> = responses
        .into_iter()
        .map(|r| match r.outcome {
            Some(Outcome::Assessment(a)) => a,
            other => panic!("{other:?}"),
        })
        .collect();
    for a in &scored {
        assert_eq!(a.overall_score, scored[0].overall_score);
        let codes: Vec<&str> = a.reasons.iter().map(|r| r.code.as_str()).collect();
        assert!(
            !codes.contains(&"THR_SPLIT_SAME_CONSIGNEE_SAME_DAY"),
            "its own copies made a split consignment: {codes:?}"
        );
    }
    // A unary resend too.
    let again = client
        .score_declaration(pb::ScoreDeclarationRequest {
            declaration: Some(full_declaration("R1")),
        })
        .await
        .unwrap()
        .into_inner()
        .assessment
        .unwrap();
    assert_eq!(again.overall_score, scored[0].overall_score);
}

/// A server on the trained model whose validation has these limits.
async fn start_with_limits(limits: parcel_risk::domain::Limits) -> TestServer {
    let (model, _) = trained();
    let reference = ReferenceData {
        limits,
        ..ReferenceData::built_in()
    };
    let state = Arc::new(ServiceState::with_priority(
        (**model).clone(),
        reference,
        PriorityConfig::default(),
    ));
    TestServer::start_state(state, ServerConfig::default()).await
}

fn response_ids(responses: &[pb::ScoreDeclarationsResponse]) -> Vec<&str> {
    responses
        .iter()
        .map(|r| r.declaration_id.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_declaration_gets_its_own_answer_and_the_stream_goes_on() {
    let server = start_with_limits(parcel_risk::domain::Limits {
        max_declaration_bytes: 64 * 1024,
        ..parcel_risk::domain::Limits::default()
    })
    .await;
    let mut client = server.client().await;
    let mut big = full_declaration("B2");
    big.items[0].description = "x".repeat(100 * 1024);
    let responses = score_stream(
        &mut client,
        vec![full_declaration("B1"), big.clone(), full_declaration("B3")],
    )
    .await;
    assert_eq!(response_ids(&responses), ["B1", "B2", "B3"]);
    let Some(Outcome::Error(e)) = &responses[1].outcome else {
        panic!("{:?}", responses[1])
    };
    assert_eq!(e.code, "RESOURCE_EXHAUSTED");
    assert!(matches!(responses[0].outcome, Some(Outcome::Assessment(_))));
    assert!(matches!(responses[2].outcome, Some(Outcome::Assessment(_))));
    refused_unary(&mut client, big, tonic::Code::ResourceExhausted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declaration_lodged_far_ahead_of_the_clock_gets_its_own_error() {
    let server = start_with_limits(parcel_risk::domain::Limits {
        max_lodged_ahead: Some(chrono::TimeDelta::hours(24)),
        ..parcel_risk::domain::Limits::default()
    })
    .await;
    let mut client = server.client().await;
    let at = |seconds: i64| {
        Some(pbjson_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() + seconds,
            nanos: 0,
        })
    };
    let mut soon = full_declaration("T1");
    soon.lodged_at = at(23 * 3600);
    // Year 9999: a valid timestamp, and the windows' clock if it got in.
    let mut far = full_declaration("T2");
    far.lodged_at = Some(pbjson_types::Timestamp {
        seconds: 253_402_300_000,
        nanos: 0,
    });
    let mut tomorrow_and_more = full_declaration("T3");
    tomorrow_and_more.lodged_at = at(25 * 3600);
    let responses = score_stream(
        &mut client,
        vec![soon, far.clone(), tomorrow_and_more, full_declaration("T4")],
    )
    .await;
    assert_eq!(response_ids(&responses), ["T1", "T2", "T3", "T4"]);
    for refused in [&responses[1], &responses[2]] {
        let Some(Outcome::Error(e)) = &refused.outcome else {
            panic!("{refused:?}")
        };
        assert_eq!(e.code, "INVALID_ARGUMENT");
        let violation = &e.field_violations[0];
        assert_eq!(violation.field, "lodged_at");
        assert!(
            violation.description.contains("after this server's clock")
                && violation.description.contains("at most 24 h ahead"),
            "{violation:?}"
        );
    }
    assert!(matches!(responses[0].outcome, Some(Outcome::Assessment(_))));
    assert!(matches!(responses[3].outcome, Some(Outcome::Assessment(_))));
    let status = refused_unary(&mut client, far, tonic::Code::InvalidArgument).await;
    assert!(status.message().contains("lodged_at"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_stay_small_however_bad_the_message() {
    use tonic_types::StatusExt;
    let server = TestServer::start(ServerConfig::default()).await;
    let mut client = server.client().await;
    // 30,000 invalid procedure codes and a long bad currency: one error of
    // a few KiB, not one entry per bad element.
    let mut bad = full_declaration("E1");
    bad.items[0].additional_procedure_codes = vec!["!!".into(); 30_000];
    bad.items[0].intrinsic_value = Some(pb::Money {
        currency: "€".repeat(5_000),
        amount_minor: 100,
    });
    let status = refused_unary(&mut client, bad.clone(), tonic::Code::InvalidArgument).await;
    assert!(status.message().len() < 2048, "{}", status.message().len());
    assert!(status.message().contains("more"), "{}", status.message());
    // Trailers: message and base64 details under a default client's 16 KiB.
    let trailer = status.message().len() * 3 + status.details().len() * 4 / 3;
    assert!(trailer < 12 * 1024, "{trailer} bytes of trailers");
    let details = status.get_error_details();
    let listed = &details.bad_request().expect("BadRequest").field_violations;
    assert!(listed.len() <= 101, "{}", listed.len());
    let last = listed.last().unwrap();
    assert!(
        last.field.is_empty() && last.description.starts_with("and "),
        "{last:?}"
    );
    assert!(listed.iter().all(|v| v.description.len() <= 200));

    // In a stream the same declaration gets a bounded error answer and the
    // next one is scored.
    let responses = score_stream(&mut client, vec![bad, full_declaration("E2")]).await;
    let Some(Outcome::Error(e)) = &responses[0].outcome else {
        panic!("{:?}", responses[0])
    };
    assert!(e.field_violations.len() <= 101);
    assert!(e.message.len() < 2048);
    assert!(
        e.field_violations
            .last()
            .is_some_and(|v| v.description.contains("30000 more")
                || v.description.contains("more violations")),
        "{:?}",
        e.field_violations.last()
    );
    assert!(matches!(responses[1].outcome, Some(Outcome::Assessment(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_what_was_sent_and_ends_open_streams() {
    let mut server = TestServer::start(ServerConfig::default()).await;
    let mut client = server.client().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ScoreDeclarationsRequest>(16);
    let mut responses = client
        .score_declarations(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for d in traffic_declarations(10) {
        tx.send(pb::ScoreDeclarationsRequest {
            declaration: Some(d),
        })
        .await
        .unwrap();
    }
    for _ in 0..10 {
        assert!(responses.next().await.unwrap().is_ok());
    }
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    server.stop.take().unwrap().send(()).unwrap();
    // The open stream ends UNAVAILABLE although the client never closed it:
    // the client knows it was cut, and resends elsewhere.
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), responses.next())
        .await
        .unwrap();
    let status = end.expect("an end status").unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
    // While the port is still open: health says NOT_SERVING and new calls
    // are refused UNAVAILABLE.
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "parcelrisk.v1.RiskService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        serving,
        tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
    );
    refused_unary(
        &mut client,
        full_declaration("late"),
        tonic::Code::Unavailable,
    )
    .await;
    drop(tx);
    drop(client);
    tokio::time::timeout(std::time::Duration::from_secs(10), &mut server.handle)
        .await
        .expect("server stops")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_mid_stream_does_not_disturb_the_others() {
    let server = TestServer::start(ServerConfig::default()).await;
    {
        let mut client = server.client().await;
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::ScoreDeclarationsRequest>(64);
        let _responses = client
            .score_declarations(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap();
        for d in traffic_declarations(200) {
            tx.send(pb::ScoreDeclarationsRequest {
                declaration: Some(d),
            })
            .await
            .unwrap();
        }
        // Dropped here without reading a single response.
    }
    let mut client = server.client().await;
    let responses: Vec<_> = client
        .score_declarations(tokio_stream::iter(
            traffic_declarations(50)
                .into_iter()
                .map(|d| pb::ScoreDeclarationsRequest {
                    declaration: Some(d),
                }),
        ))
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(responses.len(), 50);
    assert!(responses.iter().all(|r| r.is_ok()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_fills_capacity_by_priority_with_random_picks_and_reasons() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut client = server.client().await;
    let mut declarations = traffic_declarations(300);
    declarations[7].items[0].hs6 = "bad".into();
    let plan = client
        .plan_inspections(pb::PlanInspectionsRequest {
            declarations: declarations.clone(),
            capacity: 20,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(plan.declarations.len(), 300);
    let assessments: Vec<&pb::RiskAssessment> = plan
        .declarations
        .iter()
        .filter_map(|e| match &e.outcome {
            Some(pb::planned_declaration::Outcome::Assessment(a)) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(assessments.len(), 299);
    let last = plan.declarations.last().unwrap();
    assert_eq!(last.declaration_id, declarations[7].declaration_id);
    let channel = |a: &pb::RiskAssessment| a.priority.as_ref().unwrap().channel;
    let red: Vec<&&pb::RiskAssessment> = assessments
        .iter()
        .take_while(|a| channel(a) == pb::Channel::Red as i32)
        .collect();
    assert_eq!(red.len(), 20);
    let ranks: Vec<u32> = red
        .iter()
        .map(|a| a.priority.as_ref().unwrap().rank)
        .collect();
    assert_eq!(ranks, (1..=20).collect::<Vec<_>>());
    let random = red
        .iter()
        .filter(|a| {
            a.priority.as_ref().unwrap().selection_reason == pb::SelectionReason::Random as i32
        })
        .count();
    assert_eq!(random, 2, "10 % of capacity explores");
    // Risk picks come in priority order.
    let risk: Vec<f64> = red[..18]
        .iter()
        .map(|a| a.priority.as_ref().unwrap().priority_value)
        .collect();
    assert!(risk.windows(2).all(|w| w[0] >= w[1]));
    for a in &red {
        assert!(
            a.reasons.iter().any(|r| !r.evidence.is_empty()),
            "RED {} without a reason with evidence: {:?}",
            a.declaration_id,
            a.reasons
        );
    }
    // The next 20 by priority are YELLOW, and so is any other declaration
    // that must never be released (near-certain or rule-breaking).
    let never_release = |a: &pb::RiskAssessment| {
        a.overall_score >= parcel_risk::scoring::CERTAIN_FRAUD
            || a.reasons.iter().any(|r| {
                [
                    "THR_H7_VALUE_OVER_150",
                    "DQ_UNKNOWN_HS6",
                    "FIS_IOSS_INVALID_OR_INCONSISTENT",
                ]
                .contains(&r.code.as_str())
            })
    };
    let yellow: Vec<&&pb::RiskAssessment> = assessments
        .iter()
        .filter(|a| channel(a) == pb::Channel::Yellow as i32)
        .collect();
    let by_rank = yellow.iter().filter(|a| !never_release(a)).count();
    assert!(
        by_rank <= 20 && yellow.len() >= 20,
        "{by_rank} {}",
        yellow.len()
    );
    assert!(
        assessments
            .iter()
            .filter(|a| channel(a) == pb::Channel::Green as i32)
            .all(|a| !never_release(a))
    );
    // The same batch plans the same way (the random picks are fixed by id).
    let again = client
        .plan_inspections(pb::PlanInspectionsRequest {
            declarations,
            capacity: 20,
        })
        .await
        .unwrap()
        .into_inner();
    let ids = |p: &pb::PlanInspectionsResponse| {
        p.declarations
            .iter()
            .take(20)
            .map(|e| e.declaration_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&plan), ids(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_assessments_carry_a_channel_and_red_ones_say_why() {
    let priority = PriorityParams {
        red_share: 0.03,
        ..PriorityParams::default()
    }
    .check()
    .unwrap();
    let server = TestServer::start_with(ServerConfig::default(), priority).await;
    let mut client = server.client().await;
    let requests: Vec<pb::ScoreDeclarationsRequest> = traffic_declarations(2000)
        .into_iter()
        .map(|d| pb::ScoreDeclarationsRequest {
            declaration: Some(d),
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
    let mut red = 0;
    for r in &responses {
        let Some(Outcome::Assessment(a)) = &r.outcome else {
            panic!()
        };
        let p = a.priority.as_ref().unwrap();
        assert_ne!(p.channel, pb::Channel::Unspecified as i32);
        if p.channel == pb::Channel::Red as i32 {
            red += 1;
            assert!(
                a.reasons.iter().any(|r| !r.evidence.is_empty()),
                "{:?}",
                a.reasons
            );
        }
    }
    // 3 % of 1,800 after the warm-up, plus the random picks.
    assert!((30..110).contains(&red), "{red}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_are_closed_and_free_their_slots() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = ServerConfig {
        max_connections: 3,
        handshake_timeout: std::time::Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    // Three sockets that never speak take every slot...
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    // ...and one that speaks something else is closed at once.
    let mut junk = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let started = std::time::Instant::now();
    for socket in &mut silent {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut byte))
            .await
            .expect("a silent socket is closed by the server");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), junk.read(&mut byte))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // The slots are free again: a real client is served.
    let mut client = server.client().await;
    client
        .get_model_info(pb::GetModelInfoRequest {})
        .await
        .unwrap();
}

/// Two streams whose clients send thousands of declarations and read none
/// of the answers: they hold the server's memory budget, not more; a
/// well-behaved unary call is still answered, and once memory is short a
/// stalled stream loses its unread answers and ends RESOURCE_EXHAUSTED
/// (after the answers already sent, in order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_nobody_reads_are_held_to_the_memory_budget() {
    let server = TestServer::start(ServerConfig {
        memory_budget_bytes: 2 << 20,
        stalled_stream: std::time::Duration::from_millis(500),
        ..ServerConfig::default()
    })
    .await;
    let declarations = traffic_declarations(3000);
    let mut senders = Vec::new();
    let mut feeds = Vec::new();
    let mut answers = Vec::new();
    let mut sent_ids = Vec::new();
    // Both streams open (and reserve) before either sends. Small receive
    // windows: the clients' transport holds few answers, so the server's
    // queues fill (and stall) soon even on a loaded machine.
    for s in 0..2 {
        let channel = Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .initial_stream_window_size(64 * 1024)
            .initial_connection_window_size(64 * 1024)
            .connect()
            .await
            .unwrap();
        let mut client = RiskServiceClient::new(channel);
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::ScoreDeclarationsRequest>(64);
        let stream = client
            .score_declarations(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("the budget has room for two streams")
            .into_inner();
        answers.push(stream);
        let mut ids = Vec::new();
        let requests: Vec<_> = declarations
            .iter()
            .map(|d| {
                let mut d = d.clone();
                d.declaration_id = format!("slow{s}-{}", d.declaration_id);
                ids.push(d.declaration_id.clone());
                pb::ScoreDeclarationsRequest {
                    declaration: Some(d),
                }
            })
            .collect();
        sent_ids.push(ids);
        feeds.push((tx, requests));
    }
    for (tx, requests) in feeds {
        senders.push(tokio::spawn(async move {
            for r in requests {
                if tx.send(r).await.is_err() {
                    return;
                }
            }
            // Keep the request side open: the client is slow, not done.
            std::future::pending::<()>().await;
        }));
    }
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let mut polite = server.client().await;
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        polite.score_declaration(pb::ScoreDeclarationRequest {
            declaration: Some(full_declaration("POLITE")),
        }),
    )
    .await
    .expect("a well-behaved call is answered while slow readers hold the budget")
    .expect("scored");
    assert!(answer.into_inner().assessment.is_some());

    let mut cut = 0;
    for (stream, ids) in answers.iter_mut().zip(&sent_ids) {
        let mut n = 0;
        let end = loop {
            match tokio::time::timeout(std::time::Duration::from_secs(3), stream.message()).await {
                Ok(Ok(Some(a))) => {
                    assert_eq!(a.declaration_id, ids[n], "answer {n} out of order");
                    n += 1;
                }
                Ok(Ok(None)) => panic!("the stream ended OK after {n} answers"),
                Ok(Err(status)) => break Some(status),
                // Not cut: everything it was sent is answered, then it waits.
                Err(_) => break None,
            }
        };
        match end {
            Some(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
                assert!(
                    status.message().contains("answers were dropped"),
                    "{status}"
                );
                assert!(n < ids.len());
                cut += 1;
            }
            None => assert_eq!(n, ids.len()),
        }
    }
    assert!(cut >= 1, "a stalled stream is cut once memory is short");
    for s in senders {
        s.abort();
    }
}

/// A connection with no call open for the idle timeout is closed; one with a
/// stream open (even a quiet one) is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_open_streams_are_kept() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let timeout = std::time::Duration::from_millis(300);
    let server = TestServer::start(ServerConfig {
        idle_timeout: timeout,
        ..ServerConfig::default()
    })
    .await;
    // Speaks HTTP/2 (preface and SETTINGS), then makes no call. The server
    // counts idleness from the accept, so the clock starts before the
    // connect (started after the writes, a loaded machine saw the close
    // come "early").
    let opened = std::time::Instant::now();
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    idle.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle connection is closed");
    assert!(opened.elapsed() >= timeout, "not before the idle timeout");

    // A stream open and quiet for three timeouts is kept, and still answers.
    let mut client = server.client().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ScoreDeclarationsRequest>(4);
    let mut answers = client
        .score_declarations(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(timeout * 3).await;
    tx.send(pb::ScoreDeclarationsRequest {
        declaration: Some(full_declaration("QUIET")),
    })
    .await
    .unwrap();
    let answer = answers
        .message()
        .await
        .expect("the stream is alive")
        .unwrap();
    assert_eq!(answer.declaration_id, "QUIET");
}
