//! Shared state on a real Redis (`redis-server` started on a free port when
//! it is on PATH; skipped otherwise, unless PARCEL_RISK_REQUIRE_REDIS=1, as
//! `.ci/run` sets it, makes a missing server a failure).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parcel_risk::domain::{Declaration, TrainingExample};
use parcel_risk::features::history::PartyKeys;
use parcel_risk::generate::{Generator, GeneratorConfig};
use parcel_risk::model::ModelArtifact;
use parcel_risk::scoring::shared::{
    ClientCertificate, DEFAULT_TIMEOUT, RETRY_AFTER, RedisTls, SharedWindows,
};
use parcel_risk::scoring::{Assessment, PriorityConfig, Router, WindowInput};

/// A `redis-server` of the test's own, killed on drop.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// Starts one on `port` (0: a free one); `None` when redis-server is not
    /// installed and the environment does not require it.
    pub fn start(port: u16) -> Option<Self> {
        let port = if port == 0 { free_port() } else { port };
        Self::start_with(port, &["--port".into(), port.to_string()])
    }

    /// Starts one that speaks TLS only, on a free port, with the server
    /// certificate and key `cert`, `key`; with `clients_need_certificates`,
    /// clients must present one that chains to `ca`.
    pub fn start_tls(
        cert: &std::path::Path,
        key: &std::path::Path,
        ca: &std::path::Path,
        clients_need_certificates: bool,
    ) -> Option<Self> {
        let port = free_port();
        let path = |p: &std::path::Path| p.display().to_string();
        Self::start_with(
            port,
            &[
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                path(cert),
                "--tls-key-file".into(),
                path(key),
                "--tls-ca-cert-file".into(),
                path(ca),
                "--tls-auth-clients".into(),
                if clients_need_certificates {
                    "yes"
                } else {
                    "no"
                }
                .into(),
            ],
        )
    }

    fn start_with(port: u16, listen: &[String]) -> Option<Self> {
        let child = Command::new("redis-server")
            .args(listen)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                assert!(
                    std::env::var("PARCEL_RISK_REQUIRE_REDIS").as_deref() != Ok("1"),
                    "redis-server is required (PARCEL_RISK_REQUIRE_REDIS=1) but cannot start: {e}"
                );
                eprintln!("redis-server not available ({e}): shared-state test skipped");
                return None;
            }
        };
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// A Redis Cluster of `redis-server`s of the test's own (no replicas),
/// its slots spread over them by `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    configs: Vec<std::path::PathBuf>,
}

impl RedisCluster {
    pub fn start(size: usize) -> Option<Self> {
        let mut nodes = Vec::new();
        let mut configs = Vec::new();
        for _ in 0..size {
            let port = free_cluster_port();
            let config = std::env::temp_dir().join(format!("parcel-risk-cluster-{port}.conf"));
            let _ = std::fs::remove_file(&config);
            let args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &config.display().to_string(),
            ]
            .map(String::from)
            .to_vec();
            nodes.push(RedisServer::start_with(port, &args)?);
            configs.push(config);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli (Debian's redis-tools, installed with redis-server)");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = Self { nodes, configs };
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &cluster.nodes {
            let mut redis = cluster.connect(node);
            loop {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut redis).unwrap();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not come up: {info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(cluster)
    }

    /// A plain connection to one node (not following redirections).
    pub fn connect(&self, node: &RedisServer) -> redis::Connection {
        redis::Client::open(node.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        for config in &self.configs {
            let _ = std::fs::remove_file(config);
        }
    }
}

/// A free port whose cluster bus port (10,000 above it) is free too, and
/// within range: the OS hands out ports up to 60999.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55_535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Generated declarations in lodging order.
fn traffic(parcels: u64, days: u32, seed: u64) -> Vec<Declaration> {
    let generator = Generator::new(GeneratorConfig {
        parcels,
        days,
        seed,
        ..GeneratorConfig::default()
    })
    .unwrap();
    let mut examples: Vec<TrainingExample> = (0..generator.chunk_count())
        .flat_map(|c| generator.domain_chunk(c))
        .collect();
    parcel_risk::model::train::sort_by_time(&mut examples);
    examples.into_iter().map(|e| e.declaration).collect()
}

fn model() -> Arc<ModelArtifact> {
    Arc::new(ModelArtifact::embedded_default().expect("the default model"))
}

fn replica(model: &Arc<ModelArtifact>, url: &str, prefix: &str) -> Router {
    Router::new(Arc::clone(model), PriorityConfig::default())
        .without_live_record()
        .with_shared_state(SharedWindows::new(url, prefix, DEFAULT_TIMEOUT).unwrap())
}

/// What the windows change in an assessment (routing aside: each replica
/// has its own allocator).
fn scored(a: &Assessment) -> (String, [u64; 4], Vec<&'static str>) {
    (
        a.declaration_id.as_str().to_owned(),
        [
            a.overall_score.to_bits(),
            a.undervaluation_score.to_bits(),
            a.misdescription_score.to_bits(),
            a.priority_value.to_bits(),
        ],
        // The allocator's random compliance picks are routing too.
        a.reasons
            .iter()
            .map(|r| r.code)
            .filter(|code| *code != "RND_COMPLIANCE_SAMPLE")
            .collect(),
    )
}

const BATCH: usize = 32;

/// Scores `declarations` in batches, each batch on the next router in turn.
fn alternately(routers: &[&Router], declarations: &[Declaration]) -> Vec<Assessment> {
    declarations
        .chunks(BATCH)
        .enumerate()
        .flat_map(|(i, batch)| {
            let router = routers[i % routers.len()];
            router.score_all(&router.scorer(), batch, |_| ())
        })
        .collect()
}

fn count(assessments: &[Assessment], code: &str) -> usize {
    assessments
        .iter()
        .filter(|a| a.reasons.iter().any(|r| r.code == code))
        .count()
}

#[test]
fn two_replicas_fed_alternately_score_as_one_replica_fed_everything() {
    let Some(redis) = RedisServer::start(0) else {
        return;
    };
    let model = model();
    let declarations = traffic(6_000, 2, 11);
    // One replica, in-process windows, fed everything.
    let one = Router::new(Arc::clone(&model), PriorityConfig::default()).without_live_record();
    let expected = alternately(&[&one], &declarations);
    let split = count(&expected, "THR_SPLIT_SAME_CONSIGNEE_SAME_DAY");
    let fan_in = count(&expected, "PTY_ADDRESS_HIGH_FAN_IN");
    assert!(split > 20 && fan_in > 0, "split {split}, fan-in {fan_in}");

    // Two replicas on one Redis, fed batch by batch in turn.
    let (a, b) = (
        replica(&model, &redis.url(), "t1"),
        replica(&model, &redis.url(), "t1"),
    );
    let shared = alternately(&[&a, &b], &declarations);
    assert_eq!(count(&shared, "DQ_WINDOWS_LOCAL_ONLY"), 0);
    assert_eq!(shared.len(), expected.len());
    for (got, want) in shared.iter().zip(&expected) {
        assert_eq!(scored(got), scored(want));
    }

    // Without the shared state, the same two replicas see half of each
    // buyer's parcels: what the test would catch.
    let (c, d) = (
        Router::new(Arc::clone(&model), PriorityConfig::default()).without_live_record(),
        Router::new(Arc::clone(&model), PriorityConfig::default()).without_live_record(),
    );
    let apart = alternately(&[&c, &d], &declarations);
    assert!(count(&apart, "THR_SPLIT_SAME_CONSIGNEE_SAME_DAY") < split);

    // Another prefix is another deployment: it starts empty.
    let other = replica(&model, &redis.url(), "t2");
    let again = alternately(&[&other], &declarations);
    for (got, want) in again.iter().zip(&expected) {
        assert_eq!(scored(got), scored(want));
    }
}

#[test]
fn a_declaration_resent_to_the_other_replica_scores_the_same_and_counts_once() {
    let Some(redis) = RedisServer::start(0) else {
        return;
    };
    let model = model();
    let declarations = traffic(2_000, 2, 11);
    let once = alternately(&[&replica(&model, &redis.url(), "r1")], &declarations);
    let (a, b) = (
        replica(&model, &redis.url(), "r2"),
        replica(&model, &redis.url(), "r2"),
    );
    let mut first = Vec::new();
    // One declaration at a time: a resend is read against the parcels its
    // first sending saw, but a later parcel of the batch may have expired
    // the oldest of them (in-process windows alike).
    for batch in declarations.chunks(1) {
        let sent = a.score_all(&a.scorer(), batch, |_| ());
        // The client's retry after a transport error lands on the other
        // replica: the same answers...
        let resent = b.score_all(&b.scorer(), batch, |_| ());
        for (got, want) in resent.iter().zip(&sent) {
            assert_eq!(scored(got), scored(want));
        }
        first.extend(sent);
    }
    // ...and the later parcels see each resent one once.
    for (got, want) in first.iter().zip(&once) {
        assert_eq!(scored(got), scored(want));
    }
}

#[test]
fn scoring_goes_on_locally_while_redis_is_down_and_shares_again_when_it_returns() {
    let Some(redis) = RedisServer::start(0) else {
        return;
    };
    let port = redis.port;
    let model = model();
    let declarations = traffic(1_500, 2, 11);
    let (before, rest) = declarations.split_at(500);
    let (during, after) = rest.split_at(500);
    let router = replica(&model, &redis.url(), "k");
    let shared = router.shared_state().unwrap();

    let scored_before = alternately(&[&router], before);
    assert_eq!(count(&scored_before, "DQ_WINDOWS_LOCAL_ONLY"), 0);
    assert!(shared.is_up() && shared.probe());

    drop(redis);
    let started = Instant::now();
    let scored_during = alternately(&[&router], during);
    // Every declaration answered, each saying its windows were local; one
    // deadline paid at most, not one per batch.
    assert_eq!(scored_during.len(), during.len());
    assert_eq!(count(&scored_during, "DQ_WINDOWS_LOCAL_ONLY"), during.len());
    assert!(!shared.is_up());
    assert!(
        started.elapsed() < DEFAULT_TIMEOUT * 4 + Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let _redis = RedisServer::start(port).expect("redis-server again");
    std::thread::sleep(RETRY_AFTER + Duration::from_millis(100));
    let scored_after = alternately(&[&router], after);
    assert_eq!(count(&scored_after, "DQ_WINDOWS_LOCAL_ONLY"), 0);
    assert!(shared.is_up());
}

/// The shared state's health, as a load balancer or operator reads it.
async fn shared_state_health(channel: tonic::transport::Channel) -> i32 {
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: parcel_risk::grpc::SHARED_STATE_HEALTH.into(),
        })
        .await
        .map_or(-1, |r| r.into_inner().status)
}

async fn health_becomes(channel: &tonic::transport::Channel, status: i32) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = shared_state_health(channel.clone()).await;
        if now == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {now}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_shared_state_reports_it_in_health_and_answers_while_it_is_down() {
    use parcel_risk::pb;
    use parcel_risk::pb::risk_service_client::RiskServiceClient;
    use tonic_health::pb::health_check_response::ServingStatus;
    let Some(redis) = RedisServer::start(0) else {
        return;
    };
    let port = redis.port;
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let (mut child, addr, log) = crate::security::spawn_serve(
        &dir.path().join("data"),
        &[
            "--metrics-addr",
            "off",
            "--shared-state",
            &url,
            "--shared-state-prefix",
            "served",
        ],
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = RiskServiceClient::new(channel.clone());
    let mut score = async |id: &str| {
        client
            .score_declaration(pb::ScoreDeclarationRequest {
                declaration: Some(crate::common::full_declaration(id)),
            })
            .await
            .map(|r| {
                r.into_inner()
                    .assessment
                    .unwrap()
                    .reasons
                    .into_iter()
                    .map(|r| r.code)
                    .collect::<Vec<_>>()
            })
    };
    health_becomes(&channel, ServingStatus::Serving as i32).await;
    let codes = score("SHARED-1").await.unwrap();
    assert!(
        !codes.iter().any(|c| c == "DQ_WINDOWS_LOCAL_ONLY"),
        "{codes:?}"
    );

    drop(redis);
    health_becomes(&channel, ServingStatus::NotServing as i32).await;
    // Still scoring, and saying its windows were its own.
    let codes = score("SHARED-2").await.unwrap();
    assert!(
        codes.iter().any(|c| c == "DQ_WINDOWS_LOCAL_ONLY"),
        "{codes:?}"
    );

    let _redis = RedisServer::start(port).expect("redis-server again");
    health_becomes(&channel, ServingStatus::Serving as i32).await;
    let codes = score("SHARED-3").await.unwrap();
    assert!(
        !codes.iter().any(|c| c == "DQ_WINDOWS_LOCAL_ONLY"),
        "{codes:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
    let log = log.lock().unwrap();
    assert!(log.contains("shared state lost"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn red_per_day_holds_across_two_replicas() {
    use chrono::NaiveDate;
    use parcel_risk::domain::Channel;
    use parcel_risk::scoring::PriorityParams;
    let Some(redis) = RedisServer::start(0) else {
        return;
    };
    let (model, _) = crate::common::trained();
    let stream = traffic(24_000, 4, 5);
    let capacity = 25.0;
    let config = PriorityParams {
        red_per_day: Some(capacity),
        ..PriorityParams::default()
    }
    .check()
    .unwrap();
    let red_per_day = |routers: &[&Router]| {
        let mut per_day: std::collections::BTreeMap<NaiveDate, u32> = Default::default();
        for a in alternately(routers, &stream) {
            *per_day.entry(a.lodged_at.date_naive()).or_default() +=
                u32::from(a.route.unwrap().channel == Channel::Red);
        }
        per_day.into_iter().collect::<Vec<_>>()
    };
    let shared = |prefix: &str| {
        Router::new(Arc::clone(model), config.clone())
            .without_live_record()
            .with_shared_state(SharedWindows::new(&redis.url(), prefix, DEFAULT_TIMEOUT).unwrap())
    };
    let (a, b) = (shared("cap"), shared("cap"));
    let days = red_per_day(&[&a, &b]);
    eprintln!("RED per day across two replicas sharing state: {days:?}");
    assert!(days.len() >= 4, "{days:?}");
    // After the first day (volume unknown until then), each day's RED
    // across both replicas is the capacity, within 10 %.
    for (date, red) in &days[1..days.len() - 1] {
        assert!(
            (f64::from(*red) - capacity).abs() <= 0.1 * capacity,
            "{date}: {red} RED across two replicas, capacity {capacity}; all days {days:?}"
        );
    }
    // Each replica on its own spends the whole capacity: twice as much.
    let (c, d) = (
        Router::new(Arc::clone(model), config.clone()).without_live_record(),
        Router::new(Arc::clone(model), config.clone()).without_live_record(),
    );
    let apart = red_per_day(&[&c, &d]);
    eprintln!("RED per day across two replicas apart: {apart:?}");
    let (date, red) = apart[2];
    assert!(
        f64::from(red) > 1.5 * capacity,
        "{date}: {red} RED without shared state; all days {apart:?}"
    );
}

/// Rescores `declarations` with `router` (JSON Lines in and out, batches of
/// the default size: several round trips to Redis each) and gives the
/// assessments' scores and reason codes in order.
fn rescore_with(router: &Router, declarations: &[Declaration]) -> Vec<([u64; 3], Vec<String>)> {
    use parcel_risk::batch::{self, Encoder, Options, OutputWriter, Scoring, Work};
    use parcel_risk::io::{Format, jsonl::JsonlWriter, open_framer};
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    let mut lines = JsonlWriter::new(Vec::new());
    for d in declarations {
        lines
            .write_declaration(&parcel_risk::pb::Declaration::from(d))
            .unwrap();
    }
    std::fs::write(&input, lines.into_inner()).unwrap();
    let work = Work::Score(Box::new(Scoring {
        router,
        encoder: Encoder::new(Format::Jsonl, chrono::Utc::now()),
        output: OutputWriter::new(
            Format::Jsonl,
            Box::new(std::fs::File::create(&output).unwrap()),
        )
        .unwrap(),
    }));
    let summary = batch::run(
        open_framer(
            &input,
            None,
            parcel_risk::io::Projection::Declarations,
            None,
            1,
        )
        .unwrap(),
        &parcel_risk::domain::ReferenceData::built_in(),
        work,
        Options::default(),
        None,
        &mut |e| panic!("{e}"),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(summary.scored as usize, declarations.len());
    std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|line| {
            let a: parcel_risk::pb::RiskAssessment = serde_json::from_str(line).unwrap();
            (
                [
                    a.overall_score.to_bits(),
                    a.undervaluation_score.to_bits(),
                    a.misdescription_score.to_bits(),
                ],
                a.reasons
                    .into_iter()
                    .map(|r| r.code)
                    .filter(|code| code != "RND_COMPLIANCE_SAMPLE")
                    .collect(),
            )
        })
        .collect()
}

/// The fleet's traffic counts of every day under `prefix`, summed.
fn fleet_count(url: &str, prefix: &str) -> u64 {
    let mut redis = redis::Client::open(url).unwrap().get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{prefix}}}:fleet:*"))
        .query(&mut redis)
        .unwrap();
    keys.iter()
        .map(|k| redis::cmd("GET").arg(k).query::<u64>(&mut redis).unwrap())
        .sum()
}

#[test]
fn a_rescore_on_shared_state_sees_the_live_windows_and_leaves_the_fleet_count_alone() {
    let Some(redis) = RedisServer::start(0) else {
        return;
    };
    let model = model();
    let declarations = traffic(3_000, 2, 13);
    let (live_part, rerun) = declarations.split_at(declarations.len() / 2);
    // What one process fed everything says of the second half.
    let one = Router::new(Arc::clone(&model), PriorityConfig::default()).without_live_record();
    let expected: Vec<([u64; 3], Vec<String>)> = alternately(&[&one], &declarations)
        [live_part.len()..]
        .iter()
        .map(|a| {
            let (_, bits, codes) = scored(a);
            (
                [bits[0], bits[1], bits[2]],
                codes.into_iter().map(str::to_owned).collect(),
            )
        })
        .collect();

    // A serving replica saw the first half; a rescore of the second half
    // on the same Redis continues its windows.
    let live = replica(&model, &redis.url(), "r1");
    alternately(&[&live], live_part);
    let counted = fleet_count(&redis.url(), "r1");
    assert_eq!(counted as usize, live_part.len());
    let batch = Router::new(Arc::clone(&model), PriorityConfig::default())
        .without_live_record()
        .with_shared_windows_only(SharedWindows::new(&redis.url(), "r1", DEFAULT_TIMEOUT).unwrap());
    let got = rescore_with(&batch, rerun);
    assert!(got == expected, "the rescore on shared state differs");
    assert_eq!(fleet_count(&redis.url(), "r1"), counted);

    // On its own windows, the same rescore misses the first half.
    let alone = Router::new(Arc::clone(&model), PriorityConfig::default()).without_live_record();
    assert!(rescore_with(&alone, rerun) != expected);
}

/// The deadline of replicas that must reach a TLS Redis in these tests. The
/// service's default (250 ms) is for production round trips; here the first
/// one, with its TLS handshake, runs beside the whole suite on two cores, and
/// once took longer (a fresh-clone CI run: a batch of 512 fell back to local
/// windows). A refused handshake still fails at once, whatever the deadline.
const TLS_TEST_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn windows_are_shared_over_tls_verified_against_a_private_ca() {
    let pki = crate::security::Pki::new("redis test CA");
    let (cert, key) = pki.server();
    let Some(redis) = RedisServer::start_tls(&cert, &key, &pki.path("ca.pem"), false) else {
        return;
    };
    let url = format!("rediss://localhost:{}", redis.port);
    let model = model();
    let declarations = traffic(2_000, 2, 17);
    let one = Router::new(Arc::clone(&model), PriorityConfig::default()).without_live_record();
    let expected = alternately(&[&one], &declarations);
    let tls_replica = || {
        Router::new(Arc::clone(&model), PriorityConfig::default())
            .without_live_record()
            .with_shared_state(
                SharedWindows::with_ca(
                    &url,
                    "tls",
                    TLS_TEST_TIMEOUT,
                    Some(pki.ca_pem().into_bytes()),
                )
                .unwrap(),
            )
    };
    let (a, b) = (tls_replica(), tls_replica());
    let shared = alternately(&[&a, &b], &declarations);
    assert_eq!(count(&shared, "DQ_WINDOWS_LOCAL_ONLY"), 0);
    for (got, want) in shared.iter().zip(&expected) {
        assert_eq!(scored(got), scored(want));
    }
    // Against the system's roots the private CA's certificate is refused:
    // scoring goes on, on local windows, and says so.
    let unverified = Router::new(Arc::clone(&model), PriorityConfig::default())
        .without_live_record()
        .with_shared_state(SharedWindows::new(&url, "tls", DEFAULT_TIMEOUT).unwrap());
    let local = unverified.score_all(&unverified.scorer(), &declarations[..BATCH], |_| ());
    assert_eq!(count(&local, "DQ_WINDOWS_LOCAL_ONLY"), BATCH);
}

#[test]
fn replicas_present_their_certificate_to_a_redis_that_asks_for_one() {
    let pki = crate::security::Pki::new("redis mutual TLS test CA");
    let (cert, key) = pki.server();
    let Some(redis) = RedisServer::start_tls(&cert, &key, &pki.path("ca.pem"), true) else {
        return;
    };
    let url = format!("rediss://localhost:{}", redis.port);
    let (client_cert, client_key) = pki.client_files("replica");
    let certificate = ClientCertificate {
        cert_pem: std::fs::read(client_cert).unwrap(),
        key_pem: std::fs::read(client_key).unwrap(),
    };
    let model = model();
    let declarations = traffic(1_000, 2, 19);
    let one = Router::new(Arc::clone(&model), PriorityConfig::default()).without_live_record();
    let expected = alternately(&[&one], &declarations);
    let replica = |client: Option<ClientCertificate>| {
        let tls = RedisTls {
            ca_pem: Some(pki.ca_pem().into_bytes()),
            client,
        };
        Router::new(Arc::clone(&model), PriorityConfig::default())
            .without_live_record()
            .with_shared_state(
                SharedWindows::with_tls(&url, "mtls", TLS_TEST_TIMEOUT, tls).unwrap(),
            )
    };
    let (a, b) = (
        replica(Some(certificate.clone())),
        replica(Some(certificate)),
    );
    let shared = alternately(&[&a, &b], &declarations);
    assert_eq!(count(&shared, "DQ_WINDOWS_LOCAL_ONLY"), 0);
    for (got, want) in shared.iter().zip(&expected) {
        assert_eq!(scored(got), scored(want));
    }
    // Without a certificate this Redis hangs up: scoring goes on, on local
    // windows, and says so.
    let anonymous = replica(None);
    let local = anonymous.score_all(&anonymous.scorer(), &declarations[..BATCH], |_| ());
    assert_eq!(count(&local, "DQ_WINDOWS_LOCAL_ONLY"), BATCH);
}

/// The window hashes under `prefix`, by kind, with their time buckets.
fn window_buckets(redis: &mut redis::Connection, prefix: &str) -> Vec<(String, i64)> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{prefix}}}:windows:*"))
        .query(redis)
        .unwrap();
    let mut buckets: Vec<(String, i64)> = keys
        .iter()
        .map(|key| {
            let (kind, bucket) = key.rsplit_once(':').unwrap();
            (kind.to_owned(), bucket.parse().unwrap())
        })
        .collect();
    buckets.sort_by_key(|(kind, bucket)| (kind.clone(), *bucket));
    buckets
}

/// Moves every window hash `by` time buckets back, as if that many TTLs
/// had passed since it was written (oldest first, so none overwrites another).
fn age_buckets(redis: &mut redis::Connection, prefix: &str, by: i64) {
    for (kind, bucket) in window_buckets(redis, prefix) {
        redis::cmd("RENAME")
            .arg(format!("{kind}:{bucket}"))
            .arg(format!("{kind}:{}", bucket - by))
            .query::<()>(redis)
            .unwrap();
    }
}

#[test]
fn a_window_is_read_one_time_bucket_after_it_was_written_and_not_two() {
    let Some(server) = RedisServer::start(0) else {
        return;
    };
    let shared = SharedWindows::new(&server.url(), "aging", DEFAULT_TIMEOUT).unwrap();
    let mut redis = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let lodged = chrono::Utc::now() - chrono::Duration::hours(2);
    // One buyer's parcels from one seller, minutes apart: each sees the
    // ones before it while the windows can be read.
    let parcel = |declaration: u64| WindowInput {
        keys: PartyKeys {
            exporter: 11,
            address: 12,
            importer_name: 13,
            ioss: Some(14),
            declarant: 15,
            declaration,
        },
        declared_cents: 10_000,
        lodged_at: lodged + chrono::Duration::minutes(declaration as i64),
    };
    let observe = |declaration: u64| {
        let read = shared
            .observe_batch(&[parcel(declaration)], None)
            .expect("Redis answers");
        let s = &read.signals[0];
        (s.buyer_parcels, s.address_names, s.ioss_sellers)
    };
    assert_eq!(observe(1), (0, 1, 1));
    // Each kind (buyer, address, IOSS) writes its current bucket, which
    // expires on its own within three TTLs (the longest, 31 days).
    let written = window_buckets(&mut redis, "aging");
    assert_eq!(written.len(), 3, "{written:?}");
    for (kind, bucket) in &written {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("{kind}:{bucket}"))
            .query(&mut redis)
            .unwrap();
        assert!(ttl > 0 && ttl <= 3 * 31 * 86_400_000, "{kind} {ttl}");
    }

    // A bucket later, the windows are in the previous bucket: still read.
    age_buckets(&mut redis, "aging", 1);
    assert_eq!(observe(2), (1, 1, 1));

    // Two buckets later they are not, and the write unlinks the bucket two
    // before the current one; the one before that expires on its own.
    age_buckets(&mut redis, "aging", 2);
    assert_eq!(observe(3), (0, 1, 1));
    let left = window_buckets(&mut redis, "aging");
    for (kind, bucket) in &left {
        let current = left
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, b)| *b)
            .max();
        let age = current.unwrap() - bucket;
        assert!(age == 0 || age == 3, "{kind}:{bucket} left among {left:?}");
    }
    assert_eq!(left.len(), 6, "{left:?}");
}

#[test]
fn two_replicas_on_a_redis_cluster_score_as_one_replica_fed_everything() {
    let Some(cluster) = RedisCluster::start(3) else {
        return;
    };
    let seed = &cluster.nodes[0];
    // A prefix whose slot another node holds: the replicas know only the
    // seed, so their calls must be routed.
    let mut on_seed = cluster.connect(seed);
    let prefix = (0..)
        .map(|i| format!("c{i}"))
        .find(|p| {
            redis::cmd("GET")
                .arg(format!("{{{p}}}:observed"))
                .query::<Option<String>>(&mut on_seed)
                .is_err_and(|e| e.kind() == redis::ErrorKind::Moved)
        })
        .unwrap();

    let model = model();
    let declarations = traffic(3_000, 2, 11);
    let one = Router::new(Arc::clone(&model), PriorityConfig::default()).without_live_record();
    let expected = alternately(&[&one], &declarations);
    assert!(count(&expected, "THR_SPLIT_SAME_CONSIGNEE_SAME_DAY") > 0);

    let on_cluster = || {
        Router::new(Arc::clone(&model), PriorityConfig::default())
            .without_live_record()
            .with_shared_state(
                SharedWindows::cluster(&seed.url(), &prefix, DEFAULT_TIMEOUT, RedisTls::default())
                    .unwrap(),
            )
    };
    // Health's probe (PING) goes through the cluster client too.
    let probed =
        SharedWindows::cluster(&seed.url(), &prefix, DEFAULT_TIMEOUT, RedisTls::default()).unwrap();
    assert!(probed.probe());

    let (a, b) = (on_cluster(), on_cluster());
    let shared = alternately(&[&a, &b], &declarations);
    assert_eq!(count(&shared, "DQ_WINDOWS_LOCAL_ONLY"), 0);
    assert_eq!(shared.len(), expected.len());
    for (got, want) in shared.iter().zip(&expected) {
        assert_eq!(scored(got), scored(want));
    }

    // Every key of the deployment is on one node, and not on the seed.
    let held: Vec<Vec<String>> = cluster
        .nodes
        .iter()
        .map(|node| {
            redis::cmd("KEYS")
                .arg(format!("{{{prefix}}}:*"))
                .query(&mut cluster.connect(node))
                .unwrap()
        })
        .collect();
    assert!(held[0].is_empty(), "{held:?}");
    let holders: Vec<&Vec<String>> = held.iter().filter(|keys| !keys.is_empty()).collect();
    assert_eq!(holders.len(), 1, "{held:?}");
    assert!(holders[0].len() >= 4, "{held:?}");
}
