"""The kiosk's settings: one frozen dataclass, filled from CLI options and environment variables."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["KioskConfig", "parse_args", "DEFAULT_DATA_DIR"]

# Next to the example, git-ignored: the kiosk's SQLite file and the bundle it trains on first start.
DEFAULT_DATA_DIR = Path(__file__).resolve().parent / ".data"


@dataclass(frozen=True)
class KioskConfig:
    """Everything the kiosk needs to know; the defaults make ``python -m examples.kiosk`` work."""

    db: Path = DEFAULT_DATA_DIR / "kiosk.db"
    bundle: Path = DEFAULT_DATA_DIR / "model-bundle"
    data: str | None = None  # None: MovieLens-100K when present, else synthetic
    host: str = "127.0.0.1"
    port: int = 8080
    k: int = 12
    idle_timeout: float = 90.0  # seconds without input before the next visitor starts afresh
    forget_sessions: bool = True  # erase a session's events when it ends (privacy default)
    stock_share: float = 0.7  # share of the catalogue that is "in stock" (deterministic per item)
    quick: bool = False  # train a small, fast bundle on first start (tests, demos)

    def __post_init__(self) -> None:
        if not 1 <= self.k <= 100:
            raise ValueError(f"k must be within 1..100, got {self.k}")
        if self.idle_timeout <= 0:
            raise ValueError(f"idle timeout must be positive, got {self.idle_timeout}")
        if not 0 < self.stock_share <= 1:
            raise ValueError(f"stock share must be within (0, 1], got {self.stock_share}")


def _env(name: str, default: object) -> str:
    return os.environ.get(f"EDGEREC_KIOSK_{name}", str(default))


def parse_args(argv: Sequence[str] | None = None) -> KioskConfig:
    """Read the command line (each option also reads ``EDGEREC_KIOSK_<NAME>``)."""
    d = KioskConfig()
    p = argparse.ArgumentParser(prog="python -m examples.kiosk",
                                description="Serve the edgerec kiosk example on a local port.")
    p.add_argument("--db", type=Path, default=Path(_env("DB", d.db)), help="SQLite file of events")
    p.add_argument("--bundle", type=Path, default=Path(_env("BUNDLE", d.bundle)),
                   help="model bundle folder; trained on first start when missing")
    p.add_argument("--data", default=os.environ.get("EDGEREC_KIOSK_DATA"),
                   help="what to train on when the bundle is missing: 'synthetic' or a MovieLens-100K "
                        "folder (default: MovieLens-100K when present, else synthetic)")
    p.add_argument("--host", default=_env("HOST", d.host))
    p.add_argument("--port", type=int, default=int(_env("PORT", d.port)))
    p.add_argument("--k", type=int, default=int(_env("K", d.k)), help="items in the grid")
    p.add_argument("--idle-timeout", type=float, default=float(_env("IDLE_TIMEOUT", d.idle_timeout)),
                   help="seconds of inactivity that end a visitor's session")
    p.add_argument("--keep-sessions", action="store_true",
                   help="keep ended sessions' events (default: forget them when the session ends)")
    p.add_argument("--stock-share", type=float, default=float(_env("STOCK_SHARE", d.stock_share)))
    p.add_argument("--quick", action="store_true", help="train a small bundle fast on first start")
    a = p.parse_args(argv)
    try:
        return KioskConfig(db=a.db, bundle=a.bundle, data=a.data, host=a.host, port=a.port, k=a.k,
                           idle_timeout=a.idle_timeout, forget_sessions=not a.keep_sessions,
                           stock_share=a.stock_share, quick=a.quick)
    except ValueError as exc:
        p.error(str(exc))
        raise  # unreachable: error() exits
