"""The fixed-point grid: sums never wrap, decode within the rounding bound, no bias, and the
grid's parameters (scale, sensitivity, per-device noise) satisfy what the privacy analysis needs."""

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
    SecureRandom,
    check_ddg,
    clip_l2,
    ddg_tau,
    decode_sum,
    privatize,
    quantize,
    rounding_bound,
    sum_encodings,
    to_residues,
)

# decode and the reference float sum both round in float64; allow that, far below one grid step.
FLOAT_SLACK = 1e-9


@st.composite
def fixed_points(draw, max_clients=st.integers(1, 64), noise=True):
    clip = draw(st.floats(1e-3, 1e3))
    z = draw(st.sampled_from([0.0, 0.3, 1.0, 3.0])) if noise else 0.0
    clients = draw(max_clients)
    m = draw(st.integers(1, clients))
    bits = draw(st.sampled_from([16, 24, 32]))
    d = draw(st.integers(1, 8))
    try:
        fp = FixedPoint(clip, z, m, clients, d, bits=bits)
    except ConfigError:  # too little resolution for these parameters: not a valid code
        assume(False)
    return fp


def unit_rows(n: int, d: int):
    return arrays(np.float64, (n, d), elements=st.floats(-1.0, 1.0))


def grid_sum(total: np.ndarray, fp: FixedPoint, n: int) -> np.ndarray:
    """The signed integer sum the modular sum decodes to."""
    return np.rint(decode_sum(total, fp, n) * fp.scale).astype(np.int64)


@settings(deadline=None, max_examples=150)
@given(fp=fixed_points(max_clients=st.integers(1, 5000)), data=st.data())
def test_the_modular_sum_of_any_encodings_never_wraps(fp, data):
    # Adversarial contributions: arbitrary int64 vectors (clamped by the code), all at the
    # extremes, or all the same sign: the decoded sum is always the true sum of the clamped values.
    n = data.draw(st.sampled_from([1, fp.max_clients, max(1, fp.max_clients // 2)]), label="n")
    big = st.integers(-(2**62), 2**62) | st.sampled_from([fp.max_int, -fp.max_int, 2**62, -(2**62)])
    ints = data.draw(arrays(np.int64, (n, fp.dimension), elements=big), label="ints")
    if data.draw(st.booleans(), label="all at the top"):
        ints = np.full_like(ints, data.draw(st.sampled_from([1, -1])) * 2**40)
    codes = to_residues(ints, fp)
    assert codes.dtype == np.uint32 and int(codes.max()) < 2**fp.bits
    clamped = np.clip(ints, -fp.max_int, fp.max_int)
    assert np.array_equal(grid_sum(sum_encodings(codes), fp, n), clamped.sum(axis=0))


@settings(deadline=None, max_examples=40)
@given(fp=fixed_points(max_clients=st.integers(1, 300)), sign=st.sampled_from([1.0, -1.0]),
       seed=st.integers(0, 2**32 - 1))
def test_privatized_extremes_never_wrap(fp, sign, seed):
    # Every client sends the longest delta, along one axis, all the same sign, with noise: the
    # decoded total is exactly the sum of what each encoding decodes to on its own.
    n = fp.max_clients
    noise = DistributedNoise(fp.clip, fp.noise_multiplier, fp.min_survivors)
    delta = np.zeros(fp.dimension)
    delta[0] = sign * 1e6 * fp.clip
    source = SecureRandom.reproducible(seed)
    codes = [privatize(delta, clip=fp.clip, noise=noise, fp=fp, source=source).encoded for _ in range(n)]
    each = np.stack([grid_sum(code, fp, 1) for code in codes])
    assert np.all(np.abs(each) <= fp.max_int)
    assert np.array_equal(grid_sum(sum_encodings(codes), fp, n), each.sum(axis=0))


@settings(deadline=None, max_examples=150)
@given(data=st.data(), fp=fixed_points(noise=False), seed=st.integers(0, 2**32 - 1))
def test_without_noise_the_decoded_sum_is_within_the_rounding_bound(data, fp, seed):
    n = data.draw(st.integers(1, fp.max_clients), label="n")
    raw = data.draw(unit_rows(n, fp.dimension), label="raw") * fp.clip * 2
    rows = np.stack([clip_l2(row, fp.clip)[0] for row in raw])
    source = SecureRandom.reproducible(seed)
    sent = [privatize(row, clip=fp.clip, noise=None, fp=fp, source=source).encoded for row in raw]
    decoded = decode_sum(sum_encodings(sent), fp, n)
    bound = rounding_bound(fp, n)
    assert np.all(np.abs(decoded - rows.sum(axis=0)) <= bound * (1 + FLOAT_SLACK))


@settings(deadline=None, max_examples=100)
@given(fp=fixed_points(), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_quantized_norm_never_exceeds_the_grid_sensitivity(fp, data, seed):
    raw = data.draw(unit_rows(1, fp.dimension), label="raw")[0] * fp.clip * 3
    clipped, _ = clip_l2(raw, fp.clip)
    v = quantize(clipped, fp, SecureRandom.reproducible(seed))
    assert np.linalg.norm(v.astype(np.float64)) <= fp.sensitivity
    assert np.all(np.abs(v) <= fp.clip * fp.scale + 1)
    assert np.all(quantize(np.zeros(fp.dimension), fp, SecureRandom.reproducible(seed)) == 0)  # zero-out


def test_the_noise_of_a_sum_of_m_devices_has_std_z_times_clip():
    chi2 = pytest.importorskip("scipy.stats").chi2
    noise = DistributedNoise(clip=0.5, noise_multiplier=1.3, min_survivors=8)
    fp = FixedPoint.for_noise(noise, max_clients=20, dimension=20_000)
    source = SecureRandom.reproducible(11)
    sent = [privatize(np.zeros(fp.dimension), clip=0.5, noise=noise, fp=fp, source=source).encoded
            for _ in range(noise.min_survivors)]
    total = decode_sum(sum_encodings(sent), fp, noise.min_survivors)
    # The exact std is z * Delta / scale = z * (C + sqrt(d) / scale): z * C up to the
    # rounding inflation, here 2e-5 relative.
    expected = noise.noise_multiplier * fp.sensitivity / fp.scale
    assert expected == pytest.approx(noise.noise_multiplier * noise.clip, rel=1e-4)
    statistic = (total.size - 1) * np.var(total, ddof=1) / expected**2
    low, high = chi2.ppf([0.5e-6, 1 - 0.5e-6], total.size - 1)
    assert low <= statistic <= high


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.75, 0.9])
def test_stochastic_rounding_is_unbiased(fraction):
    n = 100_000
    fp = FixedPoint(1.0, 0.0, 1, 1, n, bits=16)
    x = (123 + fraction) / fp.scale / math.sqrt(n)  # n equal coordinates of norm <= 1
    ints = quantize(np.full(n, x), fp, SecureRandom.reproducible(3))
    p = math.modf(x * fp.scale)[0]  # the exact fractional part after float rounding
    assert set(np.unique(ints)) <= {math.floor(x * fp.scale), math.floor(x * fp.scale) + 1}
    # Each error is Bernoulli(p) - p grid steps: variance p(1-p); 5 standard errors.
    tolerance = 5 * math.sqrt(p * (1 - p) / n)
    assert abs(ints.mean() - x * fp.scale) <= tolerance
    assert tolerance < min(p, 1 - p) / 10  # power: deterministic rounding would be far off


def test_masks_modulo_2_32_cancel():
    # What secure aggregation does: pairwise masks m and -m mod 2^32 vanish from the sum.
    noise = DistributedNoise(1.0, 1.0, 3)
    fp = FixedPoint.for_noise(noise, 10, 6)
    source = SecureRandom.reproducible(5)
    codes = [privatize(row, clip=1.0, noise=noise, fp=fp, source=source).encoded
             for row in np.random.default_rng(5).uniform(-1, 1, size=(3, 6)) / 3]
    mask = source.uint64(6).astype(np.uint32)
    masked = [codes[0] + mask, codes[1] - mask, codes[2]]  # uint32 arithmetic wraps
    assert np.array_equal(sum_encodings(masked), sum_encodings(codes))


def test_decode_accepts_a_widened_sum():
    fp = FixedPoint(1.0, 0.0, 1, 50, 2)
    codes = to_residues(np.full((50, 2), -fp.max_int + 3), fp)
    wide = codes.sum(axis=0)  # numpy widens uint32 sums to uint64
    assert wide.dtype != np.uint32
    expected = decode_sum(sum_encodings(codes), fp, 50)
    np.testing.assert_array_equal(decode_sum(wide, fp, 50), expected)
    signed = decode_sum(sum_encodings(codes).astype(np.int64) - 2**32, fp, 50)
    np.testing.assert_array_equal(signed, expected)


def test_derived_quantities():
    fp = FixedPoint.for_noise(DistributedNoise(2.0, 1.0, 16), max_clients=1000, dimension=10_000)
    assert (fp.clip, fp.noise_multiplier, fp.min_survivors, fp.dimension) == (2.0, 1.0, 16, 10_000)
    assert fp.max_int == (2**31 - 1) // 1000
    assert fp.sensitivity == pytest.approx(2.0 * fp.scale + 100.0)
    assert fp.grid_sigma == pytest.approx(1.0 * fp.sensitivity / 4.0)
    # The scale is the largest that leaves tail_sigmas of noise headroom ...
    assert fp.clip * fp.scale + 1 + fp.tail_sigmas * fp.grid_sigma <= fp.max_int
    bigger = fp.scale * (1 + 1e-9)
    assert fp.clip * bigger + 1 + 12 * (fp.clip * bigger + 100.0) / 4.0 > fp.max_int
    # ... and clamping is then astronomically rare.
    assert fp.clamp_probability == pytest.approx(2 * math.exp(-72))
    assert fp.clamp_probability < 1e-30
    assert fp.resolution == pytest.approx(1 / fp.scale)
    assert rounding_bound(fp, 10) == pytest.approx(10 * fp.resolution)
    quiet = FixedPoint(1.0, 0.0, 1, 5, 3)
    assert (quiet.grid_sigma, quiet.clamp_probability) == (0.0, 0.0)
    assert quiet.scale == pytest.approx((quiet.max_int - 1) / 1.0)


def test_ddg_tau_and_the_check():
    assert ddg_tau(3.0, 1) == 0.0
    direct = 10 * (math.exp(-2 * math.pi**2 * 0.25 * 1 / 2) + math.exp(-2 * math.pi**2 * 0.25 * 2 / 3))
    assert ddg_tau(0.5, 3) == pytest.approx(direct, rel=1e-12)
    assert ddg_tau(4.0, 100_000) < 1e-60 * 100_000  # why 4 grid steps are enough
    assert check_ddg(4.0, 10_000, 10**7) < 1e-50
    with pytest.raises(ConfigError, match="tau"):
        check_ddg(0.5, 10, 1_000_000)
    # Every noisy code that can be built passed that check at its dimension and max_clients.
    fp = FixedPoint(1.0, 0.5, 100, 1000, 10**6)
    assert fp.grid_sigma >= 4 and check_ddg(fp.grid_sigma, fp.max_clients, fp.dimension) <= 1e-12


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clip": 0.0},
        {"clip": float("nan")},
        {"noise_multiplier": -1.0},
        {"min_survivors": 0},
        {"min_survivors": 11},  # more than max_clients
        {"max_clients": 0},
        {"max_clients": 1.5},
        {"dimension": 0},
        {"bits": 1},
        {"bits": 33},
        {"tail_sigmas": 0.0},
        {"bits": 8, "max_clients": 100, "min_survivors": 1},  # max_int 1: no room at all
        {"bits": 8, "max_clients": 1, "min_survivors": 1, "noise_multiplier": 0.05, "dimension": 1},  # sigma_g < 4
        {"bits": 16, "max_clients": 10, "dimension": 10**6},  # sqrt(d) eats the whole range
    ],
)
def test_bad_parameters_are_config_errors(kwargs):
    params = {"clip": 1.0, "noise_multiplier": 1.0, "min_survivors": 5, "max_clients": 10,
              "dimension": 4, **kwargs}
    with pytest.raises(ConfigError):
        FixedPoint(**params)


def test_decode_refuses_what_it_cannot_vouch_for():
    fp = FixedPoint(1.0, 0.0, 1, 10, 2)
    total = sum_encodings(to_residues(np.full((3, 2), fp.max_int - 1), fp))
    for n in (0, 11):
        with pytest.raises(ConfigError):
            decode_sum(total, fp, n)
    with pytest.raises(ConfigError, match="outside the range"):
        decode_sum(total, fp, 1)  # three near-maximal encodings cannot come from one client
    with pytest.raises(ConfigError, match="integer"):
        decode_sum(total.astype(np.float64), fp, 3)
    with pytest.raises(ConfigError):
        rounding_bound(fp, 11)


def test_quantize_and_sum_refuse_bad_input():
    fp = FixedPoint(1.0, 0.0, 1, 10, 2)
    with pytest.raises(ConfigError):
        quantize(np.array([np.nan, 0.0]), fp, SecureRandom.reproducible(0))
    with pytest.raises(ConfigError, match="clip"):
        quantize(np.array([0.9, 0.9]), fp, SecureRandom.reproducible(0))  # norm 1.27 > clip
    with pytest.raises(ConfigError, match="RandomSource"):
        quantize(np.zeros(2), fp, np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        to_residues(np.zeros(2), fp)  # floats
    with pytest.raises(ConfigError):
        sum_encodings([])
    with pytest.raises(ConfigError):
        sum_encodings([np.zeros(2, dtype=np.int64)])


def test_code_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        FixedPoint(1.0, 0.0, 1, 10, 2).bits = 16  # type: ignore[misc]
