"""Progress bars for the evaluation protocol: a tqdm-like factory, or none.

The protocol and edgerec's own method report through one interface,
``progress(iterable, total=, desc=)``, which ``tqdm.tqdm`` satisfies: a bar per method stage
(tuning, final fits), per training run (its epochs) and per scoring pass (its user batches).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from .._exceptions import ConfigError

__all__ = ["Progress", "no_progress", "resolve_progress"]

Progress = Callable[..., Iterable[Any]]


def no_progress(iterable: Iterable[Any], **_: Any) -> Iterable[Any]:
    """The factory that shows nothing."""
    return iterable


def resolve_progress(progress: bool | Progress | None) -> Progress:
    """A factory from what a caller passed: None/False (none), True (tqdm when installed,
    silently none when not) or a tqdm-like callable."""
    if progress is None or progress is False:
        return no_progress
    if progress is True:
        try:
            from tqdm.auto import tqdm  # optional dependency, only when asked for
        except ImportError:
            return no_progress
        return tqdm
    if not callable(progress):
        raise ConfigError(f"progress must be None, a bool or a tqdm-like callable, got {progress!r}")
    return progress
