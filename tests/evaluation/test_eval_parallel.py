"""Training a stage's runs side by side in worker processes: the same weights and the same
evaluation as in one process, every run trained once, failures surfaced."""

from __future__ import annotations

import numpy as np
import pytest

from edgerec.data import synthetic
from edgerec.evaluation import default_jobs, loo_split, run_protocol
from edgerec.evaluation._parallel import TrainingJob, run_jobs, train_job
from edgerec.evaluation.ours import ATTENTION_SETTING, _split_hparams, edgerec_methods
from edgerec.evaluation.progress import no_progress
from edgerec.model.config import ModelConfig, TrainConfig
from edgerec.training import fit_params

DATA = synthetic(n_users=60, n_items=40, n_genres=4, mean_length=8, seed=3)
POOLED = {"dim": 8, "l2": 1e-4}
ATTENTION = {**ATTENTION_SETTING, "dim": 8, "blocks": 1}
MIX = {"encoder": "mix", "pooled": {**POOLED, "epochs": 2},
       "attention": {**ATTENTION, "epochs": 2}, "mix": 0.5}
GRID = ({**POOLED, "epochs": 1}, {**POOLED, "epochs": 2}, {**ATTENTION, "epochs": 2}, MIX)


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_job_keeps_the_weights_of_a_fresh_run_at_each_stop():
    seqs, features = DATA.sequences(), DATA.catalogue.features
    job = TrainingJob(ModelConfig(dim=8), TrainConfig(epochs=3, seed=4), (1, 3))
    kept = train_job(seqs, features, job)
    assert sorted(kept) == [1, 3]
    for stop in (1, 3):
        fresh = fit_params(seqs, features, ModelConfig(dim=8), TrainConfig(epochs=stop, seed=4))
        assert _same(fresh, kept[stop])


def test_jobs_in_worker_processes_give_the_weights_of_this_process():
    seqs, features = DATA.sequences(), DATA.catalogue.features
    jobs = [TrainingJob(ModelConfig(dim=8), TrainConfig(epochs=2, seed=s), (1, 2)) for s in (0, 1)]
    jobs.append(TrainingJob(ModelConfig(dim=8, encoder="attention", blocks=1, dropout=0.2),
                            TrainConfig(epochs=1, seed=0), (1,)))
    here = dict(run_jobs(seqs, features, jobs, 1, no_progress))
    there = dict(run_jobs(seqs, features, jobs, 2, no_progress))
    assert set(here) == set(there) == set(jobs)
    for job in jobs:
        assert sorted(there[job]) == list(job.stops)
        assert all(_same(here[job][stop], there[job][stop]) for stop in job.stops)


def test_a_failing_job_fails_the_stage_in_the_parent():
    seqs = DATA.sequences()
    seqs.items[0] = seqs.items[0].copy()
    seqs.items[0][0] = DATA.n_items + 100  # no such item: the child's table lookup raises
    jobs = [TrainingJob(ModelConfig(dim=8), TrainConfig(epochs=1, seed=s), (1,)) for s in (0, 1)]
    with pytest.raises(IndexError):
        list(run_jobs(seqs, DATA.catalogue.features, jobs, 2, no_progress))


def test_default_jobs_is_the_usable_cores():
    assert 1 <= default_jobs() <= (__import__("os").cpu_count() or 1)


def test_a_stage_trains_each_run_once_and_a_mix_costs_no_run_of_its_own(monkeypatch):
    from edgerec.evaluation import ours

    started: list[list[TrainingJob]] = []

    def recording(train, features, jobs, workers, progress):
        started.append(list(jobs))
        return run_jobs(train, features, jobs, workers, progress)

    monkeypatch.setattr(ours, "run_jobs", recording)
    split = loo_split(DATA.sequences())
    method = edgerec_methods(GRID, int8=False)[0]
    assert method.prepare is not None
    method.prepare(split.train, DATA.catalogue, [(0, h) for h in GRID])
    # Tuning: one pooled run kept after 1 and 2 epochs, one attention run; the mix is theirs.
    assert sorted((j.cfg.encoder, j.stops) for j in started[0]) == [("attention", (2,)), ("pooled", (1, 2))]
    method.prepare(split.train, DATA.catalogue, [(0, h) for h in GRID])
    assert started[1] == []  # all kept
    method.prepare(split.train_val, DATA.catalogue, [(s, MIX) for s in (0, 1, 2)])
    assert sorted((j.tcfg.seed, j.cfg.encoder) for j in started[2]) == [
        (s, e) for s in (0, 1, 2) for e in ("attention", "pooled")]
    # Fits after the stage's training are the kept weights, equal to a fresh fit's.
    fitted = method.fit(split.train_val, DATA.catalogue, 1, **MIX)
    assert len(started) == 3
    towers = tuple(_split_hparams(MIX[t], 1, 1)[1] for t in ("pooled", "attention"))
    fresh = fit_params(split.train_val, DATA.catalogue.features, fitted.cfg, towers)
    assert _same(fresh, fitted.params)


def test_the_protocol_gives_the_same_results_on_one_or_two_processes():
    results = [run_protocol(DATA, edgerec_methods(GRID, jobs=jobs), seeds=(0, 1)) for jobs in (1, 2)]
    for name in ("edgerec", "edgerec-int8"):
        one, two = (r[name] for r in results)
        assert one.val_grid == two.val_grid and one.hparams == two.hparams
        assert one.ndcg_per_seed == two.ndcg_per_seed
        assert np.array_equal(one.user_ndcg, two.user_ndcg)


def test_peers_evaluated_aside_give_the_results_of_one_process_in_the_same_order():
    from edgerec.evaluation import available_peers

    heard: dict[int, list[tuple[str, str, int]]] = {1: [], 2: []}
    results = {jobs: run_protocol(DATA, [*edgerec_methods(GRID[:2], jobs=jobs), *available_peers(quick=True)],
                                  seeds=(0, 1), jobs=jobs,
                                  on_fit=lambda r, j=jobs: heard[j].append((r.method, r.stage, r.seed)))
               for jobs in (1, 2)}
    one, two = results[1], results[2]
    assert one.names == two.names
    for name in one.names:
        a, b = one[name], two[name]
        assert a.hparams == b.hparams and a.val_grid == b.val_grid, name
        assert a.ndcg_per_seed == b.ndcg_per_seed and np.array_equal(a.user_ndcg, b.user_ndcg), name
    assert sorted(heard[1]) == sorted(heard[2])  # every fit heard of, wherever it ran


def test_what_goes_aside_is_what_can_run_alone_elsewhere():
    from edgerec.evaluation import Method, available_peers, most_popular
    from edgerec.evaluation._aside import aside

    peers = available_peers(quick=True)
    ours = edgerec_methods(GRID[:2])  # prepares stages, and edgerec-int8 follows edgerec
    local = Method("local", lambda train, catalogue, seed: None)  # a closure cannot be sent
    leader = Method("leader", most_popular().fit, seeded=False)
    follower = Method("follower", leader.fit, follows="leader")
    methods = [*ours, *peers, local, leader, follower]
    assert aside(methods, 1) == []
    assert [m.name for m in aside(methods, 2)] == [m.name for m in peers]


def test_an_error_aside_is_raised_here():
    from edgerec.evaluation import Method, most_popular

    broken = Method("broken", most_popular().fit, ({"no_such_option": 1},))
    with pytest.raises(TypeError):
        run_protocol(DATA, [most_popular(), broken], seeds=(0,), jobs=2)
