//! The service's memory of what it sent to inspection and what officers
//! found: an embedded SQLite database (bundled, WAL) in a data directory.
//!
//! Two tables (schema in `docs/store.md`):
//! - `routed`: every declaration the service routed to a control (RED,
//!   YELLOW or a random pick), with the assessment it gave, so that a result
//!   joins to the declaration as it was scored;
//! - `results`: inspection results, one row per (declaration, inspection).
//!
//! One writer thread owns the write connection and commits in groups: many
//! results reported at once cost one `fsync`. A result is acknowledged only
//! after its transaction has committed with `synchronous=FULL`, so an
//! acknowledged result survives a crash of the process or of the machine.
//! Rows older than the retention are purged at start and hourly.
//!
//! Rows hold the protobuf encoding of the wire messages: compact, and
//! readable by later versions under protobuf's evolution rules.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::{Channel, Declaration, InspectionResult, SelectionReason};
use crate::pb;
use crate::scoring::Assessment;
use crate::wire::assessment_to_pb;

/// The database file inside the data directory.
pub const DB_FILE: &str = "parcel-risk.db";
const SCHEMA_VERSION: i64 = 2;
/// Requests the writer takes into one transaction at most.
const GROUP: usize = 512;
/// Routed declarations waiting for the writer before scoring waits.
const QUEUE: usize = 4096;
const PURGE_EVERY: StdDuration = StdDuration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store: cannot create {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("store: {path} has schema version {found}; this build reads version {SCHEMA_VERSION}")]
    Schema { path: String, found: i64 },
    #[error(
        "inspection {inspection_id} of declaration {declaration_id} was recorded before with different content"
    )]
    Conflict {
        declaration_id: String,
        inspection_id: String,
    },
    #[error(
        "declaration {declaration_id} was not selected at random by this service: a result may claim SELECTION_REASON_RANDOM only for a random pick"
    )]
    NotRandomlySelected { declaration_id: String },
    #[error("store: a stored row does not decode: {0}")]
    Corrupt(#[from] prost::DecodeError),
    #[error("store: the writer has stopped")]
    Closed,
}

impl StoreError {
    /// Whether the request, not the store, is at fault.
    pub fn is_client_error(&self) -> bool {
        match self {
            StoreError::Conflict { .. } | StoreError::NotRandomlySelected { .. } => true,
            StoreError::Sqlite(_)
            | StoreError::Dir { .. }
            | StoreError::Schema { .. }
            | StoreError::Corrupt(_)
            | StoreError::Closed => false,
        }
    }
}

/// What happened to one reported result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New,
    /// The same result was recorded before (an idempotent retry).
    Duplicate,
}

/// What happened to one reported result, with the routed declaration (its
/// protobuf bytes) of a newly recorded one, when there is one.
pub type Outcome = (Recorded, Option<Vec<u8>>);

/// Who reported results, as the service authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reporter {
    /// The caller's name (access file, certificate, or `anonymous`).
    pub name: String,
    /// How it proved it: `token`, `certificate` or `none`.
    pub credential: &'static str,
    /// Its address, when known.
    pub address: Option<std::net::SocketAddr>,
}

/// A declaration routed to a control, ready to store.
#[derive(Debug, Clone)]
pub struct RoutedRecord {
    declaration_id: String,
    lodged_at: i64,
    routed_at: i64,
    channel: &'static str,
    selection_reason: &'static str,
    model_version: String,
    declaration: Vec<u8>,
    assessment: Vec<u8>,
}

impl RoutedRecord {
    /// Encodes a routed declaration and its assessment.
    pub fn new(d: &Declaration, assessment: &Assessment, routed_at: DateTime<Utc>) -> Self {
        let route = assessment.route;
        Self {
            declaration_id: d.declaration_id.as_str().to_owned(),
            lodged_at: d.lodged_at.timestamp(),
            routed_at: routed_at.timestamp(),
            channel: route.map_or("", |r| channel_name(r.channel)),
            selection_reason: route.map_or("", |r| selection_name(r.selection_reason)),
            model_version: assessment.model_version.to_string(),
            declaration: pb::Declaration::from(d).encode_to_vec(),
            assessment: assessment_to_pb(assessment.clone(), routed_at).encode_to_vec(),
        }
    }

    /// Whether an assessment sends its declaration to a control.
    pub fn is_routed(assessment: &Assessment) -> bool {
        assessment.route.is_some_and(|r| {
            matches!(r.channel, Channel::Red | Channel::Yellow)
                || r.selection_reason == SelectionReason::Random
        })
    }
}

enum Command {
    Results {
        results: Vec<InspectionResult>,
        reporter: Reporter,
        received_at: DateTime<Utc>,
        reply: tokio::sync::oneshot::Sender<Result<Vec<Outcome>, StoreError>>,
    },
    Routed(Vec<RoutedRecord>),
}

/// Handle on the store; cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::SyncSender<Command>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` and starts its writer thread.
    pub fn open(dir: &Path, retention: Duration) -> Result<Store, StoreError> {
        let dir_error = |source| StoreError::Dir {
            path: dir.display().to_string(),
            source,
        };
        create_private_dir(dir).map_err(dir_error)?;
        let path = dir.join(DB_FILE);
        create_private_file(&path).map_err(|source| StoreError::Dir {
            path: path.display().to_string(),
            source,
        })?;
        let conn = open_connection(&path)?;
        migrate(&conn, &path)?;
        purge(&conn, Utc::now() - retention)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer(conn, &rx, retention))
            .map_err(|source| StoreError::Dir {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Store { tx, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records results in one transaction; answers once it has committed.
    /// A result recorded before with the same content is a duplicate; with
    /// other content, the whole call fails with [`StoreError::Conflict`].
    /// A result that claims a random selection must be for a declaration
    /// this service picked at random ([`StoreError::NotRandomlySelected`]):
    /// model promotion trusts random picks as unbiased labels.
    pub async fn record_results(
        &self,
        results: Vec<InspectionResult>,
        reporter: Reporter,
    ) -> Result<Vec<Recorded>, StoreError> {
        let outcomes = self.record_results_joined(results, reporter).await?;
        Ok(outcomes.into_iter().map(|(recorded, _)| recorded).collect())
    }

    /// As [`Store::record_results`]; each newly recorded result comes with
    /// the declaration it inspected as it was routed (protobuf bytes), when
    /// this service routed it: what the live record learns from.
    pub async fn record_results_joined(
        &self,
        results: Vec<InspectionResult>,
        reporter: Reporter,
    ) -> Result<Vec<Outcome>, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let tx = self.tx.clone();
        let command = Command::Results {
            results,
            reporter,
            received_at: Utc::now(),
            reply,
        };
        // The queue is bounded: waiting for room must not block the executor.
        tokio::task::spawn_blocking(move || tx.send(command))
            .await
            .map_err(|_| StoreError::Closed)?
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues routed declarations for writing (blocking while the queue is
    /// full: call it off the async executor).
    pub fn record_routed(&self, records: Vec<RoutedRecord>) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Command::Routed(records))
            .map_err(|_| StoreError::Closed)
    }
}

/// The store holds names and addresses: its folder is created readable by
/// its owner only (0700), and an existing folder that others can read is
/// reported, not changed (it is the operator's).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if dir.is_dir() {
            let mode = std::fs::metadata(dir)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    dir = %dir.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the store folder is open to other users; it holds names and addresses (chmod 700 it)"
                );
            }
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// Creates the database file readable by its owner only (0600) if it does
/// not exist; SQLite gives its WAL and shared-memory files the same mode.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(StdDuration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before it is acknowledged, even across a
    // power loss (NORMAL would only survive a process crash in WAL mode).
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    match version {
        0 => {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE routed (
                     declaration_id   TEXT PRIMARY KEY,
                     lodged_at        INTEGER NOT NULL,
                     routed_at        INTEGER NOT NULL,
                     channel          TEXT NOT NULL,
                     selection_reason TEXT NOT NULL,
                     model_version    TEXT NOT NULL,
                     declaration      BLOB NOT NULL,
                     assessment       BLOB NOT NULL
                 );
                 CREATE INDEX routed_by_time ON routed (routed_at);
                 CREATE TABLE results (
                     declaration_id   TEXT NOT NULL,
                     inspection_id    TEXT NOT NULL,
                     received_at      INTEGER NOT NULL,
                     inspected_at     INTEGER,
                     selection_reason TEXT NOT NULL,
                     outcome          TEXT NOT NULL,
                     result           BLOB NOT NULL,
                     reporter         TEXT NOT NULL DEFAULT '',
                     credential       TEXT NOT NULL DEFAULT '',
                     reporter_address TEXT NOT NULL DEFAULT '',
                     PRIMARY KEY (declaration_id, inspection_id)
                 );
                 CREATE INDEX results_by_time ON results (received_at);
                 CREATE INDEX results_by_reporter ON results (reporter, received_at);
                 PRAGMA user_version = 2;
                 COMMIT;",
            )?;
            Ok(())
        }
        // Version 1 did not record who reported: its rows keep an empty
        // reporter, which `export --reporter` never matches.
        1 => {
            conn.execute_batch(
                "BEGIN;
                 ALTER TABLE results ADD COLUMN reporter TEXT NOT NULL DEFAULT '';
                 ALTER TABLE results ADD COLUMN credential TEXT NOT NULL DEFAULT '';
                 ALTER TABLE results ADD COLUMN reporter_address TEXT NOT NULL DEFAULT '';
                 CREATE INDEX results_by_reporter ON results (reporter, received_at);
                 PRAGMA user_version = 2;
                 COMMIT;",
            )?;
            tracing::info!(path = %path.display(), "store upgraded to schema version 2 (who reported each result)");
            Ok(())
        }
        SCHEMA_VERSION => Ok(()),
        found => Err(StoreError::Schema {
            path: path.display().to_string(),
            found,
        }),
    }
}

fn purge(conn: &Connection, before: DateTime<Utc>) -> Result<(usize, usize), StoreError> {
    let t = before.timestamp();
    let routed = conn.execute("DELETE FROM routed WHERE routed_at < ?1", [t])?;
    let results = conn.execute("DELETE FROM results WHERE received_at < ?1", [t])?;
    if routed + results > 0 {
        tracing::info!(routed, results, "purged rows past the retention");
    }
    Ok((routed, results))
}

/// The writer thread: takes what is queued, commits it in one transaction,
/// then answers.
fn writer(mut conn: Connection, rx: &mpsc::Receiver<Command>, retention: Duration) {
    let mut last_purge = std::time::Instant::now();
    while let Ok(first) = rx.recv() {
        let mut commands = vec![first];
        while commands.len() < GROUP {
            match rx.try_recv() {
                Ok(c) => commands.push(c),
                Err(_) => break,
            }
        }
        let outcome = write_group(&mut conn, &commands);
        let mut results_outcomes = match outcome {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => {
                // A conflicting or forged result is the client's error, answered
                // as such; the store itself is fine.
                if e.is_client_error() {
                    tracing::debug!(error = %e, "a group of writes was refused; retrying one by one");
                } else {
                    tracing::error!(error = %e, "store transaction failed");
                }
                // Retry one by one so that one bad request fails alone.
                commands
                    .iter()
                    .map(|c| {
                        write_group(&mut conn, std::slice::from_ref(c))
                            .map(|mut o| o.pop().unwrap_or_default())
                    })
                    .collect()
            }
        }
        .into_iter();
        for command in commands {
            let outcome = results_outcomes.next().unwrap_or(Err(StoreError::Closed));
            match command {
                Command::Results { reply, .. } => {
                    let _ = reply.send(outcome);
                }
                Command::Routed(_) => {
                    if let Err(e) = outcome {
                        tracing::error!(error = %e, "routed declarations not stored");
                        metrics::counter!("parcel_risk_store_errors_total").increment(1);
                    }
                }
            }
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = std::time::Instant::now();
            if let Err(e) = purge(&conn, Utc::now() - retention) {
                tracing::error!(error = %e, "purge failed");
            }
        }
    }
}

/// Writes commands in one transaction; per command, what each result became.
fn write_group(
    conn: &mut Connection,
    commands: &[Command],
) -> Result<Vec<Vec<Outcome>>, StoreError> {
    let tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(commands.len());
    {
        let mut insert_routed = tx.prepare_cached(
            // The first routing of a declaration id stays: a resend, or
            // another declaration claiming the id, never replaces what was
            // routed (and what results join to).
            "INSERT OR IGNORE INTO routed
             (declaration_id, lodged_at, routed_at, channel, selection_reason, model_version, declaration, assessment)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut insert_result = tx.prepare_cached(
            "INSERT OR IGNORE INTO results
             (declaration_id, inspection_id, received_at, inspected_at, selection_reason, outcome, result,
              reporter, credential, reporter_address)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut routed_selection =
            tx.prepare_cached("SELECT selection_reason FROM routed WHERE declaration_id = ?1")?;
        let mut routed_declaration =
            tx.prepare_cached("SELECT declaration FROM routed WHERE declaration_id = ?1")?;
        let mut existing = tx.prepare_cached(
            "SELECT result FROM results WHERE declaration_id = ?1 AND inspection_id = ?2",
        )?;
        for command in commands {
            match command {
                Command::Routed(records) => {
                    for r in records {
                        let inserted = insert_routed.execute(params![
                            r.declaration_id,
                            r.lodged_at,
                            r.routed_at,
                            r.channel,
                            r.selection_reason,
                            r.model_version,
                            r.declaration,
                            r.assessment,
                        ])?;
                        if inserted == 0 {
                            metrics::counter!("parcel_risk_routed_kept_first_total").increment(1);
                            tracing::debug!(
                                declaration_id = %r.declaration_id,
                                "already routed; the first routing is kept"
                            );
                        }
                    }
                    outcomes.push(Vec::new());
                }
                Command::Results {
                    results,
                    reporter,
                    received_at,
                    ..
                } => {
                    let mut recorded = Vec::with_capacity(results.len());
                    let address = reporter.address.map(|a| a.to_string()).unwrap_or_default();
                    for result in results {
                        if result.selection_reason == SelectionReason::Random {
                            let routed: Option<String> = routed_selection
                                .query_row([&result.declaration_id], |r| r.get(0))
                                .optional()?;
                            if routed.as_deref() != Some(selection_name(SelectionReason::Random)) {
                                return Err(StoreError::NotRandomlySelected {
                                    declaration_id: result.declaration_id.clone(),
                                });
                            }
                        }
                        let bytes = pb::InspectionResult::from(result).encode_to_vec();
                        let inserted = insert_result.execute(params![
                            result.declaration_id,
                            result.inspection_id,
                            received_at.timestamp(),
                            result.inspected_at.map(|t| t.timestamp()),
                            selection_name(result.selection_reason),
                            format!("{:?}", result.outcome),
                            bytes,
                            reporter.name,
                            reporter.credential,
                            address,
                        ])?;
                        if inserted == 1 {
                            let declaration: Option<Vec<u8>> = routed_declaration
                                .query_row([&result.declaration_id], |r| r.get(0))
                                .optional()?;
                            recorded.push((Recorded::New, declaration));
                            continue;
                        }
                        let before: Vec<u8> = existing.query_row(
                            params![result.declaration_id, result.inspection_id],
                            |r| r.get(0),
                        )?;
                        if before != bytes {
                            return Err(StoreError::Conflict {
                                declaration_id: result.declaration_id.clone(),
                                inspection_id: result.inspection_id.clone(),
                            });
                        }
                        recorded.push((Recorded::Duplicate, None));
                    }
                    outcomes.push(recorded);
                }
            }
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

/// What an export found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportCounts {
    pub exported: u64,
    /// Results whose declaration this service never routed (no declaration to join).
    pub without_declaration: u64,
    /// Results left out because their reporter is not one of those asked for.
    pub other_reporters: u64,
}

/// Reads results received at or after `since`, joined to the declarations as
/// they were routed, in the order they were received; with `reporters`,
/// only results those callers reported (labels from trusted sources). Opens
/// its own read-only connection: it does not disturb a running server.
pub fn export(
    dir: &Path,
    since: DateTime<Utc>,
    reporters: &[String],
    mut each: impl FnMut(pb::TrainingExample) -> Result<(), crate::io::IoError>,
) -> Result<ExportCounts, ExportError> {
    let path = dir.join(DB_FILE);
    if !path.exists() {
        return Err(ExportError::Store(StoreError::Dir {
            path: path.display().to_string(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }));
    }
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(StoreError::from)?;
    conn.busy_timeout(StdDuration::from_secs(10))
        .map_err(StoreError::from)?;
    let mut query = conn
        .prepare(
            "SELECT r.result, d.declaration, r.reporter
             FROM results r LEFT JOIN routed d ON d.declaration_id = r.declaration_id
             WHERE r.received_at >= ?1
             ORDER BY r.received_at, r.rowid",
        )
        .map_err(StoreError::from)?;
    let mut rows = query.query([since.timestamp()]).map_err(StoreError::from)?;
    let mut counts = ExportCounts::default();
    while let Some(row) = rows.next().map_err(StoreError::from)? {
        let result: Vec<u8> = row.get(0).map_err(StoreError::from)?;
        let declaration: Option<Vec<u8>> = row.get(1).map_err(StoreError::from)?;
        let reporter: String = row.get(2).map_err(StoreError::from)?;
        if !reporters.is_empty() && !reporters.contains(&reporter) {
            counts.other_reporters += 1;
            continue;
        }
        let Some(declaration) = declaration else {
            counts.without_declaration += 1;
            continue;
        };
        let example = pb::TrainingExample {
            declaration: Some(
                pb::Declaration::decode(declaration.as_slice()).map_err(StoreError::from)?,
            ),
            result: Some(
                pb::InspectionResult::decode(result.as_slice()).map_err(StoreError::from)?,
            ),
            truth: None,
        };
        each(example)?;
        counts.exported += 1;
    }
    Ok(counts)
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Write(#[from] crate::io::IoError),
}

/// One reported result in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub received_at: DateTime<Utc>,
    /// Who reported it (empty for results stored before schema version 2).
    pub reporter: String,
    /// How the reporter proved who it is: token, certificate, none.
    pub credential: String,
    /// From where (IP:port), when known.
    pub address: String,
    pub declaration_id: String,
    pub inspection_id: String,
    pub selection_reason: String,
    pub outcome: String,
}

/// Which part of the audit trail to read; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub since: Option<DateTime<Utc>>,
    pub reporter: Option<String>,
    pub declaration_id: Option<String>,
    /// Most entries (0: all).
    pub limit: usize,
}

/// Reads who reported what, when and from where, oldest first. Read-only:
/// it does not disturb a running server.
pub fn audit(
    dir: &Path,
    query: &AuditQuery,
    mut each: impl FnMut(AuditEntry),
) -> Result<u64, StoreError> {
    let conn = Connection::open_with_flags(
        dir.join(DB_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    conn.busy_timeout(StdDuration::from_secs(10))?;
    let mut statement = conn.prepare(
        "SELECT received_at, reporter, credential, reporter_address, declaration_id,
                inspection_id, selection_reason, outcome
         FROM results
         WHERE received_at >= ?1
           AND (?2 IS NULL OR reporter = ?2)
           AND (?3 IS NULL OR declaration_id = ?3)
         ORDER BY received_at, rowid
         LIMIT ?4",
    )?;
    let limit = if query.limit == 0 {
        -1
    } else {
        i64::try_from(query.limit).unwrap_or(i64::MAX)
    };
    let mut rows = statement.query(params![
        query.since.map_or(i64::MIN, |t| t.timestamp()),
        query.reporter,
        query.declaration_id,
        limit,
    ])?;
    let mut n = 0;
    while let Some(row) = rows.next()? {
        let at: i64 = row.get(0)?;
        each(AuditEntry {
            received_at: DateTime::from_timestamp(at, 0).unwrap_or_default(),
            reporter: row.get(1)?,
            credential: row.get(2)?,
            address: row.get(3)?,
            declaration_id: row.get(4)?,
            inspection_id: row.get(5)?,
            selection_reason: row.get(6)?,
            outcome: row.get(7)?,
        });
        n += 1;
    }
    Ok(n)
}

/// Counts rows, for tests and operators: (routed, results).
pub fn counts(dir: &Path) -> Result<(u64, u64), StoreError> {
    let conn = Connection::open_with_flags(
        dir.join(DB_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let count = |table: &str| -> Result<u64, StoreError> {
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    };
    Ok((count("routed")?, count("results")?))
}

/// The stored result of one inspection, if any.
pub fn stored_result(
    dir: &Path,
    declaration_id: &str,
    inspection_id: &str,
) -> Result<Option<pb::InspectionResult>, StoreError> {
    let conn = Connection::open_with_flags(
        dir.join(DB_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let bytes: Option<Vec<u8>> = conn
        .query_row(
            "SELECT result FROM results WHERE declaration_id = ?1 AND inspection_id = ?2",
            params![declaration_id, inspection_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(bytes
        .map(|b| pb::InspectionResult::decode(b.as_slice()))
        .transpose()?)
}

fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Green => "GREEN",
        Channel::Blue => "BLUE",
        Channel::Yellow => "YELLOW",
        Channel::Red => "RED",
    }
}

fn selection_name(s: SelectionReason) -> &'static str {
    match s {
        SelectionReason::NotSelected => "NOT_SELECTED",
        SelectionReason::RiskScore => "RISK_SCORE",
        SelectionReason::Rule => "RULE",
        SelectionReason::Random => "RANDOM",
        SelectionReason::Manual => "MANUAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InspectionOutcome;

    fn result(declaration: &str, inspection: &str, notes: &str) -> InspectionResult {
        InspectionResult {
            declaration_id: declaration.into(),
            inspection_id: inspection.into(),
            selection_reason: SelectionReason::RiskScore,
            control_type: Some(Channel::Red),
            outcome: InspectionOutcome::Compliant,
            fraud_kinds: Vec::new(),
            findings: Vec::new(),
            inspected_at: None,
            officer_notes: notes.into(),
        }
    }

    fn reporter() -> Reporter {
        Reporter {
            name: "inspect-app".into(),
            credential: "token",
            address: Some("10.1.2.3:5555".parse().unwrap()),
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[cfg(unix)]
    #[test]
    fn a_new_store_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("results");
        let store = Store::open(&dir, Duration::days(30)).unwrap();
        let rt = runtime();
        rt.block_on(store.record_results(vec![result("D1", "I1", "")], reporter()))
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(
                mode(&path) & 0o077,
                0,
                "{} is {:o}",
                path.display(),
                mode(&path)
            );
        }
    }

    #[test]
    fn the_first_routing_of_a_declaration_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Duration::days(30)).unwrap();
        let routed = |channel: &'static str, model: &str| RoutedRecord {
            declaration_id: "D1".into(),
            lodged_at: 1,
            routed_at: 2,
            channel,
            selection_reason: "RISK",
            model_version: model.into(),
            declaration: vec![1],
            assessment: vec![2],
        };
        store.record_routed(vec![routed("red", "m1")]).unwrap();
        store
            .record_routed(vec![routed("green", "forged")])
            .unwrap();
        // Results go through the same writer: once one is answered, the
        // routed rows before it are committed.
        runtime()
            .block_on(store.record_results(vec![result("D1", "I1", "")], reporter()))
            .unwrap();
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        let (channel, model): (String, String) = conn
            .query_row(
                "SELECT channel, model_version FROM routed WHERE declaration_id = 'D1'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((channel.as_str(), model.as_str()), ("red", "m1"));
    }

    #[test]
    fn results_are_idempotent_and_a_changed_retry_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Duration::days(30)).unwrap();
        let rt = runtime();
        let first = rt
            .block_on(store.record_results(
                vec![result("D1", "I1", ""), result("D2", "I1", "")],
                reporter(),
            ))
            .unwrap();
        assert_eq!(first, vec![Recorded::New, Recorded::New]);
        let again = rt
            .block_on(store.record_results(
                vec![result("D1", "I1", ""), result("D3", "I1", "")],
                reporter(),
            ))
            .unwrap();
        assert_eq!(again, vec![Recorded::Duplicate, Recorded::New]);
        let changed =
            rt.block_on(store.record_results(vec![result("D1", "I1", "other")], reporter()));
        assert!(
            matches!(changed, Err(StoreError::Conflict { .. })),
            "{changed:?}"
        );
        // A second inspection of the same declaration is a new result.
        let second = rt
            .block_on(store.record_results(vec![result("D1", "I2", "")], reporter()))
            .unwrap();
        assert_eq!(second, vec![Recorded::New]);
        assert_eq!(counts(dir.path()).unwrap(), (0, 4));
    }

    #[test]
    fn a_reopened_store_has_what_was_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        {
            let store = Store::open(dir.path(), Duration::days(30)).unwrap();
            rt.block_on(store.record_results(vec![result("D1", "I1", "kept")], reporter()))
                .unwrap();
        }
        let store = Store::open(dir.path(), Duration::days(30)).unwrap();
        let stored = stored_result(dir.path(), "D1", "I1").unwrap().unwrap();
        assert_eq!(stored.officer_notes, "kept");
        let again = rt
            .block_on(store.record_results(vec![result("D1", "I1", "kept")], reporter()))
            .unwrap();
        assert_eq!(again, vec![Recorded::Duplicate]);
    }

    #[test]
    fn other_schema_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), Duration::days(30)).unwrap());
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", 7).unwrap();
        drop(conn);
        let err = Store::open(dir.path(), Duration::days(30)).unwrap_err();
        assert!(err.to_string().contains("schema version 7"), "{err}");
    }

    #[test]
    fn rows_past_the_retention_are_purged() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_connection(&dir.path().join(DB_FILE)).unwrap();
        migrate(&conn, dir.path()).unwrap();
        let old = (Utc::now() - Duration::days(40)).timestamp();
        let new = Utc::now().timestamp();
        for (id, at) in [("old", old), ("new", new)] {
            conn.execute(
                "INSERT INTO results (declaration_id, inspection_id, received_at, selection_reason, outcome, result)
                 VALUES (?1, 'I', ?2, 'RANDOM', 'Compliant', x'')",
                params![id, at],
            )
            .unwrap();
        }
        assert_eq!(
            purge(&conn, Utc::now() - Duration::days(30)).unwrap(),
            (0, 1)
        );
        assert_eq!(counts(dir.path()).unwrap(), (0, 1));
    }

    fn routed_as(id: &str, selection_reason: &'static str) -> RoutedRecord {
        RoutedRecord {
            declaration_id: id.into(),
            lodged_at: 1,
            routed_at: 2,
            channel: "RED",
            selection_reason,
            model_version: "m".into(),
            declaration: vec![],
            assessment: vec![],
        }
    }

    #[test]
    fn only_a_random_pick_of_this_service_may_be_reported_as_random() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Duration::days(30)).unwrap();
        store
            .record_routed(vec![
                routed_as("PICKED", "RANDOM"),
                routed_as("RISKY", "RISK_SCORE"),
            ])
            .unwrap();
        let rt = runtime();
        let random = |id: &str| InspectionResult {
            selection_reason: SelectionReason::Random,
            ..result(id, "I1", "")
        };
        assert_eq!(
            rt.block_on(store.record_results(vec![random("PICKED")], reporter()))
                .unwrap(),
            vec![Recorded::New]
        );
        for forged in ["RISKY", "NEVER-ROUTED"] {
            let refused = rt.block_on(store.record_results(vec![random(forged)], reporter()));
            assert!(
                matches!(&refused, Err(StoreError::NotRandomlySelected { declaration_id }) if declaration_id == forged),
                "{refused:?}"
            );
        }
        // A bulk upload with one forged claim stores nothing.
        let bulk = rt.block_on(
            store.record_results(vec![result("OK", "I1", ""), random("RISKY")], reporter()),
        );
        assert!(bulk.is_err());
        assert_eq!(counts(dir.path()).unwrap(), (2, 1));
    }

    #[test]
    fn who_reported_is_kept_and_export_can_keep_named_reporters_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Duration::days(30)).unwrap();
        store
            .record_routed(vec![
                routed_as("D1", "RISK_SCORE"),
                routed_as("D2", "RISK_SCORE"),
            ])
            .unwrap();
        let rt = runtime();
        rt.block_on(store.record_results(vec![result("D1", "I1", "")], reporter()))
            .unwrap();
        let other = Reporter {
            name: "unknown-script".into(),
            credential: "none",
            address: None,
        };
        rt.block_on(store.record_results(vec![result("D2", "I1", "")], other))
            .unwrap();
        let mut trail = Vec::new();
        let query = AuditQuery::default();
        audit(dir.path(), &query, |e| trail.push(e)).unwrap();
        assert_eq!(trail.len(), 2);
        assert_eq!(trail[0].reporter, "inspect-app");
        assert_eq!(trail[0].credential, "token");
        assert_eq!(trail[0].address, "10.1.2.3:5555");
        assert_eq!(trail[1].reporter, "unknown-script");
        let only = AuditQuery {
            reporter: Some("unknown-script".into()),
            ..AuditQuery::default()
        };
        let mut filtered = Vec::new();
        audit(dir.path(), &only, |e| filtered.push(e)).unwrap();
        assert_eq!(filtered.len(), 1);
        assert_eq!(filtered[0].declaration_id, "D2");
        let since = DateTime::<Utc>::UNIX_EPOCH;
        let all = export(dir.path(), since, &[], |_| Ok(())).unwrap();
        assert_eq!(all.exported, 2);
        let trusted = export(dir.path(), since, &["inspect-app".into()], |_| Ok(())).unwrap();
        assert_eq!(trusted.exported, 1);
        assert_eq!(trusted.other_reporters, 1);
    }

    #[test]
    fn a_version_1_store_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE routed (declaration_id TEXT PRIMARY KEY, lodged_at INTEGER NOT NULL,
                     routed_at INTEGER NOT NULL, channel TEXT NOT NULL, selection_reason TEXT NOT NULL,
                     model_version TEXT NOT NULL, declaration BLOB NOT NULL, assessment BLOB NOT NULL);
                 CREATE TABLE results (declaration_id TEXT NOT NULL, inspection_id TEXT NOT NULL,
                     received_at INTEGER NOT NULL, inspected_at INTEGER, selection_reason TEXT NOT NULL,
                     outcome TEXT NOT NULL, result BLOB NOT NULL, PRIMARY KEY (declaration_id, inspection_id));
                 INSERT INTO results VALUES ('OLD', 'I', 1, NULL, 'RISK_SCORE', 'Compliant', x'');
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let store = Store::open(dir.path(), Duration::days(100_000)).unwrap();
        runtime()
            .block_on(store.record_results(vec![result("NEW", "I1", "")], reporter()))
            .unwrap();
        let mut trail = Vec::new();
        audit(dir.path(), &AuditQuery::default(), |e| trail.push(e)).unwrap();
        let who: Vec<(&str, &str)> = trail
            .iter()
            .map(|e| (e.declaration_id.as_str(), e.reporter.as_str()))
            .collect();
        assert_eq!(who, [("OLD", ""), ("NEW", "inspect-app")]);
    }
}
