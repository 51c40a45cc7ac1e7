"""How many threads BLAS (numpy's matrix products) may use: the adapter over threadpoolctl.

Training, fine-tuning and evaluation multiply small matrices ([256, 64] by [64, n_items]) many
thousands of times. OpenBLAS's default, one thread per core, barely helps there when the machine
is quiet and collapses when it is not: its threads spin while waiting for each other, so on two
cores shared with two other busy processes 2 epochs of MovieLens-100K took 73 s with the default
and 10 s with one thread (BENCHMARKS.md, "BLAS threads"). So the numeric work runs inside
``blas_threads(n)``, with ``n`` from the training, fine-tuning or evaluation config.

The limit is process-wide (BLAS has one thread pool): numpy work in other threads of the app
runs under it too while it holds, and contexts entered from several threads at once restore
their limits in the order they exit.

threadpoolctl comes with ``edgerec[train]`` (and every extra that builds on it). A core install
(the device runtime of DESIGN.md) may lack it: then the limit is not applied and BLAS runs as
the process configured it (``OPENBLAS_NUM_THREADS``, or one thread per core).
"""

from __future__ import annotations

import importlib.util
import sys
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from ._exceptions import ConfigError

__all__ = ["blas_threads", "check_threads", "limits_available"]


def check_threads(threads: Any, what: str = "threads") -> None:
    """``ConfigError`` unless ``threads`` is None (leave BLAS as it is) or an int in 1..256."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 256:
        raise ConfigError(f"{what} must be None or an int from 1 to 256, got {threads!r}")


def limits_available() -> bool:
    """Whether threadpoolctl is installed, so that ``blas_threads`` can apply a limit."""
    return importlib.util.find_spec("threadpoolctl") is not None


def blas_threads(threads: int | None) -> AbstractContextManager[Any]:
    """A context in which BLAS uses at most ``threads`` threads (the previous limit comes back
    on exit). ``None``, or no threadpoolctl installed: BLAS is left as it is."""
    check_threads(threads)
    if threads is None or not limits_available():
        return nullcontext()
    return _controller().limit(limits=threads, user_api="blas")


_cached: tuple[int, Any] | None = None


def _controller() -> Any:
    """threadpoolctl's view of the loaded libraries, looked up again only when a module was
    imported since (a new BLAS, e.g. scipy's, comes with an import). The lookup costs ~0.3 ms,
    the limit itself ~0.02 ms: a federated simulation fine-tunes thousands of devices a round."""
    global _cached
    if _cached is None or _cached[0] != len(sys.modules):
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController()
        _cached = (len(sys.modules), controller)  # counted after threadpoolctl's own import
    return _cached[1]
