"""The devices' side of the demo's evaluation: held-out events, evaluation rounds, canary syncs.

Runs in the worker processes of ``devices.py`` (on its ``Worker``).

**Held-out events.** A device holds out, in an evaluation round, the events newer than the
newest one any fine-tune on it has read (``EdgeRec.trained_until``). The demo's devices hold
every interaction of their user but the newest (``population.device_events``): that one, the
test item central LOO-full ranks, is never in the store while training rounds run. Standing in
for a fresh event since the last fine-tune, it is logged just before each evaluation round the
device is drawn into and taken out right after (``forget`` of the user, then the rest logged
again with the same event ids), so no fine-tune ever reads it and every evaluation round
measures the same events the central figure ranks.

**Canary syncs.** Outside any round, a device syncs once (``SyncSession.run``: the signed
rollout statement, then the version it assigns to this device). Each device does so on its own
bundle folder (``<device>/bundle``, made by its first install), not on its worker's shared one:
whether it went to the candidate and back is then its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from edgerec import EdgeRec, InteractionStore, load_bundle

from . import devices as dev

__all__ = ["HeldOutTask", "evaluation_round", "sync_devices"]


@dataclass(frozen=True)
class HeldOutTask:
    """A device in an evaluation round: its held-out event (None: its user has none), and the
    events its store holds otherwise (logged again after the event is taken out)."""

    task: dev.DeviceTask
    held_out: Mapping[str, Any] | None
    events: tuple[Mapping[str, Any], ...]


def evaluation_round(round_: int, tasks: list[HeldOutTask]) -> dev.RoundReport:
    """Log each device's held-out event, take its devices through the round (``run_round``:
    an evaluation round is a round like any other to them), then take the event out again."""
    worker = _worker()
    for t in tasks:
        if t.held_out is not None:
            rec = worker.open(t.task.folder)
            try:
                rec.log_many([t.held_out])
            finally:
                rec.close()
    try:
        return dev.run_round(round_, [t.task for t in tasks])
    finally:
        for t in tasks:
            if t.held_out is not None:
                rec = worker.open(t.task.folder)
                try:
                    rec.forget(str(t.held_out["user"]))
                    rec.log_many(t.events)
                finally:
                    rec.close()


def sync_devices(tasks: list[dev.DeviceTask]) -> list[tuple[int, str, int]]:
    """One sync of each device outside any round, on its own bundle folder: (task index, the
    sync's status, the model version the device runs afterwards)."""
    worker = _worker()
    out = []
    for task in tasks:
        own = Path(task.folder) / "bundle"
        bundle = load_bundle(own, public_key=worker.key) if own.exists() else worker.bundle
        rec = EdgeRec(InteractionStore(Path(task.folder) / "app.db"), bundle)
        transport = dev.TimingTransport(worker.client)
        session = worker.session(rec, transport, bundle_dir=own)
        try:
            result = session.run()
            out.append((task.index, result.status.value, rec.model_version))
        finally:
            session.close()
            transport.close()
            rec.close()
    return out


def _worker() -> dev.Worker:
    worker = dev._WORKER
    assert worker is not None, "runs in a worker process (devices.init_worker)"
    return worker
