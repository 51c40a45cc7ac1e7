"""Server optimizers: FedAvg is the plain mean step; FedAdam follows Reddi et al. 2021."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgerec import ConfigError
from edgerec.federated import FedAdam, FedAvg, StrategyState

vectors = arrays(np.float64, 6, elements=st.floats(-10, 10))


@given(vectors, vectors, st.floats(0.01, 5))
def test_fedavg_moves_by_lr_times_the_mean(w, d, lr):
    new, state = FedAvg(lr).apply(w, d, StrategyState())
    np.testing.assert_allclose(new, w + lr * d)
    assert state.step == 1


@given(vectors, vectors)
def test_fedadam_first_step_matches_the_paper(w, d):
    opt = FedAdam(lr=0.1, beta1=0.9, beta2=0.99, tau=1e-3)
    new, state = opt.apply(w, d, StrategyState())
    m = 0.1 * d
    v = 0.99 * 1e-6 + 0.01 * d * d
    np.testing.assert_allclose(new, w + 0.1 * m / (np.sqrt(v) + 1e-3), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(state.arrays["m"], m)


def test_fedadam_steps_are_bounded_by_lr_and_state_carries():
    opt = FedAdam(lr=0.05)
    w, state = np.zeros(4), StrategyState()
    for _ in range(20):
        before = w
        w, state = opt.apply(w, np.array([1e3, -1e-3, 0.0, 5.0]), state)
        assert np.all(np.abs(w - before) <= 0.05 / (1 - 0.9) + 1e-9)
    assert state.step == 20 and np.all(np.sign(w[[0, 1, 3]]) == [1, -1, 1])


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError):
        FedAvg(lr=0)
    with pytest.raises(ConfigError):
        FedAdam(beta2=1.0)
    with pytest.raises(ConfigError):
        FedAvg().apply(np.zeros(3), np.zeros(4), StrategyState())
    with pytest.raises(ConfigError):
        FedAvg().apply(np.zeros(2), np.array([np.nan, 0]), StrategyState())
