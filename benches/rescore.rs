//! Batch rescoring against a decode-only pass over the same file, in the
//! same run: throughput, peak memory and their ratio. Runs the release
//! binary, so that peak memory is the process's own.
//!
//! `cargo bench --bench rescore` (10 M declarations, ~17 GB of JSON Lines
//! under target/bench-data, made once and reused). Environment:
//! PARCEL_RISK_BENCH_DECLARATIONS (default 10000000), PARCEL_RISK_BENCH_ROUNDS
//! (default 1; rounds alternate decode-only and rescore),
//! PARCEL_RISK_BENCH_OUTPUT (csv, jsonl or parquet; default csv, written to
//! /dev/null so that the disk is not the limit), MIMALLOC_PURGE_DELAY
//! (default here 1000 ms, for both passes; mimalloc's own default is 10).

use std::path::{Path, PathBuf};
use std::process::Command;

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
    stages: String,
}

fn field<'a>(text: &'a str, before: &str, after: &str) -> &'a str {
    text.split(before)
        .nth(1)
        .and_then(|rest| rest.split(after).next())
        .unwrap_or_else(|| panic!("no {before:?} in:\n{text}"))
}

fn run(bin: &str, args: &[&str], input: &Path) -> Pass {
    let out = Command::new(bin)
        // mimalloc returns freed memory to the OS after 10 ms by default; a
        // batch run that frees and refills the same batches is faster when it
        // keeps it for a second (README: Batch rescoring). Both passes alike.
        .env(
            "MIMALLOC_PURGE_DELAY",
            std::env::var("MIMALLOC_PURGE_DELAY").unwrap_or_else(|_| "1000".into()),
        )
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
    let output_format: String = env_or("PARCEL_RISK_BENCH_OUTPUT", "csv".to_owned());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join(format!("rescore-{n}.jsonl"));
    if !input.exists() {
        eprintln!("generating {n} declarations into {}", input.display());
        let partial = dir.join(format!("rescore-{n}.partial.jsonl"));
        let status = Command::new(bin)
            .args(["generate", "--parcels", &n.to_string(), "--seed", "9"])
            .args(["--days", &(n / 90_000).max(1).to_string()])
            .args(["--declarations-only", "--quiet", "--out"])
            .arg(&partial)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::rename(&partial, &input).unwrap();
    }
    let bytes = std::fs::metadata(&input).unwrap().len();
    println!(
        "input: {n} declarations, {:.2} GB of JSON Lines, {} cores",
        bytes as f64 / 1e9,
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    // The first pass over a file not yet in the page cache reads it from
    // disk: read it once first, so that both passes of every round read
    // from memory (a cold first decode-only pass once showed a ratio of 0.75
    // where the warm rounds showed 0.54 and 0.58).
    let started = std::time::Instant::now();
    let mut file = std::fs::File::open(&input).unwrap();
    std::io::copy(&mut file, &mut std::io::sink()).unwrap();
    println!(
        "read once to warm the page cache: {:.1} s ({:.2} GB/s)",
        started.elapsed().as_secs_f64(),
        bytes as f64 / 1e9 / started.elapsed().as_secs_f64()
    );
    let (mut decode, mut score, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let d = run(bin, &["--decode-only"], &input);
        let s = run(
            bin,
            &["--output", "/dev/null", "--output-format", &output_format],
            &input,
        );
        println!(
            "round {round}: decode-only {:>9.0} records/s ({:.1} s, peak {:.0} MiB) | rescore -> {output_format} {:>9.0} records/s ({:.1} s, peak {:.0} MiB) | ratio {:.2}",
            d.records_per_second,
            d.seconds,
            d.peak_mib,
            s.records_per_second,
            s.seconds,
            s.peak_mib,
            s.records_per_second / d.records_per_second
        );
        println!("  rescore stage seconds: {}", s.stages);
        decode.push(d.records_per_second);
        score.push(s.records_per_second);
        ratios.push(s.records_per_second / d.records_per_second);
    }
    let (d, s) = (median(decode), median(score));
    println!(
        "median: decode-only {d:.0} records/s, rescore {s:.0} records/s, ratio {:.2}; median of the rounds' ratios {:.2} (target 0.75)",
        s / d,
        median(ratios)
    );
    println!(
        "a year of Liège traffic in an hour needs {LIEGE_YEAR_PER_SECOND:.0} records/s: rescore is at {:.1} % of it ({:.1} machines like this one, or {:.1} h on one)",
        100.0 * s / LIEGE_YEAR_PER_SECOND,
        LIEGE_YEAR_PER_SECOND / s,
        1.3e9 / s / 3600.0
    );
}
