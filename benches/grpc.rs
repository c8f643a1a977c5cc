//! gRPC load generator and benchmark, side by side in one run:
//! - the real `ScoreDeclarations` stream on the default model,
//! - a no-op echo of the same messages (the transport ceiling),
//! - unary `ScoreDeclaration` with one request in flight.
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
use parcel_risk::grpc::{ServerConfig, ServiceState, serve};
use parcel_risk::model::ModelArtifact;
use parcel_risk::pb;
use parcel_risk::pb::risk_service_client::RiskServiceClient;
use parcel_risk::pb::risk_service_server::RiskServiceServer;
use parcel_risk::scoring::Scorer;
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

async fn connect(addr: SocketAddr) -> RiskServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    RiskServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024)
}

/// Streams every request once over `connections × streams` streams.
async fn run_streams(
    addr: SocketAddr,
    requests: Arc<Vec<pb::ScoreDeclarationsRequest>>,
    connections: usize,
    streams: usize,
    window: usize,
) -> RunResult {
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(connect(addr).await);
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
    let state = Arc::new(ServiceState::new(model, ReferenceData::built_in()));
    let (score_addr, echo_addr) = server_rt.block_on(async {
        let score = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addrs = (
            score.local_addr().expect("addr"),
            echo.local_addr().expect("addr"),
        );
        tokio::spawn(serve(
            score,
            state,
            ServerConfig::default(),
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
        addrs
    });
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    client_rt.block_on(async {
        // Warm-up: connections, caches, the allocator.
        let warm = Arc::new(requests.iter().take(5_000).cloned().collect::<Vec<_>>());
        run_streams(echo_addr, warm.clone(), connections, streams, window).await;
        run_streams(score_addr, warm, connections, streams, window).await;

        let mut best_echo: Option<RunResult> = None;
        let mut best_score: Option<RunResult> = None;
        for round in 0..rounds {
            // Alternate the order so that neither side always runs on a warmer machine.
            let (first, second) = if round % 2 == 0 {
                (echo_addr, score_addr)
            } else {
                (score_addr, echo_addr)
            };
            let a = run_streams(first, requests.clone(), connections, streams, window).await;
            let b = run_streams(second, requests.clone(), connections, streams, window).await;
            let (echo, score) = if round % 2 == 0 { (a, b) } else { (b, a) };
            println!(
                "round {}: echo {:>9.0} msg/s   score {:>9.0} msg/s   ratio {:.2}",
                round + 1,
                echo.rate(),
                score.rate(),
                score.rate() / echo.rate()
            );
            if best_echo.as_ref().is_none_or(|b| echo.rate() > b.rate()) {
                best_echo = Some(echo);
            }
            if best_score.as_ref().is_none_or(|b| score.rate() > b.rate()) {
                best_score = Some(score);
            }
        }
        let (mut echo, mut score) = (
            best_echo.expect("rounds >= 1"),
            best_score.expect("rounds >= 1"),
        );
        println!(
            "echo stream   {:>9.0} msg/s   p50 {:>8.0} us   p99 {:>8.0} us",
            echo.rate(),
            echo.quantile(0.5),
            echo.quantile(0.99)
        );
        println!(
            "score stream  {:>9.0} msg/s   p50 {:>8.0} us   p99 {:>8.0} us",
            score.rate(),
            score.quantile(0.5),
            score.quantile(0.99)
        );
        println!(
            "score / echo throughput ratio (best rounds): {:.2}",
            score.rate() / echo.rate()
        );

        let mut client = connect(score_addr).await;
        let mut unary = Vec::new();
        for r in requests.iter().take(3_000) {
            let started = Instant::now();
            client
                .score_declaration(pb::ScoreDeclarationRequest {
                    declaration: r.declaration.clone(),
                })
                .await
                .expect("unary");
            unary.push(started.elapsed().as_secs_f64() * 1e6);
        }
        let mut unary = RunResult {
            messages: unary.len(),
            seconds: unary.iter().sum::<f64>() / 1e6,
            latencies_us: unary,
        };
        println!(
            "unary, 1 in flight: p50 {:.0} us   p99 {:.0} us   ({:.0} req/s)",
            unary.quantile(0.5),
            unary.quantile(0.99),
            unary.rate()
        );
    });
    server_rt.shutdown_timeout(Duration::from_secs(1));
}
