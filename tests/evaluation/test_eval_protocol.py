"""run_protocol: tunes on validation only, refits on train+val per seed, scores the test item."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from edgerec import ConfigError
from edgerec.data import Catalogue, Dataset, Sequences, synthetic
from edgerec.evaluation import Method, ProtocolResult, item_knn, loo_split, most_popular, run_protocol

DATA = synthetic(n_users=60, n_items=40, n_genres=4, mean_length=8, seed=1)


@dataclass(frozen=True)
class Fixed:
    """Scores taken from a fixed [n_users, n_items] table."""

    table: np.ndarray

    def score(self, users: np.ndarray, histories: Sequences) -> np.ndarray:
        return self.table[users]


def peeking_method(ds: Dataset, calls: list[tuple[str, int, int]]) -> Method:
    """Config "val" ranks each user's validation item first, config "test" the test item.

    The first wins on validation and scores zero on test; the second is the reverse. A protocol that
    tuned on the test item would choose "test".
    """
    split = loo_split(ds.sequences())

    def fit(train: Sequences, catalogue: Catalogue, seed: int, *, target: str) -> Fixed:
        calls.append((target, train.n_interactions(), seed))
        table = np.zeros((ds.n_users, ds.n_items))
        users = split.eval_users
        table[users, (split.val_item if target == "val" else split.test_item)[users]] = 1.0
        return Fixed(table)

    return Method("peeking", fit, ({"target": "test"}, {"target": "val"}))


def test_config_is_chosen_on_validation_and_never_on_test() -> None:
    calls: list[tuple[str, int, int]] = []
    result = run_protocol(DATA, [peeking_method(DATA, calls)], seeds=(3, 4))
    peek = result["peeking"]
    assert peek.hparams == {"target": "val"}
    assert peek.val_ndcg == 1.0 and peek.hr == 0.0 and peek.ndcg == 0.0
    assert [score for _, score in peek.val_grid] == [0.0, 1.0]
    split = loo_split(DATA.sequences())
    tune_size, final_size = split.train.n_interactions(), split.train_val.n_interactions()
    assert calls == [("test", tune_size, 3), ("val", tune_size, 3), ("val", final_size, 3), ("val", final_size, 4)]


@dataclass(frozen=True)
class Noisy:
    seed: int
    n_items: int

    def score(self, users: np.ndarray, histories: Sequences) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        return rng.random((1000, self.n_items))[users]


def noisy(train: Sequences, catalogue: Catalogue, seed: int) -> Noisy:
    return Noisy(seed, len(catalogue))


def test_seeds_average_and_per_user_arrays() -> None:
    result = run_protocol(DATA, [Method("noise", noisy), most_popular()], seeds=(0, 1, 2))
    noise, pop = result["noise"], result["most-popular"]
    n_eval = len(result.eval_users)
    assert n_eval == DATA.n_users and noise.user_hr.shape == noise.user_ndcg.shape == (n_eval,)
    assert len(noise.ndcg_per_seed) == 3 and len(set(noise.ndcg_per_seed)) > 1
    assert noise.ndcg == pytest.approx(np.mean(noise.ndcg_per_seed))
    assert noise.hr == pytest.approx(noise.user_hr.mean())
    assert len(pop.hr_per_seed) == 1  # unseeded: fitted once
    assert result.seeds == (0, 1, 2) and result.k == 10 and result.names == ["noise", "most-popular"]
    assert noise.fit_seconds >= 0 and noise.total_seconds >= noise.fit_seconds


def test_chunked_scoring_gives_the_same_result() -> None:
    method = item_knn(({"k": 5, "shrink": 0.0}, {"k": 20, "shrink": 10.0}))
    whole = run_protocol(DATA, [method], seeds=(0,))["item-knn"]
    chunked = run_protocol(DATA, [method], seeds=(0,), chunk=7)["item-knn"]
    assert np.array_equal(whole.user_ndcg, chunked.user_ndcg) and whole.hparams == chunked.hparams


def test_runs_on_a_split_with_its_catalogue_and_k() -> None:
    split = loo_split(DATA.sequences())
    result = run_protocol(split, [most_popular()], catalogue=DATA.catalogue, k=DATA.n_items)
    assert isinstance(result, ProtocolResult) and result["most-popular"].hr == 1.0
    with pytest.raises(ConfigError, match="catalogue"):
        run_protocol(split, [most_popular()])


def test_short_users_are_not_evaluated() -> None:
    ds = Dataset(
        user_ids=("a", "b"),
        catalogue=Catalogue.plain(["x", "y", "z", "w"]),
        user=np.array([0, 0, 0, 1]),
        item=np.array([0, 1, 2, 3]),
        ts=np.array([1.0, 2.0, 3.0, 4.0]),
        value=np.ones(4, dtype=np.float32),
        signal=np.full(4, 3),
    )
    assert run_protocol(ds, [most_popular()]).eval_users.tolist() == [0]


def test_progress_factory_is_used_and_tqdm_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, int]] = []

    def bar(iterable: Any, *, total: int, desc: str) -> Any:
        seen.append((desc, total))
        return iterable

    run_protocol(DATA, [item_knn(({"k": 5, "shrink": 0.0},) * 2)], seeds=(0, 1), progress=bar, chunk=25)
    scoring = [("item-knn: scoring", 3)]  # inside each fit: 60 users in batches of 25
    assert seen == [("item-knn: tune", 2), *scoring, *scoring, ("item-knn: test", 1), *scoring]
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # as if tqdm were not installed
    assert run_protocol(DATA, [most_popular()], progress=True)["most-popular"].hr > 0


def bad_shape(train: Sequences, catalogue: Catalogue, seed: int) -> Fixed:
    return Fixed(np.zeros((DATA.n_users, 3)))


@pytest.mark.parametrize(
    ("methods", "kwargs", "match"),
    [
        ([Method("bad", bad_shape)], {}, "shape"),
        ([most_popular(), most_popular()], {}, "unique"),
        ([Method("empty", bad_shape, ())], {}, "grid"),
        ([most_popular()], {"seeds": ()}, "seed"),
        ([most_popular()], {"progress": 3}, "progress"),
    ],
)
def test_misuse_is_a_config_error(methods: list[Method], kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        run_protocol(DATA, methods, **kwargs)


def test_result_lookup_and_comparison() -> None:
    result = run_protocol(DATA, [most_popular(), Method("noise", noisy)], seeds=(0,))
    with pytest.raises(KeyError, match="no method"):
        result["missing"]
    mean, lo, hi = result.compare("most-popular", "noise", metric="hr", n_boot=200)
    assert lo <= mean <= hi
    assert [r.name for r in result] == ["most-popular", "noise"] and len(result) == 2


def test_a_following_method_takes_the_choice_of_the_method_it_follows() -> None:
    calls: list[tuple[str, int, int]] = []
    leader = peeking_method(DATA, calls)
    # The follower's own grid holds only "test"; following, it takes the leader's choice, "val",
    # and is fitted with it alone.
    follower_calls: list[tuple[str, int, int]] = []
    follower = Method("follower", peeking_method(DATA, follower_calls).fit,
                      ({"target": "test"},), follows="peeking")
    result = run_protocol(DATA, [leader, follower], seeds=(3, 4))
    assert result["follower"].hparams == {"target": "val"} == result["peeking"].hparams
    assert [h for h, _ in result["follower"].val_grid] == [{"target": "val"}]
    assert [target for target, _, _ in follower_calls] == ["val"] * 3  # 1 validation + 2 seeds
    with pytest.raises(ConfigError, match="must run before"):
        run_protocol(DATA, [follower, leader], seeds=(3,))
