"""The public surface: what `import edgerec` offers, and the package boundaries of DESIGN.md."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edgerec

ROOT = Path(__file__).resolve().parents[1]


def test_all_lists_exactly_the_public_names():
    assert sorted(edgerec.__all__) == edgerec.__all__
    for name in edgerec.__all__:
        assert hasattr(edgerec, name), name
    public = {n for n in vars(edgerec) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(edgerec, n)).__name__ == "module"}
    assert public - modules == set(edgerec.__all__) - {"__version__"}


def test_every_error_derives_from_the_base_class():
    errors = [getattr(edgerec, n) for n in edgerec.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(e, edgerec.EdgeRecError) for e in errors)


def test_importing_the_sdk_pulls_in_no_training_or_server_code():
    code = ("import sys, edgerec; bad = [m for m in ('onnx', 'onnxruntime', 'dp_accounting', "
            "'implicit', 'edgerec_server') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    marker = readme.index("<!-- test-command")
    command = readme[marker:].split("```sh\n", 1)[1].split("\n```", 1)[0]
    assert "pytest" in command and "pip install" in command
    assert "README.md" in (ROOT / ".ci" / "run").read_text()


def test_the_quickstart_logs_an_item_the_bundle_it_trains_knows():
    import re

    from edgerec.data import synthetic
    from edgerec.workflows import DataSpec

    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert "edgerec train --out model-bundle\n" in quickstart  # the synthetic data: DataSpec()
    logged = re.findall(r'rec\.log\(user="u1", item="([^"]+)"', quickstart)
    spec = DataSpec()
    ids = synthetic(spec.synthetic_users, spec.synthetic_items, seed=spec.seed).catalogue.item_ids
    assert logged and set(logged) <= set(ids)


def test_the_readme_says_how_to_run_the_tests_that_skip_without_chromium():
    readme = (ROOT / "README.md").read_text()
    browser = (ROOT / "tests" / "examples" / "test_kiosk_browser.py").read_text()
    install = "sudo apt-get install chromium"
    assert "tests/examples/test_kiosk_browser.py" in readme and f"`{install}`" in readme
    assert install in browser and "EDGEREC_CHROMIUM" in readme and "EDGEREC_CHROMIUM" in browser
    assert "apt-get install" in (ROOT / ".ci" / "run").read_text()  # what CI does, as both say


def test_the_packages_ship_their_types():
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-data"] == {"edgerec": ["py.typed"], "edgerec_server": ["py.typed"]}
    for folder in ("edgerec", setuptools["package-dir"]["edgerec_server"]):
        assert (ROOT / folder / "py.typed").is_file()  # PEP 561's marker


def test_the_entry_points_are_annotated_and_never_any():
    entry_points = [edgerec.open, edgerec.load_bundle, edgerec.write_bundle, edgerec.read_ledger]
    entry_points += [getattr(edgerec.EdgeRec, name) for name in (
        "install", "log", "log_many", "recommend", "fine_tune", "sync", "forget", "export", "prune")]
    for function in entry_points:
        signature = inspect.signature(function)
        shown = [p.annotation for name, p in signature.parameters.items() if name != "self"]
        shown.append(signature.return_annotation)
        assert inspect.Parameter.empty not in shown, function.__qualname__
        assert not [a for a in shown if re.search(r"\bAny\b", str(a))], function.__qualname__


def test_ci_runs_ruff_mypy_and_each_extra_alone():
    run = (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/ruff check ." in run and ".venv/bin/mypy\n" in run and ".ci/extras" in run
    extras = (ROOT / ".ci" / "extras").read_text()
    assert "fresh_venv train" in extras and "fresh_venv kiosk" in extras
