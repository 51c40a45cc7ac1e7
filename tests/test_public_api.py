"""The public surface: what `import edgerec` offers, and the package boundaries of DESIGN.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
