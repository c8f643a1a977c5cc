"""Calls parcel-risk from Python (grpcio): one unary call, a stream, and an inspection result.

    pip install ./clients/python        # the client package: messages, stubs, connect()
    python examples/python_client.py [127.0.0.1:50051]

Against a server with TLS, mutual TLS and tokens (docs/security.md):

    python examples/python_client.py HOST:PORT --ca ca.pem [--cert client.pem --key client.key] [--token TOKEN]

The token can come from the environment instead (PARCEL_RISK_TOKEN), out of shells' history.
"""

import argparse
import sys

from google.protobuf import timestamp_pb2

from parcel_risk_client import connect
from parcelrisk.v1 import assessment_pb2, declaration_pb2, inspection_pb2, risk_service_pb2


def declaration(declaration_id: str, description: str, hs6: str, value_cents: int, grams: int):
    lodged = timestamp_pb2.Timestamp()
    lodged.FromJsonString("2026-09-01T10:00:00Z")
    return declaration_pb2.Declaration(
        declaration_id=declaration_id,
        lrn="LRN-" + declaration_id,
        dataset=declaration_pb2.DATASET_TYPE_H7,
        lodged_at=lodged,
        exporter=declaration_pb2.Party(
            name="Shenzhen Example Trading Co., Ltd",
            address=declaration_pb2.Address(city="Shenzhen", country="CN"),
        ),
        importer=declaration_pb2.Party(
            name="Marie Peeters",
            address=declaration_pb2.Address(street_and_number="Rue Haute 1", postcode="4000", city="Liege", country="BE"),
        ),
        declarant=declaration_pb2.Party(name="Meuse Express Hub SA"),
        ioss_number="IM1234567890",
        transport_documents=[
            declaration_pb2.TransportDocument(kind=declaration_pb2.TRANSPORT_DOCUMENT_KIND_HOUSE_AWB, reference="H1")
        ],
        items=[
            declaration_pb2.GoodsItem(
                goods_item_number=1,
                description=description,
                hs6=hs6,
                intrinsic_value=declaration_pb2.Money(currency="EUR", amount_minor=value_cents),
                gross_mass_g=grams,
                quantity=1,
                additional_procedure_codes=["C07", "F48"],
            )
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", default="127.0.0.1:50051", help="HOST:PORT of the service")
    parser.add_argument("--ca", help="CA certificate (PEM) of the server's certificate: use TLS")
    parser.add_argument("--cert", help="client certificate (PEM), for mutual TLS")
    parser.add_argument("--key", help="the client certificate's private key (PEM)")
    parser.add_argument("--token", help="bearer token (or PARCEL_RISK_TOKEN)")
    parser.add_argument("--server-name", help="the name the server's certificate carries, if not the host")
    args = parser.parse_args()
    try:
        client = connect(
            args.target, ca=args.ca, cert=args.cert, key=args.key, token=args.token, server_name=args.server_name
        )
    except ValueError as e:
        sys.exit(str(e))
    with client:
        stub = client.stub
        info = stub.GetModelInfo(risk_service_pb2.GetModelInfoRequest())
        print("model", info.model_version, "with", len(info.feature_names), "features")

        # A "lighter" that weighs like a phone.
        reply = stub.ScoreDeclaration(
            risk_service_pb2.ScoreDeclarationRequest(declaration=declaration("PY-1", "Pocket lighter", "961310", 300, 420))
        )
        a = reply.assessment
        print(f"PY-1 overall {a.overall_score:.3f} undervaluation {a.undervaluation_score:.3f} "
              f"misdescription {a.misdescription_score:.3f} revenue at risk EUR {a.revenue_at_risk_eur_cents / 100:.2f}")
        for reason in a.reasons[:3]:
            evidence = ", ".join(f"{e.key}={e.value}" for e in reason.evidence)
            print(f"  {reason.code}: {reason.message} [{evidence}]")

        # The stream: one response per request, in order; a bad one gets an error.
        requests = [
            risk_service_pb2.ScoreDeclarationsRequest(declaration=declaration("PY-2", "Cotton T-shirt", "610910", 799, 180)),
            risk_service_pb2.ScoreDeclarationsRequest(declaration=declaration("PY-3", "Gift", "12345", 500, 300)),
            risk_service_pb2.ScoreDeclarationsRequest(declaration=declaration("PY-4", "Phone case", "392690", 199, 40)),
        ]
        for response in stub.ScoreDeclarations(iter(requests)):
            if response.HasField("assessment"):
                print(response.declaration_id, "overall", round(response.assessment.overall_score, 3))
            else:
                violations = "; ".join(f"{v.field}: {v.description}" for v in response.error.field_violations)
                print(response.declaration_id, response.error.code, violations)

        # What the officer found: idempotent per (declaration, inspection),
        # acknowledged once it is on disk. A retry answers newly_recorded=False.
        found = inspection_pb2.InspectionResult(
            declaration_id="PY-1",
            inspection_id="INSP-PY-1",
            selection_reason=assessment_pb2.SELECTION_REASON_RISK_SCORE,
            control_type=assessment_pb2.CHANNEL_RED,
            outcome=inspection_pb2.INSPECTION_OUTCOME_NON_COMPLIANT,
            fraud_kinds=[inspection_pb2.FRAUD_KIND_MISDESCRIPTION],
            findings=[inspection_pb2.ItemFinding(
                goods_item_number=1, misdescribed=True,
                corrected_description="Smartphone", corrected_hs6="851713",
            )],
            officer_notes="a phone, not a lighter",
        )
        for attempt in (1, 2):
            ack = stub.ReportInspectionResult(risk_service_pb2.ReportInspectionResultRequest(result=found))
            print(f"result report {attempt}: newly recorded {ack.newly_recorded}")


if __name__ == "__main__":
    main()
