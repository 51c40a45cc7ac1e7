"""`edgerec demo` with tiny settings: a real server process, devices in 2 worker processes, 2
rounds over HTTP with the item tables frozen; the report folder, the table and the ledger/audit
figures it shows."""

from __future__ import annotations

import json

import pytest

from edgerec.cli import main
from edgerec.demo import DemoConfig
from edgerec.demo.report import format_table


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "report"
    code = main(["demo", "--devices", "8", "--rounds", "2", "--per-round", "6", "--dropout", "0.2",
                 "--stage-deadline", "3", "--dim", "8", "--central-epochs", "3",
                 "--synthetic-users", "120", "--frozen", "tables", "--out", str(out), "--quiet"])
    assert code == 0
    return out, json.loads((out / "report.json").read_text())


def test_demo_writes_the_report_folder(demo):
    out, report = demo
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = report["rounds"]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert [r["model_version"] for r in rows] == [1, 2, 3]  # every round published a model
    for r in rows[1:]:
        # The server drew the cohort (Poisson, q = 6/8); every drawn device took part.
        assert r["sampling_rate"] == pytest.approx(6 / 8) and r["population"] == 8
        assert r["state"] == "done" and r["participants"] == r["cohort"] >= 4
        drops = round(0.2 * r["cohort"])
        assert r["dropouts"] == drops and r["cohort"] - drops <= r["survivors"] <= r["cohort"]
        assert r["statuses"] == {"dropped": drops, "participated": r["cohort"] - drops}
        assert 0 <= r["ndcg"] <= r["hr"] <= 1 and r["epsilon"] > 0  # 8 users: 0 is possible
    assert rows[2]["epsilon"] > rows[1]["epsilon"]
    assert report["devices"] == 8 and report["central"]["ndcg"] > 0
    # --frozen tables: every round left the item tables out (the audit's count of what was sent).
    assert report["frozen"] == ["emb_in", "emb_out", "feat_in", "feat_out"]
    assert 0 < report["federated_weights"] < report["weights"]
    assert {r["federated_weights"] for r in rows[1:]} == {report["federated_weights"]}
    timing = report["timing"]
    for key in ("central_training_s", "devices_train_s", "devices_secagg_s", "devices_http_s",
                "server_edgerec_publish_seconds_sum", "total_s"):
        assert timing[key] >= 0


def test_the_table_has_a_row_per_round_and_the_comparison(demo, capsys):
    _, report = demo
    table = format_table(report).splitlines()
    assert table[0].split()[:4] == ["round", "model", "NDCG@10", "HR@10"]
    assert [line.split()[0] for line in table[2:5]] == ["0", "1", "2"]
    assert "federated / central NDCG@10" in table[-1]


def test_bad_demo_settings_are_refused():
    from edgerec._exceptions import ConfigError

    with pytest.raises(ConfigError):
        DemoConfig(devices=4, per_round=6)
    with pytest.raises(ConfigError):
        DemoConfig(dropout=0.6)


def test_presets_follow_the_data_and_yield_to_explicit_settings():
    synthetic, movielens = DemoConfig(), DemoConfig(data="../shared/data/ml-100k")
    assert synthetic.pilot_share > 0 and synthetic.frozen == ()
    assert synthetic.noise > 0 and synthetic.epsilon is None
    assert movielens.epsilon == 8.0 and movielens.noise is None  # see PRESETS for why
    mine = DemoConfig(data="../shared/data/ml-100k", rounds=3, noise=0.0, pilot_share=0.1)
    assert (mine.rounds, mine.noise, mine.epsilon, mine.pilot_share, mine.per_round) == (
        3, 0.0, None, 0.1, movielens.per_round)
    assert mine.frozen == movielens.frozen


def test_round_threshold_sits_below_the_expected_survivors_on_the_complete_graph():
    from edgerec.demo.runner import _round_params

    cfg = DemoConfig(data="../shared/data/ml-100k", per_round=100, rounds=10, noise=1.0, frozen=(),
                     graph="complete")
    flags = _round_params(cfg, 1, drops=2)
    # ~98 survive; noise is calibrated to the threshold, so it must not sit at the 2/3 floor:
    # the server sets t = drawn cohort - 6 (never below the floor)
    assert flags["tolerate_dropouts"] == 6 and flags["expected"] == 100 and "max" not in flags
    assert "frozen" not in flags  # every weight federated
    assert _round_params(cfg, 10, drops=2)["server_lr"] < flags["server_lr"]  # cosine decay
    harary = _round_params(DemoConfig(per_round=60, graph="harary"), 1, drops=1)
    assert "threshold" not in harary and "tolerate_dropouts" not in harary  # the server picks t
