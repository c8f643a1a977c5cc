//! Domain → wire for the service's errors. Assessments convert in
//! [`crate::wire::assessment`], shared with batch rescoring.

use crate::domain::{FieldViolation, ValidationError};
use crate::pb;

/// The per-declaration error of a stream response.
/// Listed violations and their count are bounded ([`crate::domain::validation::MAX_VIOLATIONS`]), so an
/// answer stays a few KiB however bad the declaration.
pub fn validation_to_pb(err: &ValidationError) -> pb::DeclarationError {
    let mut field_violations: Vec<pb::FieldViolation> =
        err.violations.iter().map(violation).collect();
    if err.omitted > 0 {
        field_violations.push(pb::FieldViolation {
            field: String::new(),
            description: format!("and {} more violations", err.omitted),
        });
    }
    pb::DeclarationError {
        code: super::status::code_name(tonic::Code::InvalidArgument).to_owned(),
        message: err.to_string(),
        field_violations,
    }
}

fn violation(v: &FieldViolation) -> pb::FieldViolation {
    pb::FieldViolation {
        field: v.field.clone(),
        description: v.description.clone(),
    }
}
