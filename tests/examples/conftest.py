"""Fixtures for the kiosk example: a tiny trained bundle, and kiosks over a temporary database.

This folder deliberately has no ``__init__.py``: ``examples`` stays a namespace package, so
``import examples.kiosk`` finds the repository's ``examples/kiosk`` whatever pytest puts on sys.path.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]  # on the path for every test (pyproject's pythonpath)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def kiosk_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic bundle (120 items, 8 genres) trained the way the kiosk trains it."""
    from examples.kiosk.bootstrap import train_kiosk_bundle

    path = tmp_path_factory.mktemp("kiosk") / "model-bundle"
    train_kiosk_bundle(path, "synthetic", quick=True)
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_kiosk(kiosk_bundle: Path, tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., Any]]:
    """``make_kiosk(view=None, **config)``: a Kiosk over a fresh database, on the fake clock;
    ``view`` is what its federation hook returns."""
    import edgerec
    from examples.kiosk import Kiosk, KioskConfig

    opened = []

    def make(view: Any = None, **overrides: Any) -> Kiosk:
        config = KioskConfig(db=tmp_path / "kiosk.db", bundle=kiosk_bundle, **overrides)
        rec = edgerec.open(config.db, bundle=kiosk_bundle)
        opened.append(rec)
        return Kiosk(rec, config, clock=clock, federation=lambda: view)

    yield make
    for rec in opened:
        rec.close()


def _test_client(app: Any, **kw: Any) -> Any:
    """Starlette's TestClient (its import warns that httpx will be replaced by httpx2 some day)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    return TestClient(app, **kw)


@pytest.fixture
def serve() -> Callable[..., Any]:
    """``with serve(kiosk) as client:`` the kiosk's app behind a TestClient, lifespan included."""
    from examples.kiosk import create_app

    return lambda kiosk: _test_client(create_app(kiosk), base_url="http://kiosk.local")


@pytest.fixture
def client(make_kiosk: Callable[..., Any], serve: Callable[..., Any]) -> Iterator[Any]:
    """A TestClient over a default kiosk (lifespan run: orphan cleanup, sweeper, shutdown)."""
    kiosk = make_kiosk()
    with serve(kiosk) as c:
        c.kiosk = kiosk
        yield c
