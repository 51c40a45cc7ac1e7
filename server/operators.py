"""Operator tokens: the credential of the operator routes (``GET /v1/analytics``).

What devices report to an evaluation round is private, and even its noised aggregate is the
operator's business, not every enrolled device's or the internet's (the privacy audit,
``/v1/audit``, is public on purpose: auditors read it). So the operator routes take their own
bearer token, ``op_<secret>``, which the operator makes on the data dir
(``edgerec-server operator-token create``, shown once) and revokes the same way. Only its
SHA-256 is stored, in the state database, so every replica on a shared database accepts it.
A device credential is never an operator's: it has another shape and is refused (401).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from ._exceptions import ForbiddenError, UnauthorizedError
from .state import OperatorTokenRecord, StateBackend

__all__ = ["authenticate_operator", "create_operator_token", "revoke_operator_token"]

_OPERATOR = re.compile(r"^op_[A-Za-z0-9_-]{20,100}$")


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def create_operator_token(state: StateBackend, now: float, note: str = "") -> tuple[str, OperatorTokenRecord]:
    """A new operator token (shown once; only its hash is kept) and its record."""
    token = "op_" + secrets.token_urlsafe(32)
    record = state.add_operator_token(_hash(token), now, note)
    state.log_event("operator_token_created", {"operator_token_id": record.id, "note": note}, now)
    return token, record


def revoke_operator_token(state: StateBackend, token: str, now: float) -> bool:
    """Revoke an operator token given as its text or its numeric id; False if none was."""
    if token.isdigit():
        token_id: int | None = int(token)
    else:
        found = state.find_operator_token(_hash(token)) if _OPERATOR.match(token) else None
        token_id = found.id if found else None
    done = token_id is not None and state.revoke_operator_token(token_id, now)
    if done:
        state.log_event("operator_token_revoked", {"operator_token_id": token_id}, now)
    return done


def authenticate_operator(state: StateBackend, header: str | None) -> OperatorTokenRecord:
    """The operator token of ``Authorization: Bearer op_...``.

    Raises:
        UnauthorizedError: no such header, another scheme, a credential that is not an
            operator token (a device's included) or one that is not stored.
        ForbiddenError: a revoked operator token.
    """
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _OPERATOR.match(token):
        raise UnauthorizedError("this route needs an operator token: 'Authorization: Bearer op_...' "
                                "(edgerec-server operator-token create)")
    digest = _hash(token)
    found = state.find_operator_token(digest)
    # Looked up by hash; compared again in constant time, as device credentials are.
    if found is None or not hmac.compare_digest(bytes(found.token_hash), digest):
        raise UnauthorizedError("unknown operator token")
    if found.revoked_at is not None:
        raise ForbiddenError("this operator token was revoked")
    return found
