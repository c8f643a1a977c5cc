//! The `parcel-risk` command line: argument types (clap) and dispatch. Each
//! subcommand's body lives in its own module as `run(args) -> anyhow::Result`.

mod check;
mod generate;

use clap::{Parser, Subcommand};

/// Risk scoring of EU H7 e-commerce customs declarations.
#[derive(Debug, Parser)]
#[command(name = "parcel-risk", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PARCEL_RISK_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate synthetic Liège traffic with ground truth (TrainingExample lines).
    Generate(generate::GenerateArgs),
    /// Read a data file, validate every record and report the bad ones by line.
    Check(check::CheckArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Check(args) => check::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}
