"""``edgerec-server serve`` as a child process on loopback: start it, know when it answers, stop it.

The one helper for everything that runs the server as a real process: the demo's operator
(``demo/operator.py``), the server and end-to-end tests (``tests/server/srv_helpers.py``) and the
benchmarks. It runs ``python -m edgerec_server serve`` with this interpreter, so the child is
the same installed code as its parent::

    from edgerec_server.process import ServeSpec, ServerProcess

    with ServerProcess(ServeSpec(data_dir, env=env)) as server:  # returns once /healthz is 200
        httpx.get(server.url + "/v1/audit")
    # stopped: SIGTERM, then SIGKILL if it is still running after spec.stop_grace seconds

Tests that crash a server on purpose call ``server.kill()`` (SIGKILL: no shutdown code runs)
and start a new process on the same port with ``ServeSpec(..., port=server.port)``.

It imports nothing else of the server (only the standard library and httpx), though importing it
still runs the package's ``__init__`` and so needs the server's dependencies installed.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import httpx

__all__ = ["HOST", "ServeSpec", "ServerProcess", "ServerStartError", "free_port"]

#: Where the child listens: loopback only, as every caller talks to it from this machine.
HOST = "127.0.0.1"

# How much of the child's log a start error quotes: enough for a traceback's last frames.
_LOG_TAIL = 4000


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listened on a moment ago.

    The socket is closed before the port is returned, so another process could take the port
    before the server binds it; on loopback in a test run that has not been seen to happen.
    """
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerStartError(RuntimeError):
    """The server exited before ``/healthz`` answered 200, or did not answer in time.

    The message says which (``exited with CODE`` or ``did not answer``) and ends with the tail
    of the child's log (its stdout and stderr), where the reason is.
    """


@dataclass(frozen=True)
class ServeSpec:
    """How to run one ``python -m edgerec_server serve`` on ``127.0.0.1``.

    ``env`` is the child's whole environment (``None``: this process's); settings go in as
    ``EDGEREC_SERVER_*`` variables there or as ``args`` (more ``serve`` flags). The child's
    stdout and stderr are appended to ``log`` (``None``: ``server-PORT.log`` beside the data
    dir), so a restart on the same port continues the same file.
    """

    data_dir: Path
    port: int = 0  # 0: a free port, chosen when the process starts
    env: Mapping[str, str] | None = None
    args: tuple[str, ...] = ()
    log: Path | None = None
    cwd: Path | None = None  # None: this process's working directory
    ready_timeout: float = 30.0  # seconds from the start until /healthz must answer 200
    stop_grace: float = 10.0  # seconds between SIGTERM and SIGKILL in stop()

    def argv(self, port: int) -> list[str]:
        """The child's command line when it serves on ``port``."""
        return [sys.executable, "-m", "edgerec_server", "serve", "--data-dir", str(self.data_dir),
                "--host", HOST, "--port", str(port), *self.args]

    def log_path(self, port: int) -> Path:
        """Where the child's output goes when it serves on ``port``."""
        return self.log or Path(self.data_dir).parent / f"server-{port}.log"


class ServerProcess:
    """One running (or not yet started) ``edgerec-server serve`` child; a context manager.

    ``start()`` (or ``with``) returns once ``GET /healthz`` answers 200 and raises
    :class:`ServerStartError` otherwise, the child stopped. ``stop()`` is SIGTERM then SIGKILL;
    ``kill()`` is SIGKILL at once, for tests of crashes.
    """

    def __init__(self, spec: ServeSpec) -> None:
        self.spec = spec
        self.port = spec.port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the port is known once ``start`` has run)."""
        return f"http://{HOST}:{self.port}"

    @property
    def data_dir(self) -> Path:
        """The server's data dir (``spec.data_dir``), for operator commands beside it."""
        return Path(self.spec.data_dir)

    @property
    def pid(self) -> int:
        """The child's process id (for /proc readings: CPU, peak RSS)."""
        if self.proc is None:
            raise RuntimeError("the server was never started")
        return self.proc.pid

    @property
    def log(self) -> Path:
        """The file the child's stdout and stderr are appended to."""
        return self.spec.log_path(self.port)

    def start(self) -> ServerProcess:
        """Start the child and wait until it is healthy; ``self``."""
        if self.proc is not None:
            raise RuntimeError("this ServerProcess was already started; make a new one to restart")
        self.port = self.port or free_port()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        # The child keeps its own copy of the descriptor; ours is not needed after the fork.
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.spec.argv(self.port), env=self.spec.env, cwd=self.spec.cwd,
                                         stdout=out, stderr=subprocess.STDOUT)
        try:
            self._wait_healthy()
        except BaseException:  # also Ctrl-C while waiting: never leave the child behind
            self.stop()
            raise
        return self

    def stop(self) -> int | None:
        """SIGTERM (uvicorn shuts down cleanly), SIGKILL after ``spec.stop_grace`` seconds; the
        exit code (``None`` if it never started). Safe to call again, or after ``kill``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(self.spec.stop_grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL now, as a crash would: no shutdown code runs, nothing is flushed or released."""
        if self.proc is None:
            raise RuntimeError("the server was never started")
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def log_text(self, tail: int = _LOG_TAIL) -> str:
        """The last ``tail`` characters of the child's log ("" before it wrote any)."""
        try:
            return self.log.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_healthy(self) -> None:
        assert self.proc is not None
        give_up = time.monotonic() + self.spec.ready_timeout
        while time.monotonic() < give_up:
            if self.proc.poll() is not None:
                raise ServerStartError(f"edgerec-server on port {self.port} exited with "
                                       f"{self.proc.returncode} before /healthz answered; "
                                       f"{self._log_excerpt()}")
            if _healthy(self.url):
                return
            time.sleep(0.1)
        raise ServerStartError(f"edgerec-server on port {self.port} did not answer /healthz within "
                               f"{self.spec.ready_timeout:g} s; {self._log_excerpt()}")

    def _log_excerpt(self) -> str:
        return f"the end of its log {self.log}:\n{self.log_text()}"


def _healthy(url: str) -> bool:
    """Whether ``GET /healthz`` answers 200 now (a refused or slow connection: not yet)."""
    try:
        return httpx.get(url + "/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
