"""End-to-end fixtures: a real ``edgerec-server`` process on loopback (the server tests' helper)
and devices made with ``edgerec.open`` that talk to it only through ``rec.sync``."""

from __future__ import annotations



from srv_helpers import bundle_dir, cli, data_dir, server, server_factory  # noqa: F401
