//! gRPC load generator and benchmark, side by side in one run:
//! - the real `ScoreDeclarations` stream on the default model,
//! - a no-op echo of the same messages (the transport ceiling),
//! - the same stream over TLS (rustls, a certificate made for the run),
//! - unary `ScoreDeclaration` with one request in flight, plaintext and TLS;
//! - with `redis-server` on PATH: two replicas sharing their windows and
//!   capacity in Redis (`--shared-state`), the streams spread over both,
//!   alternated with one replica on in-process state, each round on new
//!   declarations (other ids, a week later) that both sides score, and
//!   Redis's own script time per declaration.
//!
//! Several connections and streams, a bounded window of requests in flight per
//! stream; prints throughput and p50/p99 latency. Client and server share this
//! machine's cores, as they would on one box.
//!
//! `cargo bench --bench grpc` (env: BENCH_DECLARATIONS, BENCH_CONNECTIONS,
//! BENCH_STREAMS, BENCH_WINDOW, BENCH_ROUNDS, PARCEL_RISK_MODEL).

// The allocator of the shipped binary (src/main.rs), so the figures are its figures.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use parcel_risk::domain::{ReferenceData, TrainingExample};
use parcel_risk::features::window::SplitSignal;
use parcel_risk::generate::{Generator, GeneratorConfig};
use parcel_risk::grpc::echo::EchoService;
use parcel_risk::grpc::{ServerConfig, ServiceState, serve, serve_secured};
use parcel_risk::model::ModelArtifact;
use parcel_risk::pb;
use parcel_risk::pb::risk_service_client::RiskServiceClient;
use parcel_risk::pb::risk_service_server::RiskServiceServer;
use parcel_risk::scoring::Scorer;
use parcel_risk::scoring::shared::SharedWindows;
use parcel_risk::security::{Security, TlsFiles};
use parcel_risk::wire::assessment_to_pb;
use tokio::sync::Semaphore;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Server};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct RunResult {
    messages: usize,
    seconds: f64,
    latencies_us: Vec<f64>,
}

impl RunResult {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }
    fn quantile(&mut self, q: f64) -> f64 {
        self.latencies_us.sort_by(f64::total_cmp);
        self.latencies_us[((self.latencies_us.len() - 1) as f64 * q).round() as usize]
    }
}

/// A server to load: its address, and the CA (PEM) to trust when it
/// speaks TLS.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    tls_ca: Option<Arc<String>>,
}

async fn connect(target: &Target) -> RiskServiceClient<Channel> {
    let channel = match &target.tls_ca {
        None => Channel::from_shared(format!("http://{}", target.addr)).expect("uri"),
        Some(ca) => Channel::from_shared(format!("https://localhost:{}", target.addr.port()))
            .expect("uri")
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(ca.as_bytes()))
                    .domain_name("localhost"),
            )
            .expect("tls"),
    }
    .connect()
    .await
    .expect("connect");
    RiskServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024)
}

/// A CA and a server certificate for localhost, as files in `dir`.
fn certificates(dir: &std::path::Path) -> (TlsFiles, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("cert");
    let files = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_ca: None,
    };
    std::fs::write(&files.cert, cert.pem()).expect("write");
    std::fs::write(&files.key, key.serialize_pem()).expect("write");
    (files, ca.pem())
}

/// Streams every request once over `connections × streams` streams.
async fn run_streams(
    target: &Target,
    requests: Arc<Vec<pb::ScoreDeclarationsRequest>>,
    connections: usize,
    streams: usize,
    window: usize,
) -> RunResult {
    run_streams_on(&[target], requests, connections, streams, window).await
}

/// As [`run_streams`], the connections spread over `targets` in turn.
async fn run_streams_on(
    targets: &[&Target],
    requests: Arc<Vec<pb::ScoreDeclarationsRequest>>,
    connections: usize,
    streams: usize,
    window: usize,
) -> RunResult {
    let mut clients = Vec::new();
    for i in 0..connections {
        clients.push(connect(targets[i % targets.len()]).await);
    }
    let lanes = connections * streams;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for lane in 0..lanes {
        let mut client = clients[lane % connections].clone();
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let sent: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
            let permits = Arc::new(Semaphore::new(window));
            let mine: Vec<pb::ScoreDeclarationsRequest> =
                requests.iter().skip(lane).step_by(lanes).cloned().collect();
            let n = mine.len();
            let outbound = {
                let sent = sent.clone();
                let permits = permits.clone();
                async_stream(mine, sent, permits)
            };
            let mut inbound = client
                .score_declarations(outbound)
                .await
                .expect("stream")
                .into_inner();
            let mut latencies = Vec::with_capacity(n);
            while let Some(response) = inbound.next().await {
                let response = response.expect("response");
                debug_assert!(response.outcome.is_some());
                let at = sent
                    .lock()
                    .expect("lock")
                    .pop_front()
                    .expect("a request per response");
                latencies.push(at.elapsed().as_secs_f64() * 1e6);
                permits.add_permits(1);
            }
            assert_eq!(latencies.len(), n, "every request answered");
            latencies
        }));
    }
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await.expect("lane"));
    }
    RunResult {
        messages: latencies_us.len(),
        seconds: started.elapsed().as_secs_f64(),
        latencies_us,
    }
}

/// The outbound stream of one lane: waits for a window slot, stamps the send time.
fn async_stream(
    requests: Vec<pb::ScoreDeclarationsRequest>,
    sent: Arc<Mutex<VecDeque<Instant>>>,
    permits: Arc<Semaphore>,
) -> impl tokio_stream::Stream<Item = pb::ScoreDeclarationsRequest> + Send + 'static {
    futures_util::stream::unfold(
        (requests.into_iter(), sent, permits),
        |(mut it, sent, permits)| async move {
            let request = it.next()?;
            permits.acquire().await.expect("semaphore open").forget();
            sent.lock().expect("lock").push_back(Instant::now());
            Some((request, (it, sent, permits)))
        },
    )
}

/// A `redis-server` of the bench's own on a free port, killed on drop.
struct RedisChild {
    child: std::process::Child,
    port: u16,
}

impl RedisChild {
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// The requests as new traffic for shared-state round `round`: other
/// declaration ids, lodged `round + 1` times eight days later (after the
/// generated week), so no server has seen them. Resending the same
/// declarations every round measured Redis's resend path, which reads and
/// rewrites every window (22 against 17 us a declaration in the script).
fn fresh_round(
    requests: &[pb::ScoreDeclarationsRequest],
    round: usize,
) -> Arc<Vec<pb::ScoreDeclarationsRequest>> {
    let shift = 8 * 86_400 * (round as i64 + 1);
    Arc::new(
        requests
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if let Some(d) = r.declaration.as_mut() {
                    d.declaration_id = format!("{}-r{}", d.declaration_id, round + 1);
                    for at in [d.lodged_at.as_mut(), d.arrival_at.as_mut()]
                        .into_iter()
                        .flatten()
                    {
                        at.seconds += shift;
                    }
                }
                r
            })
            .collect(),
    )
}

/// Script calls and their total time in Redis since the last reset, read
/// from `INFO commandstats` (EVAL and EVALSHA together); resets them.
fn redis_script_time(url: &str) -> Option<(u64, u64)> {
    let mut connection = redis::Client::open(url).ok()?.get_connection().ok()?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut connection)
        .ok()?;
    let (mut calls, mut usec) = (0, 0);
    for line in info
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
    {
        for field in line.split([':', ',']) {
            if let Some(v) = field.strip_prefix("calls=") {
                calls += v.parse::<u64>().ok()?;
            } else if let Some(v) = field.strip_prefix("usec=") {
                usec += v.parse::<u64>().ok()?;
            }
        }
    }
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query::<()>(&mut connection)
        .ok()?;
    Some((calls, usec))
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    let declarations = env("BENCH_DECLARATIONS", 100_000);
    let connections = env("BENCH_CONNECTIONS", 2);
    let streams = env("BENCH_STREAMS", 2);
    let window = env("BENCH_WINDOW", 256);
    let rounds = env("BENCH_ROUNDS", 3);
    let path = std::env::var("PARCEL_RISK_MODEL")
        .map_or_else(|_| PathBuf::from("models/default"), PathBuf::from);
    let model = match ModelArtifact::load(&path) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("cannot load the model to bench: {e}");
            std::process::exit(1);
        }
    };
    let generator = Generator::new(GeneratorConfig {
        parcels: declarations as u64,
        seed: 123,
        ..GeneratorConfig::default()
    })
    .expect("config");
    let examples: Vec<TrainingExample> = (0..generator.chunk_count())
        .flat_map(|c| generator.chunk(c).0)
        .map(|e| TrainingExample::try_from(e).expect("valid"))
        .collect();
    let requests: Arc<Vec<pb::ScoreDeclarationsRequest>> = Arc::new(
        examples
            .iter()
            .map(|e| pb::ScoreDeclarationsRequest {
                declaration: Some(pb::Declaration::from(&e.declaration)),
            })
            .collect(),
    );
    let mean_bytes = requests
        .iter()
        .map(prost::Message::encoded_len)
        .sum::<usize>()
        / requests.len();
    // A canned answer of realistic size for the echo server.
    let scorer = Scorer::new(Arc::new(model.clone()));
    let canned = assessment_to_pb(
        scorer.score(&examples[0].declaration, SplitSignal::default()),
        Utc::now(),
    );
    println!(
        "model {}; {declarations} declarations ({mean_bytes} B encoded on average); {connections} connections x {streams} streams, window {window}; best of {rounds} rounds",
        model.model_version
    );

    // The servers get their own runtime, as a separate process would.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let redis = RedisChild::start();
    let replicas: Vec<Arc<ServiceState>> = redis.as_ref().map_or_else(Vec::new, |redis| {
        (0..2)
            .map(|_| {
                let shared = SharedWindows::new(
                    &redis.url(),
                    &format!("bench-{}", std::process::id()),
                    parcel_risk::scoring::shared::DEFAULT_TIMEOUT,
                )
                .expect("redis URL");
                Arc::new(
                    ServiceState::new(model.clone(), ReferenceData::built_in())
                        .with_shared_state(shared),
                )
            })
            .collect()
    });
    let state = Arc::new(ServiceState::new(model, ReferenceData::built_in()));
    let certificate_dir = tempfile::tempdir().expect("tempdir");
    let (tls_files, ca_pem) = certificates(certificate_dir.path());
    let security = Arc::new(Security::load(Some(tls_files), None).expect("TLS"));
    let (server_addrs, replica_addrs) = server_rt.block_on(async {
        let bind = || async {
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind")
        };
        let (score, echo, tls) = (bind().await, bind().await, bind().await);
        let addrs = (
            score.local_addr().expect("addr"),
            echo.local_addr().expect("addr"),
            tls.local_addr().expect("addr"),
        );
        tokio::spawn(serve(
            score,
            Arc::clone(&state),
            ServerConfig::default(),
            std::future::pending(),
        ));
        tokio::spawn(serve_secured(
            tls,
            state,
            ServerConfig::default(),
            security,
            std::future::pending(),
        ));
        tokio::spawn(
            Server::builder()
                .tcp_nodelay(true)
                .add_service(
                    RiskServiceServer::new(EchoService::new(canned))
                        .max_decoding_message_size(64 << 20),
                )
                .serve_with_incoming(parcel_risk::grpc::incoming(
                    echo,
                    parcel_risk::grpc::ServerConfig::default().max_connections,
                )),
        );
        let mut replica_addrs = Vec::new();
        for replica in &replicas {
            let listener = bind().await;
            replica_addrs.push(listener.local_addr().expect("addr"));
            tokio::spawn(serve(
                listener,
                Arc::clone(replica),
                ServerConfig::default(),
                std::future::pending(),
            ));
        }
        (addrs, replica_addrs)
    });
    let (score_addr, echo_addr, tls_addr) = server_addrs;
    let plain = |addr| Target { addr, tls_ca: None };
    let (echo_target, score_target) = (plain(echo_addr), plain(score_addr));
    let tls_target = Target {
        addr: tls_addr,
        tls_ca: Some(Arc::new(ca_pem)),
    };
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    client_rt.block_on(async {
        // Warm-up: connections, caches, the allocator.
        let warm = Arc::new(requests.iter().take(5_000).cloned().collect::<Vec<_>>());
        for target in [&echo_target, &score_target, &tls_target] {
            run_streams(target, warm.clone(), connections, streams, window).await;
        }

        let mut best: [Option<RunResult>; 3] = [None, None, None];
        let targets = [&echo_target, &score_target, &tls_target];
        for round in 0..rounds {
            // Rotate the order so that no side always runs on a warmer machine.
            let mut this_round: [Option<RunResult>; 3] = [None, None, None];
            for k in 0..3 {
                let i = (round + k) % 3;
                this_round[i] =
                    Some(run_streams(targets[i], requests.clone(), connections, streams, window).await);
            }
            let rates = this_round.each_ref().map(|r| r.as_ref().expect("ran").rate());
            println!(
                "round {}: echo {:>9.0} msg/s   score {:>9.0} msg/s   score over TLS {:>9.0} msg/s   score/echo {:.2}   TLS/plain {:.2}",
                round + 1,
                rates[0],
                rates[1],
                rates[2],
                rates[1] / rates[0],
                rates[2] / rates[1]
            );
            for (slot, run) in best.iter_mut().zip(this_round) {
                let run = run.expect("ran");
                if slot.as_ref().is_none_or(|b| run.rate() > b.rate()) {
                    *slot = Some(run);
                }
            }
        }
        let [echo, score, tls] = best.map(|b| b.expect("rounds >= 1"));
        let (mut echo, mut score, mut tls) = (echo, score, tls);
        for (name, run) in [
            ("echo stream        ", &mut echo),
            ("score stream       ", &mut score),
            ("score stream, TLS  ", &mut tls),
        ] {
            println!(
                "{name} {:>9.0} msg/s   p50 {:>8.0} us   p99 {:>8.0} us",
                run.rate(),
                run.quantile(0.5),
                run.quantile(0.99)
            );
        }
        println!(
            "score / echo throughput ratio (best rounds): {:.2}; TLS / plaintext: {:.2}",
            score.rate() / echo.rate(),
            tls.rate() / score.rate()
        );

        if !replica_addrs.is_empty() {
            let replica_targets: Vec<Target> = replica_addrs.iter().map(|a| plain(*a)).collect();
            let replica_refs: Vec<&Target> = replica_targets.iter().collect();
            run_streams_on(&replica_refs, warm.clone(), connections, streams, window).await;
            let redis_url = redis.as_ref().map(RedisChild::url).unwrap_or_default();
            redis_script_time(&redis_url);
            let mut ratios = Vec::new();
            for round in 0..rounds {
                let round_requests = fresh_round(&requests, round);
                let (one, two) = if round % 2 == 0 {
                    let one = run_streams(&score_target, round_requests.clone(), connections, streams, window).await;
                    let two = run_streams_on(&replica_refs, round_requests.clone(), connections, streams, window).await;
                    (one, two)
                } else {
                    let two = run_streams_on(&replica_refs, round_requests.clone(), connections, streams, window).await;
                    let one = run_streams(&score_target, round_requests.clone(), connections, streams, window).await;
                    (one, two)
                };
                let (mut one, mut two) = (one, two);
                ratios.push(two.rate() / one.rate());
                println!(
                    "shared state round {}: one replica, in-process state {:>9.0} msg/s (p99 {:.0} us)   two replicas + Redis {:>9.0} msg/s (p99 {:.0} us)   ratio {:.2}",
                    round + 1,
                    one.rate(),
                    one.quantile(0.99),
                    two.rate(),
                    two.quantile(0.99),
                    ratios[round]
                );
                // Redis's own time, which bounds the shared rounds: its one
                // thread runs every replica's scripts.
                if let Some((calls, usec)) = redis_script_time(&redis_url) {
                    let declarations = requests.len() as f64;
                    println!(
                        "  Redis: {calls} script calls, {:.1} declarations a call, {:.1} us of Redis time a declaration",
                        declarations / calls.max(1) as f64,
                        usec as f64 / declarations
                    );
                }
            }
            ratios.sort_by(f64::total_cmp);
            println!(
                "two replicas sharing state in Redis / one replica in-process: median {:.2} (target >= 0.5)",
                ratios[ratios.len() / 2]
            );
        } else {
            println!("redis-server not on PATH: shared-state round skipped");
        }

        // Unary, one call in flight: plaintext and TLS in alternating blocks.
        let mut clients = [connect(&score_target).await, connect(&tls_target).await];
        let mut unary: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for block in requests.iter().take(3_000).collect::<Vec<_>>().chunks(250) {
            for (client, latencies) in clients.iter_mut().zip(unary.iter_mut()) {
                for r in block {
                    let started = Instant::now();
                    client
                        .score_declaration(pb::ScoreDeclarationRequest {
                            declaration: r.declaration.clone(),
                        })
                        .await
                        .expect("unary");
                    latencies.push(started.elapsed().as_secs_f64() * 1e6);
                }
            }
        }
        for (name, latencies) in ["unary, 1 in flight:     ", "unary over TLS, 1 in flight:"]
            .into_iter()
            .zip(unary)
        {
            let mut run = RunResult {
                messages: latencies.len(),
                seconds: latencies.iter().sum::<f64>() / 1e6,
                latencies_us: latencies,
            };
            println!(
                "{name} p50 {:.0} us   p99 {:.0} us   ({:.0} req/s)",
                run.quantile(0.5),
                run.quantile(0.99),
                run.rate()
            );
        }
    });
    server_rt.shutdown_timeout(Duration::from_secs(1));
}
