"""Python client of the parcel-risk service.

    from parcel_risk_client import connect
    from parcelrisk.v1 import risk_service_pb2

    with connect("risk.example:50051", ca="ca.pem", token="...") as client:
        info = client.stub.GetModelInfo(risk_service_pb2.GetModelInfoRequest())

The generated messages and stubs live in `parcelrisk.v1` (`declaration_pb2`,
`assessment_pb2`, `inspection_pb2`, `risk_service_pb2`, `risk_service_pb2_grpc`),
built from the service's own proto files when this package is installed.
"""

from __future__ import annotations

import os
from typing import Optional

import grpc

from parcelrisk.v1 import risk_service_pb2_grpc

__all__ = ["Client", "connect", "channel"]


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

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(target: str = "127.0.0.1:50051", **options) -> Client:
    """A client of the service at `target` (HOST:PORT); `options` as for `channel`."""
    return Client(channel(target, **options))
