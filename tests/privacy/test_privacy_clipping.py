"""clip_l2: never lengthens, never exceeds the bound, leaves short vectors alone."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgerec import ConfigError
from edgerec.privacy import clip_l2, l2_norm

FLOATS = st.floats(-1e100, 1e100, allow_nan=False, allow_infinity=False)
VECTORS = arrays(np.float64, st.integers(0, 40), elements=FLOATS)
BOUNDS = st.floats(1e-6, 1e6, allow_nan=False, allow_infinity=False)


@settings(deadline=None)
@given(vec=VECTORS, bound=BOUNDS)
def test_clipping_never_increases_the_norm_and_respects_the_bound(vec, bound):
    clipped, norm = clip_l2(vec, bound)
    assert clipped.shape == vec.shape and clipped.dtype == np.float64
    assert np.linalg.norm(clipped) <= np.linalg.norm(vec)
    assert np.linalg.norm(clipped) <= bound
    assert norm == pytest.approx(np.linalg.norm(vec), rel=1e-12)


@settings(deadline=None)
@given(vec=VECTORS, bound=BOUNDS)
def test_vectors_within_the_bound_are_unchanged(vec, bound):
    clipped, norm = clip_l2(vec, bound)
    if norm <= bound:
        assert np.array_equal(clipped, vec)


@settings(deadline=None)
@given(vec=VECTORS.filter(lambda v: np.any(v != 0)), bound=BOUNDS)
def test_clipping_keeps_the_direction(vec, bound):
    clipped, norm = clip_l2(vec, bound)
    if norm > bound:
        # clipped is a positive multiple of vec: compare the unit vectors.
        np.testing.assert_allclose(clipped / l2_norm(clipped), vec / norm, rtol=1e-9, atol=1e-12)
        assert l2_norm(clipped) == pytest.approx(bound, rel=1e-8)


def test_zero_and_empty_vectors():
    for vec in (np.zeros(5), np.zeros(0)):
        clipped, norm = clip_l2(vec, 1.0)
        assert norm == 0.0 and np.array_equal(clipped, vec)


def test_huge_finite_values_do_not_overflow():
    clipped, norm = clip_l2(np.full(4, 1e300), 2.0)
    assert np.isfinite(clipped).all() and np.linalg.norm(clipped) <= 2.0
    assert norm == pytest.approx(2e300)


def test_shape_is_kept_and_input_not_modified():
    vec = np.arange(12.0).reshape(3, 4)
    before = vec.copy()
    clipped, _ = clip_l2(vec, 1.0)
    assert clipped.shape == (3, 4) and np.array_equal(vec, before)
    assert clip_l2(vec, 1e9)[0] is not vec  # a copy even when nothing is clipped


def test_integer_and_list_input_become_float64():
    clipped, norm = clip_l2([3, 4], 10.0)
    assert clipped.dtype == np.float64 and norm == 5.0


@pytest.mark.parametrize("bound", [0.0, -1.0, float("nan"), float("inf"), "1", None, True])
def test_bad_bound_is_a_config_error(bound):
    with pytest.raises(ConfigError):
        clip_l2(np.ones(3), bound)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_delta_never_passes(bad):
    with pytest.raises(ConfigError, match="NaN or infinite"):
        clip_l2(np.array([1.0, bad, 0.0]), 1.0)
