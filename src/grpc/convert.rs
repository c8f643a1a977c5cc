//! Domain → wire for the service's errors. Assessments convert in
//! [`crate::wire::assessment`], shared with batch rescoring.

use crate::domain::{FieldViolation, ValidationError};
use crate::pb;

/// The per-declaration error of a stream response.
pub fn validation_to_pb(err: &ValidationError) -> pb::DeclarationError {
    pb::DeclarationError {
        code: super::status::code_name(tonic::Code::InvalidArgument).to_owned(),
        message: err.to_string(),
        field_violations: err.violations.iter().map(violation).collect(),
    }
}

fn violation(v: &FieldViolation) -> pb::FieldViolation {
    pb::FieldViolation {
        field: v.field.clone(),
        description: v.description.clone(),
    }
}
