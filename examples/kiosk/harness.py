"""Drive the kiosk for real: its server as a subprocess, Debian's Chromium through Playwright.

Shared by the browser test (``tests/examples/test_kiosk_browser.py``) and the benchmark
(``benchmarks/bench_kiosk.py``). Playwright only drives the browser: it never downloads one
(``playwright install`` is not needed); the system's ``/usr/bin/chromium`` is launched.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import httpx

__all__ = ["CHROMIUM_ARGS", "KioskServer", "chromium_path", "free_port", "open_browser",
           "install_click_timer", "timed_click", "grid_items", "measure_clicks", "percentile"]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    """$EDGEREC_CHROMIUM, else Debian's /usr/bin/chromium, if it exists."""
    path = os.environ.get("EDGEREC_CHROMIUM", "/usr/bin/chromium")
    return path if Path(path).is_file() and os.access(path, os.X_OK) else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class KioskServer:
    """``python -m examples.kiosk`` on a free local port, started and stopped as a context."""

    # Not built on edgerec_server.process (the server's start-and-wait helper): .ci/extras runs
    # this class in a venv with only edgerec[kiosk], where importing edgerec_server fails (its
    # package imports prometheus-client and the rest of the [server] extra).

    def __init__(self, db: Path, bundle: Path, *, extra: Sequence[str] = (), log: Path | None = None,
                 ready_timeout: float = 60.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [sys.executable, "-m", "examples.kiosk", "--host", "127.0.0.1", "--port",
                     str(self.port), "--db", str(db), "--bundle", str(bundle), *extra]
        self.log = log or Path(tempfile.mkstemp(prefix="kiosk-", suffix=".log")[1])
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "KioskServer":
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(self.argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"kiosk exited with {self.proc.returncode}:\n{self.log_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"kiosk not ready after {self.ready_timeout} s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self) -> int | None:
        """SIGINT (a graceful stop: live sessions are erased), then SIGKILL after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def open_browser(playwright: Any, executable: str) -> Iterator[Any]:
    """A headless Chromium context with a fresh, temporary user-data-dir."""
    profile = tempfile.mkdtemp(prefix="kiosk-chromium-")
    context = playwright.chromium.launch_persistent_context(
        profile, executable_path=executable, headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 900})
    try:
        yield context
    finally:
        context.close()
        shutil.rmtree(profile, ignore_errors=True)


_TIMER = """() => {
  if (window.__kiosk) return;
  const k = window.__kiosk = {t0: 0, t1: 0, render: null};
  document.addEventListener("click", (e) => {
    if (!e.target.closest("#grid button, #new-visitor")) return;
    k.t0 = performance.now(); k.t1 = 0; k.render = document.getElementById("grid").dataset.render;
  }, true);
  new MutationObserver(() => {
    const grid = document.getElementById("grid");
    if (k.t0 && !k.t1 && grid && grid.dataset.render !== k.render) k.t1 = performance.now();
  }).observe(document.body, {childList: true, subtree: true});
}"""


def install_click_timer(page: Any) -> None:
    """Time, in the page, from a click's dispatch to the DOM holding the re-rendered grid."""
    page.evaluate(_TIMER)


def timed_click(page: Any, selector: str, timeout_ms: float = 10_000) -> float:
    """Click ``selector`` like a user; milliseconds until the new grid is in the DOM."""
    page.click(selector)
    page.wait_for_function("() => window.__kiosk.t1 > 0", timeout=timeout_ms)
    return float(page.evaluate("() => window.__kiosk.t1 - window.__kiosk.t0"))


def grid_items(page: Any) -> list[str]:
    """The item ids shown in the grid, in order."""
    return list(page.eval_on_selector_all("#grid .card", "cards => cards.map(c => c.dataset.item)"))


def measure_clicks(page: Any, clicks: int = 20) -> list[float]:
    """Click the first card ``clicks`` times; each click-to-grid time in milliseconds."""
    install_click_timer(page)
    return [timed_click(page, "#grid .card:first-child .pick") for _ in range(clicks)]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]
