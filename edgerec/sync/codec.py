"""The one place protocol messages become bytes and back.

Control messages are small JSON objects ``{"type": ..., "version": ..., fields}`` with byte
fields in hex; decoding checks the type tag, the version, every field's type, and refuses
unknown or missing fields, raising :class:`~edgerec.sync.ProtocolError` (never a bare
``KeyError``/``ValueError``). A field may itself be a frozen dataclass (the announcement's
``evaluation``): a nested JSON object held to the same rules. Secure-aggregation messages keep their own compact binary
encoding (:mod:`edgerec.secagg.wire`), re-exported here as :func:`encode_secagg` and
:func:`decode_secagg`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Any, TypeVar, Union

from ..secagg import wire
from .._exceptions import ProtocolError
from .messages import (
    PROTOCOL_VERSION,
    CertificateAnswer,
    EnrolRequest,
    EnrolResponse,
    ErrorBody,
    RolloutAnswer,
    RoundAnnouncement,
    RoundStatus,
    ServerKey,
    UploadAck,
)

__all__ = ["JSON", "OCTETS", "ZIP", "decode", "decode_secagg", "encode", "encode_secagg", "TYPE_TAGS"]

JSON, OCTETS, ZIP = "application/json", "application/octet-stream", "application/zip"

#: The ``type`` tag of each control message.
TYPE_TAGS: dict[type, str] = {
    EnrolRequest: "enrol_request",
    EnrolResponse: "enrol_response",
    RoundAnnouncement: "round_announcement",
    RoundStatus: "round_status",
    UploadAck: "upload_ack",
    ServerKey: "server_key",
    ErrorBody: "error",
    CertificateAnswer: "certificate",
    RolloutAnswer: "rollout",
}

encode_secagg = wire.encode
decode_secagg = wire.decode

T = TypeVar("T")


def encode(msg: Any) -> bytes:
    """The JSON bytes of a control message."""
    tag = TYPE_TAGS.get(type(msg))
    if tag is None:
        raise ProtocolError(f"not a protocol message: {type(msg).__name__}")
    out: dict[str, Any] = {"type": tag}
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if f.metadata.get("omit_if_default") and value == f.default:
            continue  # a field added later: peers that predate it still read the message
        out[f.name] = _plain(value)
    return json.dumps(out, separators=(",", ":"), allow_nan=False).encode()


def _plain(value: Any) -> Any:
    """A field's value as JSON-ready data: tuples as lists, bytes as hex, dataclasses as objects."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not (f.metadata.get("omit_if_default") and getattr(value, f.name) == f.default)}
    return value


def decode(data: bytes, cls: type[T]) -> T:
    """The ``cls`` message in ``data``; raises :class:`ProtocolError` for anything else."""
    tag = TYPE_TAGS.get(cls)
    if tag is None:
        raise ProtocolError(f"not a protocol message class: {cls!r}")
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{tag}: body is not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ProtocolError(f"{tag}: body must be a JSON object")
    if raw.pop("type", None) != tag:
        raise ProtocolError(f"expected a message of type {tag!r}")
    version = raw.get("version", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"{tag}: protocol version {version!r} is not supported "
                            f"(this side speaks {PROTOCOL_VERSION})")
    return _dataclass(raw, cls, tag)


def _dataclass(raw: dict[str, Any], cls: type[T], where: str) -> T:
    """``cls`` from the JSON object ``raw``: no unknown field, none missing, each typed."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ProtocolError(f"{where}: unknown fields {unknown}")
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in raw:
            if f.default is dataclasses.MISSING:
                raise ProtocolError(f"{where}: missing field {f.name!r}")
            continue
        kwargs[f.name] = _field(raw[f.name], hints[f.name], f"{where}.{f.name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{where}: {exc}") from None


def _field(value: Any, hint: Any, where: str) -> Any:
    if typing.get_origin(hint) in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(o for o in options if o is not type(None))
    if typing.get_origin(hint) is tuple:  # tuple[X, ...]: a JSON list of X
        (item, more) = typing.get_args(hint)
        if more is not Ellipsis:
            raise ProtocolError(f"{where}: unsupported field type {hint}")
        if isinstance(value, list):
            return tuple(_field(v, item, f"{where}[{i}]") for i, v in enumerate(value))
        raise ProtocolError(f"{where}: expected a list, got {type(value).__name__}")
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, dict):
            return _dataclass(value, hint, where)
        raise ProtocolError(f"{where}: expected an object, got {type(value).__name__}")
    if hint is bytes:
        if isinstance(value, str):
            try:
                return bytes.fromhex(value)
            except ValueError:
                pass
        raise ProtocolError(f"{where}: expected hex bytes")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    raise ProtocolError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {type(value).__name__}")
