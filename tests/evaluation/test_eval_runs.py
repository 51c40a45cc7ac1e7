"""What an evaluation run says and shares: its plan and estimates, the record of each fit, the
training runs edgerec's candidates share, and the quick grids."""

from __future__ import annotations

import numpy as np

from edgerec.data import synthetic
from edgerec.evaluation import EvalPlan, FitRecord, Method, loo_split, most_popular, run_protocol
from edgerec.evaluation.ours import DEFAULT_GRID, QUICK_GRID, edgerec_methods, training_epochs
from edgerec.evaluation.peers import ALS_GRID, BPR_GRID, KNN_GRID, QUICK_GRIDS, available_peers
from edgerec.model.config import ModelConfig, TrainConfig
from edgerec.training import TrainingRun, fit_params
from edgerec.workflows import eval_methods

DATA = synthetic(n_users=50, n_items=40, n_genres=4, mean_length=8, seed=5)
GRID = ({"epochs": 2, "l2": 1e-4, "dim": 8}, {"epochs": 3, "l2": 1e-4, "dim": 8},
        {"epochs": 1, "l2": 1e-4, "dim": 8}, {"epochs": 2, "l2": 3e-4, "dim": 8})


def test_a_continued_run_is_the_run_of_all_its_epochs():
    seqs, features = DATA.sequences(), DATA.catalogue.features
    whole = fit_params(seqs, features, ModelConfig(dim=8), TrainConfig(epochs=3, seed=2))
    run = TrainingRun.fresh(seqs, features, ModelConfig(dim=8), TrainConfig(epochs=3, seed=2))
    run.advance(1)
    run.advance(2)
    assert run.epochs == 3 and len(run.losses) == 3
    assert all(np.array_equal(whole[name], run.params[name]) for name in whole)


def test_candidates_sharing_a_run_get_the_weights_of_their_own_fresh_fit():
    split = loo_split(DATA.sequences())
    float_method, int8_method = edgerec_methods(GRID)
    fitted = {}
    for hparams in GRID:  # in grid order: 1 epoch comes after 3 and is a kept copy, not a rerun
        fitted[repr(hparams)] = model = float_method.fit(split.train, DATA.catalogue, 0, **hparams)
        cfg = TrainConfig(epochs=hparams["epochs"], l2=hparams["l2"], seed=0)
        fresh = fit_params(split.train, DATA.catalogue.features, ModelConfig(dim=8), cfg)
        assert all(np.array_equal(fresh[name], model.params[name]) for name in fresh), hparams
    # Asked again (the int8 method does), a fit is the kept one: the very same weights.
    assert float_method.fit(split.train, DATA.catalogue, 0, **GRID[1]).params is fitted[repr(GRID[1])].params
    scores = int8_method.fit(split.train, DATA.catalogue, 0, **GRID[0]).score(split.eval_users[:3], split.train)
    assert scores.shape == (3, DATA.n_items)


def test_training_epochs_count_shared_runs_once():
    assert training_epochs(GRID) == 3 + 2
    assert training_epochs(DEFAULT_GRID) == 16 + 40  # pooled (8 and 16 epochs), attention (30, 40)
    assert training_epochs(QUICK_GRID) == 16
    assert training_epochs([{"l2": 1e-4}]) == TrainConfig().epochs


def test_every_fit_is_recorded_and_reported_in_order():
    heard: list[FitRecord] = []
    ticks = iter(range(1000))
    result = run_protocol(DATA, [most_popular(), Method("pop2", most_popular().fit, ({}, {}))],
                          seeds=(0, 1), on_fit=heard.append, clock=lambda: float(next(ticks)))
    assert [(r.method, r.stage, r.seed) for r in heard] == [
        ("most-popular", "tune", 0), ("most-popular", "test", 0),
        ("pop2", "tune", 0), ("pop2", "tune", 0), ("pop2", "test", 0), ("pop2", "test", 1)]
    assert result["pop2"].fits == tuple(heard[2:])
    assert all(r.fit_seconds == 1.0 and r.score_seconds == 1.0 for r in heard)  # one tick each
    assert result["pop2"].fit_seconds == 1.0


def test_the_plan_says_what_runs_and_estimates_from_the_first_fit():
    methods = [*edgerec_methods(DEFAULT_GRID), most_popular()]
    plan = EvalPlan.of(methods, seeds=5)
    lines = plan.describe()
    assert lines[0].startswith("5 seeds, 3 methods, 20 fits in all")  # 7 + 5 + 1 + 5 + 1 + 1
    # A mix's final fit trains both towers: 16 + 40 epochs.
    assert lines[1] == "  edgerec: 7 candidates, then 5 final fits (56 + 40-280 epochs)"
    assert lines[2] == "  edgerec-int8: edgerec's chosen candidate, then 5 final fits"
    assert lines[3] == "  most-popular: 1 candidate, then 1 final fit"
    # The tuning's runs are trained before the first fit (Method.prepare) and timed in it: 56
    # epochs in 112 s, 2 s an epoch; 96 to 336 epochs, plus 12 scorings of 0.5 s.
    first = FitRecord("edgerec", "tune", dict(DEFAULT_GRID[0]), 0, 112.0, 0.5)
    assert plan.methods[0].estimate(first) == (2 * 96 + 6.0, 2 * 336 + 6.0)
    assert plan.estimate_line(first) == ("edgerec: tuning's training (56 epochs) took 112.0 s + 0.5 s "
                                         "scoring; estimate for all of edgerec: 3 min to 11 min")
    # A method without up-front training is estimated from its first candidate alone.
    alone = EvalPlan.of([Method("m", most_popular().fit, ({}, {}), cost=lambda c: 4.0 * len(c),
                                cost_unit="epochs")], seeds=1)
    assert alone.estimate_line(FitRecord("m", "tune", {}, 0, 8.0, 0.0)) == (
        "m: first fit (4 epochs) took 8.0 s + 0.0 s scoring; estimate for all of m: 24 s")
    assert plan.estimate_line(FitRecord("other", "tune", {}, 0, 1.0, 0.0)) is None


def test_quick_mode_is_a_subset_of_the_full_grids():
    assert set(map(repr, QUICK_GRID)) <= set(map(repr, DEFAULT_GRID)) and len(QUICK_GRID) == 2
    for name, full in (("item-knn", KNN_GRID), ("als", ALS_GRID), ("bpr", BPR_GRID)):
        assert set(map(repr, QUICK_GRIDS[name])) <= set(map(repr, full)) and len(QUICK_GRIDS[name]) == 2
    quick = {m.name: m.grid for m in eval_methods(quick=True)}
    assert quick["edgerec"] == QUICK_GRID and quick["item-knn"] == QUICK_GRIDS["item-knn"]
    assert [m.name for m in available_peers(quick=True)] == [m.name for m in available_peers()]


def test_eval_methods_are_edgerec_float_and_int8_then_the_peers():
    methods = eval_methods(peers=False)
    assert [m.name for m in methods] == ["edgerec", "edgerec-int8"]
    assert methods[0].cost_unit == "epochs" and methods[1].cost_unit == "fits"
    assert [m.name for m in eval_methods()][2:] == [m.name for m in available_peers()]


def test_attention_candidates_share_a_run_and_score_float_and_int8_alike():
    split = loo_split(DATA.sequences())
    setting = {"encoder": "attention", "blocks": 1, "dim": 8, "history": 6, "batch_size": 8,
               "l2": 0.0}
    grid = ({**setting, "epochs": 1}, {**setting, "epochs": 2})
    float_method, int8_method = edgerec_methods(grid)
    assert training_epochs(grid) == 2
    later = float_method.fit(split.train, DATA.catalogue, 0, **grid[1])
    earlier = float_method.fit(split.train, DATA.catalogue, 0, **grid[0])
    fresh = fit_params(split.train, DATA.catalogue.features,
                       ModelConfig(dim=8, history=6, encoder="attention", blocks=1),
                       TrainConfig(epochs=1, batch_size=8, l2=0.0, seed=0))
    assert all(np.array_equal(fresh[name], earlier.params[name]) for name in fresh)
    assert not np.array_equal(later.params["att0.wq"], earlier.params["att0.wq"])
    users = split.eval_users[:5]
    want = later.score(users, split.train)
    got = int8_method.fit(split.train, DATA.catalogue, 0, **grid[1]).score(users, split.train)
    assert all(np.corrcoef(g, w)[0, 1] > 0.98 for g, w in zip(got, want))


def test_a_mix_candidate_is_scored_from_its_towers_fits_without_training_of_its_own(monkeypatch):
    split = loo_split(DATA.sequences())
    pooled = {"epochs": 2, "l2": 1e-4, "dim": 8, "history": 6}
    attention = {"encoder": "attention", "blocks": 1, "dim": 8, "history": 6, "batch_size": 8,
                 "l2": 0.0, "epochs": 1}
    mix = {"encoder": "mix", "mix": 0.3, "pooled": pooled, "attention": attention}
    grid = (pooled, attention, mix)
    assert training_epochs(grid) == training_epochs(grid[:2]) == 3
    methods = edgerec_methods(grid, encoders=True)
    assert [m.name for m in methods] == ["edgerec", "edgerec-int8", "edgerec-pooled", "edgerec-attention"]
    assert methods[2].grid == (pooled,) and methods[3].grid == (attention,)
    float_method, int8_method = methods[:2]
    alone = [float_method.fit(split.train, DATA.catalogue, 0, **h) for h in grid[:2]]
    runs = []
    original = TrainingRun.fresh
    monkeypatch.setattr(TrainingRun, "fresh", lambda *a, **k: runs.append(a) or original(*a, **k))
    mixed = float_method.fit(split.train, DATA.catalogue, 0, **mix)
    assert runs == []  # both towers came from the candidates already fitted
    assert mixed.cfg.encoder == "mix" and mixed.cfg.mix == 0.3
    users = split.eval_users[:6]
    want = 0.3 * alone[0].score(users, split.train) + 0.7 * alone[1].score(users, split.train)
    np.testing.assert_allclose(mixed.score(users, split.train), want, rtol=1e-4, atol=1e-4)
    got = int8_method.fit(split.train, DATA.catalogue, 0, **mix).score(users, split.train)
    assert runs == []
    assert all(np.corrcoef(g, w)[0, 1] > 0.98 for g, w in zip(got, want))
    # On another training set (a test fit) the towers train once each, in full.
    float_method.fit(split.train_val, DATA.catalogue, 1, **mix)
    assert len(runs) == 2
