"""Methods evaluated in a side process while the others run in this one.

edgerec's training runs keep the cores busy in stages (``_parallel``), but not always all of
them: the last runs of a stage, the scoring between stages and the int8 exports leave a core
idle. The classic peers (item-KNN, ALS, BPR) fit in seconds each and depend on nothing else; run
in one side process from the start, they fill those gaps instead of running after edgerec on one
core. Their results are the same wherever they run (deterministic for a seed, no shared state).

Only methods that can be sent to another process (picklable) and that neither prepare stages,
follow another method nor are followed go aside; the rest run here, in order.
"""

from __future__ import annotations

import multiprocessing
import pickle
from multiprocessing.connection import Connection
from typing import Sequence

from ..types import Catalogue
from ._method import Method
from .results import MethodResult
from .split import LOOSplit

__all__ = ["Aside", "aside"]


def aside(methods: Sequence[Method], jobs: int) -> list[Method]:
    """The methods of ``methods`` to evaluate in a side process (none when ``jobs`` is 1)."""
    if jobs <= 1:
        return []
    followed = {m.follows for m in methods}
    return [m for m in methods
            if m.prepare is None and m.follows is None and m.name not in followed and _picklable(m)]


def _picklable(method: Method) -> bool:
    try:
        pickle.dumps(method)
    except Exception:  # a closure, a lambda, a live object: it stays in this process
        return False
    return True


class Aside:
    """The side process evaluating some methods: ``result()`` waits for their results; ``stop()``
    ends it (an error or Ctrl-C here must not leave it computing)."""

    def __init__(self, split: LOOSplit, catalogue: Catalogue, methods: Sequence[Method],
                 seeds: tuple[int, ...], k: int, chunk: int, threads: int | None) -> None:
        context = multiprocessing.get_context("spawn")
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_evaluate, args=(send, split, catalogue, list(methods), seeds, k, chunk, threads),
            daemon=True)
        self._process.start()
        send.close()  # the child holds the sending end now

    def result(self) -> tuple[MethodResult, ...]:
        """The methods' results; re-raises the side process's error."""
        try:
            ok, payload = self._receive.recv()
        except EOFError:
            raise RuntimeError(f"the side process evaluating the peers died "
                               f"(exit code {self._process.exitcode})") from None
        self._process.join()
        if not ok:
            raise payload
        return payload

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._receive.close()


def _evaluate(send: Connection, split: LOOSplit, catalogue: Catalogue, methods: list[Method],
              seeds: tuple[int, ...], k: int, chunk: int, threads: int | None) -> None:
    from .protocol import run_protocol  # the side process's own entry: imported there, no cycle

    try:
        result = run_protocol(split, methods, catalogue=catalogue, seeds=seeds, k=k, chunk=chunk,
                              threads=threads).methods
    except Exception as error:  # sent back, raised in the parent
        send.send((False, error))
    else:
        send.send((True, result))
    finally:
        send.close()
