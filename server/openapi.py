"""The OpenAPI 3.1 description of the HTTP API (served at ``/openapi.json``).

Bodies are ``edgerec.sync`` messages: JSON control messages (``edgerec.sync.codec``) and
secure-aggregation messages in their binary wire format (``edgerec.secagg.wire``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_schema"]

_AUTH = [{"bearer": []}]


def _json(ref: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _octets(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}


_ERRORS = {str(code): _json("ErrorBody", text) for code, text in (
    (400, "malformed or unfitting input"), (401, "missing, unknown or expired credentials"),
    (403, "revoked, or not allowed"), (404, "no such resource"), (409, "conflicts with the state"),
    (413, "body too large"))}


def _op(summary: str, responses: dict[str, Any], *, auth: bool = True,
        body: dict[str, Any] | None = None, params: list[str] = ()) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**responses, **_ERRORS}}
    if auth:
        op["security"] = _AUTH
    if body is not None:
        op["requestBody"] = {"required": True, **body}
    if params:
        op["parameters"] = [{"name": p, "in": "path", "required": True,
                             "schema": {"type": "string" if p == "name" else "integer"}}
                            for p in params]
    return op


def _schema(props: dict[str, str], required: list[str] | None = None) -> dict[str, Any]:
    types = {"int": {"type": "integer"}, "float": {"type": "number"}, "str": {"type": "string"},
             "hex": {"type": "string", "pattern": "^([0-9a-f]{2})*$"}, "bool": {"type": "boolean"},
             "int?": {"type": ["integer", "null"]}, "float?": {"type": ["number", "null"]},
             "str[]": {"type": "array", "items": {"type": "string"}}}
    return {"type": "object", "properties": {"type": {"type": "string"}, "version": {"type": "integer"},
                                             **{k: types[v] for k, v in props.items()}},
            "required": required if required is not None else list(props)}


def openapi_schema() -> dict[str, Any]:
    """The whole document."""
    ok = {"200": _json("RoundAnnouncement", "the round this device may join"),
          "204": {"description": "no round for this device now"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "edgerec coordinating server", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "ErrorBody": _schema({"code": "str", "message": "str"}),
                "EnrolRequest": _schema({"token": "str", "identity_key": "hex", "proof": "hex"}),
                "EnrolResponse": _schema({"device_id": "int", "credential": "str",
                                          "server_public_key": "hex", "expires_at": "float?",
                                          "certificate": "hex"}),
                "CertificateAnswer": _schema({"certificate": "hex"}),
                "RoundAnnouncement": _schema({
                    "round_id": "int", "vector_length": "int", "min_participants": "int",
                    "max_participants": "int", "threshold": "int", "graph": "str", "degree": "int?",
                    "clip": "float", "noise_multiplier": "float", "min_survivors": "int",
                    "base_model_version": "int", "stage": "str", "stage_deadline": "float",
                    "sampling_rate": "float", "population": "int", "colluders": "int",
                    "fp_bits": "int", "fp_tail_sigmas": "float", "frozen": "str[]"},
                    required=["round_id", "vector_length", "min_participants", "max_participants",
                              "threshold", "graph", "degree", "clip", "noise_multiplier",
                              "min_survivors", "base_model_version", "stage", "stage_deadline",
                              "sampling_rate", "population", "colluders", "fp_bits",
                              "fp_tail_sigmas"]),
                "RoundStatus": _schema({"round_id": "int", "state": "str", "stage": "str",
                                        "participants": "int", "survivors": "int?",
                                        "model_version_in": "int?", "model_version_out": "int?",
                                        "reason": "str"}),
                "UploadAck": _schema({"round_id": "int", "kind": "str", "duplicate": "bool"}),
                "ServerKey": _schema({"public_key": "hex", "algorithm": "str"}),
            },
        },
        "paths": {
            "/healthz": {"get": _op("liveness and the latest model version",
                                    {"200": {"description": "ok"}}, auth=False)},
            "/metrics": {"get": _op("Prometheus metrics", {"200": {"description": "text format"}},
                                    auth=False)},
            "/openapi.json": {"get": _op("this document", {"200": {"description": "OpenAPI"}},
                                         auth=False)},
            "/v1/public-key": {"get": _op("the bundle-signing public key (pin it in apps)",
                                          {"200": _json("ServerKey", "Ed25519 key")}, auth=False)},
            "/v1/enrol": {"post": _op("enrol a device with an operator's token",
                                      {"201": _json("EnrolResponse", "enrolled")}, auth=False,
                                      body=_json("EnrolRequest", "token and identity key"))},
            "/v1/certificate": {"get": _op(
                "this device's enrolment certificate (empty until an offline authority signs it)",
                {"200": _json("CertificateAnswer", "the certificate, hex")})},
            "/v1/rounds/current": {"get": _op("the round this device may join", ok)},
            "/v1/rounds/{round_id}": {"get": _op("a round's state", {
                "200": _json("RoundStatus", "open, done or aborted")}, params=["round_id"])},
            "/v1/rounds/{round_id}/messages": {"post": _op(
                "upload a signed secure-aggregation message (edgerec.secagg.wire bytes)",
                {"202": _json("UploadAck", "stored (duplicate: an identical resend)")},
                body=_octets("AdvertiseKeys, ShareKeys, MaskedInput, ConsistencyCheck or "
                             "UnmaskResponse"),
                params=["round_id"])},
            "/v1/rounds/{round_id}/messages/{name}": {"get": _op(
                "the server message opening a stage: key_list, forwarded_shares, "
                "consistency_request, unmask_request",
                {"200": _octets("KeyList, ForwardedShares, ConsistencyRequest or UnmaskRequest"),
                 "204": {"description": "the stage is still collecting; retry after Retry-After"},
                 "410": _json("ErrorBody", "the round was aborted")},
                params=["round_id", "name"])},
            "/v1/models/latest": {"get": _op(
                "the newest signed bundle archive (zip); ETag / If-None-Match",
                {"200": {"description": "zip", "content": {"application/zip": {}}},
                 "304": {"description": "not modified"}})},
            "/v1/models/{version}": {"get": _op("one version's signed bundle archive", {
                "200": {"description": "zip", "content": {"application/zip": {}}}},
                params=["version"])},
            "/v1/audit": {"get": _op("the privacy audit: one row per closed round, and every "
                                     "enrolment certificate issued",
                                     {"200": {"description": "JSON"}}, auth=False)},
        },
    }
