//! Soak harness for hostile and faulty clients, against the real `serve`
//! binary in its own process (its RSS is the server's alone):
//!
//! 1. **Mutated messages**: millions of declarations changed field by field
//!    (extreme numbers, bad codes and dates, huge strings and lists, missing
//!    parts) or byte by byte (flipped, cut, repeated bytes that still decode),
//!    sent as they are on a few long `ScoreDeclarations` streams. Every answer
//!    must come in order with the id that was sent, and no stream may end
//!    before its client closes it.
//! 2. **Raw frames**: bytes that do not decode, sent as unary calls; each must
//!    be answered INVALID_ARGUMENT (or OK when random bytes happen to decode).
//! 3. **Floods**: idle sockets (half silent, half an HTTP/2 preface and then
//!    nothing) and streams whose clients send without ever reading, while a
//!    well-behaved client makes unary calls; prints its latency and the
//!    server's RSS.
//!
//! `cargo bench --bench hostile` (env: HOSTILE_MESSAGES, default 10 000 000;
//! HOSTILE_STREAMS 4; HOSTILE_RAW_FRAMES, default messages / 100 capped at
//! 100 000; HOSTILE_SLOW_STREAMS 200; HOSTILE_IDLE_SOCKETS 1000;
//! HOSTILE_UNARY_CALLS 2000; HOSTILE_SERVE_ARGS, extra `serve` flags).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use parcel_risk::domain::TrainingExample;
use parcel_risk::generate::{Generator, GeneratorConfig};
use parcel_risk::pb;
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::AsyncWriteExt;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Sends bytes as they are; decodes answers as `T`.
struct RawCodec<T>(std::marker::PhantomData<T>);

impl<T> Default for RawCodec<T> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

struct RawEncoder;
struct MessageDecoder<T>(std::marker::PhantomData<T>);

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl<T: Message + Default> Decoder for MessageDecoder<T> {
    type Item = T;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<T>, Status> {
        let message = T::decode(src.copy_to_bytes(src.remaining()))
            .map_err(|e| Status::internal(format!("client cannot decode an answer: {e}")))?;
        Ok(Some(message))
    }
}

impl<T: Message + Default + Send + 'static> Codec for RawCodec<T> {
    type Encode = Bytes;
    type Decode = T;
    type Encoder = RawEncoder;
    type Decoder = MessageDecoder<T>;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> MessageDecoder<T> {
        MessageDecoder(std::marker::PhantomData)
    }
}

const STREAM_PATH: &str = "/parcelrisk.v1.RiskService/ScoreDeclarations";
const UNARY_PATH: &str = "/parcelrisk.v1.RiskService/ScoreDeclaration";

/// A request (`ScoreDeclarationsRequest` and `ScoreDeclarationRequest` both
/// carry the declaration as field 1) around encoded declaration bytes.
fn wrap(declaration: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(declaration.len() + 6);
    out.push(0x0a);
    prost::encoding::encode_varint(declaration.len() as u64, &mut out);
    out.extend_from_slice(declaration);
    Bytes::from(out)
}

/// The `serve` process under test.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
    log: std::path::PathBuf,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

impl ServerProcess {
    fn start(extra: &[String]) -> Self {
        let dir = std::env::temp_dir().join(format!("parcel-risk-hostile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let addr = free_port();
        let metrics = free_port();
        let log = dir.join("serve.log");
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--addr".into(),
            addr.to_string(),
            "--metrics-addr".into(),
            metrics.to_string(),
            "--data-dir".into(),
            dir.join("data").display().to_string(),
            // Room for every idle socket: the memory budget is what is measured.
            "--max-connections".into(),
            "4096".into(),
        ];
        args.extend(extra.iter().cloned());
        let child = Command::new(env!("CARGO_BIN_EXE_parcel-risk"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start parcel-risk serve");
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "serve did not listen within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("serve {} on {addr}", args[7..].join(" "));
        Self {
            child,
            addr,
            metrics,
            log,
            _dir: TempDir(dir),
        }
    }

    /// (VmRSS, VmHWM) in MiB.
    fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(f64::NAN, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn panics(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("panicked")
            .count()
    }

    /// The server's own counters whose name contains `part`.
    fn metrics_matching(&self, part: &str) -> Vec<String> {
        let Ok(mut s) = std::net::TcpStream::connect(self.metrics) else {
            return vec![];
        };
        use std::io::{Read, Write};
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.lines()
            .filter(|l| !l.starts_with('#') && l.contains(part))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's largest RSS since the last `take`, sampled every 20 ms.
struct RssSampler {
    max_kib: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let max_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (m, s) = (Arc::clone(&max_kib), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|st| {
                        st.lines()
                            .find(|l| l.starts_with("VmRSS:"))
                            .and_then(|l| l.split_whitespace().nth(1))
                            .and_then(|kb| kb.parse::<u64>().ok())
                    })
                    .unwrap_or(0);
                m.fetch_max(rss, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self { max_kib, stop }
    }

    /// MiB, and starts a new period.
    fn take(&self) -> f64 {
        self.max_kib.swap(0, Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Valid encoded declarations to start mutations from.
fn pool(n: u64) -> Vec<pb::Declaration> {
    let generator = Generator::new(GeneratorConfig {
        parcels: n,
        seed: 77,
        // After the built-in model's training data: the live record counts
        // these parcels (and their random parties) as it counts live traffic.
        start: chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 10, 1, 0, 0, 0)
            .single()
            .expect("valid date"),
        ..GeneratorConfig::default()
    })
    .expect("config");
    (0..generator.chunk_count())
        .flat_map(|c| generator.chunk(c).0)
        .map(|e| TrainingExample::try_from(e).expect("valid"))
        .map(|e| pb::Declaration::from(&e.declaration))
        .collect()
}

fn random_text(rng: &mut SmallRng, max: usize) -> String {
    let len = rng.gen_range(0..=max);
    match rng.gen_range(0..4) {
        0 => (0..len).map(|_| rng.gen_range(' '..='~')).collect(),
        1 => (0..len).map(|_| rng.r#gen::<char>()).collect(),
        2 => "\u{0}\u{202e}\u{feff}é漢".repeat(len / 5 + 1),
        _ => String::new(),
    }
}

fn extreme_i64(rng: &mut SmallRng) -> i64 {
    match rng.gen_range(0..6) {
        0 => i64::MAX,
        1 => i64::MIN,
        2 => -1,
        3 => 0,
        4 => rng.r#gen(),
        _ => 10_i64.pow(rng.gen_range(0..19)),
    }
}

/// One to three field-level changes, the message kept under the transport's
/// 4 MiB limit (past it a stream ends by design: the message cannot be
/// read past).
fn mutate_fields(d: &mut pb::Declaration, rng: &mut SmallRng) {
    mutate_fields_unbounded(d, rng);
    while d.encoded_len() > 3 << 20 {
        if d.items.len() > 1 {
            let keep = d.items.len() / 2;
            d.items.truncate(keep);
        } else {
            d.attributes.clear();
            for item in &mut d.items {
                item.additional_procedure_codes.truncate(100);
            }
        }
    }
}

fn mutate_fields_unbounded(d: &mut pb::Declaration, rng: &mut SmallRng) {
    for _ in 0..rng.gen_range(1..=3) {
        let item = if d.items.is_empty() {
            None
        } else {
            let i = rng.gen_range(0..d.items.len());
            Some(i)
        };
        match rng.gen_range(0..22) {
            0 => d.lrn = random_text(rng, 80),
            1 => d.dataset = rng.r#gen(),
            2 => d.lodged_at = None,
            3 => {
                d.lodged_at = Some(prost_types_timestamp(extreme_i64(rng), rng.r#gen()));
            }
            4 => d.exporter = None,
            5 => d.importer = None,
            6 => {
                if let Some(p) = d.importer.as_mut() {
                    p.name = random_text(rng, 300);
                }
            }
            7 => d.ioss_number = random_text(rng, 20),
            8 => d.items.clear(),
            9 => {
                // Far more items than any limit (rarely: it costs bandwidth).
                if !rng.gen_ratio(1, 50) {
                    continue;
                }
                if let Some(first) = d.items.first().cloned() {
                    let n = rng.gen_range(1000..3000);
                    d.items = vec![first; n];
                }
            }
            10 => d.carrier_channel = rng.r#gen(),
            11 => {
                let most = if rng.gen_ratio(1, 50) { 200 } else { 12 };
                for _ in 0..rng.gen_range(1..most) {
                    d.attributes
                        .insert(random_text(rng, 70), random_text(rng, 300));
                }
            }
            12 => d.transport_documents.clear(),
            13 => d.location_of_goods = random_text(rng, 12),
            _ => {
                let Some(i) = item else { continue };
                let it = &mut d.items[i];
                match rng.gen_range(0..8) {
                    0 => it.description = random_text(rng, 600),
                    1 => it.hs6 = random_text(rng, 10),
                    2 => {
                        if let Some(v) = it.intrinsic_value.as_mut() {
                            v.amount_minor = extreme_i64(rng);
                        }
                    }
                    3 => {
                        if let Some(v) = it.intrinsic_value.as_mut() {
                            v.currency = random_text(rng, 5);
                        }
                    }
                    4 => it.gross_mass_g = extreme_i64(rng),
                    5 => it.country_of_origin = random_text(rng, 4),
                    6 => it.quantity = rng.r#gen(),
                    _ => {
                        let most = if rng.gen_ratio(1, 50) { 500 } else { 8 };
                        for _ in 0..rng.gen_range(1..most) {
                            it.additional_procedure_codes.push(random_text(rng, 6));
                        }
                    }
                }
            }
        }
    }
}

fn prost_types_timestamp(seconds: i64, nanos: i32) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp { seconds, nanos }
}

/// Byte-level changes; `None` when the result no longer decodes.
fn mutate_bytes(bytes: &[u8], rng: &mut SmallRng) -> (Vec<u8>, Option<String>) {
    let mut b = bytes.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        if b.is_empty() {
            break;
        }
        let at = rng.gen_range(0..b.len());
        match rng.gen_range(0..5) {
            0 => b[at] ^= 1 << rng.gen_range(0..8),
            1 => b[at] = rng.r#gen(),
            2 => {
                let end = (at + rng.gen_range(1..16)).min(b.len());
                b.drain(at..end);
            }
            3 => {
                let end = (at + rng.gen_range(1..64)).min(b.len());
                let copy = b[at..end].to_vec();
                b.splice(at..at, copy);
            }
            _ => b.truncate(at),
        }
    }
    let id = pb::Declaration::decode(b.as_slice())
        .ok()
        .map(|d| d.declaration_id);
    (b, id)
}

#[derive(Default)]
struct FuzzCounts {
    sent: AtomicU64,
    assessed: AtomicU64,
    errors: AtomicU64,
    out_of_order: AtomicU64,
    teardowns: AtomicU64,
    undecodable: AtomicU64,
}

/// One long stream of mutated declarations; checks every answer's id in order.
async fn fuzz_stream(
    channel: Channel,
    pool: Arc<Vec<pb::Declaration>>,
    messages: u64,
    seed: u64,
    counts: Arc<FuzzCounts>,
    raw: Arc<std::sync::Mutex<Vec<Bytes>>>,
) {
    const WINDOW: usize = 4096;
    let (expected_tx, mut expected_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let window = Arc::new(tokio::sync::Semaphore::new(WINDOW));
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let producer_counts = Arc::clone(&counts);
    let producer_window = Arc::clone(&window);
    let handle = tokio::runtime::Handle::current();
    let producer = tokio::task::spawn_blocking(move || {
        let mut rng = SmallRng::seed_from_u64(seed);
        for n in 0..messages {
            let base = &pool[rng.gen_range(0..pool.len())];
            let mut d = base.clone();
            d.declaration_id = format!("fuzz-{seed}-{n}");
            let (bytes, id) = match rng.gen_range(0..20) {
                0 => (d.encode_to_vec(), d.declaration_id),
                1..=10 => {
                    mutate_fields(&mut d, &mut rng);
                    if rng.gen_ratio(1, 200) {
                        d.declaration_id = random_text(&mut rng, 100);
                    }
                    (d.encode_to_vec(), d.declaration_id)
                }
                _ => match mutate_bytes(&d.encode_to_vec(), &mut rng) {
                    (b, Some(id)) => (b, id),
                    (b, None) => {
                        producer_counts.undecodable.fetch_add(1, Ordering::Relaxed);
                        let mut raw = raw.lock().expect("raw");
                        if raw.len() < 200_000 {
                            raw.push(wrap(&b));
                        }
                        (d.encode_to_vec(), d.declaration_id)
                    }
                },
            };
            let permit = handle
                .block_on(producer_window.acquire())
                .expect("window open");
            permit.forget();
            if expected_tx.send(id).is_err() {
                return;
            }
            if tx.blocking_send(wrap(&bytes)).is_err() {
                return;
            }
        }
    });
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let requests = tokio_stream::wrappers::ReceiverStream::new(rx);
    let response = grpc
        .streaming(
            tonic::Request::new(requests),
            http::uri::PathAndQuery::from_static(STREAM_PATH),
            RawCodec::<pb::ScoreDeclarationsResponse>::default(),
        )
        .await;
    let mut answers = match response {
        Ok(r) => r.into_inner(),
        Err(status) => {
            eprintln!("fuzz stream refused: {status}");
            counts.teardowns.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut received = 0u64;
    let mut torn_down = false;
    loop {
        match answers.message().await {
            Ok(Some(answer)) => {
                received += 1;
                window.add_permits(1);
                let expected = expected_rx.recv().await.unwrap_or_default();
                if answer.declaration_id != expected {
                    counts.out_of_order.fetch_add(1, Ordering::Relaxed);
                }
                match answer.outcome {
                    Some(pb::score_declarations_response::Outcome::Assessment(_)) => {
                        counts.assessed.fetch_add(1, Ordering::Relaxed)
                    }
                    Some(pb::score_declarations_response::Outcome::Error(_)) => {
                        counts.errors.fetch_add(1, Ordering::Relaxed)
                    }
                    None => counts.out_of_order.fetch_add(1, Ordering::Relaxed),
                };
                counts.sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => break,
            Err(status) => {
                eprintln!("fuzz stream ended after {received} answers: {status}");
                torn_down = true;
                break;
            }
        }
    }
    if received < messages {
        eprintln!("fuzz stream: {received} of {messages} answered");
        torn_down = true;
    }
    if torn_down {
        counts.teardowns.fetch_add(1, Ordering::Relaxed);
    }
    let _ = producer.await;
}

async fn connect(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let messages = env("HOSTILE_MESSAGES", 10_000_000) as u64;
    let streams = env("HOSTILE_STREAMS", 4).max(1);
    let raw_frames = env("HOSTILE_RAW_FRAMES", (messages as usize / 100).min(100_000));
    let slow_streams = env("HOSTILE_SLOW_STREAMS", 200);
    let idle_sockets = env("HOSTILE_IDLE_SOCKETS", 1000);
    let unary_calls = env("HOSTILE_UNARY_CALLS", 2000).max(1);
    let extra: Vec<String> = std::env::var("HOSTILE_SERVE_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();

    let pool = Arc::new(pool(4_000));
    let mut server = ServerProcess::start(&extra);
    let addr = server.addr;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("at start: server RSS {:.1} MiB", server.rss_mib().0);

    // 1. Mutated messages on long streams.
    let counts = Arc::new(FuzzCounts::default());
    let raw = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for s in 0..streams {
            let channel = connect(addr).await;
            let per = messages / streams as u64 + u64::from((s as u64) < messages % streams as u64);
            tasks.push(tokio::spawn(fuzz_stream(
                channel,
                Arc::clone(&pool),
                per,
                1000 + s as u64,
                Arc::clone(&counts),
                Arc::clone(&raw),
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let fuzz_seconds = started.elapsed().as_secs_f64();
    let (rss, hwm) = server.rss_mib();
    println!(
        "mutated messages: {} answered of {messages} sent on {streams} streams in {fuzz_seconds:.0} s ({:.0}/s): {} assessed, {} error answers; {} out of order or without an outcome; {} stream teardowns; {} byte mutations that no longer decoded were replaced; server RSS {rss:.1} MiB, peak {hwm:.1} MiB",
        counts.sent.load(Ordering::Relaxed),
        counts.sent.load(Ordering::Relaxed) as f64 / fuzz_seconds,
        counts.assessed.load(Ordering::Relaxed),
        counts.errors.load(Ordering::Relaxed),
        counts.out_of_order.load(Ordering::Relaxed),
        counts.teardowns.load(Ordering::Relaxed),
        counts.undecodable.load(Ordering::Relaxed),
    );

    // 2. Raw frames that do not decode, as unary calls.
    let mut frames = std::mem::take(&mut *raw.lock().expect("raw"));
    let mut rng = SmallRng::seed_from_u64(9);
    while frames.len() < raw_frames {
        let len = rng.gen_range(1..2048);
        let bytes: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        frames.push(Bytes::from(bytes));
    }
    frames.truncate(raw_frames);
    let statuses: BTreeMap<String, usize> = runtime.block_on(async {
        let channel = connect(addr).await;
        let mut tasks = Vec::new();
        let chunk = frames.len().div_ceil(8).max(1);
        for part in frames.chunks(chunk).map(<[Bytes]>::to_vec) {
            let channel = channel.clone();
            tasks.push(tokio::spawn(async move {
                let mut seen: BTreeMap<String, usize> = BTreeMap::new();
                let mut grpc = tonic::client::Grpc::new(channel);
                for frame in part {
                    if grpc.ready().await.is_err() {
                        *seen.entry("client not ready".into()).or_default() += 1;
                        continue;
                    }
                    let answer = grpc
                        .unary(
                            tonic::Request::new(frame),
                            http::uri::PathAndQuery::from_static(UNARY_PATH),
                            RawCodec::<pb::ScoreDeclarationResponse>::default(),
                        )
                        .await;
                    let code = match answer {
                        Ok(_) => Code::Ok,
                        Err(s) => s.code(),
                    };
                    *seen.entry(format!("{code:?}")).or_default() += 1;
                }
                seen
            }));
        }
        let mut all = BTreeMap::new();
        for t in tasks {
            for (k, v) in t.await.expect("raw task") {
                *all.entry(k).or_default() += v;
            }
        }
        all
    });
    println!(
        "raw frames: {} sent as unary calls: {statuses:?}",
        frames.len()
    );
    drop(frames);

    // 3. Idle sockets and streams that never read, while a well-behaved
    // client makes unary calls.
    let (rss_before, _) = server.rss_mib();
    let sampler = RssSampler::start(server.child.id());
    let server_ref = &server;
    let flood = runtime.block_on(async {
        let mut sockets = Vec::with_capacity(idle_sockets);
        for i in 0..idle_sockets {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(mut s) => {
                    if i % 2 == 1 {
                        // HTTP/2 preface and an empty SETTINGS frame, then nothing.
                        let _ = s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
                        let _ = s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
                    }
                    sockets.push(s);
                }
                Err(e) => {
                    eprintln!("idle socket {i}: {e}");
                    break;
                }
            }
        }
        let connections = (slow_streams / 20).max(1);
        let mut held = Vec::new();
        let mut producers = Vec::new();
        let mut id = 0u64;
        for c in 0..connections {
            let channel = connect(addr).await;
            let here = slow_streams / connections + usize::from(c < slow_streams % connections);
            for _ in 0..here {
                let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
                let pool = Arc::clone(&pool);
                let first = id;
                id += 1_000_000_000;
                producers.push(tokio::spawn(async move {
                    for n in 0.. {
                        let mut d = pool[(n as usize) % pool.len()].clone();
                        d.declaration_id = format!("slow-{}", first + n);
                        if tx.send(wrap(&d.encode_to_vec())).await.is_err() {
                            return;
                        }
                    }
                }));
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                grpc.ready().await.expect("ready");
                let answers = grpc
                    .streaming(
                        tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
                        http::uri::PathAndQuery::from_static(STREAM_PATH),
                        RawCodec::<pb::ScoreDeclarationsResponse>::default(),
                    )
                    .await;
                // Never read.
                held.push(answers);
            }
        }
        let opened = held.iter().filter(|a| a.is_ok()).count();
        // Let every buffer fill up.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let mut client = pb::risk_service_client::RiskServiceClient::new(connect(addr).await);
        let mut latencies = Vec::with_capacity(unary_calls);
        let mut failed = 0usize;
        for n in 0..unary_calls {
            let mut d = pool[n % pool.len()].clone();
            d.declaration_id = format!("polite-{n}");
            let t = Instant::now();
            let answer = client
                .score_declaration(pb::ScoreDeclarationRequest {
                    declaration: Some(d),
                })
                .await;
            latencies.push(t.elapsed().as_secs_f64() * 1e3);
            if answer.is_err() {
                failed += 1;
            }
        }
        latencies.sort_by(f64::total_cmp);
        let held_peak = sampler.take();
        let (held_rss, _) = server_ref.rss_mib();
        let counters: Vec<String> = server_ref
            .metrics_matching("parcel_risk_memory")
            .into_iter()
            .chain(server_ref.metrics_matching("parcel_risk_streams"))
            .chain(server_ref.metrics_matching("parcel_risk_connections"))
            .chain(server_ref.metrics_matching("parcel_risk_handshake"))
            .chain(server_ref.metrics_matching("parcel_risk_live_record"))
            .collect();
        let result = (
            sockets.len(),
            opened,
            latencies,
            failed,
            held_rss,
            held_peak,
            counters,
        );
        for p in producers {
            p.abort();
        }
        drop(held);
        drop(sockets);
        result
    });
    let (sockets, opened, latencies, failed, held_rss, held_peak, counters) = flood;
    println!(
        "flood: {sockets} idle sockets, {opened} of {slow_streams} non-reading streams open; well-behaved unary ({} calls, {failed} failed): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; server RSS before {rss_before:.1} MiB, while held {held_rss:.1} MiB (peak {held_peak:.1} MiB)",
        latencies.len(),
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99),
        quantile(&latencies, 1.0),
    );
    for line in counters {
        println!("  {line}");
    }
    // The streams and sockets are gone: the server tears them down.
    std::thread::sleep(Duration::from_secs(3));
    let teardown_peak = sampler.take();
    drop(sampler);
    let (rss_end, hwm_end) = server.rss_mib();
    println!(
        "after the flood closed: server RSS {rss_end:.1} MiB (peak while closing {teardown_peak:.1} MiB); peak over the whole run {hwm_end:.1} MiB"
    );
    let alive = server.alive();
    let panics = server.panics();
    println!("server alive at the end: {alive}; panics in its log: {panics}");
    let failed = !alive || panics > 0 || counts.teardowns.load(Ordering::Relaxed) > 0;
    // `exit` runs no destructors: stop the server first.
    drop(server);
    if failed {
        std::process::exit(1);
    }
}
