"""Scores a CSV file of declarations and reports one inspection result, with the client package's helpers.

    python examples/python_rows.py declarations.csv [127.0.0.1:50051]

The CSV has the columns of the service's data files (`parcel-risk generate --declarations-only --out d.csv`);
a pandas DataFrame works the same way: declarations_from_rows(df.to_dict("records")).
"""
import csv
import sys

from parcel_risk_client import connect, declarations_from_rows

path, target = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1:50051")
with connect(target) as client, open(path, newline="") as f:
    answers = list(client.score_stream(declarations_from_rows(csv.DictReader(f))))
    scored = [a for a in answers if a.HasField("assessment")]
    print(f"{len(answers)} declarations, {len(scored)} scored, {len(answers) - len(scored)} refused")
    top = max(scored, key=lambda a: a.assessment.overall_score)
    ack = client.report({"declarationId": top.declaration_id, "inspectionId": "INSP-" + top.declaration_id,
                         "selectionReason": "SELECTION_REASON_RISK_SCORE", "controlType": "CHANNEL_RED",
                         "outcome": "INSPECTION_OUTCOME_COMPLIANT"})
    print(f"riskiest {top.declaration_id} {top.assessment.overall_score:.3f}; result newly recorded {ack.newly_recorded}")
