"""What the state contract tests share: a fresh backend of each kind (``place``/``state``,
fixtures re-exported by ``conftest.py``) and the rows most tests start from."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgerec_server.state import SqliteBackend, StateBackend

NOW = 1_000_000.0


def _open(kind: str, where: str) -> StateBackend:
    if kind == "sqlite":
        return SqliteBackend(Path(where) / "state.sqlite3")
    from edgerec_server.state.postgres import PostgresBackend

    return PostgresBackend(where)


@pytest.fixture(params=["sqlite", "postgres"])
def place(request, tmp_path) -> tuple[str, str]:
    """(backend kind, where its data lives): a fresh database of each kind."""
    if request.param == "sqlite":
        return "sqlite", str(tmp_path)
    return "postgres", request.getfixturevalue("pg_url")


@pytest.fixture
def state(place):
    backend = _open(*place)
    yield backend
    backend.close()


def _device(state: StateBackend, key: bytes = b"k" * 32, certified: bool = True) -> int:
    token = state.add_token(key[:8] + b"-token", NOW, NOW + 100, 5, "")
    device = state.enrol(token.id, key, b"cred", NOW, None)
    if certified:
        state.set_certificate(device.id, b"cert-" + key[:4])
    return device.id


def _round(state: StateBackend, members: list[int]):
    return state.create_round({"clip": 1.0, "frozen": ["a"]}, b"s" * 32, NOW, 1, 10, members,
                              population=7)


# -- tokens and devices ---------------------------------------------------------------------------
