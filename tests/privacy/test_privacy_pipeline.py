"""privatize -> sum -> aggregate_decode, and the package surface."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import edgerec.privacy as privacy
from edgerec import ConfigError
from edgerec.privacy import (
    DistributedNoise,
    FixedPoint,
    PrivateDelta,
    SecureRandom,
    aggregate_decode,
    clip_l2,
    privatize,
    rounding_bound,
    sum_encodings,
)


def test_round_trip_without_noise_is_the_mean_of_clipped_deltas():
    fp = FixedPoint(clip=1.0, noise_multiplier=0.0, min_survivors=20, max_clients=20, dimension=30)
    deltas = np.random.default_rng(0).normal(scale=0.6, size=(20, 30))
    source = SecureRandom.reproducible(0)
    sent = [privatize(d, clip=1.0, noise=None, fp=fp, source=source) for d in deltas]
    mean = aggregate_decode(sum_encodings([s.encoded for s in sent]), fp, 20)
    expected = np.mean([clip_l2(d, 1.0)[0] for d in deltas], axis=0)
    assert np.all(np.abs(mean - expected) <= rounding_bound(fp, 20) / 20 * (1 + 1e-9))


def test_round_trip_with_noise_is_unbiased():
    noise = DistributedNoise(clip=1.0, noise_multiplier=0.5, min_survivors=10)
    fp = FixedPoint.for_noise(noise, max_clients=12, dimension=4000)
    delta = np.full(4000, 0.01)  # norm 0.63: not clipped
    source = SecureRandom.reproducible(1)
    sent = [privatize(delta, clip=1.0, noise=noise, fp=fp, source=source).encoded for _ in range(12)]
    mean = aggregate_decode(sum_encodings(sent), fp, 12)
    # Sum noise std z*C*sqrt(12/10) per coordinate, so the mean of 4000 coordinates of the
    # decoded mean is 0.01 within 6 standard errors.
    se = 0.5 * np.sqrt(12 / 10) / 12 / np.sqrt(4000)
    assert abs(mean.mean() - 0.01) < 6 * se


def test_private_delta_records_norm_and_clipping():
    fp = FixedPoint(1.0, 0.0, 1, 5, 2)
    source = SecureRandom.reproducible(0)
    long = privatize(np.array([3.0, 4.0]), clip=1.0, noise=None, fp=fp, source=source)
    short = privatize(np.array([0.3, 0.4]), clip=1.0, noise=None, fp=fp, source=source)
    assert isinstance(long, PrivateDelta)
    assert (long.original_norm, long.clipped) == (5.0, True)
    assert short.original_norm == pytest.approx(0.5) and not short.clipped
    assert long.encoded.dtype == np.uint32 and not long.encoded.flags.writeable


def test_shape_is_kept():
    fp = FixedPoint(1.0, 1.0, 2, 3, 12)
    noise = DistributedNoise(1.0, 1.0, 2)
    out = privatize(np.zeros((3, 4)), clip=1.0, noise=noise, fp=fp, source=SecureRandom.reproducible(0))
    assert out.encoded.shape == (3, 4)


def test_same_seed_same_payload_other_source_other_payload():
    noise = DistributedNoise(1.0, 1.0, 3)
    fp = FixedPoint.for_noise(noise, 3, 4)

    def send(source):
        return privatize(np.ones(4), clip=1.0, noise=noise, fp=fp, source=source).encoded

    assert np.array_equal(send(SecureRandom.reproducible(9)), send(SecureRandom.reproducible(9)))
    assert not np.array_equal(send(SecureRandom.from_os()), send(SecureRandom.from_os()))


def test_zero_multiplier_adds_no_noise():
    noise = DistributedNoise(1.0, 0.0, 3)
    fp = FixedPoint.for_noise(noise, 3, 3)
    out = privatize(np.array([0.0, 0.5, -0.5]), clip=1.0, noise=noise, fp=fp, source=SecureRandom.reproducible(1))
    decoded = aggregate_decode(out.encoded, fp, 1)
    np.testing.assert_allclose(decoded, [0.0, 0.5, -0.5], atol=fp.resolution)
    assert decoded[0] == 0.0  # zero stays exactly zero: nothing random was added


def test_nan_delta_never_leaves():
    fp = FixedPoint(1.0, 0.0, 1, 5, 2)
    with pytest.raises(ConfigError):
        privatize(np.array([np.nan, 1.0]), clip=1.0, noise=None, fp=fp, source=SecureRandom.reproducible(0))


@pytest.mark.parametrize(
    "noise,fp",
    [
        (DistributedNoise(0.5, 1.0, 4), FixedPoint(1.0, 1.0, 4, 4, 2)),  # noise for a smaller clip
        (None, FixedPoint(0.5, 0.0, 1, 4, 2)),  # code covers a smaller clip
        (DistributedNoise(1.0, 1.0, 4), FixedPoint(1.0, 0.5, 4, 4, 2)),  # code adds less noise
        (DistributedNoise(1.0, 1.0, 4), FixedPoint(1.0, 1.0, 2, 4, 2)),  # other survivors
        (None, FixedPoint(1.0, 1.0, 4, 4, 2)),  # a noisy code without its noise
        (DistributedNoise(1.0, 1.0, 4), FixedPoint(1.0, 1.0, 4, 4, 3)),  # another dimension
    ],
)
def test_inconsistent_parameters_are_config_errors(noise, fp):
    with pytest.raises(ConfigError):
        privatize(np.ones(2), clip=1.0, noise=noise, fp=fp, source=SecureRandom.reproducible(0))


def test_a_numpy_generator_is_refused():
    fp = FixedPoint(1.0, 0.0, 1, 5, 2)
    with pytest.raises(ConfigError, match="RandomSource"):
        privatize(np.ones(2), clip=1.0, noise=None, fp=fp, source=np.random.default_rng(0))  # type: ignore[arg-type]


def test_public_names():
    for name in privacy.__all__:
        assert hasattr(privacy, name), name
    assert sorted(privacy.__all__) == privacy.__all__
    assert not hasattr(privacy, "add_noise")  # the float Gaussian path is gone


def test_importing_the_package_does_not_load_dp_accounting():
    code = (
        "import sys, math\n"
        "sys.modules['dp_accounting'] = None  # as if not installed\n"
        "import edgerec.privacy as p\n"
        "assert p.epsilon(10, 1, 0.0, 5) == float('inf')  # needs no library\n"
        "assert p.releases_epsilon([p.Release(10, 2, 0.0)], 1e-5) == math.inf\n"
        "assert p.device_epsilon([], 1e-5) == 0.0\n"
        "try:\n"
        "    p.epsilon(10, 1, 1.0, 5)\n"
        "except ImportError as exc:\n"
        "    assert 'edgerec[privacy]' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('expected ImportError')\n"
    )
    check = "import sys, edgerec.privacy; assert 'dp_accounting' not in sys.modules"
    for source in (check, code):
        subprocess.run([sys.executable, "-c", source], check=True, timeout=60)


def test_pure_modules_never_read_the_os():
    # Only random.py (SecureRandom.from_os) and ledger.py may do I/O (DESIGN.md: pure code).
    import ast
    from pathlib import Path

    folder = Path(privacy.__file__).parent
    for path in folder.glob("*.py"):
        if path.name in ("random.py", "ledger.py"):
            continue
        tree = ast.parse(path.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
        assert not imported & {"os", "sqlite3", "time", "socket", "pathlib", "secrets"}, path.name
        called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call)
                  and isinstance(node.func, ast.Name)}
        assert "open" not in called, path.name
