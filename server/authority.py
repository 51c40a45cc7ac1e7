"""The enrolment authority: who vouches that an identity key is a real, enrolled device.

Devices use a peer's round keys only under a certificate from the authority they pin
(``edgerec.secagg.certificate``). Whoever holds the authority's private key can make devices
up (sybils) and so fill a victim's neighbourhood with itself: the security of secure
aggregation against this server rests on where that key lives (SECURITY.md).

* **embedded** (default): the key is on the server (the bundle-signing key, or a separate
  file in the data dir); certificates are issued at enrolment. Against a server that stays
  honest about enrolment only.
* **offline**: the server knows only the public key (``authority_public_key``); enrolled
  devices wait until the operator signs them with ``edgerec-server certify --authority-key``
  on a machine of their choice. The server cannot make certificates.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from edgerec.secagg import BadCertificateError, decode_certificate, encode_certificate, issue_certificate
from edgerec.signing import public_key_bytes

from ._exceptions import BadRequestError, ServerConfigError
from .config import ServerConfig
from .keys import load_or_create_key
from .state import DeviceRecord, StateBackend

__all__ = ["Authority", "certify_pending", "eligible_devices", "load_authority", "valid_until"]

#: A certificate is renewed (embedded authority) once less than this share of its life is left,
#: so that a device never goes into a round with one about to lapse.
RENEW_BEFORE = 0.1


@dataclass(frozen=True)
class Authority:
    """The authority as the server sees it: its public key, and its private key if held here."""

    public_key: bytes
    private_key: bytes | None
    certificate_ttl_s: float

    @property
    def mode(self) -> str:
        return "embedded" if self.private_key is not None else "offline"

    def issue(self, device: DeviceRecord, now: float) -> bytes | None:
        """A certificate for ``device`` (None when the authority is offline)."""
        if self.private_key is None:
            return None
        expires = now + self.certificate_ttl_s
        if device.expires_at is not None:
            expires = min(expires, device.expires_at)
        return encode_certificate(issue_certificate(self.private_key, device.id, device.identity_key,
                                                    now, expires))


def valid_until(certificate: bytes | None) -> float:
    """When a stored certificate expires (0 for none or an unreadable one)."""
    if not certificate:
        return 0.0
    try:
        return float(decode_certificate(certificate).expires_at)
    except BadCertificateError:
        return 0.0


def eligible_devices(state: StateBackend, now: float, margin_s: float = 0.0) -> list[DeviceRecord]:
    """The devices a round may draw: active, with a certificate valid ``margin_s`` beyond now
    (their peers would refuse an expired one, and the round would wait for them in vain)."""
    return [d for d in state.active_devices(now) if valid_until(d.certificate) > now + margin_s]


def _raw_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def load_authority(config: ServerConfig) -> Authority:
    """The configured authority (its key file is made on first start, like the signing key)."""
    if config.authority_public_key:
        try:
            public = bytes.fromhex(config.authority_public_key)
        except ValueError:
            public = b""
        if len(public) != 32:
            raise ServerConfigError("authority_public_key must be 64 hex digits (an Ed25519 key)")
        return Authority(public, None, config.certificate_ttl_s)
    path = config.authority_key_path
    assert path is not None
    key = load_or_create_key(path)
    return Authority(public_key_bytes(key), _raw_private(key), config.certificate_ttl_s)


def certify_pending(state: StateBackend, key: Ed25519PrivateKey, authority: Authority,
                    now: float) -> list[int]:
    """Sign every enrolled, unrevoked device still without a certificate (offline authority);
    the ids certified. ``key`` must be the configured authority's private key."""
    if public_key_bytes(key) != authority.public_key:
        raise BadRequestError("this key is not the configured enrolment authority's")
    signer = Authority(authority.public_key, _raw_private(key), authority.certificate_ttl_s)
    done = []
    for device in state.uncertified_devices():
        cert = signer.issue(device, now)
        assert cert is not None
        if state.set_certificate(device.id, cert):
            done.append(device.id)
    if done:
        state.log_event("devices_certified", {"device_ids": done}, now)
    return done
