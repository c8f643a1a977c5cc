use std::process::ExitCode;

use clap::Parser;

use parcel_risk::cli::{self, Cli};

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
