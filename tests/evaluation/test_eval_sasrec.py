"""SASRec peer: hand-written backward against finite differences, causality, padding, learning a
pattern only attention can see, and a run through the LOO-full protocol."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from edgerec._exceptions import ConfigError
from edgerec.cli import main
from edgerec.data import Sequences, synthetic
from edgerec.evaluation import Method, most_popular, run_protocol
from edgerec.evaluation import _sasrec_net as net
from edgerec.evaluation._sasrec import SASRecConfig, SASRecModel, SASRecRun, padded_windows, sasrec_method
from edgerec.evaluation import peers
from edgerec.evaluation.peers import QUICK_GRIDS, SASREC_GRID, sasrec


def random_params(n_items: int, dim: int, max_len: int, blocks: int, seed: int) -> net.Params:
    """float64 parameters with layer-norm gains and every bias away from their initial 1 and 0,
    so that padding leaking into attention would show."""
    rng = np.random.default_rng(seed)
    params = net.init_params(n_items, dim, max_len, blocks, rng, np.float64)
    for name, value in params.items():
        if name.endswith(("_g", "_b", "b1", "b2")):
            params[name] = value + rng.normal(0.0, 0.5, value.shape)
    return params


def sequences(rng: np.random.Generator, batch: int, width: int, n_items: int) -> np.ndarray:
    """``[batch, width]`` rows + 1, each row left-padded with a random amount (at least one item)."""
    seq = rng.integers(1, n_items + 1, (batch, width))
    for row, pad in enumerate(rng.integers(0, width, batch)):
        seq[row, :pad] = 0
    return seq


@pytest.mark.parametrize("seed, batch, width, dim, blocks, dropout", [
    (0, 3, 5, 8, 2, 0.3),
    (1, 2, 6, 4, 1, 0.0),
    (2, 4, 3, 6, 3, 0.5),
])
def test_backward_matches_finite_differences(seed: int, batch: int, width: int, dim: int, blocks: int,
                                             dropout: float) -> None:
    n_items, max_len = 7, width + 2  # narrower than max_len: positions are the rightmost ones
    params = random_params(n_items, dim, max_len, blocks, seed)
    full = sequences(np.random.default_rng(seed + 100), batch, width + 1, n_items)
    seq, targets = full[:, :-1], full[:, 1:]

    def loss() -> tuple[float, net.Params]:  # the same dropout masks on every call
        return net.loss_and_grads(params, seq, targets, dropout=dropout, rng=np.random.default_rng(seed))

    _, grads = loss()
    assert set(grads) == set(params)
    pick = np.random.default_rng(seed + 200)
    for name, value in params.items():
        assert grads[name].shape == value.shape and grads[name].dtype == np.float64
        flat = value.reshape(-1)
        entries = pick.choice(flat.size, size=min(flat.size, 24), replace=False)
        if name in ("item", "pos"):  # every row that takes part, and the unused ones (gradient 0)
            entries = np.arange(flat.size)
        numeric = np.empty(len(entries))
        for n, i in enumerate(entries):
            old = flat[i]
            flat[i] = old + 1e-6
            up = loss()[0]
            flat[i] = old - 1e-6
            down = loss()[0]
            flat[i] = old
            numeric[n] = (up - down) / 2e-6
        analytic = grads[name].reshape(-1)[entries]
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7, err_msg=name)
    assert not grads["item"][0].any()  # padding stays a zero vector


def test_a_later_item_does_not_change_earlier_positions() -> None:
    params = random_params(9, 8, 6, 2, seed=3)
    seq = np.array([[0, 1, 2, 3, 4, 5], [4, 4, 2, 9, 1, 7]])
    base = net.forward(params, seq).out
    for t in range(1, 6):
        changed = seq.copy()
        changed[:, t] = changed[:, t] % 9 + 1
        out = net.forward(params, changed).out
        np.testing.assert_allclose(out[:, :t], base[:, :t], rtol=1e-12, atol=1e-12)
        assert not np.allclose(out[:, t:], base[:, t:])  # ... while it does change its own


def test_padding_does_not_change_outputs() -> None:
    params = random_params(9, 8, 8, 2, seed=4)
    items = np.array([[3, 1, 4, 1, 5]])
    narrow = net.forward(params, items).out  # no padding at all
    wide = np.zeros((1, 8), np.int64)
    wide[0, 3:] = items  # the same items at the same (rightmost) positions, three padding columns
    np.testing.assert_allclose(net.forward(params, wide).out[:, 3:], narrow, rtol=1e-12, atol=1e-12)
    params["item"][0] = 7.0  # whatever the padding row holds
    np.testing.assert_allclose(net.forward(params, wide).out[:, 3:], narrow, rtol=1e-12, atol=1e-12)
    others = np.array([[0, 0, 0, 0, 0, 2, 2, 2], [9, 8, 7, 6, 5, 4, 3, 2]])  # batch-mates
    together = net.forward(params, np.vstack([others, wide])).out[2:, 3:]
    np.testing.assert_allclose(together, narrow, rtol=1e-12, atol=1e-12)


def stride_data(n_users: int, n_items: int, length: int, seed: int) -> Sequences:
    """Each user walks the items with their own stride (1, 2 or 3): next = last + stride, mod n.

    The last item alone does not tell the next one: the model has to read the one before it,
    through attention, and must not read the future while training (causality)."""
    rng = np.random.default_rng(seed)
    starts, strides = rng.integers(0, n_items, n_users), rng.integers(1, 4, n_users)
    items = [(s + k * np.arange(length)) % n_items for s, k in zip(starts, strides)]
    return Sequences(items, [np.full(length, 3) for _ in items])


def top1_accuracy(cfg: SASRecConfig, epochs: int) -> float:
    n_items = 30
    train = stride_data(300, n_items, 12, seed=0)
    run = SASRecRun(train, n_items, cfg, seed=0)
    run.advance(epochs)
    test = stride_data(200, n_items, 13, seed=1)  # held out: score from the first 12 items
    history = Sequences([s[:-1] for s in test.items], test.signals)
    scores = SASRecModel(run.params, cfg).score(np.arange(200), history)
    return float(np.mean(scores.argmax(axis=1) == np.array([s[-1] for s in test.items])))


TOY = SASRecConfig(dim=32, max_len=12, blocks=2, dropout=0.0, lr=5e-3, batch_size=32)


def test_learns_a_pattern_only_attention_can_see() -> None:
    assert top1_accuracy(TOY, epochs=15) > 0.9


def test_the_pattern_needs_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    """With each position attending to itself only, the stride cannot be read: the test above
    is one that broken attention fails."""
    def itself(seq: np.ndarray) -> np.ndarray:
        width = seq.shape[1]
        return np.broadcast_to(np.eye(width, dtype=bool), (len(seq), width, width)).copy()

    monkeypatch.setattr(net, "_allowed", itself)
    assert top1_accuracy(TOY, epochs=15) < 0.6


def test_scores_every_item_in_float32_from_the_latest_items() -> None:
    run = SASRecRun(stride_data(20, 15, 8, seed=0), 15, SASRecConfig(dim=8, max_len=4), seed=0)
    model = SASRecModel(run.params, run.cfg)
    history = Sequences([np.arange(10), np.array([3]), np.arange(4) + 6],
                        [np.full(10, 3), np.full(1, 3), np.full(4, 3)])
    scores = model.score(np.array([2, 0, 1]), history)
    assert scores.shape == (3, 15) and scores.dtype == np.float32 and np.isfinite(scores).all()
    batch = padded_windows(history, np.arange(3), 5)
    _, grads = net.loss_and_grads(run.params, batch[:, :-1], batch[:, 1:], dropout=0.2,
                                  rng=np.random.default_rng(0))
    assert all(g.dtype == np.float32 for g in grads.values())  # training stays in float32
    # user 0's latest 4 items are user 2's whole history: only the latest max_len items count
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-5, atol=1e-6)
    windows = padded_windows(history, np.array([1, 0]), 4)
    assert windows.tolist() == [[0, 0, 0, 4], [7, 8, 9, 10]]


def test_runs_continue_and_are_seeded() -> None:
    train, cfg = stride_data(40, 12, 9, seed=0), SASRecConfig(dim=8, max_len=6, batch_size=16, lr=5e-3)
    once, twice, other = SASRecRun(train, 12, cfg, 5), SASRecRun(train, 12, cfg, 5), SASRecRun(train, 12, cfg, 6)
    once.advance(4)
    twice.advance(1)
    twice.advance(3)
    other.advance(4)
    assert all(np.array_equal(once.params[n], twice.params[n]) for n in once.params)
    assert not np.array_equal(once.params["item"], other.params["item"])
    assert once.losses == twice.losses and once.losses[-1] < once.losses[0]


def test_random_crops_are_windows_of_the_sequence() -> None:
    items = [np.arange(20), np.arange(3) + 40, np.array([7])]  # the last one has no next item
    train = Sequences(items, [np.full(len(i), 3) for i in items])
    run = SASRecRun(train, 50, SASRecConfig(dim=8, max_len=5, crop="random"), seed=0)
    assert run._latest.tolist() == [[15, 16, 17, 18, 19, 20], [0, 0, 0, 41, 42, 43]]
    ends = set()
    for _ in range(30):
        long, short = run._windows()
        assert short.tolist() == [0, 0, 0, 41, 42, 43]  # shorter than a window: all of it
        assert np.array_equal(np.diff(long), np.ones(5)) and 6 <= long[-1] <= 20  # 6 consecutive items
        ends.add(int(long[-1]))
    assert len(ends) > 5
    with pytest.raises(ConfigError, match="crop"):
        SASRecConfig(crop="first")


DATA = synthetic(n_users=150, n_items=80, n_genres=4, mean_length=12, seed=2)


def test_runs_through_the_protocol_sharing_one_run_per_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    trained: list[int] = []
    advance = SASRecRun.advance

    def counted(run: SASRecRun, epochs: int, progress: object = None) -> list[float]:
        trained.append(epochs)
        return advance(run, epochs, progress)  # type: ignore[arg-type]

    monkeypatch.setattr(SASRecRun, "advance", counted)
    small = {"dim": 16, "max_len": 10, "batch_size": 16, "lr": 5e-3}
    grid = ({"epochs": 4, **small}, {"epochs": 20, **small})
    method = sasrec_method(grid)
    assert method.cost(grid) == 20 and method.cost_unit == "epochs"
    result = run_protocol(DATA, [most_popular(), method], seeds=(0, 1))
    r, popular = result["sasrec"], result["most-popular"]
    assert [g[0] for g in r.val_grid] == list(grid) and r.hparams["epochs"] == 20
    assert trained == [4, 16] * 3  # one 20-epoch run to validate 4 and 20 epochs, then one per seed
    assert len(r.ndcg_per_seed) == 2 and r.user_ndcg.shape == (DATA.n_users,)
    # the planted order (genre drift) is there to be read: popularity cannot
    assert r.val_ndcg > 1.5 * popular.val_ndcg and r.ndcg > 1.3 * popular.ndcg


def test_peer_declaration_and_bad_hyper_parameters() -> None:
    method = sasrec()
    assert isinstance(method, Method) and method.name == "sasrec" and method.grid == SASREC_GRID
    assert sasrec(QUICK_GRIDS["sasrec"]).grid == QUICK_GRIDS["sasrec"]
    assert all(h.get("epochs", 0) >= 1 for h in SASREC_GRID)
    with pytest.raises(ConfigError, match="unknown SASRec"):
        sasrec_method(({"epochs": 3, "heads": 2},))
    with pytest.raises(ConfigError):
        sasrec_method(({"epochs": 3, "dropout": 1.0},))
    with pytest.raises(ConfigError, match="epochs"):
        sasrec_method(({"epochs": 0},))


def test_edgerec_eval_runs_sasrec_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = synthetic(n_users=40, n_items=30, n_genres=3, mean_length=6, seed=4)
    path = tmp_path / "events.csv"
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["user", "item", "timestamp"])
        out.writerows((u, i, int(t)) for u, i, t in zip(data.user, data.item, data.ts))
    monkeypatch.setitem(peers.QUICK_GRIDS, "sasrec", ({"epochs": 2, "dim": 8}, {"epochs": 3, "dim": 8}))
    assert main(["eval", "--data", str(path), "--quick", "--quiet", "--json"]) == 0
    assert "sasrec" not in [r["method"] for r in json.loads(capsys.readouterr().out)]
    assert main(["eval", "--data", str(path), "--quick", "--sasrec", "--quiet", "--json"]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert rows[-1]["method"] == "sasrec" and rows[-1]["hparams"]["epochs"] in (2, 3)
    assert "  sasrec: 2 candidates, then 1 final fit (3 + 2-3 epochs)" in err.splitlines()
    assert any(line.startswith("sasrec: first fit (2 epochs) took ") for line in err.splitlines())
