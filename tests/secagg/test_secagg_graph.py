"""The neighbour graph and the round parameters derived from the configuration."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

from edgerec import ConfigError
from edgerec.secagg import RoundAbortedError, SecAggConfig, min_threshold
from edgerec.secagg import graph


@settings(max_examples=40, deadline=None)
@given(
    ids=st.lists(st.integers(0, 2**32 - 2), min_size=3, max_size=40, unique=True),
    half=st.integers(1, 10),
    seed=st.binary(min_size=32, max_size=32),
)
def test_harary_graph_is_symmetric_regular_and_agrees_with_neighbours_of(ids, half, seed):
    degree = 2 * half
    g = graph.neighbourhoods(ids, seed, degree)
    assert set(g) == set(ids)
    for c, near in g.items():
        assert c not in near
        assert len(near) == min(degree, len(ids) - 1)
        assert all(c in g[v] for v in near)
        assert graph.neighbours_of(c, list(reversed(ids)), seed, degree) == near


def test_relabelling_depends_on_the_seed():
    ids = list(range(50))
    a = graph.neighbourhoods(ids, b"a" * 32, 6)
    b = graph.neighbourhoods(ids, b"b" * 32, 6)
    assert a != b
    assert a == graph.neighbourhoods(ids, b"a" * 32, 6)


def test_default_parameters():
    """The active-adversary floor: t > 2/3 of a neighbourhood (k + 1 holders of a seed)."""
    full = SecAggConfig(1, 10)
    assert full.parameters_for(100) == (99, 67)
    plus = SecAggConfig(1, 10, graph="harary")
    assert plus.parameters_for(100) == (2 * math.ceil(math.log2(100)), 11)
    assert plus.parameters_for(500) == (18, 13)
    assert plus.parameters_for(10) == (8, 7)  # 2*ceil(log2 10) = 8 < 9
    assert plus.parameters_for(5) == (4, 4)  # capped at n - 1: complete
    for k in range(2, 60):
        t = min_threshold(k)
        assert 3 * t > 2 * (k + 1) and 3 * (t - 1) <= 2 * (k + 1)


@settings(max_examples=200, deadline=None)
@given(k=st.integers(2, 400), c=st.integers(0, 50), num=st.integers(0, 9))
def test_floor_keeps_an_honest_answerer_key_out_of_reach(k, c, num):
    """SECURITY.md's argument: a client that answered saw t signers in its neighbourhood, so at
    most k - t + 1 + 2c key shares of it can reach the server; the floor keeps that below t,
    and t stays above the chosen fraction of the k + 1 holders."""
    from fractions import Fraction

    fraction = Fraction(num, 10)
    t = min_threshold(k, c, fraction)
    assert k - t + 1 + 2 * c < t
    assert t > fraction * (k + 1)
    assert t - 1 <= max((k + 1 + 2 * c) // 2, int(fraction * (k + 1)))  # the smallest such t


def test_turnout_that_cannot_be_safe_aborts():
    with pytest.raises(RoundAbortedError):
        SecAggConfig(1, 10, min_clients=5).parameters_for(4)
    with pytest.raises(RoundAbortedError):  # t = 4 is not above 2/3 of 7 holders
        SecAggConfig(1, 10, threshold=4).parameters_for(7)
    with pytest.raises(RoundAbortedError):  # t above the degree: no dropped key could be rebuilt
        SecAggConfig(1, 10, threshold=5).parameters_for(5)
    with pytest.raises(RoundAbortedError):  # 2 colluders need 2t > k + 1 + 4
        SecAggConfig(1, 10, threshold=6, colluders=2).parameters_for(8)
    assert SecAggConfig(1, 10, threshold=4).parameters_for(5) == (4, 4)
    assert SecAggConfig(1, 10, threshold=3, min_fraction=0).parameters_for(5) == (4, 3)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(round_id=-1),
        dict(round_id=2**64),
        dict(vector_length=0),
        dict(min_clients=2),
        dict(graph="ring"),
        dict(degree=4),  # degree only with graph="harary"
        dict(graph="harary", degree=5),
        dict(graph="harary", degree=0),
        dict(threshold=1),
        dict(colluders=-1),
        dict(min_fraction=1),
    ],
)
def test_bad_config_raises_config_error(kwargs):
    args = dict(round_id=1, vector_length=10) | kwargs
    with pytest.raises(ConfigError):
        SecAggConfig(**args)
