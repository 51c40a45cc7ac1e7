"""Sampled softmax with logQ correction: exact when the sample is the catalogue, unbiased
partition estimate, correct gradients, accidental hits, the automatic rule, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerec._exceptions import ConfigError
from edgerec.data import synthetic
from edgerec.model.config import ModelConfig, TrainConfig
from edgerec.model.network import forward, loss_and_grads
from edgerec.model.params import init_params
from edgerec.model.sampled import (SAMPLED_FROM_ITEMS, NegativeSampler, Negatives,
                                   inclusion_probabilities, popularity_proposal, sampled_softmax,
                                   use_sampled)
from edgerec.training import TrainingRun

N_ITEMS = 12


def _problem(hidden: bool = True, seed: int = 0, scale: float = 0.5):
    rng = np.random.default_rng(seed)
    cfg = ModelConfig(dim=6, history=5, hidden=hidden)
    params = {k: v.astype(np.float64) for k, v in init_params(cfg, N_ITEMS, 3, rng).items()}
    params["emb_out"] = rng.standard_normal(params["emb_out"].shape) * scale
    params["bias"] = rng.standard_normal(N_ITEMS) * scale
    if hidden:
        params["w2"] = rng.standard_normal(params["w2"].shape) * 0.3
    features = rng.random((N_ITEMS, 3))
    items = rng.integers(0, N_ITEMS, (5, cfg.history))
    signals = rng.integers(1, 12, (5, cfg.history))
    targets = rng.integers(0, N_ITEMS, 5)
    return params, features, items, signals, targets


def _all_items() -> Negatives:
    return Negatives(np.arange(N_ITEMS), np.zeros(N_ITEMS, np.float32))


@pytest.mark.parametrize("hidden, adapter", [(False, False), (True, False), (True, True)])
def test_sampling_the_whole_catalogue_is_full_softmax(hidden, adapter):
    params, features, items, signals, targets = _problem(hidden)
    if adapter:
        params["adapter"] = np.full(6, 0.1)
    sampler = NegativeSampler.for_targets(targets, N_ITEMS, N_ITEMS, uniform_mix=0.3)
    assert np.all(sampler.inclusion == 1.0)
    negatives = sampler.draw(np.random.default_rng(0))
    full_loss, full = loss_and_grads(params, features, items, signals, targets, 0.01)
    loss, grads = loss_and_grads(params, features, items, signals, targets, 0.01, negatives=negatives)
    assert loss == pytest.approx(full_loss, rel=1e-12)
    assert grads.keys() == full.keys()
    for name in full:
        np.testing.assert_allclose(grads[name], full[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_sampled_gradients_match_finite_differences():
    params, features, items, signals, targets = _problem()
    picked = np.array([0, 2, 3, int(targets[0]), 7, 11])
    picked = np.unique(picked)
    negatives = Negatives(picked, np.log(np.linspace(0.2, 0.9, len(picked))).astype(np.float32))
    _, grads = loss_and_grads(params, features, items, signals, targets, negatives=negatives)
    eps = 1e-6
    for name in ("emb_out", "bias", "emb_in", "w1", "pos"):
        flat = params[name].ravel()
        for idx in range(0, flat.size, max(1, flat.size // 12)):
            saved = flat[idx]
            flat[idx] = saved + eps
            up, _ = loss_and_grads(params, features, items, signals, targets, negatives=negatives)
            flat[idx] = saved - eps
            down, _ = loss_and_grads(params, features, items, signals, targets, negatives=negatives)
            flat[idx] = saved
            assert grads[name].ravel()[idx] == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-7)


def test_an_accidental_hit_is_removed():
    params, features, items, signals, targets = _problem()
    fwd = forward(params, features, items, signals)
    only_target = Negatives(np.array([targets[0]]), np.zeros(1, np.float32))
    loss, _, g_table, _ = sampled_softmax(fwd.user[:1], fwd.table_out, params["bias"], targets[:1],
                                          only_target)
    # The target alone: its probability is 1, and nothing pushes it anywhere.
    assert loss == pytest.approx(0.0, abs=1e-12)
    assert not np.any(g_table)


def _partition_estimates(corrected: bool, draws: int = 4000):
    params, features, items, signals, targets = _problem(scale=1.0)
    fwd = forward(params, features, items, signals)
    logits = fwd.user @ fwd.table_out.T + params["bias"]
    sampler = NegativeSampler.for_targets(targets, N_ITEMS, 4, uniform_mix=0.5)
    rng = np.random.default_rng(1)
    estimates = np.zeros(len(targets))
    for _ in range(draws):
        neg = sampler.draw(rng)
        if not corrected:
            neg = Negatives(neg.items, np.zeros_like(neg.log_inclusion))
        for b, t in enumerate(targets):  # one row at a time: each loss is log(Z_hat) - o_t
            loss, *_ = sampled_softmax(fwd.user[b : b + 1], fwd.table_out, params["bias"],
                                       targets[b : b + 1], neg)
            estimates[b] += np.exp(loss + logits[b, t]) / draws
    return estimates, np.exp(logits).sum(axis=1)


def test_logq_correction_makes_the_partition_estimate_unbiased():
    corrected, exact = _partition_estimates(True)
    np.testing.assert_allclose(corrected, exact, rtol=0.05)
    uncorrected, _ = _partition_estimates(False)
    assert np.all(uncorrected < 0.8 * exact)  # without it the sum misses the unsampled mass


def test_sampled_gradient_approaches_full_gradient_with_more_negatives():
    params, features, items, signals, targets = _problem(scale=1.0)
    _, full = loss_and_grads(params, features, items, signals, targets)
    rng = np.random.default_rng(2)

    def mean_error(negatives: int, corrected: bool = True) -> float:
        sampler = NegativeSampler.for_targets(targets, N_ITEMS, negatives, uniform_mix=0.5)
        total = np.zeros_like(full["emb_out"])
        for _ in range(1500):
            neg = sampler.draw(rng)
            if not corrected:
                neg = Negatives(neg.items, np.zeros_like(neg.log_inclusion))
            total += loss_and_grads(params, features, items, signals, targets, negatives=neg)[1]["emb_out"]
        return float(np.abs(total / 1500 - full["emb_out"]).max())

    few, many = mean_error(3), mean_error(9)
    assert many < few
    assert many < 0.2 * np.abs(full["emb_out"]).max()
    assert mean_error(3, corrected=False) > few  # the correction removes most of the bias


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(0, 50), min_size=2, max_size=40),
       mix=st.floats(0.0, 1.0), negatives=st.integers(1, 60))
def test_inclusion_probabilities_spend_the_budget(counts, mix, negatives):
    n = len(counts)
    targets = np.repeat(np.arange(n), counts)
    q = popularity_proposal(targets, n, mix)
    assert q.sum() == pytest.approx(1.0)
    p = inclusion_probabilities(q, negatives)
    assert np.all((p >= 0) & (p <= 1))
    assert p.sum() == pytest.approx(min(negatives, np.count_nonzero(q)), rel=1e-6)
    order = np.argsort(q, kind="stable")
    assert np.all(np.diff(p[order]) >= -1e-12)  # more popular: at least as likely


def test_draws_follow_the_inclusion_probabilities():
    targets = np.repeat(np.arange(20), np.arange(20) ** 2)
    sampler = NegativeSampler.for_targets(targets, 20, 6, uniform_mix=0.2)
    rng = np.random.default_rng(3)
    seen = np.zeros(20)
    for _ in range(5000):
        neg = sampler.draw(rng)
        assert np.all(np.diff(neg.items) > 0)
        np.testing.assert_allclose(neg.log_inclusion, np.log(sampler.inclusion[neg.items]), rtol=1e-6)
        seen[neg.items] += 1
    np.testing.assert_allclose(seen / 5000, sampler.inclusion, atol=0.03)


def test_the_automatic_rule():
    assert not use_sampled("auto", SAMPLED_FROM_ITEMS - 1, 64)
    assert use_sampled("auto", SAMPLED_FROM_ITEMS, 64)
    assert not use_sampled("auto", 10 * SAMPLED_FROM_ITEMS, 10 * SAMPLED_FROM_ITEMS)  # no saving
    assert use_sampled("sampled", 10, 1024) and not use_sampled("full", 10**6, 64)
    with pytest.raises(ConfigError):
        use_sampled("fast", 10, 10)


@pytest.mark.parametrize("bad", [{"softmax": "fast"}, {"negatives": 0}, {"negatives": 2.5},
                                 {"uniform_mix": -0.1}, {"uniform_mix": 1.5}])
def test_train_config_rejects_bad_softmax_options(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def _trained(**options) -> dict[str, np.ndarray]:
    data = synthetic(40, 60, seed=0)
    tcfg = TrainConfig(epochs=2, batch_size=32, **options)
    run = TrainingRun.fresh(data.sequences(), data.catalogue.features, ModelConfig(dim=8, history=6),
                            tcfg)
    run.advance(2)
    return run.params


def test_sampled_training_is_deterministic_by_seed_and_differs_from_full():
    first = _trained(softmax="sampled", negatives=16, seed=4)
    again = _trained(softmax="sampled", negatives=16, seed=4)
    other = _trained(softmax="sampled", negatives=16, seed=5)
    full = _trained(softmax="full", seed=4)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["emb_out"], other["emb_out"])
    assert not np.array_equal(first["emb_out"], full["emb_out"])
    # A small catalogue under "auto" trains with full softmax, bit for bit.
    auto = _trained(seed=4)
    assert all(np.array_equal(full[k], auto[k]) for k in full)
