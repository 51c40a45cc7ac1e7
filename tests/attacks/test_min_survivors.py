"""Attack: a lying server announces round parameters that quietly remove the protection.

The worst one (hostile review): announcing ``min_survivors = 10**9`` makes each device add a
noise share of z*C/sqrt(10**9), about 3e-5 of what the sum needs, while its ledger still charges
the full epsilon. Others: a threshold below the active-adversary floor (the server could unmask
small sums), noise calibrated to more survivors than t - c honest ones, noise or clip outside
the app's bounds, absurd cohorts. Real devices (``edgerec.open`` + ``SyncSession`` over HTTP)
against a lying server (``malicious_server``): each announcement is refused before any training
or any byte of the round leaves (status ``round_refused``, a ``refusal`` ledger row saying why),
while an honest announcement through the same server is joined (the control).
"""

from __future__ import annotations

import os
import shutil

import pytest

import edgerec
from edgerec.model.params import param_names
from edgerec.secagg import crypto, encode_certificate, issue_certificate
from edgerec.sync import (HttpxTransport, RoundPolicy, SyncConditions, SyncSession, SyncStatus,
                          SyncTimeouts)

from malicious_server import MaliciousServer, Script, announcement

BAD = {
    "min_survivors_huge": (dict(min_survivors=10**9), "noise calibrated to 1000000000 survivors"),
    "min_survivors_above_t_minus_c": (dict(colluders=1, min_survivors=4), "t - c = 3"),
    "min_survivors_zero": (dict(min_survivors=0), "noise calibrated to 0 survivors"),
    "threshold_below_two_thirds": (dict(max_participants=10, min_participants=5, threshold=4),
                                   "threshold 4 outside"),
    "threshold_above_degree": (dict(threshold=5), "threshold 5 outside"),
    "noise_below_the_app_floor": (dict(noise_multiplier=0.1), "noise multiplier 0.1"),
    "clip_too_large": (dict(clip=1e6), "clip bound 1000000.0"),
    "cohort_of_one_billion": (dict(max_participants=10**9), "cohort of 5..1000000000"),
    "cohort_too_small": (dict(min_participants=2, max_participants=2, threshold=2, min_survivors=2),
                         "cohort of 2..2"),
    "sampling_rate_not_a_probability": (dict(sampling_rate=2.0), "sampling rate 2.0"),
}
POLICY = RoundPolicy(min_noise_multiplier=0.5, max_clip=10.0)  # an app that insists on DP


class Announcer(Script):
    """Enrols devices with real certificates (from an authority it does not hold) and
    announces one round whose parameters the test chooses; it never gets further."""

    def __init__(self, operator: bytes, **fields) -> None:
        super().__init__(certify=lambda d, key: encode_certificate(issue_certificate(operator, d, key, 0, 2**40)))
        self.fields = fields

    def announcement(self, device_id: int):
        return announcement(**self.fields)


@pytest.fixture
def device(tmp_path, trained_bundle):
    shutil.copytree(trained_bundle, tmp_path / "bundle")
    rec = edgerec.open(tmp_path / "app.db", bundle=tmp_path / "bundle")
    rec.log_many([{"user": "u", "item": item, "event": "click"} for item in rec.bundle.catalogue.item_ids[:8]])
    yield rec
    rec.close()


def _length(rec) -> int:
    return int(sum(rec.bundle.params[n].size for n in param_names(rec.bundle.config)))


def _sync(rec, script: Script, operator: bytes, stage_timeout: float = 5.0):
    with MaliciousServer(script) as server:
        return SyncSession(rec, server.url, enrolment_token="et_" + "x" * 24, policy=POLICY,
                           authority_key=crypto.ed25519_public(operator),
                           transport=HttpxTransport(server.url, timeout=5),
                           allow=SyncConditions(min_new_interactions=0),
                           timeouts=SyncTimeouts(poll_interval=0.01, stage_timeout=stage_timeout,
                                                 max_wait=stage_timeout)).run()


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_device_refuses_an_unsafe_announcement_before_anything_leaves(device, case, monkeypatch):
    fields, reason = BAD[case]
    operator = crypto.ed25519_private(os.urandom)
    script = Announcer(operator, vector_length=_length(device), **fields)
    trained = []
    real_fine_tune = device.fine_tune
    monkeypatch.setattr(device, "fine_tune", lambda *a, **k: trained.append(1) or real_fine_tune(*a, **k))
    result = _sync(device, script, operator)
    assert result.status == SyncStatus.ROUND_REFUSED, result
    assert reason in result.message, result.message
    entries = device.ledger.entries()
    assert [e.kind for e in entries] == ["enrol", "refusal"]  # nothing of the round left
    refusal = entries[-1]
    assert refusal.n_bytes == 0 and refusal.round_id == "1" and reason in refusal.note
    assert script.received == []  # not even the round's keys
    assert trained == []  # no training was spent on it


def test_the_same_server_honestly_announcing_is_joined(device, monkeypatch):
    """The control: the checks refuse what is unsafe, not every round."""
    operator = crypto.ed25519_private(os.urandom)
    script = Announcer(operator, vector_length=_length(device))
    trained = []
    real_fine_tune = device.fine_tune
    monkeypatch.setattr(device, "fine_tune", lambda *a, **k: trained.append(1) or real_fine_tune(*a, **k))
    result = _sync(device, script, operator, stage_timeout=0.5)
    assert trained == [1]
    assert result.status == SyncStatus.OFFLINE  # it joined, then this server never went on
    assert [type(m).__name__ for _, m in script.received] == ["AdvertiseKeys"]
    assert [e.kind for e in device.ledger.entries()] == ["enrol", "advertise_keys"]


def test_what_believing_min_survivors_would_have_cost():
    """Why the rule matters: the noise a device adds scales with 1/sqrt(min_survivors)."""
    honest = announcement(vector_length=1000).noise().per_client_std
    lying = announcement(vector_length=1000, min_survivors=10**9).noise().per_client_std
    assert lying / honest == pytest.approx((4 / 10**9) ** 0.5)  # about 6e-5 of the noise needed
