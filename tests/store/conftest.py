"""Fixtures shared by the store tests: a database path in tmp_path and a clock the test moves."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from edgerec.store import InteractionStore


class ManualClock:
    """A clock that only moves when the test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "edgerec.db"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(db_path: Path, clock: ManualClock) -> Iterator[InteractionStore]:
    with InteractionStore(db_path, clock=clock) as s:
        yield s
