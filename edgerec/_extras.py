"""Which optional dependency each ``edgerec`` command needs, and the one-line error when absent.

The core install (numpy, onnxruntime, sqlite-utils, cryptography, httpx) logs, recommends, syncs
and audits. Training, evaluation and the demo need extras (pyproject.toml); without them the
command says which to install (``MissingDependencyError``, exit status 2), never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Sequence

from ._exceptions import MissingDependencyError

__all__ = ["OPTIONAL", "COMMAND_NEEDS", "check_command", "as_missing_dependency", "require"]

#: Import names of the optional dependencies, and the extra that installs each.
OPTIONAL: dict[str, str] = {
    "onnx": "train", "tqdm": "train", "threadpoolctl": "train", "scipy": "eval", "implicit": "peers",
    "dp_accounting": "privacy", "starlette": "server", "uvicorn": "server",
    "prometheus_client": "server", "matplotlib": "all", "psycopg": "postgres",
    "psycopg_pool": "postgres",
}
#: What a command cannot start without, checked before it does any work, and the extra that
#: brings all of it. (``simulate`` needs dp-accounting only with noise; the privacy code then
#: raises MissingDependencyError itself, naming ``edgerec[privacy]``.)
COMMAND_NEEDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "train": ("train", ("onnx",)),
    "eval": ("eval", ("onnx", "scipy")),
    "demo": ("all", ("onnx", "dp_accounting", "starlette", "uvicorn", "prometheus_client")),
}


def require(module: str, *, extra: str, why: str) -> ModuleType:
    """``import module``, or ``MissingDependencyError`` (an ImportError) saying ``why`` it is
    needed and which extra installs it: one place for the library's optional imports."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"{why}: pip install 'edgerec[{extra}]'",
                                     module=module.split(".")[0], extra=extra) from exc


def _missing(command: str, modules: Sequence[str], extra: str) -> MissingDependencyError:
    """The error for ``edgerec <command>`` when ``modules`` are not installed."""
    verb = "is" if len(modules) == 1 else "are"
    return MissingDependencyError(
        f"`edgerec {command}` needs {', '.join(modules)}, which {verb} not installed: "
        f"pip install 'edgerec[{extra}]'", module=modules[0], extra=extra)


def check_command(command: str) -> None:
    """MissingDependencyError when ``command`` cannot run on this install (imports nothing)."""
    extra, modules = COMMAND_NEEDS.get(command, ("", ()))
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if absent:
        raise _missing(command, absent, extra)


def as_missing_dependency(command: str, exc: ImportError) -> MissingDependencyError | None:
    """``exc`` as a MissingDependencyError when an optional dependency is what is missing; None
    for anything else (a broken install or a bug, where the traceback is the useful answer)."""
    module = (exc.name or "").partition(".")[0]
    if not isinstance(exc, ModuleNotFoundError) or module not in OPTIONAL:
        return None
    extra, needs = COMMAND_NEEDS.get(command, ("", ()))
    return _missing(command, [module], extra if module in needs else OPTIONAL[module])
