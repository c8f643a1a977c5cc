"""Python client of the parcel-risk service.

    from parcel_risk_client import connect
    from parcelrisk.v1 import risk_service_pb2

    with connect("risk.example:50051", ca="ca.pem", token="...") as client:
        info = client.stub.GetModelInfo(risk_service_pb2.GetModelInfoRequest())
        for answer in client.score_stream(declarations_from_rows(csv.DictReader(f))):
            ...
        client.report({"declarationId": "P1", "inspectionId": "I1", ...})

Declarations and results can be given as messages or as dicts in the proto3 JSON
mapping (the JSON Lines form of the service's files; camelCase or original field
names); flat rows in the CSV columns (a `csv.DictReader`, or a pandas DataFrame's
`to_dict("records")`) become declarations with `declarations_from_rows`.

The generated messages and stubs live in `parcelrisk.v1` (`declaration_pb2`,
`assessment_pb2`, `inspection_pb2`, `risk_service_pb2`, `risk_service_pb2_grpc`),
built from the service's own proto files when this package is installed.
"""

from __future__ import annotations

import os
import json
import math
from typing import Any, Iterable, Iterator, Mapping, Optional, Union

import grpc
from google.protobuf import json_format

from parcelrisk.v1 import assessment_pb2, declaration_pb2, inspection_pb2, risk_service_pb2, risk_service_pb2_grpc

__all__ = ["Client", "connect", "channel", "declaration", "inspection_result", "declarations_from_rows"]

DeclarationLike = Union[declaration_pb2.Declaration, Mapping[str, Any]]
ResultLike = Union[inspection_pb2.InspectionResult, Mapping[str, Any]]


def declaration(value: DeclarationLike) -> declaration_pb2.Declaration:
    """A Declaration from a message or a dict in the proto3 JSON mapping."""
    if isinstance(value, declaration_pb2.Declaration):
        return value
    return json_format.ParseDict(value, declaration_pb2.Declaration())


def inspection_result(value: ResultLike) -> inspection_pb2.InspectionResult:
    """An InspectionResult from a message or a dict in the proto3 JSON mapping."""
    if isinstance(value, inspection_pb2.InspectionResult):
        return value
    return json_format.ParseDict(value, inspection_pb2.InspectionResult())


# The flat CSV layout (docs/data-formats.md): declaration-level columns repeat on
# every row of a declaration, one row per goods item.
_PARTY_FIELDS = ("name", "id", "street", "postcode", "city", "country", "phone", "email")
_KNOWN = {
    "declaration_id", "lrn", "mrn", "dataset", "additional_declaration_type", "lodged_at", "ucr",
    "ioss_number", "transport_documents", "location_of_goods", "carrier_channel", "flight_number",
    "arrival_at", "transport_cost_currency", "transport_cost_minor", "ens", "attributes",
    "goods_item_number", "description", "hs6", "value_currency", "value_minor", "gross_mass_g",
    "quantity", "procedure_codes", "country_of_origin",
} | {f"{p}_{f}" for p in ("exporter", "importer", "declarant") for f in _PARTY_FIELDS}
# Result and ground-truth columns, which a declaration does not carry.
_NOT_DECLARATION = (
    "inspection_id", "selection_reason", "control_type", "outcome", "fraud_kinds", "inspected_at",
    "officer_notes", "finding", "truth_",
)


def _cell(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""  # an empty CSV cell, or a pandas NaN
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # pandas reads integer columns with gaps as floats
    return str(value).strip()


def _enum(cell: str, prefix: str) -> str:
    return cell if cell.startswith(prefix) else prefix + cell


def _money(row: Mapping[str, Any], prefix: str) -> Optional[dict]:
    currency, minor = _cell(row, f"{prefix}_currency"), _cell(row, f"{prefix}_minor")
    if not currency and not minor:
        return None
    return {"currency": currency, "amountMinor": str(int(minor or 0))}


def _party(row: Mapping[str, Any], prefix: str) -> dict:
    cell = {f: _cell(row, f"{prefix}_{f}") for f in _PARTY_FIELDS}
    party = {"name": cell["name"], "identificationNumber": cell["id"], "phone": cell["phone"], "email": cell["email"]}
    if any(cell[f] for f in ("street", "postcode", "city", "country")):
        party["address"] = {
            "streetAndNumber": cell["street"], "postcode": cell["postcode"], "city": cell["city"],
            "country": cell["country"],
        }
    return party


def _item(row: Mapping[str, Any]) -> dict:
    item = {
        "goodsItemNumber": int(_cell(row, "goods_item_number") or 0),
        "description": _cell(row, "description"),
        "hs6": _cell(row, "hs6"),
        "grossMassG": str(int(_cell(row, "gross_mass_g") or 0)),
        "quantity": int(_cell(row, "quantity") or 0),
        "additionalProcedureCodes": [c.strip() for c in _cell(row, "procedure_codes").split(";") if c.strip()],
        "countryOfOrigin": _cell(row, "country_of_origin"),
    }
    value = _money(row, "value")
    if value:
        item["intrinsicValue"] = value
    return item


def _header(row: Mapping[str, Any]) -> dict:
    d = {
        "declarationId": _cell(row, "declaration_id"), "lrn": _cell(row, "lrn"), "mrn": _cell(row, "mrn"),
        "additionalDeclarationType": _cell(row, "additional_declaration_type"), "ucr": _cell(row, "ucr"),
        "exporter": _party(row, "exporter"), "importer": _party(row, "importer"),
        "declarant": _party(row, "declarant"), "iossNumber": _cell(row, "ioss_number"),
        "locationOfGoods": _cell(row, "location_of_goods"), "flightNumber": _cell(row, "flight_number"),
        "items": [],
    }
    if _cell(row, "dataset"):
        d["dataset"] = _enum(_cell(row, "dataset"), "DATASET_TYPE_")
    if _cell(row, "carrier_channel"):
        d["carrierChannel"] = _enum(_cell(row, "carrier_channel"), "CARRIER_CHANNEL_")
    for column, field in (("lodged_at", "lodgedAt"), ("arrival_at", "arrivalAt")):
        if _cell(row, column):
            d[field] = _cell(row, column)
    documents = []
    for doc in _cell(row, "transport_documents").split(";"):
        if doc.strip():
            kind, _, reference = doc.strip().partition(":")
            documents.append({"kind": _enum(kind, "TRANSPORT_DOCUMENT_KIND_"), "reference": reference})
    d["transportDocuments"] = documents
    costs = _money(row, "transport_cost")
    if costs:
        d["transportAndInsuranceCosts"] = costs
    if _cell(row, "ens"):
        d["ens"] = json.loads(_cell(row, "ens"))
    attributes = json.loads(_cell(row, "attributes")) if _cell(row, "attributes") else {}
    # Other columns are attributes, as the service's own CSV reader takes them.
    for key in row:
        name = str(key).strip().lower()
        if name not in _KNOWN and not name.startswith(_NOT_DECLARATION) and _cell(row, key):
            attributes[name] = _cell(row, key)
    d["attributes"] = attributes
    return d


def declarations_from_rows(rows: Iterable[Mapping[str, Any]]) -> Iterator[declaration_pb2.Declaration]:
    """Declarations from flat rows in the CSV columns of the service's data files (one row
    per goods item; consecutive rows with the same declaration_id are one declaration):
    a `csv.DictReader`, or `DataFrame.to_dict("records")`. Result and truth columns are
    ignored; unknown columns become attributes."""
    current: Optional[dict] = None
    for row in rows:
        header = _header(row)
        if current is None or not header["declarationId"] or header["declarationId"] != current["declarationId"]:
            if current is not None:
                yield declaration(current)
            current = header
        current["items"].append(_item(row))
    if current is not None:
        yield declaration(current)


def _read(path: Optional[str]) -> Optional[bytes]:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def channel(
    target: str,
    *,
    ca: Optional[str] = None,
    cert: Optional[str] = None,
    key: Optional[str] = None,
    token: Optional[str] = None,
    server_name: Optional[str] = None,
) -> grpc.Channel:
    """A channel to the service: plaintext, or TLS with the server's CA (and a client
    certificate and key for mutual TLS). A bearer token (or PARCEL_RISK_TOKEN) rides on
    every call; gRPC sends call credentials over TLS only, so a token needs `ca`."""
    token = token or os.environ.get("PARCEL_RISK_TOKEN")
    if ca is None:
        if token:
            raise ValueError("a token needs TLS (ca=...): grpcio sends call credentials over TLS only")
        return grpc.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(ca), private_key=_read(key), certificate_chain=_read(cert)
    )
    if token:
        credentials = grpc.composite_channel_credentials(credentials, grpc.access_token_call_credentials(token))
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(target, credentials, options)


class Client:
    """A channel and the RiskService stub on it; closes the channel on exit."""

    def __init__(self, grpc_channel: grpc.Channel):
        self.channel = grpc_channel
        self.stub = risk_service_pb2_grpc.RiskServiceStub(grpc_channel)

    def close(self) -> None:
        self.channel.close()

    def score(self, value: DeclarationLike) -> assessment_pb2.RiskAssessment:
        """Scores one declaration (message or dict); a refused one raises grpc.RpcError."""
        request = risk_service_pb2.ScoreDeclarationRequest(declaration=declaration(value))
        return self.stub.ScoreDeclaration(request).assessment

    def score_stream(self, values: Iterable[DeclarationLike]) -> Iterator[risk_service_pb2.ScoreDeclarationsResponse]:
        """Streams declarations (messages or dicts, any iterable, read lazily) and yields one
        answer per declaration, in order: `assessment`, or `error` for a refused one."""
        requests = (risk_service_pb2.ScoreDeclarationsRequest(declaration=declaration(v)) for v in values)
        return self.stub.ScoreDeclarations(requests)

    def report(self, value: ResultLike) -> risk_service_pb2.ReportInspectionResultResponse:
        """Reports what an inspection found (message or dict); idempotent per
        (declaration, inspection): a retry answers newly_recorded=False."""
        request = risk_service_pb2.ReportInspectionResultRequest(result=inspection_result(value))
        return self.stub.ReportInspectionResult(request)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(target: str = "127.0.0.1:50051", **options) -> Client:
    """A client of the service at `target` (HOST:PORT); `options` as for `channel`."""
    return Client(channel(target, **options))
