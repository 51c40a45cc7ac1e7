"""Enrolment tokens and device credentials.

An operator creates a token (``edgerec-server token create``); a device enrols with it,
registering its Ed25519 identity key (and proving it holds the private half), and receives
a bearer credential ``d<device id>.<secret>``. Only SHA-256 hashes of tokens and secrets are
stored. Every later request carries ``Authorization: Bearer <credential>`` (the scheme in any
case); unknown, malformed or expired credentials answer 401, revoked devices 403. Enrolling
again with an enrolled identity key (a device that lost the answer) reissues its credential.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from edgerec.secagg import crypto
from edgerec.sync import EnrolRequest, enrol_proof_bytes

from ._exceptions import BadRequestError, ConflictError, ForbiddenError, UnauthorizedError
from .authority import RENEW_BEFORE, Authority, valid_until
from .ed25519_check import is_strong_ed25519_key
from .state import DeviceRecord, StateBackend, TokenRecord

__all__ = ["Enrolment", "authenticate", "certificate_of", "create_token", "enrol", "revoke_token"]

_CREDENTIAL = re.compile(r"^d([1-9][0-9]{0,9})\.([A-Za-z0-9_-]{20,100})$")
_TOKEN = re.compile(r"^et_[A-Za-z0-9_-]{20,100}$")


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def create_token(state: StateBackend, now: float, ttl_s: float, max_uses: int = 1,
                 note: str = "") -> tuple[str, TokenRecord]:
    """A new enrolment token (shown once) and its stored record."""
    if not ttl_s > 0 or max_uses < 1:
        raise BadRequestError("a token needs a positive ttl and at least one use")
    token = "et_" + secrets.token_urlsafe(24)
    record = state.add_token(_hash(token), now, now + ttl_s, max_uses, note)
    state.log_event("token_created", {"token_id": record.id, "max_uses": max_uses,
                                      "expires_at": record.expires_at, "note": note}, now)
    return token, record


def revoke_token(state: StateBackend, token: str, now: float) -> bool:
    """Revoke a token given as its text or its numeric id; False if there was none to revoke."""
    if token.isdigit():
        token_id: int | None = int(token)
    else:
        found = state.find_token(_hash(token))
        token_id = found.id if found else None
    done = token_id is not None and state.revoke_token(token_id, now)
    if done:
        state.log_event("token_revoked", {"token_id": token_id}, now)
    return done


@dataclass(frozen=True)
class Enrolment:
    """A device just enrolled, its credential (returned to it once, never stored) and its
    enrolment certificate (empty when the authority is offline: it signs later)."""

    device: DeviceRecord
    credential: str
    certificate: bytes = b""


def certificate_of(state: StateBackend, device: DeviceRecord, authority: Authority,
                   now: float) -> bytes:
    """``device``'s certificate: the stored one while it has more than a tenth of its life left,
    else one the embedded authority issues now (and stores); the stored one (or empty) while an
    offline authority has not signed a new one."""
    stored = bytes(device.certificate) if device.certificate else b""
    lapses = valid_until(stored)
    if stored and lapses - now > RENEW_BEFORE * authority.certificate_ttl_s:
        return stored
    cert = authority.issue(device, now)
    if cert is None or (stored and valid_until(cert) <= lapses):
        return stored  # offline authority, or capped by the credential: nothing longer to give
    state.set_certificate(device.id, cert)
    state.log_event("device_certified", {"device_id": device.id}, now)
    return cert


def enrol(state: StateBackend, request: EnrolRequest, now: float,
          credential_ttl_s: float = 0.0, authority: Authority | None = None) -> Enrolment:
    """Check the token and the proof of key possession, register the device, certify it.

    A retry with an identity key that is already enrolled (the device lost the answer) gets
    the same device id and a new credential; the old credential stops working (see
    :func:`_reissue` for when, and why that is safe).
    """
    token = _usable_token(state, request.token, now)
    key = _checked_key(request)
    secret = secrets.token_urlsafe(32)
    expires = now + credential_ttl_s if credential_ttl_s > 0 else None
    device = _reissue(state, key, token, _hash(secret), now, expires)
    if device is None:
        if token.uses >= token.max_uses:
            raise ForbiddenError("the enrolment token is used up")
        try:
            # The id is only known after the insert, and the stored hash covers the secret alone.
            device = state.enrol(token.id, key, _hash(secret), now, expires)
        except ConflictError:
            # The same key enrolled a moment ago by a concurrent request: this one is a retry.
            device = _reissue(state, key, token, _hash(secret), now, expires)
            if device is None:
                raise
        else:
            state.log_event("device_enrolled", {"device_id": device.id, "token_id": token.id}, now)
    # A crash between the two writes leaves the device without a certificate; its next
    # GET /v1/certificate issues it (certificate_of), so nothing is lost.
    cert = certificate_of(state, device, authority, now) if authority is not None else b""
    return Enrolment(device, f"d{device.id}.{secret}", cert)


def _usable_token(state: StateBackend, token_text: str, now: float) -> TokenRecord:
    """The token's record if it may enrol now (its uses are checked later: a retry uses none)."""
    if not _TOKEN.match(token_text):
        raise UnauthorizedError("not an enrolment token")
    token = state.find_token(_hash(token_text))
    if token is None:
        raise UnauthorizedError("unknown enrolment token")
    if token.revoked_at is not None:
        raise ForbiddenError("the enrolment token was revoked")
    if token.expires_at <= now:
        raise UnauthorizedError("the enrolment token has expired")
    return token


def _checked_key(request: EnrolRequest) -> bytes:
    """The identity key, once it is a strong Ed25519 key whose holder signed this token."""
    key = request.identity_key
    if len(key) != crypto.KEY_BYTES or len(request.proof) != crypto.SIGNATURE_BYTES:
        raise BadRequestError("identity_key must be 32 bytes and proof 64 bytes (Ed25519)")
    if not is_strong_ed25519_key(key):
        raise BadRequestError("identity_key is not a usable Ed25519 public key (off the curve, "
                              "non-canonical, or of small order)")
    if not crypto.verify(key, request.proof, enrol_proof_bytes(request.token, key)):
        raise BadRequestError("proof does not verify: sign enrol_proof_bytes(token, key) "
                              "with the identity key")
    return key


def _reissue(state: StateBackend, key: bytes, token: TokenRecord, credential_hash: bytes,
             now: float, expires: float | None) -> DeviceRecord | None:
    """A retried enrolment: the device already enrolled with ``key`` gets a new credential
    (None: no device has that key, so this is a first enrolment).

    Only with the token the device enrolled with, while that token is neither revoked nor
    expired, and for a device not revoked; the retry uses none of the token's uses (a device
    whose single-use token was spent by the lost answer must still get in).

    Why rotating and not a 409: the SDK saves its identity key before enrolling and retries
    with that same key (``edgerec.sync``), so a 409 would lock a device that lost the answer
    out for good. What rotating risks: the proof has no nonce, so a copy of the original
    request (a proxy's log, say) replays while the token is valid. That yields a credential
    for the device's id, never the device: every round message must be signed with the
    identity key, which stays on the device (``edgerec.secagg`` checks each signature), so a
    replayer can read what the device could read (announcements, models) and lock the real
    device out until it retries too. The window closes when the token expires or is revoked.
    """
    device = state.reissue_credential(key, token.id, credential_hash, now, expires)
    if device is None or device.credential_hash == credential_hash:
        if device is not None:
            state.log_event("device_credential_reissued",
                            {"device_id": device.id, "token_id": token.id}, now)
        return device
    if device.revoked_at is not None:
        raise ForbiddenError(f"this identity key is device {device.id}, which was revoked; "
                             "enrol a new identity key with a new token")
    if device.token_id != token.id:
        raise ConflictError(f"this identity key is already enrolled as device {device.id} with "
                            "another enrolment token; retry with that token for a new "
                            "credential, or enrol a new identity key")
    # Its token was revoked or expired between our check and the update.
    raise ConflictError(f"device {device.id}'s enrolment token is no longer valid; "
                        "enrol a new identity key with a new token")


def authenticate(state: StateBackend, authorization: str | None, now: float) -> DeviceRecord:
    """The device an ``Authorization`` header belongs to, or 401/403."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    # The scheme is case-insensitive (RFC 9110, 11.1): "bearer" and "BEARER" are "Bearer".
    if scheme.lower() != "bearer":
        raise UnauthorizedError("missing credentials: send 'Authorization: Bearer <credential>'")
    match = _CREDENTIAL.match(value.strip())
    if match is None:
        raise UnauthorizedError("malformed credential")
    device = state.device(int(match.group(1)))
    if device is None or not hmac.compare_digest(device.credential_hash, _hash(match.group(2))):
        raise UnauthorizedError("unknown credential")
    if device.revoked_at is not None:
        raise ForbiddenError(f"device {device.id} was revoked")
    if device.expires_at is not None and device.expires_at <= now:
        raise UnauthorizedError(f"the credential of device {device.id} has expired; enrol again")
    return device
