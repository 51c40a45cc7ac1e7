"""Lean evaluation layouts: fewer slots, a lower L2 bound (so less noise at the same z), the same
point estimates, and intervals that bound the sampling variance instead of estimating it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerec import ConfigError
from edgerec.fedeval import EvalConfig, estimate

from test_fedeval_estimate import CAT, CFG, LAYOUT, TRUE, _random_device, population_vectors

LEAN = dict(metrics=("ndcg",), squares=False, live=False)
LEAN_PAIR = EvalConfig(**LEAN).layout  # installed + candidate
LEAN_ALONE = EvalConfig(models=("installed",), **LEAN).layout


def _lean_rows(full: np.ndarray, layout=LEAN_PAIR) -> np.ndarray:
    """The lean layout's slots of full-layout vectors (what a device sends under it)."""
    return full[:, [LAYOUT.index[name] for name in layout.names]]


def test_lean_layouts_keep_only_the_slots_they_name_and_lower_the_bound():
    assert LEAN_ALONE.names == ("loo.devices", "installed.ndcg@10")
    assert LEAN_ALONE.l2_bound == pytest.approx(math.sqrt(2))
    assert LEAN_PAIR.names == ("loo.devices", "installed.ndcg@10", "candidate.ndcg@10",
                               "candidate-installed.ndcg@10.sq")  # the decision's spread stays
    assert LEAN_PAIR.l2_bound == pytest.approx(2.0)
    squares_only = EvalConfig(models=("installed",), live=False).layout
    assert len(squares_only) == 5 and "installed.hr@10.sq" in squares_only.index
    no_live = EvalConfig(live=False).layout
    assert not any(n.startswith("live.") for n in no_live.names) and len(no_live) == 11


def test_the_key_names_the_lean_options_and_leaves_version_1_keys_as_they_were():
    assert EvalConfig().layout.key == ("edgerec.fedeval/1;models=installed,candidate;k=10;held_out=5;"
                                       "impressions=100;attribution_s=86400;history=4096")
    assert LEAN_PAIR.key == EvalConfig().layout.key + ";metrics=ndcg;squares=0;live=0"
    keys = {EvalConfig(**kw).layout.key for kw in ({}, {"metrics": ("hr",)}, {"squares": False},
                                                     {"live": False}, LEAN)}
    assert len(keys) == 5


@pytest.mark.parametrize("kw", [{"metrics": ()}, {"metrics": ("ndcg", "hr")}, {"metrics": ("mrr",)},
                                {"metrics": ["ndcg"]}, {"metrics": ("ndcg", "ndcg")},
                                {"squares": 0}, {"live": "no"}])
def test_bad_lean_options_are_refused(kw):
    with pytest.raises(ConfigError):
        EvalConfig(**kw)


def test_a_device_sends_the_lean_subset_of_what_it_measured():
    from edgerec.fedeval import device_eval

    rng = np.random.default_rng(5)
    good = rng.permutation(30)
    scorers = {"installed": lambda i, s: -np.argsort(good).astype(float),
               "candidate": lambda i, s: np.arange(30, dtype=float)}
    for _ in range(20):
        events = _random_device(rng, good[:5])
        kw = dict(catalogue=CAT, scorers=scorers, held_out_after=100.0, live_since=900.0, until=5000.0)
        full = device_eval(events, config=CFG, **kw)
        lean = device_eval(events, config=LEAN_PAIR.config, **kw)
        assert np.array_equal(lean.vector(), full.vector()[[LAYOUT.index[n] for n in LEAN_PAIR.names]])


def test_without_noise_the_lean_estimates_are_the_full_ones_with_wider_sampling_intervals():
    full = population_vectors(np.random.default_rng(2), 300)
    a = estimate(full.sum(0), 0.0, 300, layout=LAYOUT)
    b = estimate(_lean_rows(full).sum(0), 0.0, 300, layout=LEAN_PAIR)
    assert set(b.metrics) == {"installed.ndcg@10", "candidate.ndcg@10", "candidate-installed.ndcg@10",
                              "loo.devices"}
    for name in b.metrics:
        assert b[name].value == pytest.approx(a[name].value, abs=1e-12)
    # per model: the Bernoulli bound, above the estimated spread; the paired difference keeps
    # its .sq slot, so its interval is the full layout's
    for name in ("installed.ndcg@10", "candidate.ndcg@10"):
        assert b[name].sampling_std_error > a[name].sampling_std_error
    paired = "candidate-installed.ndcg@10"
    assert b[paired].std_error == pytest.approx(a[paired].std_error, rel=1e-12)


def test_the_same_noise_multiplier_puts_less_noise_on_a_lean_estimate():
    full = population_vectors(np.random.default_rng(4), 500)
    z = 2.0
    a = estimate(full.sum(0), z * LAYOUT.l2_bound, 500, layout=LAYOUT)
    b = estimate(_lean_rows(full).sum(0), z * LEAN_PAIR.l2_bound, 500, layout=LEAN_PAIR)
    ratio = b["installed.ndcg@10"].noise_std_error / a["installed.ndcg@10"].noise_std_error
    assert ratio == pytest.approx(LEAN_PAIR.l2_bound / LAYOUT.l2_bound)  # 2 / sqrt(23)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0.0, 1.0)), min_size=2, max_size=40))
def test_the_bernoulli_bound_is_never_below_the_spread_it_replaces(devices):
    # any devices: with and without held-out events, any mean in [0, 1]
    loo = np.array([float(has) for has, _ in devices])
    y = np.array([v if has else 0.0 for has, v in devices])
    full = EvalConfig(models=("installed",), metrics=("ndcg",), live=False).layout
    lean = EvalConfig(models=("installed",), metrics=("ndcg",), squares=False, live=False).layout
    a = estimate(np.array([loo.sum(), y.sum(), (y * y).sum()]), 0.0, len(devices), layout=full)
    b = estimate(np.array([loo.sum(), y.sum()]), 0.0, len(devices), layout=lean)
    name = "installed.ndcg@10"
    assert a[name].defined == b[name].defined
    if a[name].defined:
        assert b[name].value == a[name].value
        assert b[name].sampling_std_error >= a[name].sampling_std_error - 1e-12


SEEDS = 400


@pytest.mark.parametrize("z", [0.0, 2.0])
def test_lean_intervals_cover_at_least_at_the_stated_rate(z):
    covered = dict.fromkeys(("installed.ndcg@10", "candidate.ndcg@10", "candidate-installed.ndcg@10"), 0)
    sigma = z * LEAN_PAIR.l2_bound
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        total = _lean_rows(population_vectors(rng, 400)).sum(0) + rng.normal(0, sigma, len(LEAN_PAIR))
        out = estimate(total, sigma, 400, layout=LEAN_PAIR)
        for name in covered:
            covered[name] += out[name].low <= TRUE[name] <= out[name].high
    tolerance = 3.5 * math.sqrt(0.95 * 0.05 / SEEDS)
    for name, count in covered.items():
        assert count / SEEDS >= 0.95 - tolerance, (name, count / SEEDS)


_hostile = st.one_of(st.floats(allow_nan=False), st.integers(-(10**400), 10**400),
                     st.sampled_from([-math.inf, math.inf, -1e308, 1e308, -5, 0, 1, 2]))


@settings(max_examples=200, deadline=None)
@given(st.lists(_hostile, min_size=4, max_size=4))
def test_a_lean_vector_stays_within_the_bound_its_noise_is_calibrated_to(raw):
    # whatever a device's figures, its lean vector never exceeds the sensitivity the round's
    # noise is scaled to (sqrt(2) alone, 2 with a candidate): less noise must not mean less privacy
    for layout in (LEAN_ALONE, LEAN_PAIR):
        vec = layout.encode(dict(zip(layout.names, raw)))
        assert np.all((vec >= 0.0) & (vec <= 1.0))
        assert float(np.linalg.norm(vec)) <= layout.l2_bound + 1e-12
