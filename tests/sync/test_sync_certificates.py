"""The device's enrolment certificate over time: fetched again before a round when it lapses
within a week (the server's embedded authority renews it), and a device whose certificate does
not check out under the pinned authority does not join rounds."""

from __future__ import annotations

import time

import pytest

from edgerec.sync import EnrolResponse, Response, RoundAnnouncement, SyncStatus, encode
from edgerec.sync.device import SyncRecords

from test_sync_client import URL, FakeServer, _sync, device, signed  # noqa: F401  (fixtures)


class _Certifying(FakeServer):
    """Enrols with a certificate valid for ``first_ttl`` seconds, serves one valid for
    ``renewed_ttl`` at GET /v1/certificate, and announces a round the device refuses by policy
    (so nothing more happens after the certificate check)."""

    def __init__(self, authority: bytes, first_ttl: float, renewed_ttl: float):
        super().__init__()
        self.authority, self.first_ttl, self.renewed_ttl = authority, first_ttl, renewed_ttl
        self.key: bytes | None = None

    def _cert(self, ttl: float) -> bytes:
        from edgerec.secagg import encode_certificate, issue_certificate

        now = time.time()
        return encode_certificate(issue_certificate(self.authority, 7, self.key, now - 60, now + ttl))

    def request(self, method, path, *, body=None, headers=None):
        from edgerec.sync import CertificateAnswer, EnrolRequest, decode

        if path == "/v1/enrol":
            self.requests.append((method, path, body))
            self.key = decode(body, EnrolRequest).identity_key
            return Response(201, {}, encode(EnrolResponse(7, "cred-7", b"\x00" * 32, None,
                                                          self._cert(self.first_ttl))))
        if path == "/v1/certificate":
            self.requests.append((method, path, body))
            return Response(200, {}, encode(CertificateAnswer(self._cert(self.renewed_ttl))))
        if path == "/v1/rounds/current":
            self.requests.append((method, path, body))
            ann = RoundAnnouncement(
                round_id=5, vector_length=10, min_participants=4, max_participants=4, threshold=3,
                graph="complete", degree=None, clip=1.0, noise_multiplier=0.0, min_survivors=3,
                base_model_version=1, stage="advertise", stage_deadline=time.time() + 60)
            return Response(200, {}, encode(ann))
        return super().request(method, path, body=body, headers=headers)


@pytest.mark.parametrize("first_ttl, renewed_ttl, fetched, joined", [
    (365 * 86400, 365 * 86400, False, True),  # plenty left: no request for it
    (3600, 365 * 86400, True, True),  # lapsing within a week: a fresh one is fetched and kept
    (-30, 365 * 86400, True, True),  # already expired: likewise
    (-30, -30, True, False),  # expired and the authority gave no new one: not enrolled
])
def test_a_lapsing_certificate_is_fetched_again_before_a_round(device, first_ttl, renewed_ttl, fetched, joined):
    from edgerec.secagg import crypto, decode_certificate
    from edgerec.sync import RoundPolicy

    authority = crypto.ed25519_private(lambda n: b"\x09" * n)
    server = _Certifying(authority, first_ttl, renewed_ttl)
    policy = RoundPolicy(min_noise_multiplier=0.5)  # refuses this round: the sync stops there
    result, _ = _sync(device, server, authority_key=crypto.ed25519_public(authority), policy=policy)
    asked = [p for _, p, _ in server.requests if p == "/v1/certificate"]
    assert bool(asked) == fetched
    if joined:
        assert result.status == SyncStatus.ROUND_REFUSED and "noise multiplier 0.0" in result.message
        saved = SyncRecords(device._state, time.time).identity(URL).certificate
        left = decode_certificate(saved).expires_at - time.time()
        assert left > 300 * 86400  # the long-lived one is what the device keeps
    else:
        assert result.status == SyncStatus.NOT_ENROLLED and "does not check out" in result.message
