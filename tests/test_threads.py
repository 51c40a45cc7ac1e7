"""BLAS threads are chosen, not inherited: training, fine-tuning and evaluation run their numeric
work under the configured limit (observed from inside the work), and put it back afterwards."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import edgerec.finetune as finetune_module
from edgerec import ConfigError
from edgerec._threads import blas_threads
from edgerec.data import Sequences, synthetic
from edgerec.evaluation import Method, most_popular, run_protocol
from edgerec.finetune import FineTuneConfig, fine_tune
from edgerec.model.config import ModelConfig, TrainConfig
from edgerec.training import fit_params

DATA = synthetic(n_users=40, n_items=30, n_genres=3, mean_length=6, seed=2)
CFG = ModelConfig(dim=8, history=5)


def blas_counts() -> list[int]:
    """The thread count of every BLAS library loaded in this process (numpy's, scipy's, ...)."""
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


@pytest.fixture()
def outside() -> Iterable[list[int]]:
    """BLAS at 3 threads around the test (whatever the environment says), restored after: a
    limit of 1 or 2 seen inside the work cannot be the process default showing through."""
    with blas_threads(3):
        counts = blas_counts()
        assert counts and set(counts) == {3}
        yield counts


def watching(seen: list[list[int]]):
    """A progress hook that records the BLAS thread counts at each epoch, inside training."""
    def progress(epochs: Iterable[int]) -> Iterable[int]:
        for epoch in epochs:
            seen.append(blas_counts())
            yield epoch
    return progress


@pytest.mark.parametrize("threads", [1, 2])
def test_training_runs_under_the_configured_limit_and_restores_it(outside, threads):
    seen: list[list[int]] = []
    fit_params(DATA.sequences(), DATA.catalogue.features, CFG, TrainConfig(epochs=2, threads=threads),
               progress=watching(seen))
    assert len(seen) == 2 and all(set(counts) == {threads} for counts in seen)
    assert blas_counts() == outside


def test_training_defaults_to_one_thread_and_none_leaves_blas_alone(outside):
    assert TrainConfig().threads == 1 and FineTuneConfig().threads == 1
    seen: list[list[int]] = []
    fit_params(DATA.sequences(), DATA.catalogue.features, CFG, TrainConfig(epochs=1), progress=watching(seen))
    assert set(seen[0]) == {1}
    seen.clear()
    fit_params(DATA.sequences(), DATA.catalogue.features, CFG, TrainConfig(epochs=1, threads=None),
               progress=watching(seen))
    assert seen[0] == outside


@pytest.mark.parametrize("threads", [1, 2])
def test_fine_tuning_runs_under_the_configured_limit(outside, threads, monkeypatch):
    seen: list[list[int]] = []
    real = finetune_module.run_epochs

    def observed(*args: Any, **kwargs: Any) -> list[float]:
        seen.append(blas_counts())
        return real(*args, **kwargs)

    monkeypatch.setattr(finetune_module, "run_epochs", observed)
    seqs = DATA.sequences()
    base = fit_params(seqs, DATA.catalogue.features, CFG, TrainConfig(epochs=1))
    device = Sequences(seqs.items[:1], seqs.signals[:1])
    update = fine_tune(base, DATA.catalogue.features, device, CFG, FineTuneConfig(threads=threads))
    assert len(seen) == 2 and all(set(counts) == {threads} for counts in seen)  # adapter, shared
    assert np.isfinite(update.delta).all()
    assert blas_counts() == outside


def test_evaluation_runs_under_its_limit(outside):
    seen: list[list[int]] = []

    def fit(train: Sequences, catalogue: Any, seed: int) -> Any:
        seen.append(blas_counts())
        return most_popular().fit(train, catalogue, seed)

    run_protocol(DATA, [Method("watched", fit)], seeds=(0, 1), threads=2)
    assert len(seen) == 3 and all(set(counts) == {2} for counts in seen)
    seen.clear()
    run_protocol(DATA, [Method("watched", fit)], seeds=(0,), threads=None)
    assert seen[0] == outside
    assert blas_counts() == outside


def test_edgerec_trains_with_the_evaluation_threads(outside):
    from edgerec.evaluation.ours import edgerec_methods

    seen: list[list[int]] = []

    def bar(iterable: Iterable[int], **_: Any) -> Iterable[int]:
        return watching(seen)(iterable)

    method = edgerec_methods(({"epochs": 1, "dim": 8, "history": 5},), int8=False, threads=2, progress=bar)[0]
    method.fit(DATA.sequences(), DATA.catalogue, 0, epochs=1, dim=8, history=5)
    assert seen == [[2] * len(outside)]


@pytest.mark.parametrize("threads", [0, 257, 1.5, True, "2"])
def test_a_bad_thread_count_is_a_config_error(threads):
    for make in (lambda: TrainConfig(threads=threads), lambda: FineTuneConfig(threads=threads)):
        with pytest.raises(ConfigError, match="threads"):
            make()
    with pytest.raises(ConfigError, match="threads"):
        run_protocol(DATA, [most_popular()], threads=threads)


def test_without_threadpoolctl_the_limit_is_skipped(outside, monkeypatch):
    import edgerec._threads as threads_module

    monkeypatch.setattr(threads_module, "limits_available", lambda: False)
    with blas_threads(1):
        assert blas_counts() == outside
