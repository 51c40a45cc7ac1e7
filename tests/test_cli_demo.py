"""`edgerec demo`: the demo lives with the server (`edgerec-server demo`); the SDK's command
runs it in a child process with the same arguments, and never imports the server itself."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from edgerec.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_help_is_the_server_demo_help(capfd):
    assert main(["demo", "--help"]) == 0
    out = capfd.readouterr().out
    assert out.startswith("usage: edgerec-server demo") and "--epsilon" in out and "--out" in out


def test_arguments_go_to_edgerec_server_demo_as_typed(capfd):
    # A bad value is refused by `edgerec-server demo`'s own parser: nothing runs.
    assert main(["demo", "--rounds", "x", "--quiet"]) == 2
    assert "edgerec-server demo: error: argument --rounds: invalid int value: 'x'" in capfd.readouterr().err


def test_without_the_server_package_it_says_what_to_install_and_run(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "edgerec_server", None)  # as if not installed
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("started a child"))
    assert main(["demo", "--rounds", "2"]) == 2
    assert capsys.readouterr().err == (
        "edgerec: error: `edgerec demo` runs `edgerec-server demo`, and the server (edgerec_server) "
        "is not installed: pip install 'edgerec[all]', then run edgerec-server demo\n")


def test_the_sdk_command_does_not_import_the_server():
    code = ("import sys\nfrom edgerec.cli import main\ncode = main(['demo', '--help'])\n"
            "print('edgerec_server' in sys.modules, code)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False 0"


def test_no_module_of_the_sdk_imports_the_server():
    offenders = []
    for path in (ROOT / "edgerec").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if n.split(".")[0] in ("edgerec_server", "server")]
    assert not offenders
    assert not (ROOT / "edgerec" / "demo").exists()  # the demo moved to server/demo
