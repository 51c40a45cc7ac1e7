"""`edgerec-server demo` with evaluation rounds and the canary (issue 16, point 5), on a small
real run: 40 devices, 2 rounds of everyone without noise, an evaluation round after each, and
the bad candidate (item embeddings shuffled) on a canary of 20%."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from edgerec import ConfigError
from edgerec.privacy import Release, releases_epsilon
from edgerec_server.cli import main
from edgerec_server.demo import DemoConfig
from edgerec_server.demo.config import DP_DELTA
from edgerec_server.demo.evaluation import due, epsilon_by_kind
from edgerec_server.demo.report import format_table

pytest.importorskip("dp_accounting", reason="the audit accounts with dp-accounting")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo-eval")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["demo", "--devices", "40", "--rounds", "2", "--per-round", "all", "--noise", "0",
                     "--dropout", "0", "--stage-deadline", "3", "--dim", "16", "--synthetic-users", "200",
                     "--pilot-share", "0.5", "--evaluate-every", "1", "--canary", "--canary-share", "0.2",
                     "--out", str(out), "--quiet"])
    assert code == 0
    return json.loads((out / "report.json").read_text()), printed.getvalue(), out


def test_every_evaluated_round_has_the_federated_estimate_with_its_interval(demo):
    report, printed, out = demo
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = report["rounds"]
    assert "federated" not in rows[0]
    for row in rows[1:]:
        fed = row["federated"]
        assert fed["state"] == "done" and fed["after_round"] == row["round"]
        assert fed["model_version"] == row["model_version"]  # the model the round published
        assert fed["cohort"] == fed["devices"] == 40 and fed["statuses"] == {"participated": 40}
        est = fed["ndcg"]
        assert 0 <= est["low"] <= est["value"] <= est["high"] <= 1 and est["low"] < est["high"]
        assert fed["held_out_devices"]["value"] == pytest.approx(fed["devices_own"]["devices"])
        assert fed["central"]["ndcg"] == pytest.approx(row["ndcg"])  # central LOO-full, same model
        assert fed["noise_multiplier"] == 0 and fed["epsilon_round"] is None  # z = 0: inf
    table = format_table(report)
    assert table.splitlines()[0].split()[:5] == ["round", "model", "NDCG@10", "federated", "95%-interval"]
    for row in rows[1:]:
        line = next(x for x in table.splitlines() if x.split()[:2] == [str(row["round"]), str(row["model_version"])])
        assert line.split()[3] == f"{row['federated']['ndcg']['value']:.4f}"
        assert f"evaluation round {row['federated']['round_id']} after round {row['round']}" in table
    assert table in printed


def test_without_noise_the_estimate_is_the_mean_of_the_devices_own_figures(demo):
    """z = 0: the server's estimate is the plain mean of what the summed devices measured
    (computed in the clear by the demo with the same code and int8 model), up to the fixed-point
    code; and it covers central LOO-full (float model) on the same held-out items."""
    report, *_ = demo
    for row in report["rounds"][1:]:
        fed = row["federated"]
        own, same = fed["devices_own"], fed["central_same_events"]
        assert own["devices"] == same["users"] > 30
        assert fed["ndcg"]["value"] == pytest.approx(own["ndcg"], abs=1e-6)
        # a lean round: NDCG@10 alone, on the complete graph (its noise is z*C with C = sqrt(2))
        assert "hr" not in fed and fed["layout"].endswith(";metrics=ndcg;squares=0;live=0")
        assert fed["ndcg"]["low"] <= same["ndcg"] <= fed["ndcg"]["high"]


def test_the_bad_candidate_is_rolled_back_and_the_canary_devices_go_back(demo):
    report, printed, _ = demo
    canary = report["canary"]
    last = report["rounds"][-1]["model_version"]
    assert (canary["promoted"], canary["candidate"]) == (last, last + 1)
    assert canary["canary_devices"] > 0 and canary["on_candidate"] == canary["canary_devices"]
    (measured,) = canary["evaluation_rounds"]
    assert measured["candidate_version"] == canary["candidate"] and measured["model_version"] == last
    assert measured["cohort"] == 40 - canary["canary_devices"]  # canary devices are not drawn
    assert measured["paired_ndcg"]["high"] < 0  # worse beyond the interval
    assert canary["decision"] == "reject" and "upper end < 0" in canary["reason"]
    assert canary["interval"] == [measured["paired_ndcg"]["low"], measured["paired_ndcg"]["high"]]
    assert canary["back_on_promoted"] == canary["canary_devices"] and canary["versions_after"] == [last]
    text = " ".join(format_table(report).split())
    assert "rollout decide: reject" in text and "the canary devices went back" in text
    assert f"{canary['canary_devices']} of {canary['canary_devices']} run model {last} again" in text


def test_epsilon_is_told_apart_by_kind_of_round():
    audit = [{"state": "done", "kind": "training", "population": 100, "cohort": 20, "noise_multiplier": 1.0,
              "cumulative_epsilon": 1.0},
             {"state": "aborted", "kind": "training", "population": 100, "cohort": 20,
              "noise_multiplier": 1.0, "cumulative_epsilon": None},
             {"state": "done", "kind": "evaluation", "population": 100, "cohort": 100,
              "noise_multiplier": 2.0, "cumulative_epsilon": 3.0}]
    split = epsilon_by_kind(audit)
    assert split["training"] == pytest.approx(releases_epsilon([Release(100, 20, 1.0)], DP_DELTA))
    assert split["evaluation"] == pytest.approx(releases_epsilon([Release(100, 100, 2.0)], DP_DELTA))
    assert split["together"] == 3.0
    assert epsilon_by_kind(audit[:1] + [{**audit[2], "noise_multiplier": 0.0}])["evaluation"] is None


def test_evaluation_settings_presets_and_schedule():
    cfg = DemoConfig()
    assert (cfg.evaluate_every, cfg.canary, cfg.evaluation_noise) == (4, False, None)
    movielens = DemoConfig(data="../shared/data/ml-100k")
    assert (movielens.evaluate_every, movielens.canary) == (5, True)
    assert [r for r in range(1, 9) if due(cfg, r)] == [4, 8]
    assert [r for r in range(1, 9) if due(DemoConfig(evaluate_every=3), r)] == [3, 6, 8]
    assert not any(due(DemoConfig(evaluate_every=0), r) for r in range(1, 9))
    for bad in ({"evaluate_every": -1}, {"evaluation_noise": -1.0}, {"canary_share": 1.0}):
        with pytest.raises(ConfigError):
            DemoConfig(**bad)
