"""Fixtures of the server tests (the helpers live in ``srv_helpers.py``)."""

from __future__ import annotations

from srv_helpers import bundle_dir, data_dir, server, server_factory  # noqa: F401  (fixtures)
from pg_helpers import pg_url, postgres  # noqa: F401,E402  (fixtures: a real PostgreSQL server)
from state_helpers import place, state  # noqa: F401,E402  (fixtures: a fresh backend of each kind)
