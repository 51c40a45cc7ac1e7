"""End-to-end fixtures: a real ``edgerec-server`` process on loopback (the server tests' helper)
and devices made with ``edgerec.open`` that talk to it only through ``rec.sync``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from srv_helpers import bundle_dir, cli, data_dir, server, server_factory  # noqa: E402,F401
