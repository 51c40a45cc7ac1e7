"""`edgerec audit`: the privacy ledger as a table and as JSON, read from a real database file."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from edgerec.cli import main
from edgerec.privacy.ledger import PrivacyLedger
from edgerec.store import InteractionStore

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
URL = "https://fl.example.org/rounds/r1"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database where a device enrolled, then sent one masked input of round r1."""
    path = tmp_path / "app.db"
    with InteractionStore(path) as store:
        store.log("u1", "i1")
        ledger = PrivacyLedger(store, clock=iter([T0, T0 + 60]).__next__)
        ledger.record(b"enrol me", kind="enrol", destination=URL)
        ledger.record(b"\x01" * 1000, kind="masked_input", round_id="r1", clip=1.0, noise_multiplier=0.8,
                      epsilon=0.42, delta=1e-5, destination=URL, model_version=3)
    return path


def test_table_lists_every_payload_and_the_totals(db: Path, capsys) -> None:
    assert main(["audit", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["seq", "time", "(UTC)", "round", "kind", "bytes", "sha256", "C", "z", "eps",
                                "destination", "note"]
    assert lines[1].split() == ["1", "2023-11-14T22:13:20Z", "-", "enrol", "8",
                                hashlib.sha256(b"enrol me").hexdigest()[:12], "-", "-", "-", URL]
    assert lines[2].split() == ["2", "2023-11-14T22:14:20Z", "r1", "masked_input", "1000",
                                hashlib.sha256(b"\x01" * 1000).hexdigest()[:12], "1", "0.8", "0.42", URL]
    assert lines[3] == "total: 2 payloads, 1008 bytes; epsilon charged so far: 0.42 at delta 1e-05"


def test_json_export_is_what_an_auditor_needs(db: Path, capsys) -> None:
    assert main(["audit", "--db", str(db), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["total_bytes"], report["epsilon"], report["delta"]) == (1008, 0.42, 1e-5)
    second = report["entries"][1]
    assert second == {
        "seq": 2, "ts": T0 + 60, "time": "2023-11-14T22:14:20Z", "round_id": "r1", "kind": "masked_input",
        "n_bytes": 1000, "sha256": hashlib.sha256(b"\x01" * 1000).hexdigest(), "clip": 1.0,
        "noise_multiplier": 0.8, "epsilon": 0.42, "delta": 1e-5, "destination": URL, "model_version": 3,
        "note": None,
    }
    assert report["differentially_private"] is True


def test_a_device_that_sent_nothing_says_so(tmp_path: Path, capsys) -> None:
    path = tmp_path / "quiet.db"
    InteractionStore(path).close()
    assert main(["audit", "--db", str(path)]) == 0
    assert "no payload has left this device" in capsys.readouterr().out
    assert main(["audit", "--db", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"entries": [], "total_bytes": 0, "epsilon": None, "delta": None,
                                                   "differentially_private": None}


def test_a_round_without_noise_shows_inf_in_the_table_and_valid_json(db: Path, capsys) -> None:
    with InteractionStore(db) as store:
        ledger = PrivacyLedger(store, clock=iter([T0 + 120, T0 + 180]).__next__)
        ledger.record(b"\x02" * 10, kind="masked_input", round_id="r2", clip=1.0, noise_multiplier=0.0,
                      epsilon=math.inf, delta=1e-5, destination=URL)
        ledger.record(b"", kind="refusal", round_id="r3", note="clip above the device's limit")
    assert main(["audit", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].split()[-3:] == ["0", "inf", URL]
    assert lines[4].split()[:4] == ["4", "2023-11-14T22:16:20Z", "r3", "refusal"]
    assert lines[4].split()[6:10] == ["-"] * 4 and lines[4].endswith("clip above the device's limit")
    assert lines[-1] == ("total: 4 payloads, 1018 bytes; epsilon charged so far: inf "
                         "(no differential privacy: a payload left without noise)")
    assert main(["audit", "--db", str(db), "--json"]) == 0
    out = capsys.readouterr().out
    assert "Infinity" not in out and "NaN" not in out  # strict JSON
    report = json.loads(out)
    assert (report["epsilon"], report["differentially_private"]) == ("inf", False)
    assert report["entries"][2]["epsilon"] == "inf" and report["entries"][3]["note"] == "clip above the device's limit"


def test_a_missing_database_is_an_error_and_is_not_created(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing.db"
    assert main(["audit", "--db", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgerec: error:") and "no database" in err and "Traceback" not in err
    assert not missing.exists()


def test_audit_reads_without_writing(db: Path) -> None:
    before = db.read_bytes()
    assert main(["audit", "--db", str(db), "--json"]) == 0
    assert db.read_bytes() == before


def test_the_installed_command_runs_as_a_subprocess(db: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "edgerec.cli", "audit", "--db", str(db), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["total_bytes"] == 1008
    missing = subprocess.run([sys.executable, "-m", "edgerec.cli", "audit", "--db", str(tmp_path / "no.db")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
