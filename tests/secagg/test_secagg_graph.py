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
    full = SecAggConfig(1, 10)
    assert full.parameters_for(100) == (99, 51)
    plus = SecAggConfig(1, 10, graph="harary")
    assert plus.parameters_for(100) == (2 * math.ceil(math.log2(100)), 8)
    assert plus.parameters_for(500) == (18, 10)
    assert plus.parameters_for(10) == (8, 5)  # 2*ceil(log2 10) = 8 < 9
    assert plus.parameters_for(5) == (4, 3)  # capped at n - 1: complete
    for k in range(2, 60):
        t = min_threshold(k)
        assert 2 * t > k + 1 and 2 * (t - 1) <= k + 1


def test_turnout_that_cannot_be_safe_aborts():
    with pytest.raises(RoundAbortedError):
        SecAggConfig(1, 10, min_clients=5).parameters_for(4)
    with pytest.raises(RoundAbortedError):  # t = 3 is not a majority of 7 holders
        SecAggConfig(1, 10, threshold=3).parameters_for(7)
    with pytest.raises(RoundAbortedError):  # t above the degree: no dropped key could be rebuilt
        SecAggConfig(1, 10, threshold=5).parameters_for(5)
    assert SecAggConfig(1, 10, threshold=4).parameters_for(5) == (4, 4)


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
    ],
)
def test_bad_config_raises_config_error(kwargs):
    args = dict(round_id=1, vector_length=10) | kwargs
    with pytest.raises(ConfigError):
        SecAggConfig(**args)
