//! A no-op `RiskService` for benchmarks: `ScoreDeclarations` answers each
//! request with a canned assessment of realistic size and the request's id,
//! without validating or scoring. It measures the transport ceiling with the
//! very messages the real service handles. Never served by `serve`.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::pb;

/// The echo service.
#[derive(Clone)]
pub struct EchoService {
    canned: pb::RiskAssessment,
}

impl EchoService {
    pub fn new(canned: pb::RiskAssessment) -> Self {
        Self { canned }
    }
}

type EchoStream =
    Pin<Box<dyn Stream<Item = Result<pb::ScoreDeclarationsResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::risk_service_server::RiskService for EchoService {
    type ScoreDeclarationsStream = EchoStream;

    async fn score_declarations(
        &self,
        request: Request<Streaming<pb::ScoreDeclarationsRequest>>,
    ) -> Result<Response<Self::ScoreDeclarationsStream>, Status> {
        let canned = self.canned.clone();
        let stream = request.into_inner().map(move |r| {
            r.map(|req| {
                let id = req
                    .declaration
                    .map(|d| d.declaration_id)
                    .unwrap_or_default();
                let mut assessment = canned.clone();
                assessment.declaration_id.clone_from(&id);
                pb::ScoreDeclarationsResponse {
                    declaration_id: id,
                    outcome: Some(pb::score_declarations_response::Outcome::Assessment(
                        assessment,
                    )),
                }
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn score_declaration(
        &self,
        request: Request<pb::ScoreDeclarationRequest>,
    ) -> Result<Response<pb::ScoreDeclarationResponse>, Status> {
        let id = request
            .into_inner()
            .declaration
            .map(|d| d.declaration_id)
            .unwrap_or_default();
        let mut assessment = self.canned.clone();
        assessment.declaration_id = id;
        Ok(Response::new(pb::ScoreDeclarationResponse {
            assessment: Some(assessment),
        }))
    }

    async fn plan_inspections(
        &self,
        _: Request<pb::PlanInspectionsRequest>,
    ) -> Result<Response<pb::PlanInspectionsResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }

    async fn report_inspection_result(
        &self,
        _: Request<pb::ReportInspectionResultRequest>,
    ) -> Result<Response<pb::ReportInspectionResultResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }

    async fn report_inspection_results(
        &self,
        _: Request<Streaming<pb::ReportInspectionResultsRequest>>,
    ) -> Result<Response<pb::ReportInspectionResultsResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }

    async fn get_model_info(
        &self,
        _: Request<pb::GetModelInfoRequest>,
    ) -> Result<Response<pb::GetModelInfoResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }
}
