use std::process::ExitCode;

use clap::Parser;

use parcel_risk::cli::{self, Cli};

// glibc's allocator spent a third of a rescoring run in malloc/free and in
// consolidating arenas across threads; mimalloc's thread-local free lists do not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (option 15 in its v2 and v3 headers;
/// the Rust bindings name no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory is handed back to the OS after ten seconds unused, not
/// mimalloc's default of one. A batch run frees and reallocates the same
/// megabytes every few milliseconds (batches of declarations, assessments,
/// the Parquet writer's pages), and with the default some of them went back
/// and were faulted in again as zeroed huge pages. Rescoring 300 k
/// declarations Parquet to Parquet took 15,600-21,400 page faults instead
/// of 2,950, and up to a second of system time when huge pages were being
/// zeroed: 6-9 % of the run's CPU (1 % JSON Lines to CSV), by the
/// machine's state (README, Speed). `MIMALLOC_PURGE_DELAY` set in the
/// environment (read by mimalloc itself) is left to rule.
///
/// The binary's one `unsafe`: an FFI call with no pointer in it (the library
/// has one more: the boosted trees' SSE2 walk, `model::boost`).
#[allow(unsafe_code)]
fn keep_freed_memory_for_reuse() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: called from `main` before any thread is spawned (mimalloc's
    // options are not thread safe to set).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10_000) }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Not for `serve`: under hostile clients its memory peaked at 630.5 MiB
    // with the ten seconds against 513.6 MiB without (`HOSTILE_MESSAGES=
    // 2000000 cargo bench --bench hostile`): a server's freed memory is
    // better given back than kept for batches that do not come.
    if !matches!(cli.command, cli::Command::Serve(_)) {
        keep_freed_memory_for_reuse();
    }
    let log_format = cli.log_format;
    // Kept to the end of `main`: dropping it sends the last spans.
    let _telemetry = match parcel_risk::telemetry::init(log_format, cli.otlp_endpoint.as_deref()) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    match cli::run(cli) {
        Ok(code) => code,
        // `parcel-risk rescore ... | head`: the reader has what it wanted.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            match log_format {
                // Log collectors that read JSON lines get the fatal error as one.
                cli::LogFormat::Json => tracing::error!(error = %describe(&err), "fatal"),
                cli::LogFormat::Text => eprintln!("error: {}", describe(&err)),
            }
            ExitCode::from(2)
        }
    }
}

/// Whether the error comes from writing to a pipe whose reader has gone.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let broken = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
    err.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(broken)
            || matches!(
                cause.downcast_ref::<parcel_risk::io::IoError>(),
                Some(parcel_risk::io::IoError::Io(e)) if broken(e)
            )
    })
}

/// The error and its causes on one line. The library's errors name their
/// cause in their own message (so logs that print only the outer error lose
/// nothing); a cause already told is not repeated.
fn describe(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[derive(Debug, thiserror::Error)]
    #[error("models/x: {source}")]
    struct Telling {
        source: std::io::Error,
    }

    #[test]
    fn causes_are_told_once() {
        let missing = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        // A cause the outer message already names is not repeated...
        let told = anyhow::Error::new(Telling { source: missing() }).context("cannot load");
        assert_eq!(describe(&told), "cannot load: models/x: no such file");
        // ...one it does not name is added.
        let untold = anyhow::Error::new(missing()).context("cannot read");
        assert_eq!(describe(&untold), "cannot read: no such file");
    }
}
