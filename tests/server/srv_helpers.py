"""Server test helpers (imported by the tests as ``srv_helpers``): a tiny signed model, a real ``edgerec-server`` process, simulated devices.

Devices are real ``edgerec.sync`` participants (real secure aggregation, real crypto) talking
HTTP to a uvicorn process on 127.0.0.1; models are tiny (30 items, dim 8) so rounds are quick.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgerec.sync import DeviceIdentity, HttpxTransport, ServerApi, new_identity_key

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A real ``python -m edgerec_server serve`` on 127.0.0.1."""

    data_dir: Path
    port: int
    env: dict
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        log = open(self.data_dir.parent / f"server-{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgerec_server", "serve", "--data-dir", str(self.data_dir),
             "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env, stdout=log, stderr=log, cwd=str(self.data_dir.parent))
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become healthy: " + self.log()[-2000:])

    def log(self) -> str:
        return (self.data_dir.parent / f"server-{self.port}.log").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def server_factory(data_dir):
    """Start (and always stop) server processes on ``data_dir``."""
    started: list[ServerProcess] = []
    env = {**os.environ, "EDGEREC_SERVER_TICK_INTERVAL_S": "0.1", "EDGEREC_SERVER_LOG_LEVEL": "warning"}

    def start(port: int | None = None, **extra_env: str) -> ServerProcess:
        server = ServerProcess(data_dir, port or free_port(), {**env, **extra_env}).start()
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
