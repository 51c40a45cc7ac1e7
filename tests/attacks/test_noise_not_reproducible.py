"""Attack: subtract the noise. The hostile review found the demo seeding each device's DP noise
from its public ``--seed`` (``default_rng((seed, device, round))``): anyone could regenerate the
noise and take it off, leaving the clipped delta bare; and noise and stochastic rounding came
from PCG64 (not a cryptographic generator) and a float Gaussian.

Now every device draws its discrete noise and rounding from an AES-CTR stream keyed by the OS
(``SecureRandom.from_os()``) unless a test hands it a reproducible source, and a reproducible
source is charged on the ledger as no noise at all (epsilon infinite, "not private").
"""

from __future__ import annotations

import inspect
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

import edgerec
from edgerec.model.params import param_names
from edgerec.privacy import DistributedNoise, FixedPoint, SecureRandom, privatize
from edgerec.secagg import crypto, encode_certificate, issue_certificate
from edgerec.sync import (HttpxTransport, RoundParticipant, SyncConditions, SyncSession,
                          SyncTimeouts)
import edgerec_server.demo.devices as demo_devices

from malicious_server import MaliciousServer, Script, announcement

D = 5000


def _privatize(delta: np.ndarray, source) -> np.ndarray:
    noise = DistributedNoise(1.0, 1.0, 10)
    fp = FixedPoint.for_noise(noise, 10, D)
    return privatize(delta, clip=1.0, noise=noise, fp=fp, source=source).encoded.astype(np.int64)


def test_the_same_delta_never_gets_the_same_noise_twice():
    delta = np.random.default_rng(0).normal(size=D) * 0.01
    a, b = _privatize(delta, SecureRandom.from_os()), _privatize(delta, SecureRandom.from_os())
    assert not np.array_equal(a, b)
    # The difference is the noise of two devices: about sqrt(2) grid sigmas per coordinate.
    fp = FixedPoint.for_noise(DistributedNoise(1.0, 1.0, 10), 10, D)
    signed = lambda x: np.where(x >= 2**31, x - 2**32, x)  # noqa: E731
    spread = np.std(signed(a) - signed(b))
    assert spread == pytest.approx(np.sqrt(2) * fp.grid_sigma, rel=0.05)


def test_a_public_seed_does_not_give_the_noise_away():
    """The old attack: regenerate the noise from the seed and subtract it. With a reproducible
    source that works exactly; with the device's real source it leaves the noise in."""
    delta = np.random.default_rng(1).normal(size=D) * 0.01
    seeded = _privatize(delta, SecureRandom.reproducible(42))
    replayed = _privatize(np.zeros(D), SecureRandom.reproducible(42))
    assert np.abs(seeded - replayed).max() > 0  # (the delta itself)
    real = _privatize(delta, SecureRandom.from_os())
    # Same seed, same stream: the attacker's replay matches a seeded device's noise draw for
    # draw, but not a real device's, whose noise it has no way to know.
    assert np.array_equal(_privatize(delta, SecureRandom.reproducible(42)), seeded)
    assert not np.array_equal(real, seeded)


def test_the_demo_and_the_sync_never_seed_the_noise(tmp_path, trained_bundle):
    """The demo's devices get the SDK's default noise (None: a fresh OS-keyed stream per round),
    whatever the demo's --seed."""
    shutil.copytree(trained_bundle, tmp_path / "bundle")
    rec = edgerec.open(tmp_path / "app.db", bundle=tmp_path / "bundle")
    worker = SimpleNamespace(url="http://127.0.0.1:9", key=b"\1" * 32, token="et_x",
                             bundle_dir=tmp_path / "bundle")
    session = demo_devices.Worker.session(worker, rec, SimpleNamespace(sleep=lambda s: None))
    assert session._noise_source is None
    assert inspect.signature(SyncSession).parameters["noise_source"].default is None
    assert inspect.signature(RoundParticipant).parameters["noise_source"].default is None
    rec.close()


class OneRound(Script):
    def __init__(self, operator: bytes, length: int) -> None:
        super().__init__(certify=lambda d, key: encode_certificate(issue_certificate(operator, d, key, 0, 2**40)))
        self.length = length

    def announcement(self, device_id: int):
        return announcement(vector_length=self.length)


@pytest.mark.parametrize("reproducible", [False, True])
def test_a_reproducible_source_is_charged_as_no_privacy(tmp_path, trained_bundle, reproducible):
    shutil.copytree(trained_bundle, tmp_path / "bundle")
    rec = edgerec.open(tmp_path / "app.db", bundle=tmp_path / "bundle")
    rec.log_many([{"user": "u", "item": i, "event": "click"} for i in rec.bundle.catalogue.item_ids[:6]])
    length = int(sum(rec.bundle.params[n].size for n in param_names(rec.bundle.config)))
    operator = crypto.ed25519_private(os.urandom)
    source = SecureRandom.reproducible(7) if reproducible else None
    with MaliciousServer(OneRound(operator, length)) as server:
        SyncSession(rec, server.url, enrolment_token="et_" + "x" * 24, noise_source=source,
                    authority_key=crypto.ed25519_public(operator),
                    transport=HttpxTransport(server.url, timeout=5),
                    allow=SyncConditions(min_new_interactions=0),
                    timeouts=SyncTimeouts(poll_interval=0.01, stage_timeout=0.3, max_wait=0.3)).run()
    advert = [e for e in rec.ledger.entries() if e.kind == "advertise_keys"][0]
    assert advert.noise_multiplier == 1.0
    if reproducible:
        assert advert.epsilon == float("inf") and "not private" in advert.note
        assert rec.ledger.snapshot().differentially_private is False
    else:
        assert 0 < advert.epsilon < float("inf") and advert.note is None
    rec.close()
