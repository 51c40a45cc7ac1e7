"""`edgerec-server demo --epsilon E`: the demo chooses z for its rounds, cohort and devices (without
running the demo: the configuration, the command line and what the report says)."""

from __future__ import annotations

import math

import pytest

from edgerec import ConfigError
from edgerec.privacy import Release, noise_for_releases, releases_epsilon
from edgerec_server.cli import _parser, main
from edgerec_server.demo import DemoConfig
from edgerec_server.demo.config import DP_DELTA
from edgerec_server.demo.report import format_table
from edgerec_server.demo.runner import _calibration_line, _round_params

pytest.importorskip("dp_accounting", reason="calibration needs dp-accounting")


def test_epsilon_resolves_to_the_least_noise_for_the_planned_rounds():
    # Synthetic preset: 8 training rounds of 60, and an evaluation round after rounds 4 and 8 at
    # the same z: the target covers all 10 (one budget, as the server's audit counts it).
    cfg = DemoConfig(epsilon=8.0)
    assert cfg.noise is None and cfg.epsilon == 8.0  # z waits for the device population
    run = cfg.resolved(475)
    z = noise_for_releases(8.0, population=475, cohort=60, rounds=10, delta=DP_DELTA)
    assert run.noise == z and run.epsilon is None
    assert (run.rounds, run.per_round, run.clip, run.seed) == (cfg.rounds, cfg.per_round, cfg.clip, cfg.seed)
    spent = releases_epsilon([Release(475, 60, z)] * 10, DP_DELTA)
    assert spent <= 8.0 < releases_epsilon([Release(475, 60, z * 0.998)] * 10, DP_DELTA)
    # The round flags carry the chosen z; an unresolved configuration has none to give.
    assert _round_params(run, 1, drops=1)["noise"] == z
    with pytest.raises(AssertionError):
        _round_params(cfg, 1, drops=1)
    assert _calibration_line(cfg, 475, z) == (
        "epsilon 8 over 10 planned rounds (8 training, 2 evaluation and canary) of 60 of 475 devices "
        f"(delta 1e-05): noise multiplier z = {z:.4g}")
    # Without evaluation rounds only the training rounds spend it.
    alone = DemoConfig(epsilon=8.0, evaluate_every=0).resolved(475)
    assert alone.noise == noise_for_releases(8.0, population=475, cohort=60, rounds=8, delta=DP_DELTA)


def test_the_canary_round_takes_every_other_device_so_every_round_is_bounded_unsampled():
    run = DemoConfig(epsilon=8.0, canary=True).resolved(475)  # 8 + 2 evaluation + 1 canary
    z = noise_for_releases(8.0, population=475, cohort=475, rounds=11, delta=DP_DELTA)
    assert run.noise == z
    assert releases_epsilon([Release(475, 475, z)] * 11, DP_DELTA) <= 8.0
    # An evaluation z of its own is outside this budget: the training rounds alone are calibrated.
    own = DemoConfig(epsilon=8.0, canary=True, evaluation_noise=3.0).resolved(475)
    assert own.noise == noise_for_releases(8.0, population=475, cohort=60, rounds=8, delta=DP_DELTA)


def test_a_cohort_of_everyone_is_calibrated_without_amplification():
    cfg = DemoConfig(epsilon=4.0, rounds=3, per_round=60, evaluate_every=0)
    run = cfg.resolved(50)  # fewer devices than per_round: everyone takes part
    assert run.noise == noise_for_releases(4.0, population=50, cohort=50, rounds=3)
    assert run.noise == noise_for_releases(4.0, population=1, cohort=1, rounds=3)  # plain Gaussian
    assert "of all 50 devices" in _calibration_line(cfg, 50, run.noise)


def test_noise_given_is_kept_and_presets_still_apply():
    cfg = DemoConfig(noise=0.7)
    assert cfg.resolved(475) is cfg
    assert DemoConfig().resolved(475).noise == 1.0  # the synthetic preset's z
    assert DemoConfig(data="../shared/data/ml-100k", epsilon=20.0).noise is None  # not the preset's 0


@pytest.mark.parametrize("kwargs", [
    {"epsilon": 8.0, "noise": 1.0}, {"epsilon": 8.0, "noise": 0.0}, {"epsilon": 0.0},
    {"epsilon": -1.0}, {"epsilon": math.nan}, {"epsilon": math.inf}, {"noise": -0.5}, {"noise": math.nan},
])
def test_bad_privacy_settings_are_refused(kwargs):
    with pytest.raises(ConfigError):
        DemoConfig(**kwargs)


def test_an_unreachable_epsilon_is_a_config_error():
    with pytest.raises(ConfigError, match="no noise multiplier"):
        DemoConfig(epsilon=1e-7, rounds=100_000).resolved(10)


def test_the_command_line_takes_epsilon_or_noise(monkeypatch, capsys):
    args = _parser().parse_args(["demo", "--epsilon", "8", "--rounds", "20"])
    assert args.epsilon == 8.0 and args.noise is None
    with pytest.raises(SystemExit):
        _parser().parse_args(["demo", "--epsilon", "8", "--noise", "1"])
    assert "not allowed with" in capsys.readouterr().err
    seen = []
    monkeypatch.setattr("edgerec_server.demo.run_demo", lambda cfg, progress: seen.append(cfg))
    assert main(["demo", "--epsilon", "8", "--rounds", "20", "--quiet"]) == 0
    assert seen[0].epsilon == 8.0 and seen[0].noise is None and seen[0].rounds == 20
    assert main(["demo", "--epsilon", "-1", "--quiet"]) == 2
    assert "epsilon > 0" in capsys.readouterr().err


def test_the_report_says_what_was_chosen():
    cfg = DemoConfig(epsilon=8.0)
    rows = [{"round": 0, "model_version": 1, "hr": 0.1, "ndcg": 0.05, "epsilon": 0.0},
            {"round": 1, "model_version": 2, "hr": 0.2, "ndcg": 0.1, "epsilon": 1.5, "cohort": 58,
             "population": 475, "participants": 58, "survivors": 57, "dropouts": 1, "wall_s": 3.0}]
    report = {"config": cfg.to_dict(), "rounds": rows, "central": {"hr": 0.3, "ndcg": 0.2},
              "delta": DP_DELTA, "devices": 475, "epsilon_target": 8.0, "noise_multiplier": 1.234}
    table = format_table(report)
    assert "target epsilon 8: noise multiplier z = 1.234, chosen for 8 rounds of 60 of 475 devices" in table
    assert "inf (no DP noise)" not in table and "1.5" in table
