//! TLS, mutual TLS, roles, tokens and label integrity, against the real
//! server in-process (and the binary for SIGHUP and its logs).
//! Certificates are made here with rcgen: a test CA, a server certificate
//! for localhost, client certificates by name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parcel_risk::domain::ReferenceData;
use parcel_risk::grpc::{ServerConfig, ServiceState, serve_secured};
use parcel_risk::pb;
use parcel_risk::pb::risk_service_client::RiskServiceClient;
use parcel_risk::scoring::PriorityConfig;
use parcel_risk::security::access::token_hash;
use parcel_risk::security::{Security, TlsFiles};
use parcel_risk::store::{self, Store};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::common::{full_declaration, get_metrics, trained};

/// A test CA and what it signs, as PEM files in a temporary folder.
pub(crate) struct Pki {
    pub(crate) dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub(crate) fn new(ca_name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, ca_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca,
        };
        std::fs::write(pki.path("ca.pem"), pki.ca.pem()).unwrap();
        pki
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// Writes `NAME.pem` and `NAME.key` for a leaf certificate.
    fn issue(
        &self,
        file: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (cert_path, key_path) = (
            self.path(&format!("{file}.pem")),
            self.path(&format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    pub(crate) fn server(&self) -> (PathBuf, PathBuf) {
        self.issue(
            "server",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    pub(crate) fn client(&self, name: &str) -> Identity {
        let (cert, key) = self.client_files(name);
        Identity::from_pem(std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())
    }

    /// A client certificate's `NAME.pem` and `NAME.key`.
    pub(crate) fn client_files(&self, name: &str) -> (PathBuf, PathBuf) {
        self.issue(name, &[name], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

struct Server {
    addr: SocketAddr,
    data: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

async fn start(security: Security, priority: PriorityConfig, quota: u64) -> Server {
    let (model, _) = trained();
    let data = tempfile::tempdir().unwrap();
    let state = Arc::new(
        ServiceState::with_priority((**model).clone(), ReferenceData::built_in(), priority)
            .with_store(Store::open(data.path(), chrono::Duration::days(30)).unwrap())
            .with_report_quota(quota),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        serve_secured(
            listener,
            state,
            ServerConfig::default(),
            Arc::new(security),
            async {
                let _ = stopped.await;
            },
        )
        .await
        .unwrap();
    });
    Server {
        addr,
        data,
        _stop: stop,
    }
}

fn tls_files(pki: &Pki, mutual: bool) -> TlsFiles {
    let (cert, key) = pki.server();
    TlsFiles {
        cert,
        key,
        client_ca: mutual.then(|| pki.path("ca.pem")),
    }
}

async fn tls_channel(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<Identity>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

async fn plain_channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Adds `authorization: Bearer TOKEN` to every call.
#[derive(Clone)]
struct Bearer(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = &self.0 {
            request.metadata_mut().insert("authorization", h.clone());
        }
        Ok(request)
    }
}

type TokenClient =
    RiskServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

fn with_token(channel: Channel, token: Option<&str>) -> TokenClient {
    let header = token.map(|t| format!("Bearer {t}").parse().unwrap());
    RiskServiceClient::with_interceptor(channel, Bearer(header))
}

fn result(declaration_id: &str, selection: pb::SelectionReason) -> pb::InspectionResult {
    pb::InspectionResult {
        declaration_id: declaration_id.into(),
        inspection_id: "I1".into(),
        selection_reason: selection as i32,
        control_type: pb::Channel::Red as i32,
        outcome: pb::InspectionOutcome::Compliant as i32,
        ..Default::default()
    }
}

/// Who reported what, oldest first.
fn audit_trail(data_dir: &Path) -> Vec<store::AuditEntry> {
    let mut trail = Vec::new();
    store::audit(data_dir, &store::AuditQuery::default(), |e| trail.push(e)).unwrap();
    trail
}

fn access_file(dir: &Path, lines: &str) -> PathBuf {
    let path = dir.join("access");
    std::fs::write(&path, lines).unwrap();
    path
}

async fn model_info<T>(client: &mut RiskServiceClient<T>) -> Result<String, tonic::Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    client
        .get_model_info(pb::GetModelInfoRequest {})
        .await
        .map(|r| r.into_inner().model_version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_needs_a_trusted_ca_and_the_server_rotates_its_certificate() {
    let pki = Pki::new("test CA");
    let files = tls_files(&pki, false);
    let security = Arc::new(Security::load(Some(files.clone()), None).unwrap());
    let (model, _) = trained();
    let state = Arc::new(ServiceState::new(
        (**model).clone(),
        ReferenceData::built_in(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = oneshot::channel::<()>();
    let serving = Arc::clone(&security);
    tokio::spawn(async move {
        serve_secured(listener, state, ServerConfig::default(), serving, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });

    let channel = tls_channel(addr, &pki.ca_pem(), None).await.unwrap();
    assert!(
        model_info(&mut RiskServiceClient::new(channel))
            .await
            .is_ok()
    );

    // A client that trusts another CA does not get through.
    let stranger = Pki::new("another CA");
    let refused = match tls_channel(addr, &stranger.ca_pem(), None).await {
        Err(_) => true,
        Ok(channel) => model_info(&mut RiskServiceClient::new(channel))
            .await
            .is_err(),
    };
    assert!(
        refused,
        "a server certificate from an untrusted CA was accepted"
    );
    // Plaintext on the TLS port gets nowhere either.
    let plain = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(channel) = plain {
        assert!(
            model_info(&mut RiskServiceClient::new(channel))
                .await
                .is_err()
        );
    }

    // Rotation: new files from another CA, reloaded; new clients see them.
    let (cert, key) = stranger.server();
    std::fs::copy(cert, &files.cert).unwrap();
    std::fs::copy(key, &files.key).unwrap();
    assert!(security.reload().is_empty());
    let channel = tls_channel(addr, &stranger.ca_pem(), None).await.unwrap();
    assert!(
        model_info(&mut RiskServiceClient::new(channel))
            .await
            .is_ok()
    );
    // A broken file is refused and the certificate in use stays.
    std::fs::write(&files.key, "not a key").unwrap();
    let errors = security.reload();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].to_string().contains("server.key"),
        "{}",
        errors[0]
    );
    let channel = tls_channel(addr, &stranger.ca_pem(), None).await.unwrap();
    assert!(
        model_info(&mut RiskServiceClient::new(channel))
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate_and_names_those_with_one() {
    let pki = Pki::new("test CA");
    let access = access_file(
        pki.dir.path(),
        "clearance score cert:clearance.example\ninspectors report cert:inspect.example\n",
    );
    let security = Security::load(Some(tls_files(&pki, true)), Some(access)).unwrap();
    let server = start(security, PriorityConfig::default(), 1000).await;

    // No client certificate: the handshake (or the first call) fails.
    let refused = match tls_channel(server.addr, &pki.ca_pem(), None).await {
        Err(_) => true,
        Ok(channel) => model_info(&mut RiskServiceClient::new(channel))
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate was served");
    // A certificate from another CA: refused the same way.
    let rogue = Pki::new("rogue CA");
    let refused = match tls_channel(
        server.addr,
        &pki.ca_pem(),
        Some(rogue.client("clearance.example")),
    )
    .await
    {
        Err(_) => true,
        Ok(channel) => model_info(&mut RiskServiceClient::new(channel))
            .await
            .is_err(),
    };
    assert!(refused, "a client certificate from another CA was accepted");

    let channel = tls_channel(
        server.addr,
        &pki.ca_pem(),
        Some(pki.client("clearance.example")),
    )
    .await
    .unwrap();
    let mut clearance = RiskServiceClient::new(channel);
    assert!(model_info(&mut clearance).await.is_ok());
    let denied = clearance
        .report_inspection_result(pb::ReportInspectionResultRequest {
            result: Some(result("D1", pb::SelectionReason::RiskScore)),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("report"), "{}", denied.message());

    let channel = tls_channel(
        server.addr,
        &pki.ca_pem(),
        Some(pki.client("inspect.example")),
    )
    .await
    .unwrap();
    let mut inspectors = RiskServiceClient::new(channel);
    inspectors
        .report_inspection_result(pb::ReportInspectionResultRequest {
            result: Some(result("D1", pb::SelectionReason::RiskScore)),
        })
        .await
        .unwrap();
    assert_eq!(
        model_info(&mut inspectors).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // Signed by the CA but not in the access file: no role at all.
    let channel = tls_channel(
        server.addr,
        &pki.ca_pem(),
        Some(pki.client("stranger.example")),
    )
    .await
    .unwrap();
    assert_eq!(
        model_info(&mut RiskServiceClient::new(channel))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    // The audit trail names the certificate's owner.
    let trail = audit_trail(server.data.path());
    assert_eq!(trail.len(), 1);
    assert_eq!(
        (trail[0].reporter.as_str(), trail[0].credential.as_str()),
        ("inspectors", "certificate")
    );
    assert!(
        trail[0].address.starts_with("127.0.0.1:"),
        "{}",
        trail[0].address
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_reaches_its_rpcs_and_is_denied_elsewhere_and_health_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let access = access_file(
        dir.path(),
        &format!(
            "clearance score {}\ninspectors report {}\n",
            token_hash("score-token"),
            token_hash("report-token")
        ),
    );
    let security = Security::load(None, Some(access)).unwrap();
    let server = start(security, PriorityConfig::default(), 1000).await;
    let channel = plain_channel(server.addr).await;

    let mut scorer = with_token(channel.clone(), Some("score-token"));
    assert!(model_info(&mut scorer).await.is_ok());
    let scored = scorer
        .score_declaration(pb::ScoreDeclarationRequest {
            declaration: Some(full_declaration("S1")),
        })
        .await
        .unwrap();
    assert!(scored.into_inner().assessment.is_some());
    let plan = scorer
        .plan_inspections(pb::PlanInspectionsRequest {
            declarations: vec![full_declaration("S2")],
            capacity: 1,
        })
        .await;
    assert!(plan.is_ok(), "{plan:?}");
    let denied = scorer
        .report_inspection_result(pb::ReportInspectionResultRequest {
            result: Some(result("S1", pb::SelectionReason::RiskScore)),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = scorer
        .report_inspection_results(tokio_stream::iter(vec![
            pb::ReportInspectionResultsRequest {
                result: Some(result("S1", pb::SelectionReason::RiskScore)),
            },
        ]))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let mut reporter = with_token(channel.clone(), Some("report-token"));
    reporter
        .report_inspection_result(pb::ReportInspectionResultRequest {
            result: Some(result("S1", pb::SelectionReason::RiskScore)),
        })
        .await
        .unwrap();
    assert_eq!(
        model_info(&mut reporter).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let denied = reporter
        .score_declarations(tokio_stream::iter(vec![pb::ScoreDeclarationsRequest {
            declaration: Some(full_declaration("S3")),
        }]))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    for token in [None, Some("wrong-token"), Some("")] {
        let status = model_info(&mut with_token(channel.clone(), token))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{token:?}: {status:?}"
        );
        // The refusal never echoes what was sent.
        assert!(!status.message().contains("wrong-token"));
    }

    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "parcelrisk.v1.RiskService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let trail = audit_trail(server.data.path());
    assert_eq!(
        trail
            .iter()
            .map(|e| (e.reporter.as_str(), e.credential.as_str()))
            .collect::<Vec<_>>(),
        [("inspectors", "token")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_claim_stands_only_for_a_random_pick_and_quotas_bite() {
    let everything_random = crate::learning::every_declaration_a_random_pick();
    let server = start(Security::open(), everything_random, 4).await;
    let mut client = RiskServiceClient::new(plain_channel(server.addr).await);
    let scored = client
        .score_declaration(pb::ScoreDeclarationRequest {
            declaration: Some(full_declaration("PICKED")),
        })
        .await
        .unwrap()
        .into_inner();
    let priority = scored.assessment.unwrap().priority.unwrap();
    assert_eq!(
        priority.selection_reason,
        pb::SelectionReason::Random as i32
    );

    client
        .report_inspection_result(pb::ReportInspectionResultRequest {
            result: Some(result("PICKED", pb::SelectionReason::Random)),
        })
        .await
        .unwrap();
    let forged = client
        .report_inspection_result(pb::ReportInspectionResultRequest {
            result: Some(result("NEVER-SCORED", pb::SelectionReason::Random)),
        })
        .await
        .unwrap_err();
    assert_eq!(forged.code(), Code::FailedPrecondition, "{forged:?}");
    assert!(
        forged.message().contains("NEVER-SCORED"),
        "{}",
        forged.message()
    );
    // In a bulk upload the forged claim fails the whole upload.
    let bulk = client
        .report_inspection_results(tokio_stream::iter(
            [
                ("A", pb::SelectionReason::RiskScore),
                ("FORGED", pb::SelectionReason::Random),
            ]
            .map(|(id, s)| pb::ReportInspectionResultsRequest {
                result: Some(result(id, s)),
            }),
        ))
        .await
        .unwrap_err();
    assert_eq!(bulk.code(), Code::FailedPrecondition);
    assert_eq!(store::counts(server.data.path()).unwrap().1, 1);

    // A quota of 4 results an hour: refused claims cost the same as
    // accepted ones (1 + 1 + 2 so far), so the next one is refused.
    let quota = client
        .report_inspection_result(pb::ReportInspectionResultRequest {
            result: Some(result("B", pb::SelectionReason::RiskScore)),
        })
        .await
        .unwrap_err();
    assert_eq!(quota.code(), Code::ResourceExhausted, "{quota:?}");
    assert!(quota.message().contains("quota"), "{}", quota.message());
}

/// The `addr=` of the first log line that says `what`.
pub(crate) fn logged_addr(log: &str, what: &str) -> Option<SocketAddr> {
    let line = log.lines().find(|l| l.contains(what))?;
    line.split("addr=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Where the binary serves `/metrics`, from its log.
pub(crate) fn metrics_addr(log: &str) -> SocketAddr {
    logged_addr(log, "metrics on /metrics").expect("the metrics address is logged")
}

/// Runs `serve` on a free loopback port with its store in `data` and the
/// `extra` flags; see [`spawn_binary`].
pub(crate) fn spawn_serve(
    data: &std::path::Path,
    extra: &[&str],
) -> (std::process::Child, String, Arc<std::sync::Mutex<String>>) {
    let data = data.to_str().unwrap();
    let mut args = vec!["serve", "--addr", "127.0.0.1:0", "--data-dir", data];
    args.extend_from_slice(extra);
    spawn_binary(&args)
}

/// Runs the binary with `args`, returns it, its address and its log so far
/// (the log keeps filling in the background).
pub(crate) fn spawn_binary(
    args: &[&str],
) -> (std::process::Child, String, Arc<std::sync::Mutex<String>>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_parcel-risk"))
        .args(args)
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut sent = false;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if !sent && let Some(addr) = logged_addr(&line, "serving parcelrisk") {
                let _ = tx.send(addr.to_string());
                sent = true;
            }
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the server did not start: {}", log.lock().unwrap()));
    (child, addr, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_reload_on_sighup_and_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = ("0ld-t0ken-do-not-log", "n3w-t0ken-do-not-log");
    let access = access_file(dir.path(), &format!("ops score {}\n", token_hash(old)));
    let data = dir.path().join("data");
    let (mut child, addr, log) = spawn_serve(
        &data,
        &[
            "--metrics-addr",
            "off",
            "--auth-tokens",
            access.to_str().unwrap(),
        ],
    );
    let channel = plain_channel(addr.parse().unwrap()).await;
    assert!(
        model_info(&mut with_token(channel.clone(), Some(old)))
            .await
            .is_ok()
    );
    assert_eq!(
        model_info(&mut with_token(channel.clone(), Some(new)))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    std::fs::write(&access, format!("ops score {}\n", token_hash(new))).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let mut switched = false;
    for _ in 0..100 {
        if model_info(&mut with_token(channel.clone(), Some(new)))
            .await
            .is_ok()
        {
            switched = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(switched, "the new token was not accepted after SIGHUP");
    assert_eq!(
        model_info(&mut with_token(channel.clone(), Some(old)))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let log = log.lock().unwrap().clone();
    assert!(log.contains("access file loaded"), "{log}");
    assert!(log.contains("reloaded"), "{log}");
    for secret in [old, new] {
        assert!(!log.contains(secret), "a token reached the log");
    }
}

#[test]
fn off_loopback_plaintext_or_no_credentials_need_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parcel-risk"))
        .args([
            "serve",
            "--addr",
            "0.0.0.0:0",
            "--metrics-addr",
            "off",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--insecure"), "{stderr}");
    // TLS without any credential asked is refused off loopback too: anyone
    // reaching the port could report labels.
    let pki = Pki::new("test CA");
    let (cert, key) = pki.server();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parcel-risk"))
        .args([
            "serve",
            "--addr",
            "0.0.0.0:0",
            "--metrics-addr",
            "off",
            "--tls-cert",
        ])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("require credentials there"), "{stderr}");
}

/// Whether Python with grpcio and grpcio-tools is here. CI installs them
/// and sets PARCEL_RISK_REQUIRE_PYTHON=1, where their absence fails.
fn python_grpc() -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", "import grpc, grpc_tools, setuptools"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("PARCEL_RISK_REQUIRE_PYTHON").is_none(),
            "python3 with grpcio, grpcio-tools and setuptools is required here"
        );
        eprintln!("skipped: python3 with grpcio and grpcio-tools is not installed");
    }
    found
}

/// The client package, installed as a user would (its build compiles the
/// proto files), into `work`/site; its path. It is built from a copy of its
/// sources in `work`: setuptools builds in the source tree, and two tests
/// building the same tree at once collided there ("File exists" in
/// `build/bdist…`).
fn install_python_client(work: &Path) -> PathBuf {
    let site = work.join("site");
    let sources = work.join("client-src");
    copy_tree(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/clients/python")),
        &sources,
    );
    let installed = std::process::Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--no-build-isolation", "--no-deps", "--target"])
        .arg(&site)
        .arg(&sources)
        .env(
            "PARCEL_RISK_PROTO",
            concat!(env!("CARGO_MANIFEST_DIR"), "/proto"),
        )
        .output()
        .unwrap();
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    site
}

/// Copies the files under `from` to `to`, leaving out what a build left
/// there (`build/`, `*.egg-info`, `__pycache__`).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        if name_text == "build" || name_text == "__pycache__" || name_text.ends_with(".egg-info") {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_package_scores_a_csv_file_as_the_service_reads_it_and_reports_a_result() {
    if !python_grpc() {
        return;
    }
    let server = start(Security::open(), PriorityConfig::default(), 1000).await;
    let work = tempfile::tempdir().unwrap();
    let site = install_python_client(work.path());
    let csv = work.path().join("declarations.csv");
    let generated = std::process::Command::new(env!("CARGO_BIN_EXE_parcel-risk"))
        .args([
            "generate",
            "--parcels",
            "300",
            "--seed",
            "4",
            "--declarations-only",
        ])
        .arg("--out")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(generated.status.success());
    // The riskiest declaration as the service's own CSV reader and a fresh
    // router see the file, in its order.
    let (model, _) = trained();
    let router = parcel_risk::scoring::Router::new(model.clone(), PriorityConfig::default());
    let declarations: Vec<parcel_risk::domain::Declaration> =
        parcel_risk::io::open_examples(&csv, None, ReferenceData::built_in())
            .unwrap()
            .map(|r| r.unwrap().unwrap().1.declaration)
            .collect();
    let assessments = router.score_all(&router.scorer(), &declarations, |_| ());
    let riskiest = assessments
        .iter()
        .reduce(|best, a| {
            if a.overall_score > best.overall_score {
                a
            } else {
                best
            }
        })
        .unwrap();
    let out = std::process::Command::new("python3")
        .current_dir(work.path())
        .env("PYTHONPATH", &site)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/python_rows.py"
        ))
        .arg(&csv)
        .arg(server.addr.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("300 declarations, 300 scored, 0 refused"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "riskiest {} {:.3}; result newly recorded True",
            riskiest.declaration_id, riskiest.overall_score
        )),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_client_calls_a_mutual_tls_server_with_a_token() {
    if !python_grpc() {
        return;
    }
    let pki = Pki::new("test CA");
    let access = access_file(
        pki.dir.path(),
        &format!("py-script score,report {}\n", token_hash("py-token")),
    );
    let security = Security::load(Some(tls_files(&pki, true)), Some(access)).unwrap();
    let server = start(security, PriorityConfig::default(), 1000).await;
    // The client's certificate (mutual TLS) and key.
    drop(pki.client("py-client"));
    let root = env!("CARGO_MANIFEST_DIR");
    let work = tempfile::tempdir().unwrap();
    let site = install_python_client(work.path());
    let run = |token: &str| {
        std::process::Command::new("python3")
            .current_dir(work.path())
            .env("PYTHONPATH", &site)
            .arg(format!("{root}/examples/python_client.py"))
            .arg(format!("localhost:{}", server.addr.port()))
            .arg("--ca")
            .arg(pki.path("ca.pem"))
            .arg("--cert")
            .arg(pki.path("py-client.pem"))
            .arg("--key")
            .arg(pki.path("py-client.key"))
            .env("PARCEL_RISK_TOKEN", token)
            .output()
            .unwrap()
    };
    let out = run("py-token");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("PY-1 overall"), "{stdout}");
    assert!(
        stdout.contains("result report 1: newly recorded True"),
        "{stdout}"
    );
    let trail = audit_trail(server.data.path());
    assert_eq!(trail[0].reporter, "py-script");
    // A wrong token is refused, in Python's words too.
    let out = run("wrong");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("UNAUTHENTICATED"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_serves_with_the_service_certificate() {
    use tokio_rustls::rustls;
    let pki = Pki::new("test CA");
    let files = tls_files(&pki, false);
    let data = pki.path("data");
    let (mut child, addr, log) = spawn_serve(
        &data,
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--tls-cert",
            files.cert.to_str().unwrap(),
            "--tls-key",
            files.key.to_str().unwrap(),
        ],
    );
    let metrics_addr = metrics_addr(&log.lock().unwrap());
    // One scored call, so that the counters have something to say.
    let channel = tls_channel(addr.parse().unwrap(), &pki.ca_pem(), None)
        .await
        .unwrap();
    let mut client = RiskServiceClient::new(channel);
    client
        .score_declaration(pb::ScoreDeclarationRequest {
            declaration: Some(full_declaration("M1")),
        })
        .await
        .unwrap();

    let mut roots = rustls::RootCertStore::empty();
    {
        use rustls::pki_types::pem::PemObject;
        let ca = rustls::pki_types::CertificateDer::from_pem_slice(pki.ca_pem().as_bytes());
        roots.add(ca.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(metrics_addr).await.unwrap();
    let mut tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let response = get_metrics(&mut tls).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("parcel_risk_declarations_scored_total"),
        "{response}"
    );

    // Plaintext on the metrics port gets no metrics.
    let mut plain = tokio::net::TcpStream::connect(metrics_addr).await.unwrap();
    assert!(!get_metrics(&mut plain).await.contains("parcel_risk_"));
    child.kill().unwrap();
    child.wait().unwrap();
}
