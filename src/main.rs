use std::process::ExitCode;

use clap::Parser;

use parcel_risk::cli::{self, Cli};

// glibc's allocator spent a third of a rescoring run in malloc/free and in
// consolidating arenas across threads; mimalloc's thread-local free lists do not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = parcel_risk::telemetry::init(cli.log_format) {
        eprintln!("error: {err:#}");
        return ExitCode::from(2);
    }
    match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
