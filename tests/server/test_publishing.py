"""The end of a round runs outside the coordinator's lock: while a replica unmasks, builds
(ONNX export, int8, signature) and stores the new model, it answers devices; the round says
"publishing" and is "done" only once its model can be downloaded. The database still decides
who publishes: a replica killed while publishing is replaced once its claim lapses, and the
model published is the same one, exactly once.

A slow publication is a ``build_model`` that waits to be let go (``Stalled``), passed to the
in-process coordinator, or patched into a real server process that is then SIGKILLed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgerec.federated import FedAdam, StrategyState
from edgerec.model.params import flatten, param_names
from edgerec.secagg import Stage
from edgerec.sync import Backoff, RoundParticipant, SyncTimeouts, install_bundle
from edgerec_server import Coordinator, Publisher, RoundParams, create_app
from edgerec_server.aggregation import NewModel, build_model
from edgerec_server.keys import load_or_create_key
from edgerec_server.process import ServeSpec, ServerProcess
from edgerec_server.publisher import flat_weights
from edgerec_server.state import open_state

from srv_helpers import World, authority_key, cli, enrol_devices

#: How long a request that does not need the publication may take while it runs (it takes
#: milliseconds; a request queued behind the publication would wait until the test lets go).
PROMPT_S = 5.0


class Stalled:
    """A ``build_model`` that builds the model, then waits until the test lets it go: a
    publication as slow as the test needs, killed (never let go) at its slowest point."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.built: list[NewModel] = []

    def __call__(self, state, publisher, active) -> NewModel:
        new = build_model(state, publisher, active)
        self.built.append(new)
        self.entered.set()
        assert self.release.wait(60), "the test never let the publication go"
        return new


class Worlds(World):
    """``World`` on the backend its config names (SQLite, or PostgreSQL with ``database``),
    its coordinator publishing with ``build``."""

    def __init__(self, tmp, bundle_dir, build=None, **config) -> None:
        self.build = build
        super().__init__(tmp, bundle_dir, **config)

    def start(self, bundle_dir=None) -> None:
        from starlette.testclient import TestClient

        self.state = open_state(self.config.database, self.config.database_path)
        self.publisher = Publisher(self.state, load_or_create_key(self.config.signing_key_path))
        if bundle_dir is not None:
            self.publisher.import_bundle(bundle_dir, self.clock())
        self.co = Coordinator(self.state, self.publisher, self.config, clock=self.clock,
                              build=self.build)
        self.client = TestClient(create_app(self.co))

    def replica(self) -> Coordinator:
        """Another replica on the same database (its own connection, its own owner id)."""
        state = open_state(self.config.database, self.config.database_path)
        publisher = Publisher(state, load_or_create_key(self.config.signing_key_path))
        return Coordinator(state, publisher, self.config, clock=self.clock)


def _prompt(pool: ThreadPoolExecutor, call, *args):
    """``call(*args)``, which must answer within ``PROMPT_S`` (not wait for the publication)."""
    return pool.submit(call, *args).result(timeout=PROMPT_S)


def _round_to_the_last_upload(world: World, params: RoundParams, seed: int):
    """Four devices through every stage but the last device's unmask; (apis, parts, deltas, id)."""
    apis = world.devices(4)
    uploads: dict[int, list] = {}
    for a in apis:
        a.on_upload = lambda kind, body, d=a.identity.device_id: uploads.setdefault(d, []).append(body)
    record = world.co.open_round(params)
    rng = np.random.default_rng(seed)
    length = apis[0].current_round().vector_length
    deltas = [rng.normal(0, 0.02, length) for _ in apis]
    parts = [world.participant(a, d) for a, d in zip(apis, deltas)]
    for step in ("advertise", "share_keys", "masked_input", "consistency"):
        for p in parts:
            getattr(p, step)()
    for p in parts[:3]:
        p.unmask()
    return apis, parts, deltas, record.id, uploads


def _start_last_unmask(part: RoundParticipant) -> threading.Thread:
    """The last unmask share, acknowledged, closes the round: the tick that runs after the
    answer (in the request, in-process) publishes, and waits inside the stalled build."""
    thread = threading.Thread(target=part.unmask, daemon=True)
    thread.start()
    return thread


def test_devices_are_answered_while_the_model_is_published(tmp_path, bundle_dir):
    stalled = Stalled()
    world = Worlds(tmp_path / "state", bundle_dir, build=stalled)
    pool = ThreadPoolExecutor(4)
    try:
        apis, parts, deltas, round_id, uploads = _round_to_the_last_upload(
            world, RoundParams(min_participants=4, max_participants=4), seed=1)
        last = _start_last_unmask(parts[3])
        assert stalled.entered.wait(30)
        device = world.state.device(apis[0].identity.device_id)
        # Requests that take the coordinator's lock are answered while the model is published.
        ann = _prompt(pool, world.co.announcement, device)
        assert ann is not None and (ann.round_id, ann.stage) == (round_id, "unmask")
        assert _prompt(pool, apis[1].current_round).round_id == round_id  # over HTTP
        resend = _prompt(pool, world.co.accept, device, round_id, uploads[device.id][-1])
        assert resend.duplicate and resend.kind == "unmask"
        assert _prompt(pool, apis[2].download, round_id, Stage.UNMASK) is not None
        # The round is not done before its model is stored; devices keep polling.
        status = _prompt(pool, apis[0].round_status, round_id)
        assert (status.state, status.stage, status.model_version_out) == ("open", "publishing", None)
        assert _prompt(pool, apis[0].latest_bundle).model_version == 1
        assert _prompt(pool, world.devices, 1)  # a new device enrols
        # This replica's own ticks leave the round to the publication, even once its claim
        # has lapsed (no second build here; another replica would take over then).
        world.clock.now += world.config.close_lease_s + 1
        _prompt(pool, world.co.tick)
        assert len(stalled.built) == 1
        assert world.state.round(round_id).lease_owner == world.co.owner
    finally:
        stalled.release.set()
        pool.shutdown()
    try:
        last.join(30)
        assert not last.is_alive()
        outcomes = [p.result() for p in parts]
        assert {(o.status.state, o.status.survivors, o.status.model_version_out)
                for o in outcomes} == {("done", 4, 2)}
        assert apis[0].round_status(round_id).stage == "done"
        base = flat_weights(world.publisher.load(1)).astype(np.float64)
        got = flat_weights(world.publisher.load(2)).astype(np.float64)
        np.testing.assert_allclose(got, base + np.mean(deltas, axis=0), atol=1e-5)
        assert world.publisher.latest().sha256 == stalled.built[0].sha256
        assert all(m.body is None for m in world.state.messages(round_id))
    finally:
        world.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_replica_dead_while_publishing_is_replaced_and_the_same_model_published_once(
        backend, tmp_path, bundle_dir, request):
    config = {"database": request.getfixturevalue("pg_url")} if backend == "postgres" else {}
    stalled = Stalled()
    world = Worlds(tmp_path / "state", bundle_dir, build=stalled, **config)
    other = world.replica()
    pool = ThreadPoolExecutor(2)
    params = RoundParams(min_participants=4, max_participants=4, strategy="fedadam", server_lr=0.1)
    try:
        apis, parts, deltas, round_id, _ = _round_to_the_last_upload(world, params, seed=2)
        last = _start_last_unmask(parts[3])
        # Replica A built the model and stops there, as if killed before storing it.
        assert stalled.entered.wait(30)
        lease = world.state.round(round_id)
        assert (lease.frozen, lease.lease_owner) == (True, world.co.owner)
        other.tick()  # A's claim holds: B does not publish
        assert world.state.round(round_id).state == "open" and other.state.latest_model().version == 1
        assert other.status(round_id).stage == "publishing"
        # A's claim lapses (close_lease_s on the shared clock): B closes the stage again from
        # the stored messages and publishes. A's own tick does not start a second build.
        world.clock.now += world.config.close_lease_s + 1
        _prompt(pool, world.co.tick)
        assert len(stalled.built) == 1
        _prompt(pool, other.tick)
        done = world.state.round(round_id)
        assert (done.state, done.out_version, done.survivors) == ("done", 2, 4)
        # The round is done when the model is there; B published what A had built.
        published = world.state.latest_model()
        a_model = stalled.built[0]
        assert (published.version, a_model.version) == (2, 2)
        a_bundle = install_bundle(a_model.archive, tmp_path / "a", world.publisher.public_key)
        np.testing.assert_array_equal(flat_weights(other.publisher.load(2)), flat_weights(a_bundle))
        base = flat_weights(world.publisher.load(1)).astype(np.float32)
        expected, _ = FedAdam(lr=0.1).apply(base, np.mean(deltas, axis=0), StrategyState())
        np.testing.assert_allclose(flat_weights(other.publisher.load(2)), expected, atol=1e-4)
        assert all(m.body is None for m in world.state.messages(round_id))
    finally:
        stalled.release.set()  # A comes back: its claim is gone, it stores nothing
        pool.shutdown()
    try:
        last.join(30)
        assert not last.is_alive()
        assert world.state.latest_model().version == 2
        assert world.state.strategy_state("fedadam")[0] == 1  # one optimizer step: one publication
        published = [e.detail for e in world.state.events() if e.kind == "model_published"
                     and e.detail.get("round_id") == round_id]
        assert len(published) == 1
        outcomes = [p.result() for p in parts]
        assert {(o.status.state, o.status.model_version_out) for o in outcomes} == {("done", 2)}
        assert world.co.status(round_id).stage == "done"
        assert world.co._active == {} and world.co._publishing == set()
    finally:
        other.state.close()
        world.close()


# -- a real server process, SIGKILLed while it publishes -------------------------------------------
# The server of `edgerec-server serve`, whose build_model waits (after building) until it is
# killed; it says so by creating the file named by its first argument.
_STALLED_SERVER = """
import pathlib, sys, time
import edgerec_server.coordinator as coordinator
from edgerec_server.cli import main

build, marker = coordinator.build_model, pathlib.Path(sys.argv[1])

def stalled(*args):
    new = build(*args)
    marker.touch()
    while True:
        time.sleep(60)

coordinator.build_model = stalled
sys.exit(main(sys.argv[2:]))
"""


@dataclass(frozen=True)
class StalledServe(ServeSpec):
    """``edgerec-server serve`` whose publication never ends (``_STALLED_SERVER``)."""

    marker: Path = Path("publishing")

    def argv(self, port: int) -> list[str]:
        python, *module, command = super().argv(port)[:4]
        assert module == ["-m", "edgerec_server"] and command == "serve"
        return [python, "-c", _STALLED_SERVER, str(self.marker), *super().argv(port)[3:]]


def test_a_server_sigkilled_while_publishing_answers_until_then_and_a_restart_publishes(
        server_factory, data_dir, tmp_path):
    marker = tmp_path / "publishing"
    env = {**os.environ, "EDGEREC_SERVER_TICK_INTERVAL_S": "0.1",
           "EDGEREC_SERVER_LOG_LEVEL": "warning", "EDGEREC_SERVER_CLOSE_LEASE_S": "2"}
    server = ServerProcess(StalledServe(data_dir, env=env, cwd=data_dir.parent, marker=marker)).start()
    try:
        token = cli(data_dir, "token", "create", "--uses", "5")
        devices = enrol_devices(server.url, token, 4)
        round_id = json.loads(cli(data_dir, "round", "open", "--min", "4", "--deadline", "60"))["round_id"]
        rng = np.random.default_rng(3)
        length = devices[0].api.current_round().vector_length
        deltas = [rng.normal(0, 0.01, length) for _ in devices]
        pinned = authority_key(data_dir)
        parts = [RoundParticipant(d.api, d.identity, d.api.current_round(), deltas[i],
                                  authority_key=pinned,
                                  timeouts=SyncTimeouts(poll_interval=0.05, stage_timeout=60,
                                                        backoff=Backoff(attempts=41, base=0.05, cap=0.2)))
                 for i, d in enumerate(devices)]
        for step in ("advertise", "share_keys", "masked_input", "consistency", "unmask"):
            for p in parts:
                getattr(p, step)()
        for _ in range(300):
            if marker.exists():
                break
            threading.Event().wait(0.1)
        assert marker.exists(), server.log_text()
        # The model is built and being stored, forever: the server answers meanwhile.
        first = devices[0]
        auth = {"Authorization": f"Bearer {first.identity.credential}"}
        answer = httpx.get(server.url + "/v1/rounds/current", headers=auth, timeout=PROMPT_S)
        assert answer.status_code == 200 and answer.json()["round_id"] == round_id
        resend = httpx.post(server.url + f"/v1/rounds/{round_id}/messages", headers={
            **auth, "Content-Type": "application/octet-stream"}, content=first.uploads[-1][1],
            timeout=PROMPT_S)
        assert resend.status_code == 202 and resend.json()["duplicate"] is True
        status = httpx.get(server.url + f"/v1/rounds/{round_id}", headers=auth, timeout=PROMPT_S)
        assert (status.json()["state"], status.json()["stage"]) == ("open", "publishing")
        latest = httpx.get(server.url + "/v1/models/latest", headers=auth, timeout=PROMPT_S)
        assert latest.headers["X-Edgerec-Model-Version"] == "1"
        assert enrol_devices(server.url, token, 1)  # enrolment is not held up either
    finally:
        server.kill()
    # A new process on the same data dir: once the dead one's claim lapses (2 s), it unmasks
    # the stored shares and publishes; the devices, polling for the outcome, see it done.
    server = server_factory(server.port, EDGEREC_SERVER_CLOSE_LEASE_S="2")
    outcomes = [p.result() for p in parts]
    assert {(o.status.state, o.status.survivors, o.status.model_version_out)
            for o in outcomes} == {("done", 4, 2)}
    api = devices[1].api
    key = api.public_key()
    new = install_bundle(api.latest_bundle().archive, tmp_path / "new", key)
    old = httpx.get(server.url + "/v1/models/1", timeout=30,
                    headers={"Authorization": f"Bearer {devices[1].identity.credential}"})
    base = install_bundle(old.content, tmp_path / "base", key)
    names = param_names(base.config)
    expected = flatten(base.params, names).astype(np.float64) + np.mean(deltas, axis=0)
    np.testing.assert_allclose(flatten(new.params, names), expected, atol=1e-5)
    audit = json.loads(cli(data_dir, "audit", "--json"))["rounds"]
    assert [(r["round_id"], r["state"], r["survivors"]) for r in audit] == [(round_id, "done", 4)]
    conn = sqlite3.connect(f"file:{data_dir / 'state.sqlite3'}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT COUNT(*) FROM stage_bodies").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM models").fetchone()[0] == 2
    finally:
        conn.close()
