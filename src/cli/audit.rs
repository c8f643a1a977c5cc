//! `parcel-risk audit`: who reported which inspection result, when and
//! from where, read from the store (read-only, beside a running server).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::store::{self, AuditQuery};

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// The server's data directory.
    #[arg(long, default_value = "parcel-risk-data", env = "PARCEL_RISK_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Results received at or after this instant (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = super::parse_instant)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only results this caller reported.
    #[arg(long)]
    pub reporter: Option<String>,
    /// Only results for this declaration.
    #[arg(long)]
    pub declaration_id: Option<String>,
    /// Most rows (0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
}

/// Prints the trail as tab-separated rows under a header line.
pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let query = AuditQuery {
        since: args.since,
        reporter: args.reporter,
        declaration_id: args.declaration_id,
        limit: args.limit,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(
        out,
        "received_at\treporter\tcredential\taddress\tdeclaration_id\tinspection_id\tselection_reason\toutcome"
    )?;
    let mut failed = None;
    let rows = store::audit(&args.data_dir, &query, |e| {
        if failed.is_some() {
            return;
        }
        let reporter = if e.reporter.is_empty() {
            "-"
        } else {
            &e.reporter
        };
        if let Err(err) = writeln!(
            out,
            "{}\t{reporter}\t{}\t{}\t{}\t{}\t{}\t{}",
            e.received_at.to_rfc3339(),
            e.credential,
            e.address,
            e.declaration_id,
            e.inspection_id,
            e.selection_reason,
            e.outcome
        ) {
            failed = Some(err);
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    out.flush()?;
    eprintln!("{rows} results");
    Ok(ExitCode::SUCCESS)
}
