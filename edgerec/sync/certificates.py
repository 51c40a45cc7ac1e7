"""This device's enrolment certificate before a round: fetched again when it lapses soon (the
server's embedded authority renews it; peers would refuse it once lapsed) or is still missing
(an offline authority signs later), and checked under the pinned authority."""

from __future__ import annotations

from typing import Callable

from .._exceptions import BadCertificateError
from ..secagg import check_certificate
from .api import DeviceIdentity

__all__ = ["RENEW_BEFORE_S", "certificate_problem", "current_certificate"]

#: A certificate with less than this left is fetched again before a round.
RENEW_BEFORE_S = 7 * 24 * 3600.0


def certificate_problem(certificate: bytes, identity: DeviceIdentity, authority: bytes | None,
                        now: float) -> str | None:
    """Why ``certificate`` does not do for ``identity`` under ``authority`` at ``now``; None
    when it does (without a pinned authority any certificate does: nothing to check it by)."""
    if not certificate:
        return "no certificate yet"
    if authority is None:
        return None
    try:
        check_certificate(certificate, authority, device_id=identity.device_id,
                          identity_key=identity.public_key, now=now)
    except BadCertificateError as exc:
        return str(exc)
    return None


def current_certificate(identity: DeviceIdentity, authority: bytes | None, now: float,
                        fetch: Callable[[], bytes]) -> bytes:
    """The certificate to take into a round: the saved one, or ``fetch()``'s when the saved one
    would not do ``RENEW_BEFORE_S`` from ``now`` (kept if the server gives none)."""
    saved = identity.certificate
    if certificate_problem(saved, identity, authority, now + RENEW_BEFORE_S) is None:
        return saved
    return fetch() or saved
