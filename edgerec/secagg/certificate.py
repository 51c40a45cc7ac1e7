"""Enrolment certificates: an operator's enrolment authority vouches for a device's identity key.

A certificate binds a device id to its Ed25519 identity key until an expiry time, signed by the
enrolment authority's Ed25519 key, which devices pin. A device uses a peer's round keys only
after checking the peer's certificate under the pinned authority key: a server that relays
keys it made up (to play a victim's neighbours itself) cannot make certificates for them unless
it holds the authority key. Where that key lives is the operator's choice (SECURITY.md).

Bytes (127): ``b"EC" | version u8 | device_id u32 | issued_at u64 | expires_at u64 |
identity_key 32 | authority_id 8 | signature 64``. ``authority_id`` is the first 8 bytes of
SHA-256 of the authority's public key, so a device can tell "another authority" from "forged".
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, replace
from functools import lru_cache

from .._exceptions import BadCertificateError
from . import crypto

__all__ = ["CERTIFICATE_BYTES", "Certificate", "authority_id", "check_certificate",
           "decode_certificate", "encode_certificate", "issue_certificate"]

CERTIFICATE_VERSION = 1
_MAGIC = b"EC"
_BODY = struct.Struct(">2sBIQQ32s8s")
CERTIFICATE_BYTES = _BODY.size + crypto.SIGNATURE_BYTES
_DOMAIN = b"edgerec/enrolment-certificate/v1\x00"
#: Clocks of devices and the authority disagree a little; a certificate issued "in the future"
#: by less than this is accepted (expiry is checked exactly).
CLOCK_SKEW_S = 600


@dataclass(frozen=True)
class Certificate:
    """A device's enrolment certificate (times are whole seconds since the epoch)."""

    device_id: int
    identity_key: bytes
    issued_at: int
    expires_at: int
    authority_id: bytes
    signature: bytes = b""
    version: int = CERTIFICATE_VERSION

    def body(self) -> bytes:
        """The bytes the authority signs (everything but the signature)."""
        return _BODY.pack(_MAGIC, self.version, self.device_id, self.issued_at, self.expires_at,
                          self.identity_key, self.authority_id)


def authority_id(public_key: bytes) -> bytes:
    """The 8-byte id of an authority's raw Ed25519 public key."""
    return hashlib.sha256(bytes(public_key)).digest()[:8]


def issue_certificate(authority_private: bytes, device_id: int, identity_key: bytes,
                      issued_at: float, expires_at: float) -> Certificate:
    """A certificate for ``device_id``'s ``identity_key``, signed with the raw authority key."""
    if len(identity_key) != crypto.KEY_BYTES:
        raise BadCertificateError("an identity key is 32 bytes")
    if not 0 <= int(issued_at) < int(expires_at) < 2**64 or not 0 <= device_id < 2**32:
        raise BadCertificateError("need 0 <= issued_at < expires_at and a 32-bit device id")
    issuer = authority_id(crypto.ed25519_public(authority_private))
    cert = Certificate(device_id, bytes(identity_key), int(issued_at), int(expires_at), issuer)
    return replace(cert, signature=crypto.sign(authority_private, _DOMAIN + cert.body()))


@lru_cache(maxsize=16384)
def _signed_by(authority_public: bytes, data: bytes) -> bool:
    """Whether the authority signed these exact certificate bytes. A pure function of public
    bytes, so it is remembered: a device meets the same peers round after round, and the
    verification costs more than the rest of the certificate check together."""
    cert = decode_certificate(data)
    return crypto.verify(authority_public, cert.signature, _DOMAIN + cert.body())


def encode_certificate(cert: Certificate) -> bytes:
    """The certificate's 127 bytes."""
    return cert.body() + cert.signature


def decode_certificate(data: bytes) -> Certificate:
    """Parse certificate bytes; raises :class:`BadCertificateError` for anything malformed."""
    if len(data) != CERTIFICATE_BYTES:
        raise BadCertificateError(f"a certificate is {CERTIFICATE_BYTES} bytes, got {len(data)}")
    magic, version, device_id, issued, expires, key, issuer = _BODY.unpack(data[: _BODY.size])
    if magic != _MAGIC or version != CERTIFICATE_VERSION:
        raise BadCertificateError("not an enrolment certificate of a supported version")
    return Certificate(device_id, key, issued, expires, issuer, bytes(data[_BODY.size:]), version)


def check_certificate(data: bytes, authority_public: bytes, *, device_id: int,
                      identity_key: bytes, now: float | None) -> Certificate:
    """The certificate in ``data`` if the authority signed it for exactly this device and key
    and it is valid at ``now``; otherwise :class:`BadCertificateError` saying why.

    ``now=None`` skips the validity window (a server replaying messages it already accepted
    checked the time when it accepted them)."""
    cert = decode_certificate(data)
    if cert.authority_id != authority_id(authority_public):
        raise BadCertificateError(f"certificate of device {device_id} is from another authority")
    if not _signed_by(bytes(authority_public), bytes(data)):
        raise BadCertificateError(f"certificate of device {device_id} is not signed by the authority")
    if cert.device_id != device_id or cert.identity_key != identity_key:
        raise BadCertificateError(f"certificate is for device {cert.device_id} and another key, "
                                  f"not device {device_id}'s")
    if now is not None and not cert.issued_at - CLOCK_SKEW_S <= now < cert.expires_at:
        raise BadCertificateError(f"certificate of device {device_id} is not valid now "
                                  f"(valid {cert.issued_at}..{cert.expires_at})")
    return cert
