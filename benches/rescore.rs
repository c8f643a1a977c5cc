//! Batch rescoring of the same declarations in each input format, against a
//! decode-only pass over the same file, in the same run: records/s, CPU-µs
//! per declaration by stage (read, on the reader thread, and for Parquet the
//! Parquet library's share of it, timed alone in this process, and the whole
//! reader stage alone with one and two threads reading row groups; decode, the
//! rest of the decode-only pass; score, route and write, the difference), peak
//! memory, the stages that stay on one thread and the rate they cap one
//! process at, and how far each is from a year of Liège traffic in an hour. Runs
//! the release binary, so that peak memory and CPU time are the process's
//! own.
//!
//! `cargo bench --bench rescore` (10 M declarations, ~17 GB of JSON Lines and
//! ~0.6 GB of zstd Parquet under target/bench-data, made once and reused).
//! Environment: PARCEL_RISK_BENCH_DECLARATIONS (default 10000000),
//! PARCEL_RISK_BENCH_FORMATS (default `jsonl,parquet`; `csv` too),
//! PARCEL_RISK_BENCH_ROUNDS (default 1; each round runs every format's
//! decode-only and rescore passes in turn), PARCEL_RISK_BENCH_OUTPUT (the
//! output of text inputs: csv, jsonl or parquet; default csv; Parquet input
//! is rescored to Parquet; written to /dev/null so that the disk is not the
//! limit). MIMALLOC_PURGE_DELAY, when set, reaches the binary and rules
//! (its own default is 10 s: src/main.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

use parcel_risk::io::columnar::parquet_batches;
use parcel_risk::io::{Projection, open_framer};

// The allocator of the shipped binary (src/main.rs), for the Parquet
// library's pass timed in this process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A year of Liège traffic (about 1.3 bn declarations) in an hour.
const LIEGE_YEAR_PER_SECOND: f64 = 1.3e9 / 3600.0;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Pass {
    records_per_second: f64,
    peak_mib: f64,
    seconds: f64,
    /// User + system CPU seconds of the process.
    cpu_seconds: f64,
    /// Of which the reader thread's (stage 1: reading the file and cutting
    /// it into records, decoding a columnar file's pages).
    reader_cpu_seconds: f64,
    stages: String,
    /// The run's line on its one-thread stages (none in a decode-only run).
    one_thread_stages: Option<String>,
}

/// CPU seconds (user + system) of this process, and of its waited-for
/// children, from /proc/self/stat (utime, stime, cutime, cstime; in USER_HZ
/// ticks, 100 a second on Linux).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name, which is in parentheses; utime, stime,
    // cutime and cstime are fields 14 to 17 of the line, 12th to 15th after it.
    let after = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<f64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    (
        (fields[11] + fields[12]) / 100.0,
        (fields[13] + fields[14]) / 100.0,
    )
}

/// CPU seconds the Parquet library takes to read `input`'s record batches
/// as the reader thread has it read them (the columns rescoring reads,
/// dictionaries kept), with nothing done with them: the floor under the
/// reader thread's figure.
fn parquet_library_cpu_seconds(input: &Path) -> f64 {
    let before = cpu_seconds().0;
    let file = std::fs::File::open(input).unwrap();
    let read = parquet_batches(file, Projection::Declarations).expect("a Parquet file");
    let mut rows = 0;
    for batch in read.batches {
        rows += batch.expect("a readable batch").num_rows() as u64;
    }
    assert_eq!(rows, read.rows);
    cpu_seconds().0 - before
}

/// The reader stage alone, in this process: `input` opened as `rescore`
/// opens it, with `readers` threads reading its row groups, and cut into
/// records that are counted and dropped. Wall seconds and CPU seconds (of
/// every thread of this process).
fn reader_stage_seconds(input: &Path, readers: usize, n: u64) -> (f64, f64) {
    let cpu_before = cpu_seconds().0;
    let started = std::time::Instant::now();
    let framer =
        open_framer(input, None, Projection::Declarations, None, readers).expect("a readable file");
    let mut records = 0;
    for record in framer {
        record.expect("a readable record");
        records += 1;
    }
    assert_eq!(records, n);
    (
        started.elapsed().as_secs_f64(),
        cpu_seconds().0 - cpu_before,
    )
}

fn field<'a>(text: &'a str, before: &str, after: &str) -> &'a str {
    text.split(before)
        .nth(1)
        .and_then(|rest| rest.split(after).next())
        .unwrap_or_else(|| panic!("no {before:?} in:\n{text}"))
}

fn run(bin: &str, args: &[&str], input: &Path) -> Pass {
    let (_, children_before) = cpu_seconds();
    let out = Command::new(bin)
        .arg("rescore")
        .arg("--input")
        .arg(input)
        .args(args)
        .output()
        .expect("run parcel-risk");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    Pass {
        records_per_second: field(&stderr, ": ", " records/s").parse().unwrap(),
        peak_mib: field(&stderr, "peak memory ", " MiB").parse().unwrap(),
        seconds: field(&stderr, " rejected in ", " s:").parse().unwrap(),
        stages: field(&stderr, "stage seconds: ", "\n").to_owned(),
        one_thread_stages: stderr
            .split("one-thread stages: ")
            .nth(1)
            .map(|rest| rest.lines().next().unwrap_or("").to_owned()),
        reader_cpu_seconds: field(&stderr, "reader thread: ", " CPU-s").parse().unwrap(),
        cpu_seconds: cpu_seconds().1 - children_before,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let bin = env!("CARGO_BIN_EXE_parcel-risk");
    let n: u64 = env_or("PARCEL_RISK_BENCH_DECLARATIONS", 10_000_000);
    let rounds: usize = env_or("PARCEL_RISK_BENCH_ROUNDS", 1);
    let text_output: String = env_or("PARCEL_RISK_BENCH_OUTPUT", "csv".to_owned());
    let formats: String = env_or("PARCEL_RISK_BENCH_FORMATS", "jsonl,parquet".to_owned());
    let formats: Vec<&str> = formats.split(',').map(str::trim).collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "{n} declarations in each of {}; {} cores",
        formats.join(", "),
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    let start = first_day_after_training();
    println!(
        "traffic from {start}, after the default model's training data, so the live record counts it"
    );
    let inputs: Vec<(&str, PathBuf)> = formats
        .iter()
        .map(|format| (*format, input_file(bin, &dir, n, &start, format)))
        .collect();
    let mut passes: Vec<(Vec<Pass>, Vec<Pass>)> =
        inputs.iter().map(|_| Default::default()).collect();
    // CPU seconds of the Parquet library alone, per round (Parquet only).
    let mut library_reads: Vec<Vec<f64>> = inputs.iter().map(|_| Vec::new()).collect();
    // Records/s of the Parquet reader stage alone with one and two readers.
    let mut reader_stages: [Vec<f64>; 2] = Default::default();
    for round in 0..rounds {
        for (((format, input), (decodes, rescores)), library) in
            inputs.iter().zip(&mut passes).zip(&mut library_reads)
        {
            let output = if *format == "parquet" {
                "parquet"
            } else {
                text_output.as_str()
            };
            let d = run(bin, &["--decode-only"], input);
            let s = run(
                bin,
                &["--output", "/dev/null", "--output-format", output],
                input,
            );
            println!(
                "round {round} {format:>7}: decode-only {:>7.0} records/s ({:.1} s, {:.2} CPU-µs each, {:.2} on the reader thread, peak {:.0} MiB) | rescore -> {output} {:>7.0} records/s ({:.1} s, {:.2} CPU-µs each, peak {:.0} MiB)",
                d.records_per_second,
                d.seconds,
                1e6 * d.cpu_seconds / n as f64,
                1e6 * d.reader_cpu_seconds / n as f64,
                d.peak_mib,
                s.records_per_second,
                s.seconds,
                1e6 * s.cpu_seconds / n as f64,
                s.peak_mib,
            );
            println!("  rescore stage seconds: {}", s.stages);
            if let Some(line) = &s.one_thread_stages {
                println!("  rescore one-thread stages: {line}");
            }
            if *format == "parquet" {
                let seconds = parquet_library_cpu_seconds(input);
                println!(
                    "  the Parquet library alone reads the batches in {:.2} CPU-µs each",
                    1e6 * seconds / n as f64
                );
                library.push(seconds);
                for readers in [1, 2] {
                    let (wall, cpu) = reader_stage_seconds(input, readers, n);
                    println!(
                        "  the reader stage alone with {readers} row-group reader(s): {:.0} records/s ({:.2} CPU-µs each)",
                        n as f64 / wall,
                        1e6 * cpu / n as f64
                    );
                    reader_stages[readers - 1].push(n as f64 / wall);
                }
            }
            decodes.push(d);
            rescores.push(s);
        }
    }
    println!(
        "\nmedians over {rounds} round(s); a year of Liège traffic (1.3 bn) in an hour needs {LIEGE_YEAR_PER_SECOND:.0} records/s"
    );
    println!(
        "| input | decode-only records/s | read+decode CPU-µs/decl | of which read (reader thread) | of which the Parquet library | rescore records/s | CPU-µs/decl | of which score+route+write | peak MiB | of 361 k/s | machines for a year in an hour |"
    );
    for (((format, _), (decodes, rescores)), library) in
        inputs.iter().zip(&passes).zip(&library_reads)
    {
        let of = |passes: &[Pass], f: fn(&Pass) -> f64| median(passes.iter().map(f).collect());
        let decode_rate = of(decodes, |p| p.records_per_second);
        let rescore_rate = of(rescores, |p| p.records_per_second);
        let decode_cpu = 1e6 * of(decodes, |p| p.cpu_seconds) / n as f64;
        let read_cpu = 1e6 * of(decodes, |p| p.reader_cpu_seconds) / n as f64;
        let rescore_cpu = 1e6 * of(rescores, |p| p.cpu_seconds) / n as f64;
        let peak = of(rescores, |p| p.peak_mib);
        let library = if library.is_empty() {
            "–".to_owned()
        } else {
            format!("{:.2}", 1e6 * median(library.clone()) / n as f64)
        };
        println!(
            "| {format} | {decode_rate:.0} | {decode_cpu:.2} | {read_cpu:.2} | {library} | {rescore_rate:.0} | {rescore_cpu:.2} | {:.2} | {peak:.0} | {:.1} % | {:.1} |",
            rescore_cpu - decode_cpu,
            100.0 * rescore_rate / LIEGE_YEAR_PER_SECOND,
            LIEGE_YEAR_PER_SECOND / rescore_rate,
        );
    }
    if !reader_stages[0].is_empty() {
        let [one, two] = reader_stages.map(median);
        println!(
            "Parquet reader stage alone (read, decode the pages, cut into records): {one:.0} records/s with one row-group reader, {two:.0} with two ({:.2}x)",
            two / one
        );
    }
}

/// The day after the last declaration the default model was trained on.
/// Traffic lodged up to then is in the model's record already, so the live
/// record reads it and does not count it; live traffic is always later, and
/// counting it costs the window thread about 1.2 CPU-µs a declaration
/// (README, Speed), which traffic inside the training window would leave out.
fn first_day_after_training() -> String {
    let model = parcel_risk::cli::load_model(None).expect("the built-in default model loads");
    let last = model
        .card
        .last_lodged_at
        .expect("the default model's card gives its last training declaration");
    (last.date_naive() + chrono::Days::new(1)).to_string()
}

/// The bench's input in `format`, generated once (same seed in every format)
/// from day `start` and read once so that every pass reads it from the page
/// cache.
fn input_file(bin: &str, dir: &Path, n: u64, start: &str, format: &str) -> PathBuf {
    let input = dir.join(format!("rescore-{n}-from-{start}.{format}"));
    if !input.exists() {
        eprintln!("generating {n} declarations into {}", input.display());
        let partial = dir.join(format!("rescore-{n}-from-{start}.partial.{format}"));
        let status = Command::new(bin)
            .args(["generate", "--parcels", &n.to_string(), "--seed", "9"])
            .args(["--days", &(n / 90_000).max(1).to_string()])
            .args(["--start", start])
            .args(["--declarations-only", "--quiet", "--out"])
            .arg(&partial)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::rename(&partial, &input).unwrap();
    }
    // A file not yet in the page cache is read from disk by the first pass
    // only (a cold first pass once showed a ratio of 0.75 where warm rounds
    // showed 0.54 and 0.58).
    let started = std::time::Instant::now();
    let mut file = std::fs::File::open(&input).unwrap();
    let bytes = std::io::copy(&mut file, &mut std::io::sink()).unwrap();
    println!(
        "{}: {:.2} GB, read once to warm the page cache in {:.1} s",
        input.display(),
        bytes as f64 / 1e9,
        started.elapsed().as_secs_f64(),
    );
    input
}
