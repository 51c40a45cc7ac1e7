"""Masks: expansion is deterministic, pairwise masks cancel, a masked vector looks uniform."""

from __future__ import annotations

import numpy as np
from scipy.stats import chisquare

from edgerec.secagg import Stage
from edgerec.secagg import masking


def test_expand_is_deterministic_and_seed_dependent():
    a = masking.expand(b"\x01" * 32, 1000)
    assert a.dtype == np.uint32 and a.shape == (1000,)
    assert np.array_equal(a, masking.expand(b"\x01" * 32, 1000))
    assert not np.array_equal(a, masking.expand(b"\x02" * 32, 1000))
    assert np.array_equal(masking.expand(b"\x01" * 32, 10), a[:10])  # a prefix of the same stream


def test_pairwise_masks_cancel_mod_2_32():
    x = np.full(100, 2**32 - 1, dtype=np.uint32)
    y = np.full(100, 7, dtype=np.uint32)
    seed = b"\x09" * 32
    masking.apply(x, seed, masking.pairwise_sign(3, 8))
    masking.apply(y, seed, masking.pairwise_sign(8, 3))
    assert np.array_equal(x + y, np.full(100, 6, dtype=np.uint32))


def _uniformity_p_values(values: np.ndarray) -> tuple[float, float]:
    """Chi-square p-values of the top and the bottom 8 bits over 256 buckets each."""
    top = np.bincount(values >> 24, minlength=256)
    low = np.bincount(values & 0xFF, minlength=256)
    return chisquare(top).pvalue, chisquare(low).pvalue


def test_a_masked_vector_is_indistinguishable_from_uniform(make_round):
    h = make_round(n=5, length=50_000, seed=b"chi")
    for c in h.ids:  # the most structured input there is
        h.inputs[c][:] = 0
    h.clients = {c: h.client(c) for c in h.ids}
    outbox = h.run_to(Stage.MASKED_INPUT)
    masked = h.reply(outbox, send=False)
    for msg in masked.values():
        top_p, low_p = _uniformity_p_values(msg.values)
        # Fixed seeds make this deterministic; 1e-3 is the test's false-alarm rate per vector.
        assert top_p > 1e-3 and low_p > 1e-3
    # The same statistic has power: a fixed-point-like input (small values) fails at once.
    plain = np.random.default_rng(0).integers(0, 2**20, 50_000, dtype=np.uint32)
    assert min(_uniformity_p_values(plain)) < 1e-12
