"""`edgerec eval` and `edgerec train`: what they say before and while they run, --quick, --seeds
and --threads."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from edgerec import cli
from edgerec.cli import main
from edgerec.data import synthetic
from edgerec.evaluation import available_peers


@pytest.fixture(scope="module")
def events_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = synthetic(n_users=40, n_items=30, n_genres=3, mean_length=6, seed=4)
    path = tmp_path_factory.mktemp("csv") / "events.csv"
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["user", "item", "timestamp"])
        out.writerows((u, i, int(t)) for u, i, t in zip(data.user, data.item, data.ts))
    return path


def _help(command: str) -> str:
    sub = next(a for a in cli._parser()._actions if a.dest == "command").choices[command]
    return " ".join(sub.format_help().split())


def test_eval_help_states_the_seeds_and_what_quick_changes():
    text = _help("eval")
    assert "number of seeds to average (default: 5; 1 with --quick)" in text
    for said in ("1 seed", "8 and 16 epochs of one pooled training run", "2 attention, 3 mixes of the two", "2 candidates each", "--threads"):
        assert said in text, said


def test_quick_eval_says_what_it_runs_then_estimates_then_answers(events_csv, capsys):
    assert main(["eval", "--data", str(events_csv), "--quick", "--quiet", "--json"]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)  # stdout is the result alone
    names = ["edgerec", "edgerec-int8", *(m.name for m in available_peers())]
    assert [r["method"] for r in rows] == names
    lines = err.splitlines()
    assert re.match(r"LOO-full on events: \d+ interactions, \d+ items \(--quick\); BLAS threads: 1; training processes: \d+$", lines[0])
    assert lines[1].startswith(f"1 seed, {len(names)} methods, ")
    assert "  edgerec: 2 candidates, then 1 final fit (16 + 8-16 epochs)" in lines
    assert "  item-knn: 2 candidates, then 1 final fit" in lines
    estimates = [line for line in lines if " took " in line]
    assert [line.split(":")[0] for line in estimates] == names  # one per method, in run order
    assert estimates[0].startswith("edgerec: tuning's training (16 epochs) took ")
    assert re.match(r"done in \d+\.\d min$", lines[-1])


def test_seeds_overrides_the_quick_default(events_csv, capsys):
    assert main(["eval", "--data", str(events_csv), "--quick", "--seeds", "2", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "  edgerec: 2 candidates, then 2 final fits (16 + 16-32 epochs)" in err.splitlines()
    assert "mean of 2 seeds" in out


@pytest.mark.parametrize("command", ["train", "eval"])
@pytest.mark.parametrize("bad", ["0", "257", "two"])
def test_threads_must_be_a_count(command, bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--threads", bad])
    assert exit_.value.code == 2
    assert "expected a number of threads from 1 to 256" in capsys.readouterr().err


def test_train_records_its_threads_in_the_bundle(events_csv, tmp_path):
    out = tmp_path / "bundle"
    assert main(["train", "--data", str(events_csv), "--out", str(out), "--epochs", "1", "--dim", "8",
                 "--history", "5", "--threads", "2", "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["hyperparameters"]["training"]["threads"] == 2
