//! `parcel-risk token`: a new bearer token and its access-file line. The
//! token is printed once, on stdout; the server keeps only its SHA-256.

use std::process::ExitCode;

use anyhow::Context;

use crate::security::Roles;
use crate::security::access::{new_token, token_hash};

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The client's name, as the audit trail and `export --reporter` show it.
    #[arg(long)]
    pub name: String,
    /// Its roles, comma-separated: score, report, admin.
    #[arg(long, value_parser = Roles::parse)]
    pub roles: Roles,
}

pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !args.name.is_empty() && !args.name.contains(char::is_whitespace),
        "--name must be one word, got {:?}",
        args.name
    );
    let token = new_token()
        .ok()
        .context("the system's random generator failed")?;
    println!("{token}");
    eprintln!(
        "give the token above to {}; add this line to the access file (--auth-tokens) and send the server SIGHUP:",
        args.name
    );
    eprintln!(
        "{} {} {}",
        args.name,
        args.roles.names(),
        token_hash(&token)
    );
    Ok(ExitCode::SUCCESS)
}
