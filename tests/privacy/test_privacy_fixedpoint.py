"""Fixed point in Z_(2^bits): sums decode within the rounding bound, never wrap, no bias."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgerec import ConfigError
from edgerec.privacy import (
    DistributedNoise,
    FixedPoint,
    clip_l2,
    decode_sum,
    encode,
    rounding_bound,
    sum_encodings,
)

# decode and the reference float sum both round in float64; allow that, far below one grid step.
FLOAT_SLACK = 1e-9


@st.composite
def fixed_points(draw, max_clients=st.integers(1, 64)):
    clip = draw(st.floats(1e-3, 1e3))
    noise_std = clip * draw(st.sampled_from([0.0, 0.01, 0.3, 1.0, 3.0]))
    bits = draw(st.sampled_from([8, 16, 24, 32]))
    try:
        fp = FixedPoint(clip, noise_std, draw(max_clients), bits=bits)
    except ConfigError:  # too little resolution for these parameters: not a valid code
        assume(False)
    return fp


def unit_rows(n: int, d: int):
    return arrays(np.float64, (n, d), elements=st.floats(-1.0, 1.0))


def assert_within_bound(decoded, expected, fp, n):
    bound = rounding_bound(fp, n)
    assert np.all(np.abs(decoded - expected) <= bound * (1 + FLOAT_SLACK)), (decoded, expected)


@settings(deadline=None, max_examples=150)
@given(data=st.data(), fp=fixed_points(), seed=st.integers(0, 2**32 - 1))
def test_decoded_sum_of_clipped_vectors_is_within_the_rounding_bound(data, fp, seed):
    n = data.draw(st.integers(1, fp.max_clients), label="n")
    d = data.draw(st.integers(1, 8), label="d")
    raw = data.draw(unit_rows(n, d), label="raw") * fp.clip * 2
    rows = np.stack([clip_l2(row, fp.clip)[0] for row in raw])
    rng = np.random.default_rng(seed)
    total = sum_encodings([encode(row, fp, rng) for row in rows])
    assert_within_bound(decode_sum(total, fp, n), rows.sum(axis=0), fp, n)


@settings(deadline=None, max_examples=150)
@given(data=st.data(), fp=fixed_points(), seed=st.integers(0, 2**32 - 1))
def test_any_values_within_the_clamp_range_decode_within_the_bound(data, fp, seed):
    n = data.draw(st.integers(1, fp.max_clients), label="n")
    rows = data.draw(unit_rows(n, 4), label="rows") * fp.clamp_range
    total = sum_encodings(encode(rows, fp, np.random.default_rng(seed)))
    assert_within_bound(decode_sum(total, fp, n), rows.sum(axis=0), fp, n)


@settings(deadline=None, max_examples=60)
@given(
    fp=fixed_points(max_clients=st.integers(1, 20_000)),
    sign=st.sampled_from([1.0, -1.0]),
    beyond=st.sampled_from([1.0, 1.5, 1e6]),
    seed=st.integers(0, 2**32 - 1),
)
def test_no_wrap_around_at_the_extremes(fp, sign, beyond, seed):
    # Every client at the edge of the range (or past it, where it is clamped), all the same sign.
    n = fp.max_clients
    rows = np.full((n, 3), sign * beyond * fp.clamp_range)
    total = sum_encodings(encode(rows, fp, np.random.default_rng(seed)))
    decoded = decode_sum(total, fp, n)
    assert np.all(np.sign(decoded) == sign)
    assert_within_bound(decoded, np.full(3, sign * n * fp.clamp_range), fp, n)


@pytest.mark.parametrize(
    "bits,max_clients", [(32, 1), (32, 1000), (32, 100_000), (16, 100), (8, 3)]
)
def test_no_wrap_around_integer_check(bits, max_clients):
    fp = FixedPoint(1.0, 0.25, max_clients, bits=bits)
    top = 2 ** (bits - 1) - 1
    for sign in (1.0, -1.0):
        rows = np.full((max_clients, 2), sign * fp.clamp_range)
        codes = encode(rows, fp, np.random.default_rng(0))
        signed = np.where(codes >= 2 ** (bits - 1), codes.astype(np.int64) - 2**bits, codes)
        assert np.all(np.abs(signed) <= fp.max_int)
        assert abs(int(signed[:, 0].sum())) <= top  # the true integer sum fits the signed range
        assert max_clients * (fp.clamp_range * fp.scale) < 2 ** (bits - 1) - max_clients


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.75, 0.9])
def test_stochastic_rounding_is_unbiased(fraction):
    fp = FixedPoint(1.0, 0.0, 1, bits=16)
    x = (123 + fraction) / fp.scale
    n = 100_000
    decoded = decode_sum(encode(np.full(n, x), fp, np.random.default_rng(11)), fp, 1)
    p = math.modf(x * fp.scale)[0]  # the exact fractional part after float rounding
    assert set(np.unique(decoded * fp.scale).round()) <= {123.0, 124.0}
    # Each error is (Bernoulli(p) - p) / scale: variance p(1-p)/scale^2; 5 standard errors.
    tolerance = 5 * math.sqrt(p * (1 - p) / n) / fp.scale
    assert abs(decoded.mean() - x) <= tolerance
    # The test has power: deterministic rounding would be off by min(p, 1-p) grid steps.
    assert tolerance < min(p, 1 - p) / fp.scale / 10


def test_masks_modulo_2_32_cancel():
    # What secure aggregation does: pairwise masks m and -m mod 2^32 vanish from the sum.
    fp = FixedPoint(1.0, 0.1, 10)
    rng = np.random.default_rng(5)
    rows = rng.uniform(-1, 1, size=(3, 6)) / 3
    codes = [encode(row, fp, rng) for row in rows]
    mask = rng.integers(0, 2**32, size=6, dtype=np.uint64).astype(np.uint32)
    masked = [codes[0] + mask, codes[1] - mask, codes[2]]  # uint32 arithmetic wraps
    assert np.array_equal(sum_encodings(masked), sum_encodings(codes))


def test_decode_accepts_a_widened_sum():
    fp = FixedPoint(1.0, 0.0, 50)
    codes = encode(np.full((50, 2), -0.7), fp, np.random.default_rng(0))
    wide = codes.sum(axis=0)  # numpy widens uint32 sums to uint64
    assert wide.dtype != np.uint32
    expected = decode_sum(sum_encodings(codes), fp, 50)
    np.testing.assert_array_equal(decode_sum(wide, fp, 50), expected)
    signed = decode_sum(sum_encodings(codes).astype(np.int64) - 2**32, fp, 50)
    np.testing.assert_array_equal(signed, decode_sum(wide, fp, 50))


def test_values_beyond_the_range_are_clamped():
    fp = FixedPoint(1.0, 0.5, 4)
    decoded = decode_sum(encode(np.array([10.0, -10.0, 0.0]), fp, np.random.default_rng(0)), fp, 1)
    np.testing.assert_allclose(decoded, [fp.clamp_range, -fp.clamp_range, 0.0], atol=fp.resolution)


def test_encoding_shape_dtype_and_bits():
    fp = FixedPoint(1.0, 0.2, 3, bits=12)
    codes = encode(np.linspace(-2, 2, 24).reshape(2, 3, 4), fp, np.random.default_rng(0))
    assert codes.shape == (2, 3, 4) and codes.dtype == np.uint32
    assert codes.max() < 2**12


def test_derived_quantities():
    fp = FixedPoint.for_noise(DistributedNoise(2.0, 1.0, 16), max_clients=1000)
    assert fp.noise_std == pytest.approx(0.5) and fp.clip == 2.0
    assert fp.clamp_range == pytest.approx(2.0 + 8 * 0.5)
    assert fp.max_int == (2**31 - 1) // 1000
    assert fp.clamp_range * fp.scale + 1 <= fp.max_int
    assert fp.clamp_probability == pytest.approx(math.erfc(8 / math.sqrt(2)))
    assert fp.clamp_probability < 1e-14
    assert FixedPoint(1.0, 0.0, 5).clamp_probability == 0.0
    assert rounding_bound(fp, 10) == pytest.approx(10 * fp.resolution)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clip": 0.0},
        {"clip": float("nan")},
        {"noise_std": -1.0},
        {"max_clients": 0},
        {"max_clients": 1.5},
        {"bits": 1},
        {"bits": 33},
        {"tail_sigmas": 0.0},
        {"bits": 8, "max_clients": 100},  # max_int 1: no room at all
        {"bits": 16, "max_clients": 1000, "clip": 40.0},  # scale < 1: no resolution left
    ],
)
def test_bad_parameters_are_config_errors(kwargs):
    params = {"clip": 1.0, "noise_std": 0.1, "max_clients": 10, **kwargs}
    with pytest.raises(ConfigError):
        FixedPoint(**params)


def test_decode_refuses_what_it_cannot_vouch_for():
    fp = FixedPoint(1.0, 0.0, 10)
    total = sum_encodings(encode(np.full((3, 2), 0.9), fp, np.random.default_rng(0)))
    for n in (0, 11):
        with pytest.raises(ConfigError):
            decode_sum(total, fp, n)
    with pytest.raises(ConfigError, match="outside the range"):
        decode_sum(total, fp, 1)  # three near-maximal encodings cannot come from one client
    with pytest.raises(ConfigError, match="integer"):
        decode_sum(total.astype(np.float64), fp, 3)
    with pytest.raises(ConfigError):
        rounding_bound(fp, 11)


def test_encode_and_sum_refuse_bad_input():
    fp = FixedPoint(1.0, 0.0, 10)
    with pytest.raises(ConfigError):
        encode(np.array([np.nan]), fp, np.random.default_rng(0))
    with pytest.raises(ConfigError):
        encode(np.zeros(2), fp, None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        sum_encodings([])
    with pytest.raises(ConfigError):
        sum_encodings([np.zeros(2, dtype=np.int64)])


def test_code_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        FixedPoint(1.0, 0.0, 10).bits = 16  # type: ignore[misc]
