"""End to end: for any dropout pattern, the server gets the exact sum of the survivors' inputs
(mod 2^32) or the round aborts; it aborts exactly when too few are left to unmask."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings, strategies as st

from edgerec.secagg import (
    RoundAbortedError,
    SecAggConfig,
    Stage,
    deterministic_rng,
    min_threshold,
    simulate_round,
)
from edgerec.secagg import graph

SETTINGS = settings(max_examples=50, deadline=None)
# Mostly complete, so that rounds with dropouts at every stage still often succeed.
STAGES = [Stage.ADVERTISE, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASK] + [Stage.DONE] * 12


def _inputs(n: int, length: int, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = {c: rng.integers(0, 2**32, length, dtype=np.uint32) for c in range(n)}
    inputs[0][:] = 2**32 - 1  # make wrap-around certain
    return inputs


def _exact_sum(inputs: dict[int, np.ndarray], who) -> np.ndarray:
    total = sum((inputs[c].astype(np.uint64) for c in who), np.zeros_like(inputs[0], dtype=np.uint64))
    return (total % 2**32).astype(np.uint32)


@st.composite
def rounds(draw, graph_kind: str):
    n = draw(st.integers(3, 12))
    length = draw(st.integers(1, 40))
    degree = None
    if graph_kind == "harary":
        degree = 2 * draw(st.integers(1, max(1, (n - 2) // 2)))
    k = (n - 1) if degree is None else min(degree, n - 1)
    lowest = min_threshold(k)
    threshold = draw(st.one_of(st.just(lowest), st.integers(lowest, max(lowest, k))))
    config = SecAggConfig(draw(st.integers(0, 2**64 - 1)), length, graph=graph_kind, degree=degree, threshold=threshold)
    drops = draw(st.lists(st.sampled_from(STAGES), min_size=n, max_size=n))
    dropouts = {c: s for c, s in enumerate(drops) if s != Stage.DONE}
    return config, n, dropouts, draw(st.binary(max_size=8)), draw(st.integers(0, 2**32))


def _alive(c: int, dropouts, stage: Stage) -> bool:
    return dropouts.get(c, Stage.DONE) > stage


def _predicted_survivors(config: SecAggConfig, n: int, dropouts, seed: bytes) -> frozenset[int] | None:
    """An independent model of who ends up in the sum, or None if the round must abort."""
    u1 = [c for c in range(n) if _alive(c, dropouts, Stage.ADVERTISE)]
    try:
        degree, t = config.parameters_for(len(u1))
    except RoundAbortedError:
        return None
    # The simulated server's first random draw is the graph seed.
    g = graph.neighbourhoods(u1, deterministic_rng(seed + b"/server")(32), degree)
    u2 = {c for c in u1 if _alive(c, dropouts, Stage.SHARE_KEYS)}
    if len(u2) < t:
        return None
    refusing = {u for u in u2 if len(g[u] & u2) + 1 < t}  # too few partners: refuses to mask
    u3 = {c for c in u2 if _alive(c, dropouts, Stage.MASKED_INPUT)} - refusing
    u4 = {c for c in u3 if _alive(c, dropouts, Stage.UNMASK)}
    if len(u3) < t:
        return None
    for answering in (u3, u4):
        if any(len(g[v] & answering) < t for v in u2 - u3):
            return None
        if any(len((g[u] | {u}) & answering) < t for u in u3):
            return None
    return frozenset(u3)


def _check(config, n, dropouts, seed, input_seed):
    inputs = _inputs(n, config.vector_length, input_seed)
    expected = _predicted_survivors(config, n, dropouts, seed)
    if expected is None:
        with pytest.raises(RoundAbortedError):
            simulate_round(config, inputs, seed=seed, dropouts=dropouts)
        event("aborted")
        return None
    outcome = simulate_round(config, inputs, seed=seed, dropouts=dropouts)
    assert outcome.result.survivors == expected
    assert np.array_equal(outcome.result.total, _exact_sum(inputs, expected))
    event(f"summed, {n - len(expected)} dropped")
    return outcome


@SETTINGS
@given(case=rounds("complete"))
def test_secagg_sum_is_exact_iff_at_least_t_answer(case):
    config, n, dropouts, seed, input_seed = case
    outcome = _check(config, n, dropouts, seed, input_seed)
    # The statement, for the complete graph: the round succeeds exactly when at least t
    # clients are left at the end (and enough showed up for the threshold to be valid).
    u1 = [c for c in range(n) if _alive(c, dropouts, Stage.ADVERTISE)]
    answering = [c for c in range(n) if _alive(c, dropouts, Stage.UNMASK)]
    valid_turnout = len(u1) >= 3 and min_threshold(len(u1) - 1) <= config.threshold <= len(u1) - 1
    assert (outcome is not None) == (valid_turnout and len(answering) >= config.threshold)


@SETTINGS
@given(case=rounds("harary"))
def test_secagg_plus_sum_is_exact_or_round_aborts(case):
    config, n, dropouts, seed, input_seed = case
    outcome = _check(config, n, dropouts, seed, input_seed)
    answering = [c for c in range(n) if _alive(c, dropouts, Stage.UNMASK)]
    if len(answering) < config.threshold:
        assert outcome is None


def test_no_dropouts_larger_round_both_graphs():
    inputs = _inputs(30, 100, 3)
    for config in (SecAggConfig(9, 100), SecAggConfig(9, 100, graph="harary")):
        outcome = simulate_round(config, inputs, seed=b"big")
        assert outcome.result.survivors == frozenset(range(30))
        assert np.array_equal(outcome.result.total, _exact_sum(inputs, range(30)))
        assert not outcome.refused


def test_client_dropping_after_masked_input_is_still_summed():
    inputs = _inputs(8, 10, 4)
    outcome = simulate_round(SecAggConfig(1, 10), inputs, dropouts={2: Stage.UNMASK, 5: Stage.UNMASK})
    assert outcome.result.survivors == frozenset(range(8))
    assert np.array_equal(outcome.result.total, _exact_sum(inputs, range(8)))


def test_simulation_counts_bytes_and_is_reproducible():
    inputs = _inputs(6, 1000, 5)
    a = simulate_round(SecAggConfig(1, 1000), inputs, seed=b"r")
    b = simulate_round(SecAggConfig(1, 1000), inputs, seed=b"r")
    assert a.upload_bytes == b.upload_bytes and np.array_equal(a.result.total, b.result.total)
    for c in range(6):
        # the masked vector, plus shares, keys and signatures for 5 neighbours (about 1 KB)
        assert 4000 < a.upload_bytes[c] < 4000 + 1500
        assert a.download_bytes[c] > 0
