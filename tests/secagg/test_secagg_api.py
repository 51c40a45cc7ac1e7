"""The package surface, and the sans-IO rule: no clock, socket or OS randomness inside."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import edgerec.secagg as secagg

PACKAGE = Path(secagg.__file__).parent
FORBIDDEN_MODULES = {"os", "time", "socket", "random", "secrets", "datetime", "httpx", "urllib", "asyncio"}


def test_all_names_exist_and_are_documented():
    for name in secagg.__all__:
        obj = getattr(secagg, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"{name} has no docstring"


def test_no_io_clock_or_os_randomness_in_the_package():
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Attribute, ast.Name)):
                assert getattr(node, "attr", getattr(node, "id", "")) not in {"urandom", "perf_counter"}, path.name
                continue
            if isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]} if node.level == 0 else set()
            else:
                continue
            assert not names & FORBIDDEN_MODULES, f"{path.name} imports {names & FORBIDDEN_MODULES}"


def test_modules_stay_small():
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) < 400, path.name
