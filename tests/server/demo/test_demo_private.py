"""The MovieLens demo's private preset (issue 13) without running it: a 20% pilot, every other
user a device in each of 10 rounds, epsilon 8, FedAdam at 0.01, the item tables frozen; how it
resolves for the device population, the flags every round is opened with, the audit's view of
"every device" (no amplification), and --no-dp for the earlier no-noise run."""

from __future__ import annotations

import pytest

from edgerec import ConfigError
from edgerec.model.params import ITEM_TABLES
from edgerec_server.cli import _parser, main
from edgerec_server.demo import DemoConfig
from edgerec_server.demo.config import DP_DELTA, EVERY_DEVICE, PRESETS
from edgerec_server.demo.report import format_table
from edgerec_server.demo.runner import _calibration_line, _round_params

ML = "../shared/data/ml-100k"
pytest.importorskip("dp_accounting", reason="calibration needs dp-accounting")


def test_the_movielens_preset_is_the_private_setting():
    cfg = DemoConfig(data=ML)
    assert (cfg.rounds, cfg.per_round, cfg.epsilon, cfg.noise) == (10, EVERY_DEVICE, 8.0, None)
    assert (cfg.pilot_share, cfg.strategy, cfg.server_lr) == (0.2, "fedadam", 0.01)
    assert cfg.frozen == ITEM_TABLES and cfg.clip == 1.0


def test_every_device_resolves_to_the_population_and_a_plain_gaussian_per_round():
    from edgerec.privacy import Release, noise_for_releases, releases_epsilon

    run = DemoConfig(data=ML).resolved(754)  # 943 users, 189 of them the pilot
    assert run.per_round == 754 and run.epsilon is None and run.frozen == ITEM_TABLES
    # Everyone every round: no sampling to amplify by, so z is that of 13 plain Gaussians: the
    # 10 training rounds, the evaluation rounds after rounds 5 and 10, and the canary's round.
    assert run.noise == noise_for_releases(8.0, population=1, cohort=1, rounds=13, delta=DP_DELTA)
    assert not Release(754, 754, run.noise).sampled
    assert releases_epsilon([Release(754, 754, run.noise)] * 13, DP_DELTA) <= 8.0
    assert "of all 754 devices" in _calibration_line(DemoConfig(data=ML), 754, run.noise)
    # No epsilon: "every device" still resolves; a number of devices stays as it is.
    assert DemoConfig(data=ML, noise=0.5).resolved(754).per_round == 754
    assert DemoConfig(data=ML, noise=0.5, per_round=100).resolved(754).per_round == 100


def test_every_round_is_opened_for_everyone_with_the_tables_frozen():
    from edgerec_server.rounds import rate_for_expected

    run = DemoConfig(data=ML).resolved(754)
    flags = _round_params(run, 1, drops=round(run.dropout * run.per_round))
    assert flags["frozen"] == "emb_in,emb_out,feat_in,feat_out" and flags["noise"] == run.noise
    assert flags["expected"] == 754 and flags["strategy"] == "fedadam"
    assert flags["server_lr"] == pytest.approx(0.01)  # round 1 of the cosine decay
    # --expected 754 of 754 active devices: q = 1, every device drawn, the audit's k = N.
    assert rate_for_expected(flags["expected"], 754) == 1.0
    with pytest.raises(AssertionError):  # an unresolved "every device" is not a cohort size
        _round_params(DemoConfig(data=ML, noise=1.0), 1, drops=1)


def test_no_dp_is_the_earlier_no_noise_run():
    cfg = DemoConfig(data=ML, no_dp=True)
    old = PRESETS["movielens_no_dp"]
    assert (cfg.noise, cfg.epsilon, cfg.rounds, cfg.per_round, cfg.pilot_share, cfg.server_lr) == (
        0.0, None, old["rounds"], old["per_round"], 0.0, old["server_lr"])
    assert cfg.frozen == () and cfg.resolved(943) == cfg
    assert DemoConfig(no_dp=True).noise == 0.0  # synthetic: its preset without noise
    for bad in ({"noise": 0.0}, {"noise": 1.0}, {"epsilon": 8.0}):
        with pytest.raises(ConfigError, match="no_dp"):
            DemoConfig(data=ML, no_dp=True, **bad)


@pytest.mark.parametrize("frozen, words", [(("emb_all",), "no weight of the model"),
                                           (("tables", "bias", "pos", "signal", "user0", "w1", "b1", "w2"),
                                            "every weight"), ("tables", "tuple")])
def test_bad_frozen_lists_are_refused(frozen, words):
    with pytest.raises(ConfigError, match=words):
        DemoConfig(frozen=frozen)


def test_the_command_line(monkeypatch, capsys):
    args = _parser().parse_args(["demo", "--per-round", "all", "--frozen", "tables"])
    assert args.per_round == EVERY_DEVICE and args.frozen == ("tables",)
    assert _parser().parse_args(["demo", "--frozen", "none"]).frozen == ()
    assert _parser().parse_args(["demo", "--frozen", "bias, w1"]).frozen == ("bias", "w1")
    with pytest.raises(SystemExit):
        _parser().parse_args(["demo", "--no-dp", "--noise", "1"])
    assert "not allowed with" in capsys.readouterr().err
    seen = []
    monkeypatch.setattr("edgerec_server.demo.run_demo", lambda cfg, progress: seen.append(cfg))
    assert main(["demo", "--data", ML, "--no-dp", "--quiet"]) == 0
    assert main(["demo", "--data", ML, "--frozen", "tables,bias", "--quiet"]) == 0
    assert main(["demo", "--data", ML, "--quiet"]) == 0
    assert seen[0].noise == 0.0 and seen[0].rounds == 100 and seen[0].frozen == ()
    assert seen[1].frozen == ITEM_TABLES + ("bias",) and seen[1].epsilon == 8.0
    assert seen[2] == DemoConfig(data=ML)
    assert main(["demo", "--frozen", "emb_all", "--quiet"]) == 2
    assert "emb_all" in capsys.readouterr().err


def test_the_table_says_what_was_federated_and_shows_epsilon_per_round():
    cfg = DemoConfig(data=ML).resolved(754)
    rows = [{"round": 0, "model_version": 1, "hr": 0.1, "ndcg": 0.07, "epsilon": 0.0},
            {"round": 1, "model_version": 2, "hr": 0.2, "ndcg": 0.075, "epsilon": 2.61, "cohort": 754,
             "population": 754, "participants": 754, "survivors": 739, "dropouts": 15, "wall_s": 3.0},
            {"round": 2, "model_version": 3, "hr": 0.2, "ndcg": 0.078, "epsilon": 3.85, "cohort": 754,
             "population": 754, "participants": 754, "survivors": 739, "dropouts": 15, "wall_s": 3.0}]
    report = {"config": {**cfg.to_dict(), "epsilon": 8.0}, "rounds": rows,
              "central": {"hr": 0.3, "ndcg": 0.1}, "delta": DP_DELTA, "devices": 754,
              "epsilon_target": 8.0, "noise_multiplier": cfg.noise, "weights": 228_560,
              "federated_weights": 10_000, "frozen": list(ITEM_TABLES)}
    table = format_table(report)
    lines = table.splitlines()
    assert [line.split()[9] for line in lines[3:5]] == ["2.61", "3.85"]  # epsilon after each round
    assert "754/754" in lines[3]
    assert "each device sent 10,000 of the model's 228,560 weights per round" in table
    assert "frozen at the first model's values: emb_in, emb_out, feat_in, feat_out" in table
    assert "chosen for 10 rounds of all 754 devices (every device in every round" in table


def test_the_private_movielens_preset_runs_secagg_plus_with_longer_stages():
    # Measured: on the complete graph of 754 devices stages missed their 10 s deadline (every
    # round aborted); SecAgg+ with 30 s stages completed rounds.
    private = DemoConfig(data="../shared/data/ml-100k")
    assert (private.graph, private.stage_deadline) == ("harary", 30.0)
    assert (DemoConfig(data="../shared/data/ml-100k", no_dp=True).graph, DemoConfig().graph) == ("complete", "complete")
    assert DemoConfig(data="../shared/data/ml-100k", graph="complete", stage_deadline=5.0).stage_deadline == 5.0
