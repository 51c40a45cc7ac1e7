"""`edgerec-server demo` with tiny settings: a real server process, devices in 2 worker
processes, 2 rounds over HTTP with the item tables frozen; the report folder (by default in the
current folder), the table and the ledger/audit figures it shows."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from edgerec_server.cli import main
from edgerec_server.demo import DemoConfig
from edgerec_server.demo.config import DEFAULT_OUT
from edgerec_server.demo.report import format_table

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One run from an empty current folder, without --out: the report goes to the default
    folder there (and nowhere in the source tree); the path is the run's last line."""
    cwd = tmp_path_factory.mktemp("demo-cwd")
    before = _source_tree()
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.chdir(cwd)
        code = main(["demo", "--devices", "8", "--rounds", "2", "--per-round", "6", "--dropout", "0.2",
                     "--stage-deadline", "3", "--dim", "8", "--central-epochs", "3",
                     "--synthetic-users", "120", "--frozen", "tables", "--quiet",
                     "--evaluate-every", "0", "--no-canary"])  # test_demo_evaluation.py has them
    assert code == 0
    out = cwd / DEFAULT_OUT
    return out, json.loads((out / "report.json").read_text()), printed.getvalue(), cwd, before


def _source_tree() -> set[str]:
    """Every file of the checkout outside caches, as paths relative to it."""
    return {str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
            if not any(part.startswith(".") or part == "__pycache__" or part.endswith(".egg-info")
                       for part in p.relative_to(ROOT).parts)}


def test_the_report_goes_to_the_current_folder_by_default_and_is_named_at_the_end(demo):
    out, _, printed, cwd, before = demo
    assert sorted(p.name for p in cwd.iterdir()) == [DEFAULT_OUT]
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.png"]
    assert printed.rstrip().splitlines()[-1].endswith(f"report in {out.resolve()}: report.json, report.png")
    # Nothing new in the source tree (other files may come and go: people work in it).
    assert not {p for p in _source_tree() - before if "report" in p or p.endswith(".png")}


def test_demo_writes_the_report_folder(demo):
    out, report, *_ = demo
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
    _, report, *_ = demo
    table = format_table(report).splitlines()
    assert table[0].split()[:4] == ["round", "model", "NDCG@10", "HR@10"]
    assert [line.split()[0] for line in table[2:5]] == ["0", "1", "2"]
    assert "federated / central NDCG@10" in table[-1]


def test_the_device_counts_of_the_table_add_up(demo):
    """Issue 15: `devices 60, survived 60, dropped 1` did not add up. Now, on a real run where
    devices drop at random stages: joined = dropped + summed, where dropped are the devices
    that vanished before their update reached the sum (the server's count and the demo's own
    agree), and those that vanished after it are counted apart as left-late."""
    _, report, printed, *_ = demo
    table = format_table(report).splitlines()
    head = table[0].split()
    assert head[4:9] == ["drawn/N", "joined", "dropped", "summed", "left-late"]
    rows = {line.split()[0]: dict(zip(head, line.split())) for line in table[2:5]}
    assert rows["0"]["joined"] == rows["0"]["dropped"] == rows["0"]["summed"] == "-"
    vanished = 0
    for r in report["rounds"][1:]:
        cells = rows[str(r["round"])]
        joined, dropped, summed, late = (int(cells[k]) for k in ("joined", "dropped", "summed", "left-late"))
        assert cells["drawn/N"] == f"{r['cohort']}/{r['population']}" and joined == r["cohort"]
        assert joined == dropped + summed and summed == r["survivors"]
        assert dropped == r["dropouts_before_sum"] and dropped + late == r["dropouts"]
        vanished += r["dropouts"]
    assert vanished >= 2  # a run with dropouts: round(0.2 x the cohort) in each round
    assert "joined = dropped + summed" in " ".join(table)
    assert "\n".join(table[:5]) in printed  # the table the run printed


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
    from edgerec_server.demo.runner import _round_params

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


def test_the_report_folder_is_relative_to_the_current_folder_unless_given(monkeypatch, tmp_path):
    assert DemoConfig().out == DEFAULT_OUT and not Path(DEFAULT_OUT).is_absolute()
    seen = []
    monkeypatch.setattr("edgerec_server.demo.run_demo", lambda cfg, progress: seen.append(cfg))
    assert main(["demo", "--out", str(tmp_path / "mine"), "--quiet"]) == 0
    assert main(["demo", "--quiet"]) == 0
    assert [cfg.out for cfg in seen] == [str(tmp_path / "mine"), DEFAULT_OUT]
