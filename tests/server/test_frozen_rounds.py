"""Rounds that freeze weights, server side: ``frozen`` checked against the model when a round
opens (``round open --frozen``), and the optimizer step that leaves frozen weights and their
optimizer state exactly as they were (the real round over HTTP: tests/e2e/test_frozen_e2e.py)."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from edgerec_server import RoundParams
from edgerec_server._exceptions import BadRequestError
from edgerec.federated import apply_federated
from edgerec_server.rounds import parse_frozen

from edgerec.federated import FedAdam, FedAvg, StrategyState
from edgerec.model.config import ModelConfig
from edgerec.model.params import ITEM_TABLES, federated_mask, init_params, param_names

CFG = ModelConfig(dim=8, history=5)
PARAMS = init_params(CFG, 30, 4, np.random.default_rng(0))
NAMES = param_names(CFG)


def test_frozen_is_spelled_out_in_the_model_order_and_the_mask_follows():
    params, mask = RoundParams(frozen=("feat_out", "tables", "bias", "emb_in")).federated(PARAMS, NAMES)
    assert params.frozen == tuple(n for n in NAMES if n in ITEM_TABLES + ("bias",))
    np.testing.assert_array_equal(mask, federated_mask(PARAMS, NAMES, params.frozen))
    assert mask.sum() == sum(PARAMS[n].size for n in NAMES if n not in params.frozen)
    nothing, everything = RoundParams().federated(PARAMS, NAMES)
    assert nothing.frozen == () and everything.all()
    # Stored as JSON with the round and read back the same (a restart rebuilds the round).
    assert RoundParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params


def test_tables_of_a_mix_are_both_towers_tables():
    cfg = ModelConfig(dim=4, history=5, encoder="mix", blocks=1)
    params = init_params(cfg, 30, 4, np.random.default_rng(0))
    names = param_names(cfg)
    spelled, mask = RoundParams(frozen=("tables",)).federated(params, names)
    assert spelled.frozen == tuple(n for n in names if n.removeprefix("seq.") in ITEM_TABLES)
    assert len(spelled.frozen) == 2 * len(ITEM_TABLES)
    assert mask.sum() == sum(params[n].size for n in names if n not in spelled.frozen)


def test_unknown_names_and_freezing_everything_are_refused():
    with pytest.raises(BadRequestError, match=r"frozen: .*\['emb_all'\].*its weights: emb_in"):
        RoundParams(frozen=("emb_all", "bias")).federated(PARAMS, NAMES)
    with pytest.raises(BadRequestError, match="every weight"):
        RoundParams(frozen=NAMES).federated(PARAMS, NAMES)
    for bad in ("tables", ("",), (1,), ["bias"]):
        with pytest.raises(BadRequestError, match="frozen must be a list"):
            RoundParams(frozen=bad).check()  # type: ignore[arg-type]


def test_the_command_line_list():
    assert parse_frozen("emb_in, emb_out,") == ("emb_in", "emb_out")
    assert parse_frozen("tables") == ("tables",) and parse_frozen("none") == parse_frozen("") == ()


def _open(data_dir, *flags):
    from edgerec_server.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["round", "open", "--min", "3", *flags, "--data-dir", str(data_dir)])
    return code, out.getvalue(), err.getvalue()


def test_round_open_refuses_names_the_model_does_not_have_before_drawing(data_dir):
    # No device is enrolled: the names are checked before any draw (which would fail too).
    code, out, err = _open(data_dir, "--frozen", "tables,emb_all")
    assert code == 2 and out == ""
    assert "frozen names no shared weight of this model: ['emb_all']" in err
    code, _, err = _open(data_dir, "--frozen", ",".join(param_names(ModelConfig())))
    assert code == 2 and "every weight" in err
    code, _, err = _open(data_dir, "--frozen", "tables")
    assert code == 2 and "drew 0 of 0 active devices" in err  # a valid list gets as far as the draw
    from srv_helpers import cli

    assert cli(data_dir, "round", "list") == ""  # nothing was opened


@pytest.mark.parametrize("strategy", [FedAvg(1.0), FedAdam(0.05)])
def test_frozen_weights_and_their_optimizer_state_sit_the_round_out(strategy):
    rng = np.random.default_rng(1)
    weights = rng.normal(size=50).astype(np.float32)
    mask = np.ones(50, bool)
    mask[10:30] = False
    mean = rng.normal(size=int(mask.sum()))
    # State an earlier round left: momentum everywhere, so FedAdam alone would move every weight.
    prior = StrategyState({"m": rng.normal(size=50), "v": rng.random(50)}, 3)
    if isinstance(strategy, FedAvg):
        prior = StrategyState({}, 3)
    new, state = apply_federated(strategy, weights, mean, mask, prior)
    assert new.dtype == weights.dtype and new.shape == weights.shape
    assert new[~mask].tobytes() == weights[~mask].tobytes()  # bit for bit
    assert not np.isclose(new[mask], weights[mask]).any()
    assert state.step == 4
    full = np.zeros(50)
    full[mask] = mean
    expected, expected_state = strategy.apply(weights, full, prior)
    np.testing.assert_array_equal(new[mask], expected[mask])  # the federated part: the plain step
    for name, array in state.arrays.items():
        assert array.shape == (50,)
        np.testing.assert_array_equal(array[~mask], prior.arrays[name][~mask])
        np.testing.assert_array_equal(array[mask], expected_state.arrays[name][mask])
    # A fresh optimizer: frozen entries take a zero pseudo-gradient's step, which moves nothing.
    new, state = apply_federated(strategy, weights, mean, mask, StrategyState())
    assert new[~mask].tobytes() == weights[~mask].tobytes()
    assert all(a.shape == (50,) for a in state.arrays.values())


def test_a_scheduled_round_with_names_the_model_lacks_is_refused_at_start_up(tmp_path, bundle_dir):
    from edgerec_server import Coordinator, load_config

    from srv_helpers import World

    w = World(tmp_path / "sched", bundle_dir)
    try:
        config = load_config(data_dir=w.tmp, tick_interval_s=0, schedule_every_s=60, env={},
                             schedule_round={"min_participants": 4, "frozen": ["tables", "emb_all"]})
        with pytest.raises(BadRequestError, match="emb_all"):
            Coordinator(w.state, w.publisher, config, clock=w.clock)
        config = load_config(data_dir=w.tmp, tick_interval_s=0, schedule_every_s=60, env={},
                             schedule_round={"min_participants": 4, "frozen": ["tables"]})
        w.co = Coordinator(w.state, w.publisher, config, clock=w.clock)
        w.devices(4)
        w.tick()
        (opened,) = w.state.rounds()
        assert opened.params["frozen"] == ["emb_in", "feat_in", "emb_out", "feat_out"]  # model order
        member = w.state.device(next(iter(w.state.members(opened.id))))
        ann = w.co.announcement(member)
        assert ann.frozen == tuple(opened.params["frozen"]) and ann.vector_length == opened.vector_length
    finally:
        w.close()
