"""SecureRandom: a keyed AES-CTR stream; reproducible only when asked, and then marked not private."""

from __future__ import annotations

import numpy as np
import pytest

from edgerec import ConfigError
from edgerec.privacy import RandomSource, SecureRandom

stats = pytest.importorskip("scipy.stats")


def test_same_key_same_stream_and_calls_continue_one_stream():
    key = bytes(range(32))
    a, b = SecureRandom(key), SecureRandom(key)
    assert a.bytes(40) == b.bytes(16) + b.bytes(24)
    assert np.array_equal(a.uint64(5), b.uint64(5))
    assert a.private and b.private


def test_different_keys_give_different_streams():
    a, b = SecureRandom(b"\x00" * 32), SecureRandom(b"\x00" * 31 + b"\x01")
    assert a.bytes(64) != b.bytes(64)


def test_reproducible_seeds_repeat_and_are_not_private():
    first, again, other = (SecureRandom.reproducible(s) for s in (7, 7, 8))
    draws = first.uniform(1000)
    assert np.array_equal(draws, again.uniform(1000))
    assert not np.array_equal(draws, other.uniform(1000))
    assert not first.private
    assert SecureRandom.reproducible(b"abc").bytes(16) == SecureRandom.reproducible(b"abc").bytes(16)
    # An int seed and the bytes of its text are different seeds.
    assert SecureRandom.reproducible(7).bytes(16) != SecureRandom.reproducible(b"7").bytes(16)


def test_from_os_is_private_and_fresh_each_time():
    a, b = SecureRandom.from_os(), SecureRandom.from_os()
    assert a.private and b.private
    assert a.bytes(32) != b.bytes(32)


def test_uniforms_have_53_random_bits_in_the_unit_interval():
    u = SecureRandom.reproducible(1).uniform(200_000)
    assert u.dtype == np.float64 and u.shape == (200_000,)
    assert u.min() >= 0.0 and u.max() < 1.0
    grid = u * 2.0**53
    assert np.array_equal(grid, np.floor(grid))  # multiples of 2^-53
    assert stats.kstest(u, "uniform").pvalue > 1e-6


def test_uint64_words_look_uniform():
    words = SecureRandom.reproducible(2).uint64(100_000)
    assert words.dtype == np.uint64
    bits = np.unpackbits(words.view(np.uint8))
    # Each of the 6.4 million bits is a fair coin: a 6-sigma band around one half.
    assert abs(bits.mean() - 0.5) < 6 * 0.5 / np.sqrt(bits.size)


def test_the_protocol_is_what_pure_code_checks():
    assert isinstance(SecureRandom.reproducible(0), RandomSource)
    assert not isinstance(np.random.default_rng(0), RandomSource)  # PCG64 is not a CSPRNG


@pytest.mark.parametrize("key", [b"", b"x" * 16, b"x" * 33, "k" * 32, None])
def test_bad_keys_are_refused(key):
    with pytest.raises(ConfigError):
        SecureRandom(key)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [-1, 1.5, True, "3"])
def test_bad_counts_are_refused(n):
    with pytest.raises(ConfigError):
        SecureRandom.reproducible(0).bytes(n)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        SecureRandom.reproducible(0).uniform(n)  # type: ignore[arg-type]


def test_bad_seeds_are_refused_and_the_key_never_shows():
    with pytest.raises(ConfigError):
        SecureRandom.reproducible(1.5)  # type: ignore[arg-type]
    key = b"\xab" * 32
    assert "ab" not in repr(SecureRandom(key)).lower().replace("secure", "")
    assert SecureRandom(key).bytes(0) == b"" and SecureRandom(key).uniform(0).shape == (0,)
