"""Server test helpers (imported by the tests as ``srv_helpers``): a tiny signed model, a real ``edgerec-server`` process, simulated devices, and an in-process server on a fake clock (``World``).

Devices are real ``edgerec.sync`` participants (real secure aggregation, real crypto) talking
HTTP to a uvicorn process on 127.0.0.1 (or to the app in-process through Starlette's
TestClient); models are tiny (30 items, dim 8) so rounds are quick. Every participant pins the
enrolment authority's public key (``authority_key``): without it a device refuses every round.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pytest

from edgerec.sync import (DeviceIdentity, HttpxTransport, RoundAnnouncement, RoundParticipant, ServerApi,
                          SyncRuntime, SyncTimeouts, new_identity_key)
from edgerec_server.process import ServeSpec, ServerProcess  # ServerProcess: tests' type hints

ROOT = Path(__file__).resolve().parents[2]


def tiny_bundle(path: Path, n_items: int = 30, dim: int = 8, seed: int = 0) -> Path:
    """An untrained bundle (random weights) over a small catalogue: quick to export."""
    from edgerec.bundle import write_bundle
    from edgerec.data import Catalogue
    from edgerec.model.config import ModelConfig
    from edgerec.model.params import init_params

    rng = np.random.default_rng(seed)
    feats = (rng.random((n_items, 4)) < 0.3).astype(np.float32)
    cat = Catalogue(tuple(f"i{i}" for i in range(n_items)), tuple(f"Item {i}" for i in range(n_items)),
                    feats, tuple(f"f{j}" for j in range(4)))
    cfg = ModelConfig(dim=dim, history=5)
    write_bundle(path, init_params(cfg, n_items, 4, rng), cat, cfg, model_version=1)
    return path


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("tiny") / "bundle")


def authority_key(data_dir: Path, *extra: str) -> bytes:
    """The enrolment authority's raw public key, as the operator reads it to pin it in the app
    (``edgerec-server authority-key``; the embedded authority's is the bundle-signing key)."""
    return bytes.fromhex(cli(data_dir, "authority-key", *extra))


def cli(data_dir: Path, *args: str) -> str:
    """Run an ``edgerec-server`` command in-process on ``data_dir``; its stdout."""
    from edgerec_server.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--data-dir", str(data_dir)])
    assert code == 0, f"edgerec-server {' '.join(args)} exited {code}"
    return out.getvalue().strip()


@pytest.fixture
def data_dir(tmp_path, bundle_dir) -> Path:
    """A fresh server data dir with model version 1."""
    d = tmp_path / "state"
    cli(d, "init", "--bundle", str(bundle_dir))
    return d


def serve(data_dir: Path, env: Mapping[str, str], port: int = 0) -> ServerProcess:
    """A real server on ``data_dir`` (a free port unless ``port``), answering /healthz; its log
    is ``server-PORT.log`` beside the data dir, which is also its working directory."""
    return ServerProcess(ServeSpec(data_dir, port, env, cwd=data_dir.parent)).start()


@pytest.fixture
def server_factory(data_dir):
    """Start (and always stop) server processes on ``data_dir``."""
    started: list[ServerProcess] = []
    env = {**os.environ, "EDGEREC_SERVER_TICK_INTERVAL_S": "0.1", "EDGEREC_SERVER_LOG_LEVEL": "warning"}

    def start(port: int | None = None, **extra_env: str) -> ServerProcess:
        server = serve(data_dir, {**env, **extra_env}, port or 0)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory) -> ServerProcess:
    return server_factory()


@dataclass
class Device:
    """A simulated device: its identity and an API client with its credential."""

    identity: DeviceIdentity
    api: ServerApi
    uploads: list


def enrol_devices(url: str, token: str, n: int) -> list[Device]:
    out = []
    for _ in range(n):
        transport = HttpxTransport(url, timeout=30.0)
        identity = ServerApi(transport).enrol(token, new_identity_key())
        uploads: list = []
        api = ServerApi(transport, identity.credential, on_upload=lambda k, b, u=uploads: u.append((k, b)))
        out.append(Device(identity, api, uploads))
    return out


class Clock:
    """A fake wall clock (seconds since the epoch) that only moves when a test says so. It starts
    at the real time, so certificates issued by the CLI (on the real clock) are valid on it."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


class World:
    """A server in-process on ``tmp`` (state, publisher, coordinator, app behind Starlette's
    TestClient) on a fake clock, and helpers to make devices. ``config`` overrides settings
    (e.g. ``authority_public_key`` for an offline enrolment authority)."""

    def __init__(self, tmp, bundle_dir, **config) -> None:
        from edgerec_server import load_config

        self.tmp, self.clock = tmp, Clock()
        self.config = load_config(data_dir=tmp, tick_interval_s=0, env={}, **config)
        self.start(bundle_dir)

    def start(self, bundle_dir=None) -> None:
        from starlette.testclient import TestClient

        from edgerec_server import Coordinator, Publisher, SqliteBackend, create_app
        from edgerec_server.keys import load_or_create_key

        self.state = SqliteBackend(self.config.database_path)
        self.publisher = Publisher(self.state, load_or_create_key(self.config.signing_key_path))
        if bundle_dir is not None:
            self.publisher.import_bundle(bundle_dir, self.clock())
        self.co = Coordinator(self.state, self.publisher, self.config, clock=self.clock)
        self.client = TestClient(create_app(self.co))

    def restart(self) -> None:
        self.client.close()
        self.state.close()
        self.start()

    def close(self) -> None:
        self.client.close()
        self.state.close()

    @property
    def authority_key(self) -> bytes:
        """The enrolment authority's public key: what the devices pin."""
        return self.co.authority.public_key

    def devices(self, n: int) -> list[ServerApi]:
        """``n`` devices enrolled over HTTP; each API object carries its ``identity``."""
        from edgerec_server import auth

        token, _ = auth.create_token(self.state, self.clock(), 3600, n)
        transport = HttpxTransport(client=self.client)
        out = []
        for _ in range(n):
            identity = ServerApi(transport).enrol(token, new_identity_key())
            api = ServerApi(transport, identity.credential)
            api.identity = identity  # type: ignore[attr-defined]
            out.append(api)
        return out

    def participant(self, api: ServerApi, delta=None, **kwargs) -> RoundParticipant:
        """A device's part in the current round, pinning this server's authority and checking
        certificates on the fake clock; its "sleep" lets the server tick."""
        ann = api.current_round()
        assert ann is not None
        delta = np.zeros(ann.vector_length) if delta is None else delta
        options = {"authority_key": self.authority_key,
                   "timeouts": SyncTimeouts(poll_interval=0, stage_timeout=5),
                   "runtime": SyncRuntime(clock=self.clock, wall_clock=self.clock,
                                          sleep=lambda s: self.tick(0.5)), **kwargs}
        return RoundParticipant(api, api.identity, ann, delta, **options)  # type: ignore[attr-defined]

    def tick(self, seconds: float = 0.0) -> None:
        self.clock.now += seconds
        self.co.tick()

    def training_round(self, apis: list[ServerApi], seed: int, **params) -> tuple[int, np.ndarray]:
        """One training round of every device in ``apis`` (``RoundParams`` overrides in
        ``params``), each sending a small random delta: (the version it published, the mean
        delta sent)."""
        from edgerec_server import RoundParams

        self.co.open_round(RoundParams(min_participants=len(apis), max_participants=len(apis),
                                       **params))
        length = apis[0].current_round().vector_length
        rng = np.random.default_rng(seed)
        deltas = [rng.normal(0, 0.02, length) for _ in apis]
        parts = [self.participant(a, d) for a, d in zip(apis, deltas)]
        for step in ("advertise", "share_keys", "masked_input", "consistency", "unmask"):
            for p in parts:
                getattr(p, step)()
        (version,) = {p.result().status.model_version_out for p in parts}
        return version, np.mean(deltas, axis=0)


def announcement_of(params) -> RoundAnnouncement:
    """What devices would be told about a round with these (resolved) parameters."""
    return RoundAnnouncement(
        round_id=1, vector_length=10, min_participants=params.min_participants,
        max_participants=params.max_participants, threshold=params.threshold, graph=params.graph,
        degree=params.degree, clip=params.clip, noise_multiplier=params.noise_multiplier,
        min_survivors=params.threshold - params.colluders, base_model_version=1,
        stage="advertise_keys", stage_deadline=0.0, colluders=params.colluders)
