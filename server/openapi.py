"""The OpenAPI 3.1 description of the HTTP API (served at ``/openapi.json``).

Bodies are ``edgerec.sync`` messages: JSON control messages (``edgerec.sync.codec``) and
secure-aggregation messages in their binary wire format (``edgerec.secagg.wire``).
"""

from __future__ import annotations

from typing import Any

from edgerec.sync import DOWNLOAD_NAMES, OUTCOME, PROTOCOL_VERSION

from .validation import MAX_ID, MAX_JSON_DEPTH

__all__ = ["openapi_schema"]

_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]  # the bearer scheme, no OAuth scopes


def _json(ref: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _octets(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}


_ERROR_TEXT = {
    400: "malformed or unfitting input (a path id that is not an integer, JSON nested deeper "
         f"than {MAX_JSON_DEPTH} levels, a field of the wrong type)",
    401: "missing, unknown or expired credentials or token",
    403: "revoked, or not allowed",
    404: "no such resource; for rounds also one this device is not a member of, and any id "
         f"outside 0..{MAX_ID}",
    409: "conflicts with the state", 410: "the round was aborted", 413: "body too large",
    415: "the body is declared as another media type than the route takes"}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _json("ErrorBody", _ERROR_TEXT[code]) for code in codes}


def _id_param(name: str, what: str) -> dict[str, Any]:
    """A path id: the bounds are the ones ``validation.parse_id`` checks."""
    return {"name": name, "in": "path", "required": True,
            "description": f"the {what}'s id; not an integer: 400, an integer outside the range: 404",
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID}}


def _op(summary: str, responses: dict[str, Any], errors: tuple[int, ...] = (), *,
        auth: list[dict[str, list]] | None = _AUTH, body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One operation; ``errors``: every ErrorBody status it answers (a 500 would be a bug)."""
    op: dict[str, Any] = {"summary": summary, "responses": {**responses, **_errors(*errors)}}
    if auth:
        op["security"] = auth
    if body is not None:
        op["requestBody"] = {"required": True, **body}
    if params:
        op["parameters"] = params
    return op


def _schema(props: dict[str, str], required: list[str] | None = None) -> dict[str, Any]:
    types = {"int": {"type": "integer"}, "float": {"type": "number"}, "str": {"type": "string"},
             "hex": {"type": "string", "pattern": "^([0-9a-f]{2})*$"}, "bool": {"type": "boolean"},
             "int?": {"type": ["integer", "null"]}, "float?": {"type": ["number", "null"]},
             "str[]": {"type": "array", "items": {"type": "string"}},
             "object?": {"type": ["object", "null"]}}
    return {"type": "object", "properties": {"type": {"type": "string"}, "version": {"type": "integer"},
                                             **{k: types[v] for k, v in props.items()}},
            "required": required if required is not None else list(props)}


def _enrol_request() -> dict[str, Any]:
    """What ``edgerec.sync.codec.decode`` and ``auth.enrol`` accept: exactly these fields."""
    return {"type": "object", "additionalProperties": False,
            "required": ["type", "token", "identity_key", "proof"],
            "properties": {
                "type": {"const": "enrol_request"}, "version": {"const": PROTOCOL_VERSION},
                "token": {"type": "string", "pattern": "^et_[A-Za-z0-9_-]{20,100}$"},
                "identity_key": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$",
                                 "description": "Ed25519 public key (32 bytes, hex)"},
                "proof": {"type": "string", "pattern": "^[0-9a-fA-F]{128}$",
                          "description": "Ed25519 signature over enrol_proof_bytes(token, key)"}}}


def openapi_schema(public_models: bool = False) -> dict[str, Any]:
    """The whole document; ``public_models``: the model routes need no credential."""
    ok = {"200": _json("RoundAnnouncement", "the round this device may join"),
          "204": {"description": "no round for this device now"}}
    models_auth = [] if public_models else _AUTH
    models_errors = (404,) if public_models else (401, 403, 404)
    zip_ok = {"200": {"description": "zip", "content": {"application/zip": {}}},
              "304": {"description": "not modified (If-None-Match has the ETag)"}}
    round_id = _id_param("round_id", "round")
    return {
        "openapi": "3.1.0",
        "info": {"title": "edgerec coordinating server", "version": "1", "description": (
            "Device routes take 'Authorization: Bearer <credential>' (the scheme in any case). "
            "Another method on a listed path answers 405 with an Allow header; an unlisted path "
            "404. A body sent without a Content-Type is read as the type the route takes.")},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "operator": {"type": "http", "scheme": "bearer",
                                             "description": "an operator token, op_..."}},
            "schemas": {
                "ErrorBody": _schema({"code": "str", "message": "str"}),
                "EnrolRequest": _enrol_request(),
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
                    "fp_bits": "int", "fp_tail_sigmas": "float", "frozen": "str[]",
                    "kind": "str", "evaluation": "object?"},
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
                "RolloutAnswer": _schema({"statement": "hex", "signature": "hex"}),
            },
        },
        "paths": {
            "/healthz": {"get": _op("liveness and the latest model version",
                                    {"200": {"description": "ok"}}, auth=None)},
            "/metrics": {"get": _op("Prometheus metrics", {"200": {"description": "text format"}},
                                    auth=None)},
            "/openapi.json": {"get": _op("this document", {"200": {"description": "OpenAPI"}},
                                         auth=None)},
            "/v1/public-key": {"get": _op("the bundle-signing public key (pin it in apps)",
                                          {"200": _json("ServerKey", "Ed25519 key")}, auth=None)},
            "/v1/enrol": {"post": _op(
                "enrol a device with an operator's token; the same identity key again, with the "
                "token it enrolled with, gets the same device id and a new credential",
                {"201": _json("EnrolResponse", "enrolled (or the credential reissued)")},
                (400, 401, 403, 409, 413, 415), auth=None,
                body=_json("EnrolRequest", "token and identity key"))},
            "/v1/certificate": {"get": _op(
                "this device's enrolment certificate (empty until an offline authority signs it)",
                {"200": _json("CertificateAnswer", "the certificate, hex")}, (401, 403))},
            "/v1/rounds/current": {"get": _op("the round this device may join", ok, (401, 403))},
            "/v1/rounds/{round_id}": {"get": _op("a round's state (members only)", {
                "200": _json("RoundStatus", "open, done or aborted")}, (400, 401, 403, 404),
                params=[round_id])},
            "/v1/rounds/{round_id}/messages": {"post": _op(
                "upload a signed secure-aggregation message (edgerec.secagg.wire bytes); with "
                "then=<name> and 'Prefer: wait=N' the answer is held until what the device "
                "fetches next is ready, and is that (one request a stage instead of two)",
                {"200": {"description": "then was given and is ready: the server message it "
                                        "names (octets), or the round's final RoundStatus (JSON)"},
                 "202": _json("UploadAck", "stored (duplicate: an identical resend); with then: "
                                           "nothing ready within the hold (Retry-After)")},
                (400, 401, 403, 404, 409, 410, 413, 415),
                body=_octets("AdvertiseKeys, ShareKeys, MaskedInput, ConsistencyCheck or "
                             "UnmaskResponse"),
                params=[round_id, {"name": "then", "in": "query", "required": False,
                                   "description": "what to wait for after the upload; another "
                                                  "name: 400",
                                   "schema": {"type": "string", "enum": sorted(
                                       [*DOWNLOAD_NAMES.values(), OUTCOME])}}])},
            "/v1/rounds/{round_id}/messages/{name}": {"get": _op(
                "the server message opening a stage: key_list, forwarded_shares, "
                "consistency_request, unmask_request",
                {"200": _octets("KeyList, ForwardedShares, ConsistencyRequest or UnmaskRequest"),
                 "204": {"description": "the stage is still collecting; retry after Retry-After"}},
                (400, 401, 403, 404, 409, 410),
                params=[round_id, {"name": "name", "in": "path", "required": True,
                                   "description": "another name: 404",
                                   "schema": {"type": "string",
                                              "enum": sorted(DOWNLOAD_NAMES.values())}}])},
            "/v1/models/latest": {"get": _op(
                "the signed bundle archive (zip) the rollout statement assigns to the calling "
                "device (the newest before any statement); ETag / If-None-Match", zip_ok,
                models_errors, auth=models_auth)},
            "/v1/rollout": {"get": _op(
                "the newest signed rollout statement: promoted version, candidate, canary "
                "share, rejected versions (verify the signature with the pinned bundle key)",
                {"200": _json("RolloutAnswer", "the statement's bytes and signature (hex)"),
                 "204": {"description": "no rollout statement yet: devices install the newest "
                                        "model"}}, (401, 403), auth=models_auth)},
            "/v1/models/{version}": {"get": _op(
                "one version's signed bundle archive; ETag / If-None-Match", zip_ok,
                (400, *models_errors), auth=models_auth,
                params=[_id_param("version", "model version")])},
            "/v1/audit": {"get": _op("the privacy audit: one row per closed round, and every "
                                     "enrolment certificate issued",
                                     {"200": {"description": "JSON"}}, auth=None)},
            "/v1/analytics": {"get": _op(
                "federated evaluation, per model version and per evaluation round: metrics with "
                "confidence intervals, devices counted, epsilon (an operator token: "
                "'Bearer op_...', from edgerec-server operator-token create)",
                {"200": {"description": "JSON"}}, (401, 403), auth=[{"operator": []}])},
        },
    }
