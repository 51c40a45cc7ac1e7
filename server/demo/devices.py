"""The demo's devices, hosted in a small pool of worker processes.

A device is a folder with its own SQLite file (events, identity, credential, ledger); it talks
to the server only over HTTP, through ``SyncSession`` (what ``rec.sync`` runs). A worker
drives its share of a round's devices stage by stage (all their advertisements, then all
their key shares, ...), so it never blocks a stage waiting for one of its own devices.

Devices of one worker process share that process's bundle folder and onnxruntime session: the
model is the same for all of them, and 943 copies of a bundle would not be a realistic use of
one machine's disk. Each device still downloads and verifies new bundles itself.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from edgerec import Bundle, EdgeRec, InteractionStore, load_bundle
from edgerec.scoring import Scorer
from edgerec.sync import (HttpxTransport, Response, SyncConditions, SyncRuntime, SyncSession,
                          SyncTimeouts)
from edgerec.sync.client import STEPS

__all__ = ["DeviceTask", "RoundReport", "Worker", "run_round", "setup_devices"]


@dataclass(frozen=True)
class DeviceTask:
    """One device's part in a call: its folder, and (in a round) where it drops, if it does."""

    index: int
    folder: str
    events: tuple[Mapping[str, Any], ...] = ()
    drop_before: str | None = None  # a step name: the device vanishes before sending it


@dataclass
class RoundReport:
    """What one worker's devices did in a round (seconds summed over its devices)."""

    statuses: dict[int, str] = field(default_factory=dict)
    dropped: dict[int, str] = field(default_factory=dict)
    bytes_sent: int = 0
    train_s: float = 0.0
    secagg_s: float = 0.0
    http_s: float = 0.0
    install_s: float = 0.0
    wait_s: float = 0.0  # polling pauses while the server collects a stage
    wall_s: float = 0.0


class TimingTransport:
    """An httpx transport that adds up the time its requests take (waiting for the server too).

    It rides on the worker's one ``httpx.Client``: devices authenticate per request, so they can
    share a connection pool. A client per device built a TLS context each time (httpx makes one
    even for plain-HTTP loopback): 17% of a worker's time in a profiled MovieLens round, a cost
    no real device pays once per sync.
    """

    def __init__(self, client: Any):
        self.inner, self.seconds, self.slept = HttpxTransport(client=client), 0.0, 0.0

    def sleep(self, seconds: float) -> None:
        """The device's wait between polls (counted apart from its own work)."""
        time.sleep(seconds)
        self.slept += seconds

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        started = time.perf_counter()
        try:
            return self.inner.request(method, path, body=body, headers=headers)
        finally:
            self.seconds += time.perf_counter() - started

    def close(self) -> None:
        self.inner.close()


class Worker:
    """Per-process state: the server's address and key, and the shared bundle and scorer."""

    def __init__(self, url: str, server_key: bytes, token: str, root: Path, first_bundle: Path):
        import os

        import httpx

        self.url, self.key, self.token = url, server_key, token
        self.client = httpx.Client(base_url=url, timeout=120.0)
        self.bundle_dir = root / f"bundles-{os.getpid()}"
        if not self.bundle_dir.exists():
            shutil.copytree(first_bundle, self.bundle_dir)
        self.bundle: Bundle = load_bundle(self.bundle_dir, public_key=server_key)
        self._scorer: Scorer | None = None

    def scorer(self) -> Scorer:
        """The process's one onnxruntime session of its current bundle, made on first use."""
        if self._scorer is None:
            self._scorer = Scorer(self.bundle.model_path, len(self.bundle.catalogue),
                                  self.bundle.config.history)
        return self._scorer

    def open(self, folder: str) -> EdgeRec:
        """The device in ``folder``, on the process's current bundle."""
        return EdgeRec(InteractionStore(Path(folder) / "app.db"), self.bundle, scorer=self.scorer())

    def adopt(self, rec: EdgeRec) -> None:
        """Serve a bundle a device just installed to the process's next devices.

        The process opens its own session of it (once per new model): the installing device's
        session is its own (``EdgeRec`` does not expose it), and one more session per worker
        and round costs milliseconds against a round's seconds.
        """
        if rec.bundle.version != self.bundle.version:
            self.bundle, self._scorer = rec.bundle, None

    def session(self, rec: EdgeRec, transport: TimingTransport,
                bundle_dir: Path | None = None) -> SyncSession:
        # The noise is the SDK's default: drawn from a CSPRNG the OS seeds, in every device and
        # every round. Nothing about it follows from the demo's --seed (which only picks who
        # drops out and how the data is split), so nobody can subtract it.
        return SyncSession(rec, self.url, enrolment_token=self.token, server_key=self.key,
                           transport=transport, bundle_dir=bundle_dir or self.bundle_dir,
                           allow=SyncConditions(min_new_interactions=0),
                           timeouts=SyncTimeouts(poll_interval=0.05, stage_timeout=900.0),
                           runtime=SyncRuntime(sleep=transport.sleep))


_WORKER: Worker | None = None


def init_worker(url: str, server_key: bytes, token: str, root: str, first_bundle: str) -> None:
    """Pool initializer: one Worker per process.

    Workers compute on one core each, like a device: the runner starts them with the BLAS
    thread variables at 1 (without that, two workers each spreading every small matrix
    product over both cores spent most of their fine-tuning time in thread hand-offs).
    """
    global _WORKER
    _WORKER = Worker(url, server_key, token, Path(root), Path(first_bundle))


def setup_devices(tasks: list[DeviceTask]) -> list[tuple[int, str, int | None]]:
    """Create each device (its database with its user's events) and enrol it:
    (task index, "enrolled" or the failing status, the server's device id)."""
    assert _WORKER is not None
    out = []
    for task in tasks:
        Path(task.folder).mkdir(parents=True, exist_ok=True)
        rec = _WORKER.open(task.folder)
        try:
            rec.log_many(task.events)
            transport = TimingTransport(_WORKER.client)
            result = _WORKER.session(rec, transport).enrol()
            out.append((task.index, result.status.value if not result.ok else "enrolled", result.device_id))
        finally:
            rec.close()
    return out


def run_round(round_: int, tasks: list[DeviceTask]) -> RoundReport:
    """Take ``tasks``' devices through one round, stage by stage; drops as the tasks say."""
    assert _WORKER is not None
    report, started = RoundReport(), time.perf_counter()
    live: dict[int, tuple[DeviceTask, EdgeRec, SyncSession, TimingTransport]] = {}
    for task in tasks:
        rec, transport = _WORKER.open(task.folder), TimingTransport(_WORKER.client)
        session = _WORKER.session(rec, transport)
        t0, http0 = time.perf_counter(), transport.seconds + transport.slept
        outcome = session.begin()
        _WORKER.adopt(rec)
        report.train_s += time.perf_counter() - t0 - (transport.seconds + transport.slept - http0)
        if outcome is not None:
            _end(report, task, rec, session, transport, outcome.status.value)
        else:
            live[task.index] = (task, rec, session, transport)
    for step in STEPS:
        for index in list(live):
            task, rec, session, transport = live[index]
            if task.drop_before == step:
                report.dropped[index] = step
                del live[index]
                _end(report, task, rec, session, transport, "dropped")
                continue
            t0, http0 = time.perf_counter(), transport.seconds + transport.slept
            outcome = session.step(step)
            report.secagg_s += time.perf_counter() - t0 - (transport.seconds + transport.slept - http0)
            if outcome is not None:
                del live[index]
                _end(report, task, rec, session, transport, outcome.status.value)
    for index, (task, rec, session, transport) in live.items():
        if _WORKER.bundle.version > rec.model_version:  # a device of this process installed it
            rec.install(_WORKER.bundle, scorer=_WORKER.scorer())
        t0, http0 = time.perf_counter(), transport.seconds + transport.slept
        outcome = session.finish()
        _WORKER.adopt(rec)
        report.install_s += time.perf_counter() - t0 - (transport.seconds + transport.slept - http0)
        _end(report, task, rec, session, transport, outcome.status.value)
    report.wall_s = time.perf_counter() - started
    return report


def _end(report: RoundReport, task: DeviceTask, rec: EdgeRec, session: SyncSession,
         transport: TimingTransport, status: str) -> None:
    report.statuses[task.index] = status
    report.bytes_sent += session.bytes_sent
    report.http_s += transport.seconds
    report.wait_s += transport.slept
    session.close()
    transport.close()
    rec.close()
