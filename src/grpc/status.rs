//! The one mapping from service errors to gRPC statuses.

use tonic::{Code, Status};

use crate::store::StoreError;
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::ValidationError;

/// What can go wrong in an RPC.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid declaration: {0}")]
    Invalid(#[from] ValidationError),
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("scoring task failed")]
    TaskFailed(#[from] tokio::task::JoinError),
    #[error("invalid inspection result: {0}")]
    InvalidResult(ValidationError),
    #[error("{0} is required")]
    MissingAt(String),
    #[error("at most {0} results per upload; split it")]
    TooManyResults(usize),
    #[error("at most {0} bytes of results per upload; split it")]
    UploadTooLarge(usize),
    #[error("a declaration of {bytes} bytes exceeds the limit of {limit} bytes")]
    TooLarge { bytes: usize, limit: usize },
    #[error("this server keeps no store (start it with --data-dir)")]
    NoStore,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Quota(#[from] crate::security::quota::QuotaExceeded),
    #[error(transparent)]
    Memory(#[from] super::budget::BudgetError),
}

/// Most bytes of field violations in a status's details. With the status
/// message (three violations at most) the trailers stay well under the
/// 16 KiB that grpc-core clients accept by default, details being base64.
pub const DETAILS_BUDGET: usize = 4 * 1024;

/// The violations of `v` as `google.rpc.BadRequest` details, as many as fit
/// in [`DETAILS_BUDGET`], then one entry saying how many more there were.
pub fn bad_request(v: &ValidationError) -> ErrorDetails {
    let mut details = ErrorDetails::new();
    let mut used = 0;
    let mut listed = 0;
    for violation in &v.violations {
        used += violation.field.len() + violation.description.len() + 8;
        if used > DETAILS_BUDGET {
            break;
        }
        details.add_bad_request_violation(violation.field.clone(), violation.description.clone());
        listed += 1;
    }
    let more = v.total() - listed;
    if more > 0 {
        details.add_bad_request_violation("", format!("and {more} more violations"));
    }
    details
}

/// The status a client's broken request stream ends with. tonic reports a
/// message over the size limit as OUT_OF_RANGE and bytes that do not
/// decode as INTERNAL; gRPC says RESOURCE_EXHAUSTED and INVALID_ARGUMENT,
/// and INTERNAL would blame the server for the client's bytes.
pub fn inbound_error(status: Status) -> Status {
    match status.code() {
        Code::OutOfRange => Status::resource_exhausted(status.message().to_owned()),
        Code::Internal => Status::invalid_argument(status.message().to_owned()),
        Code::Ok
        | Code::Cancelled
        | Code::Unknown
        | Code::InvalidArgument
        | Code::DeadlineExceeded
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::ResourceExhausted
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::Unimplemented
        | Code::Unavailable
        | Code::DataLoss
        | Code::Unauthenticated => status,
    }
}

/// The status code name carried in a stream's per-declaration error.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl ServiceError {
    pub fn code(&self) -> Code {
        match self {
            ServiceError::Invalid(_)
            | ServiceError::Missing(_)
            | ServiceError::InvalidResult(_)
            | ServiceError::MissingAt(_) => Code::InvalidArgument,
            ServiceError::TooManyResults(_)
            | ServiceError::UploadTooLarge(_)
            | ServiceError::TooLarge { .. }
            | ServiceError::Quota(_)
            | ServiceError::Memory(_) => Code::ResourceExhausted,
            ServiceError::TaskFailed(_) => Code::Internal,
            ServiceError::NoStore => Code::FailedPrecondition,
            ServiceError::Store(e) => match e {
                StoreError::Conflict { .. } => Code::AlreadyExists,
                StoreError::NotRandomlySelected { .. } => Code::FailedPrecondition,
                StoreError::Closed => Code::Unavailable,
                StoreError::Sqlite(_)
                | StoreError::Dir { .. }
                | StoreError::Schema { .. }
                | StoreError::Corrupt(_) => Code::Internal,
            },
        }
    }
}

impl ServiceError {
    /// What a refused inspection-result report counts as in
    /// `parcel_risk_results_total{outcome}`; None for other errors.
    fn refused_report(&self) -> Option<&'static str> {
        match self {
            ServiceError::InvalidResult(_)
            | ServiceError::MissingAt(_)
            | ServiceError::TooManyResults(_)
            | ServiceError::UploadTooLarge(_)
            | ServiceError::Missing("result") => Some("invalid"),
            ServiceError::Store(StoreError::Conflict { .. }) => Some("conflict"),
            ServiceError::Quota(_)
            | ServiceError::Store(StoreError::NotRandomlySelected { .. }) => Some("refused"),
            ServiceError::Invalid(_)
            | ServiceError::Missing(_)
            | ServiceError::TaskFailed(_)
            | ServiceError::TooLarge { .. }
            | ServiceError::NoStore
            | ServiceError::Memory(_)
            | ServiceError::Store(_) => None,
        }
    }
}

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Status {
        if let Some(outcome) = err.refused_report() {
            metrics::counter!("parcel_risk_results_total", "outcome" => outcome).increment(1);
        }
        match &err {
            ServiceError::Invalid(v) | ServiceError::InvalidResult(v) => {
                Status::with_error_details(Code::InvalidArgument, err.to_string(), bad_request(v))
            }
            ServiceError::Missing(field) => Status::with_error_details(
                Code::InvalidArgument,
                err.to_string(),
                ErrorDetails::with_bad_request_violation(*field, "is required"),
            ),
            ServiceError::MissingAt(field) => Status::with_error_details(
                Code::InvalidArgument,
                err.to_string(),
                ErrorDetails::with_bad_request_violation(field.clone(), "is required"),
            ),
            ServiceError::TooManyResults(_)
            | ServiceError::UploadTooLarge(_)
            | ServiceError::NoStore
            | ServiceError::TooLarge { .. } => Status::new(err.code(), err.to_string()),
            ServiceError::Memory(_) => {
                // Memory comes back as streams and uploads end: soon.
                let mut details = ErrorDetails::new();
                details.set_retry_info(Some(std::time::Duration::from_secs(1)));
                Status::with_error_details(err.code(), err.to_string(), details)
            }
            ServiceError::Quota(exceeded) => {
                metrics::counter!("parcel_risk_report_quota_refused_total").increment(1);
                tracing::warn!(caller = %exceeded.caller, "inspection results refused: quota reached");
                let mut details = ErrorDetails::new();
                details.set_retry_info(Some(exceeded.retry_after));
                Status::with_error_details(err.code(), err.to_string(), details)
            }
            ServiceError::Store(StoreError::NotRandomlySelected { .. }) => {
                metrics::counter!("parcel_risk_results_refused_random_claim_total").increment(1);
                Status::with_error_details(
                    err.code(),
                    err.to_string(),
                    ErrorDetails::with_bad_request_violation(
                        "selection_reason",
                        "SELECTION_REASON_RANDOM is only for declarations this service picked at random",
                    ),
                )
            }
            ServiceError::Store(store) if err.code() == Code::Internal => {
                tracing::error!(error = %store, "store failed");
                Status::internal("the store failed; the result was not recorded")
            }
            ServiceError::Store(_) => Status::new(err.code(), err.to_string()),
            ServiceError::TaskFailed(cause) => {
                // Details stay in the log, not in the answer.
                tracing::error!(%cause, "scoring task failed");
                Status::internal("internal error")
            }
        }
    }
}
