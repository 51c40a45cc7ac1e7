"""Signed rollout statements: which model version each device may run (canary and rollback).

The server keeps a *promoted* model version apart from the newest published one. A new version
goes first to a canary share of the devices as the *candidate*; the server then promotes it
(every device moves to it) or rejects it (the canary devices go back to the promoted version)
by a stated rule after an evaluation round. What devices may install is said by a
:class:`RolloutStatement`, signed with the key that signs bundles (the key devices pin)::

    {"seq": 7, "promoted": 3, "candidate": 4, "share": 0.1, "rejected": [2], ...}

A device is on the canary of candidate ``c`` when ``canary_bucket(device_id, c) < share``: a
uniform number in [0, 1) drawn from SHA-256 of the device id and the candidate version (so each
candidate reaches another random share of the fleet; the server computes the same number).

Device side (:func:`open_statement`, :func:`check_install`): a statement verifies under the
pinned key over :data:`DOMAIN` followed by its bytes (a bundle manifest's signature cannot be
passed off as one, nor the reverse), its fields are held to their types, and it must be at
least as new (``seq``) as any the device has accepted. The device then installs only the
version the statement assigns to it (:meth:`RolloutStatement.version_for`), never a rejected
one (its own memory of rejected versions included), and an older version only when it is the
statement's *promoted* one (the rollback off a rejected candidate); any other older version
is still a rollback (:class:`~edgerec.sync.BundleRollbackError`). Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from .._exceptions import BundleSignatureError, ConfigError, RolloutRefusedError
from ..signing import verify_bytes

__all__ = ["DOMAIN", "STATEMENT_FORMAT", "RolloutStatement", "canary_bucket", "check_install",
           "open_statement", "statement_bytes"]

#: What every statement signature covers before the statement's bytes (domain separation).
DOMAIN = b"edgerec/rollout/v1\x00"
#: The statement's format version (the ``format`` field).
STATEMENT_FORMAT = 1
_CANARY_DOMAIN = b"edgerec/canary/v1\x00"
_FIELDS = ("format", "seq", "promoted", "candidate", "share", "rejected", "issued_at", "reason")
_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class RolloutStatement:
    """Which model versions the fleet may run (see the module docstring).

    ``seq`` grows by one with every statement the server signs; ``promoted`` is what every
    device not on the canary runs; ``candidate`` (or None) what the canary share runs;
    ``rejected`` every version a decision rejected (it only grows); ``reason`` the decision
    that made this statement, in words.
    """

    seq: int
    promoted: int
    candidate: int | None
    share: float
    rejected: tuple[int, ...]
    issued_at: float
    reason: str = ""
    format: int = STATEMENT_FORMAT

    def __post_init__(self) -> None:
        for name in ("seq", "promoted"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"a rollout statement's {name} must be an int >= 1, got {value!r}")
        cand = self.candidate
        if cand is not None and (isinstance(cand, bool) or not isinstance(cand, int) or cand < 1):
            raise ConfigError(f"the candidate must be a model version or None, got {cand!r}")
        share = self.share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise ConfigError(f"the canary share must be in [0, 1], got {share!r}")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in self.rejected):
            raise ConfigError("rejected versions must be ints")
        if tuple(sorted(set(self.rejected))) != tuple(self.rejected):
            raise ConfigError("rejected versions must be sorted and distinct")
        if self.promoted in self.rejected or (cand is not None and cand in self.rejected):
            raise ConfigError("a rollout statement cannot promote or offer a rejected version")
        if cand is not None and cand == self.promoted:
            raise ConfigError("the candidate must differ from the promoted version")
        if not isinstance(self.issued_at, (int, float)) or not math.isfinite(self.issued_at):
            raise ConfigError("issued_at must be a finite number")
        if not isinstance(self.reason, str) or self.format != STATEMENT_FORMAT:
            raise ConfigError(f"a rollout statement of format {self.format!r} is not one this "
                              f"edgerec knows ({STATEMENT_FORMAT})")

    def on_canary(self, device_id: int) -> bool:
        """Whether ``device_id`` is in the candidate's canary share."""
        return self.candidate is not None and canary_bucket(device_id, self.candidate) < self.share

    def version_for(self, device_id: int) -> int:
        """The one model version ``device_id`` may install under this statement."""
        return self.candidate if self.on_canary(device_id) and self.candidate is not None \
            else self.promoted

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what is signed, as a mapping)."""
        return {"format": self.format, "seq": self.seq, "promoted": self.promoted,
                "candidate": self.candidate, "share": float(self.share),
                "rejected": list(self.rejected), "issued_at": float(self.issued_at),
                "reason": self.reason}


def canary_bucket(device_id: int, candidate: int) -> float:
    """A number in [0, 1), uniform over devices, fixed for one (device, candidate) pair."""
    digest = hashlib.sha256(_CANARY_DOMAIN + int(device_id).to_bytes(8, "big", signed=True)
                            + int(candidate).to_bytes(8, "big", signed=True)).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def statement_bytes(statement: RolloutStatement) -> bytes:
    """The canonical bytes of ``statement`` (sorted keys, no spaces): what is signed after
    :data:`DOMAIN` and what travels."""
    return json.dumps(statement.to_dict(), sort_keys=True, separators=(",", ":")).encode()


def open_statement(raw: bytes, signature: bytes, public_key: bytes | str,
                   newest_seq: int | None = None) -> RolloutStatement:
    """The statement in ``raw`` if ``signature`` is the pinned key's over ``DOMAIN + raw``, its
    fields are well formed, and it is not older than ``newest_seq`` (the newest this device
    accepted). Raises :class:`RolloutRefusedError` saying which check failed; a malformed key
    is a ``ConfigError``."""
    if len(raw) > _MAX_BYTES:
        raise RolloutRefusedError(f"rollout statement refused: {len(raw)} bytes")
    try:
        verify_bytes(public_key, DOMAIN + bytes(raw), bytes(signature))
    except BundleSignatureError:
        raise RolloutRefusedError("rollout statement refused: its signature does not verify "
                                  "under the pinned server key") from None
    try:
        fields = json.loads(bytes(raw).decode("utf-8"))
        if not isinstance(fields, dict) or sorted(fields) != sorted(_FIELDS):
            raise ValueError(f"fields {sorted(fields) if isinstance(fields, dict) else fields!r}")
        rejected = fields["rejected"]
        if not isinstance(rejected, list):
            raise ValueError("rejected is not a list")
        statement = RolloutStatement(
            seq=fields["seq"], promoted=fields["promoted"], candidate=fields["candidate"],
            share=fields["share"], rejected=tuple(rejected), issued_at=fields["issued_at"],
            reason=fields["reason"], format=fields["format"])
    except (ValueError, TypeError, ConfigError) as exc:
        raise RolloutRefusedError(f"rollout statement refused: malformed ({exc})") from None
    if newest_seq is not None and statement.seq < newest_seq:
        raise RolloutRefusedError(f"rollout statement refused: number {statement.seq} is older "
                                  f"than number {newest_seq} this device already follows (a replay)")
    return statement


def check_install(statement: RolloutStatement, device_id: int, version: int,
                  rejected: frozenset[int] = frozenset()) -> None:
    """Raise :class:`RolloutRefusedError` unless ``statement`` lets ``device_id`` install model
    ``version``: not a rejected version (the statement's or ``rejected``, every version this
    device saw rejected), and the very version the statement assigns to this device."""
    if version in statement.rejected or version in rejected:
        raise RolloutRefusedError(f"model {version} refused: the signed rollout statement "
                                  f"rejected it")
    target = statement.version_for(device_id)
    if version != target:
        raise RolloutRefusedError(f"model {version} refused: rollout statement {statement.seq} "
                                  f"assigns model {target} to this device")
