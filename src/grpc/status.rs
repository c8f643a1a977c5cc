//! The one mapping from service errors to gRPC statuses.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::ValidationError;

/// What can go wrong in an RPC.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid declaration: {0}")]
    Invalid(#[from] ValidationError),
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{0} is not implemented yet")]
    Unimplemented(&'static str),
    #[error("scoring task failed")]
    TaskFailed(#[from] tokio::task::JoinError),
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
            ServiceError::Invalid(_) | ServiceError::Missing(_) => Code::InvalidArgument,
            ServiceError::Unimplemented(_) => Code::Unimplemented,
            ServiceError::TaskFailed(_) => Code::Internal,
        }
    }
}

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Status {
        match &err {
            ServiceError::Invalid(v) => {
                let mut details = ErrorDetails::new();
                for violation in &v.violations {
                    details.add_bad_request_violation(
                        violation.field.clone(),
                        violation.description.clone(),
                    );
                }
                Status::with_error_details(Code::InvalidArgument, err.to_string(), details)
            }
            ServiceError::Missing(field) => Status::with_error_details(
                Code::InvalidArgument,
                err.to_string(),
                ErrorDetails::with_bad_request_violation(*field, "is required"),
            ),
            ServiceError::Unimplemented(_) => Status::unimplemented(err.to_string()),
            ServiceError::TaskFailed(cause) => {
                // Details stay in the log, not in the answer.
                tracing::error!(%cause, "scoring task failed");
                Status::internal("internal error")
            }
        }
    }
}
