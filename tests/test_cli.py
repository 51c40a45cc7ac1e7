"""The `edgerec` command itself: options, help, version, and the errors a new user meets first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgerec import cli
from edgerec._version import installed_version
from edgerec.cli import main
from edgerec.events import EventType

ROOT = Path(__file__).resolve().parents[1]


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"edgerec {installed_version()}\n"


@pytest.mark.parametrize("flag", ["-k", "--k"])
def test_recommend_takes_k_short_and_long(flag, trained_bundle, tmp_path, capsys):
    argv = ["recommend", "--bundle", str(trained_bundle), "--db", str(tmp_path / "app.db"),
            "--user", "u1", flag, "3", "--json"]
    assert main(argv) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


@pytest.mark.parametrize("command", ["log", "recommend"])
def test_every_option_of_log_and_recommend_has_help(command, capsys):
    sub = next(a for a in cli._parser()._actions if a.dest == "command").choices[command]
    assert all(a.help for a in sub._actions), [a.dest for a in sub._actions if not a.help]
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    if command == "log":
        assert all(e.value in text for e in EventType)


def test_a_missing_bundle_is_reported_as_missing(tmp_path, capsys):
    nowhere = tmp_path / "nowhere"
    assert main(["recommend", "--bundle", str(nowhere), "--db", str(tmp_path / "app.db"),
                 "--user", "u1"]) == 2
    assert _error(capsys) == f"edgerec: error: no bundle at {nowhere}\n"


@pytest.mark.parametrize("command, module, extra", [
    (["train", "--out", "never"], "onnx", "train"),
    (["eval", "--seeds", "1"], "scipy", "eval"),
    (["eval", "--seeds", "1"], "onnx", "eval"),
    (["demo"], "starlette", "all"),
])
def test_a_missing_extra_is_one_line_naming_it_before_any_work(command, module, extra, monkeypatch,
                                                                capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    assert main(command) == 2
    assert _error(capsys) == (f"edgerec: error: `edgerec {command[0]}` needs {module}, which is "
                              f"not installed: pip install 'edgerec[{extra}]'\n")
    assert list(tmp_path.iterdir()) == []


def test_an_optional_import_failing_inside_a_command_is_the_same_clear_error(monkeypatch, capsys):
    def needs_scipy(args: object) -> int:
        import scipy.sparse  # noqa: F401

        return 0

    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setattr(cli, "_cmd_audit", needs_scipy)
    assert main(["audit", "--db", "x.db"]) == 2
    assert _error(capsys) == ("edgerec: error: `edgerec audit` needs scipy, which is not installed: "
                              "pip install 'edgerec[eval]'\n")

    def broken(args: object) -> int:
        import edgerec_no_such_module  # noqa: F401  a bug, not a missing extra: the traceback

        return 0

    monkeypatch.setattr(cli, "_cmd_audit", broken)
    with pytest.raises(ModuleNotFoundError):
        main(["audit", "--db", "x.db"])


def test_train_needs_only_the_train_extra_and_prints_no_quantization_advice(tmp_path):
    # scipy is in no extra `train` pulls in; the kiosk trains through the same code.
    code = ("import sys; sys.modules['scipy'] = None\n"
            "import examples.kiosk.bootstrap\n"
            "from edgerec.cli import main\n"
            f"sys.exit(main(['train', '--out', {str(tmp_path / 'b')!r}, '--epochs', '1', "
            "'--dim', '8', '--history', '5', '--quiet']))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {tmp_path / 'b'}: model version 1")
    assert "pre-processing" not in done.stderr and "WARNING" not in done.stderr
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["created_at"] and manifest["created_at"].endswith("Z")
