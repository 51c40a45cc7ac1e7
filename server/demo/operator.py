"""The operator's side of the demo: a real ``edgerec-server`` process on loopback, driven by its
own CLI (``python -m edgerec_server ...`` on the data dir) and read over HTTP (audit, bundles).

The demo lives in the server package, yet it drives the server only as an operator and its
devices would: through a subprocess and HTTP, never in-process, so the run is what a real
deployment does (separate processes, real sockets, the server's own CLI).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from edgerec import ConfigError

from ..process import HOST, ServeSpec, ServerProcess, ServerStartError

__all__ = ["DemoServer", "server_lr"]


def server_lr(base: float, round_: int, rounds: int) -> float:
    """Cosine decay to 10% over the run (the federated simulation's schedule)."""
    import math

    return base * (0.1 + 0.45 * (1 + math.cos(math.pi * (round_ - 1) / max(1, rounds - 1))))


@dataclass
class DemoServer:
    """``edgerec-server serve`` as a child process (``edgerec_server.process``), plus its
    operator commands and the HTTP reads the demo's report uses."""

    data_dir: Path
    port: int = 0  # 0: a free one, chosen by start()
    tick: float = 0.05
    cli_seconds: float = 0.0
    _server: ServerProcess | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self, *args: str) -> str:
        """Run one operator command on the data dir; its stdout (ConfigError if it fails)."""
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "edgerec_server", *args, "--data-dir", str(self.data_dir)],
                              capture_output=True, text=True, env=self._env())
        self.cli_seconds += time.perf_counter() - started
        if done.returncode != 0:
            raise ConfigError(f"edgerec-server {' '.join(args)}: {done.stderr.strip()[-500:]}")
        return done.stdout.strip()

    def start(self, timeout: float = 60.0) -> DemoServer:
        """Start serving on 127.0.0.1 and wait until /healthz answers (its log: server.log in the
        data dir)."""
        spec = ServeSpec(self.data_dir, self.port, self._env(), log=self.data_dir / "server.log",
                         ready_timeout=timeout)
        try:
            self._server = ServerProcess(spec).start()
        except ServerStartError as exc:  # the demo's command prints a ConfigError as one message
            raise ConfigError(str(exc)) from exc
        self.port = self._server.port
        return self

    def stop(self) -> None:
        """Terminate the server (kill it if it does not stop within 10 s)."""
        if self._server is not None:
            self._server.stop()

    def _env(self) -> dict[str, str]:
        # Bundles are public here so the evaluator can fetch them without being a device
        # (they are signed and hold only the aggregate model).
        return {**os.environ, "EDGEREC_SERVER_TICK_INTERVAL_S": str(self.tick),
                "EDGEREC_SERVER_LOG_LEVEL": "warning", "EDGEREC_SERVER_PUBLIC_MODELS": "true"}

    # -- HTTP reads ----------------------------------------------------------------------------
    def audit(self) -> list[dict[str, Any]]:
        """``GET /v1/audit``: one row per closed round."""
        return httpx.get(self.url + "/v1/audit", timeout=30).json()["rounds"]

    def bundle_archive(self) -> bytes:
        """The newest signed bundle archive."""
        answer = httpx.get(self.url + "/v1/models/latest", timeout=60)
        answer.raise_for_status()
        return answer.content

    def metrics(self) -> dict[str, float]:
        """Sums of the server's Prometheus histograms and counters the report uses."""
        text = httpx.get(self.url + "/metrics", timeout=30).text
        wanted = ("edgerec_publish_seconds_sum", "edgerec_aggregate_seconds_sum",
                  "edgerec_stage_close_seconds_sum", "edgerec_stage_receive_seconds_total",
                  "edgerec_http_request_seconds_sum", "edgerec_http_request_seconds_count")
        out: dict[str, float] = {}
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in wanted:
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        return out

    def open_round(self, **params: Any) -> dict[str, Any]:
        """``round open`` with ``--key value`` flags from ``params`` (underscores become dashes;
        ``True`` gives the bare flag)."""
        flags: list[str] = []
        for key, value in params.items():
            flags += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
        return json.loads(self.command("round", "open", *flags))

    def analytics(self, token: str) -> dict[str, Any]:
        """``GET /v1/analytics`` with an operator token (``operator-token create``)."""
        answer = httpx.get(self.url + "/v1/analytics", timeout=30,
                           headers={"Authorization": f"Bearer {token}"})
        answer.raise_for_status()
        return answer.json()
