"""The devices of the fleet benchmark: one OS process holds a share of the fleet, each device a
real ``edgerec.sync`` participant with the SDK's default polling and timeouts, talking HTTP to
the server replicas (round robin over them, the next on a connection error).

A process enrols its devices, reports, waits for the round, then steps its devices through the
stages (each stage for all of its devices before the next: a thread pool smaller than the
cohort must not block on a stage that waits for devices queued behind it).
"""

from __future__ import annotations

import itertools
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping

import numpy as np

STEPS = ("advertise", "share_keys", "masked_input", "consistency", "unmask")


class SpreadTransport:
    """Requests spread over replicas: the next one each time, on to the one after on failure."""

    def __init__(self, urls: list[str], connections: int) -> None:
        import httpx

        from edgerec.sync import HttpxTransport

        self._replicas = [HttpxTransport(client=httpx.Client(
            base_url=u, timeout=120.0, limits=httpx.Limits(max_connections=connections)))
            for u in urls]
        self._turn = itertools.count()

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None):  # type: ignore[no-untyped-def]
        from edgerec.sync import TransportError

        start, error = next(self._turn), None
        for k in range(len(self._replicas)):
            replica = self._replicas[(start + k) % len(self._replicas)]
            try:
                return replica.request(method, path, body=body, headers=headers)
            except TransportError as exc:
                error = exc
        raise error  # type: ignore[misc]


def run_devices(urls: list[str], token: str, count: int, threads: int, authority: bytes,
                conn) -> None:  # type: ignore[no-untyped-def]
    """The body of one device process; talks to the driver over ``conn`` (a Pipe end).
    ``threads`` 0: a thread per device, as each phone runs its own sync; then uploads are held
    (``hold_uploads``: one request a stage). Fewer threads than devices: uploads are not held,
    or a held upload would wait for devices queued behind it in the pool."""
    from edgerec.sync import RoundParticipant, ServerApi, SyncRuntime, SyncTimeouts, new_identity_key

    threads = threads or count
    held = threads >= count
    transport = SpreadTransport(urls, threads)
    retries, runtime = SyncTimeouts().backoff, SyncRuntime()  # as the SDK's sync retries requests

    def enrol(_: int):  # type: ignore[no-untyped-def]
        key = new_identity_key()  # a retried enrolment with the same key is the same device
        return retries.call(lambda: ServerApi(transport).enrol(token, key), runtime)

    with ThreadPoolExecutor(threads) as pool:
        identities = list(pool.map(enrol, range(count)))
        # As SyncSession makes it: polls may be held (long polling) for the request timeout - 2 s.
        hold = SyncTimeouts().long_poll()
        apis = [ServerApi(transport, i.credential, hold=hold) for i in identities]
        conn.send(("enrolled", count))
        conn.recv()  # the round is open
        started, cpu0 = time.time(), time.process_time()

        def join(k: int):  # type: ignore[no-untyped-def]
            ann = None
            while ann is None:
                ann = retries.call(apis[k].current_round, runtime)
                if ann is None:
                    time.sleep(0.5)
            delta = np.random.default_rng(k).normal(0, 0.01, ann.vector_length)
            return RoundParticipant(apis[k], identities[k], ann, delta, authority_key=authority,
                                    hold_uploads=held)

        parts = list(pool.map(join, range(count)))
        failed: dict[int, str] = {}
        for step in STEPS:
            live = [k for k in range(count) if k not in failed]
            for k, error in zip(live, pool.map(lambda k, s=step: _step(parts[k], s), live)):
                if error:
                    failed[k] = error
        live = [k for k in range(count) if k not in failed]
        results = list(pool.map(lambda k: _step(parts[k], "result"), live))
        failed.update({k: e for k, e in zip(live, results) if e})
    conn.send(("done", {"started": started, "finished": time.time(), "failed": len(failed),
                        "cpu_s": time.process_time() - cpu0,
                        "errors": sorted(set(failed.values()))[:5]}))


def _step(part, name: str) -> str:  # type: ignore[no-untyped-def]
    """'' when the step went through, else the error's one-line description."""
    try:
        out = getattr(part, name)()
        if name == "result" and out.status.state != "done":
            return f"round {out.status.state}: {out.status.reason}"
        return ""
    except Exception as exc:  # a benchmark counts failures instead of stopping
        error = f"{name}: {type(exc).__name__}: {str(exc)[:160]}"
        print(f"device failed: {error}", file=sys.stderr, flush=True)  # now, not only at the end
        return error
