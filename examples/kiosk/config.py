"""The kiosk's settings: one frozen dataclass, filled from CLI options and environment variables."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["FederationSettings", "KioskConfig", "parse_args", "read_server_key", "DEFAULT_DATA_DIR"]

# Next to the example, git-ignored: the kiosk's SQLite file and the bundle it trains on first start.
DEFAULT_DATA_DIR = Path(__file__).resolve().parent / ".data"


@dataclass(frozen=True)
class FederationSettings:
    """How the kiosk takes part in federated rounds (only when ``--server`` is given)."""

    server: str
    enrolment_token: str | None = None  # needed only until the device is enrolled
    # Pinned Ed25519 key: new bundles must be signed with it, and (the server's embedded
    # enrolment authority) peers' certificates too. Without it no bundle is downloaded and the
    # kiosk refuses every round (it could not tell real peers from keys a server made up).
    server_key: bytes | None = None
    interval: float = 300.0  # seconds between two syncs (from the end of one to the next)
    min_new_interactions: int = 10  # events since the kiosk last took part, before it joins again
    idle_after: float = 30.0  # seconds without visitor input before a round may start
    retention: float = 7 * 24 * 3600.0  # ended sessions wait at most this long for a round
    # Plain http:// is refused except to loopback; hosts named here are accepted (a trusted LAN).
    insecure_http_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from edgerec import ConfigError
        from edgerec.sync.transport import check_server_url

        try:
            check_server_url(self.server, self.insecure_http_hosts)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        if self.interval <= 0 or self.idle_after < 0 or self.retention < 0:
            raise ValueError("sync interval must be positive; idle time and retention at least 0")
        if self.min_new_interactions < 0:
            raise ValueError("min new interactions must be at least 0")
        if self.server_key is not None and len(self.server_key) != 32:
            raise ValueError("server key must be 32 bytes (64 hex digits)")

    def __repr__(self) -> str:  # the token is a secret: keep it out of logs and tracebacks
        return (f"FederationSettings(server={self.server!r}, token={'set' if self.enrolment_token else None}, "
                f"key={'pinned' if self.server_key else None}, interval={self.interval:g})")


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
    federation: FederationSettings | None = None  # None: no coordinating server, no sync

    def __post_init__(self) -> None:
        if not 1 <= self.k <= 100:
            raise ValueError(f"k must be within 1..100, got {self.k}")
        if self.idle_timeout <= 0:
            raise ValueError(f"idle timeout must be positive, got {self.idle_timeout}")
        if not 0 < self.stock_share <= 1:
            raise ValueError(f"stock share must be within (0, 1], got {self.stock_share}")


def _env(name: str, default: object) -> str:
    return os.environ.get(f"EDGEREC_KIOSK_{name}", str(default))


def read_server_key(value: str) -> bytes:
    """The pinned server key from 64 hex digits, or from a file holding them
    (``edgerec-server public-key > server.key``)."""
    text = value.strip()
    path = Path(text).expanduser()
    if not _is_hex_key(text) and path.is_file():
        text = path.read_text().strip()
    if not _is_hex_key(text):
        raise ValueError("--server-key must be 64 hex digits or a file holding them")
    return bytes.fromhex(text)


def _is_hex_key(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def _add_federation_options(p: argparse.ArgumentParser) -> None:
    f = FederationSettings("http://127.0.0.1")
    g = p.add_argument_group("federated learning (all optional; nothing is sent without --server)")
    g.add_argument("--server", default=os.environ.get("EDGEREC_KIOSK_SERVER"),
                   help="coordinating server URL, e.g. http://127.0.0.1:8000")
    g.add_argument("--enrolment-token", default=os.environ.get("EDGEREC_KIOSK_ENROLMENT_TOKEN"),
                   help="token from 'edgerec-server token create' (needed once, to enrol)")
    g.add_argument("--server-key", default=os.environ.get("EDGEREC_KIOSK_SERVER_KEY"),
                   help="the server's public key (hex, or a file holding it) that new bundles and "
                        "peers' certificates must be signed with; without it the kiosk never "
                        "downloads a model and refuses every round")
    g.add_argument("--insecure-http-host", action="append", default=[],
                   help="accept plain http:// to this host (a trusted LAN); repeatable. Without it "
                        "http:// is refused except to loopback")
    g.add_argument("--sync-interval", type=float, default=float(_env("SYNC_INTERVAL", f.interval)),
                   help="seconds between syncs")
    g.add_argument("--sync-min-new", type=int, default=int(_env("SYNC_MIN_NEW", f.min_new_interactions)),
                   help="new events needed before the kiosk joins another round")
    g.add_argument("--sync-idle", type=float, default=float(_env("SYNC_IDLE", f.idle_after)),
                   help="seconds without visitor input before a round may start")
    g.add_argument("--session-retention", type=float, default=float(_env("SESSION_RETENTION", f.retention)),
                   help="seconds an ended session's events may wait for a round before they are erased")


def _federation(a: argparse.Namespace) -> FederationSettings | None:
    if not a.server:
        return None
    key = read_server_key(a.server_key) if a.server_key else None
    return FederationSettings(a.server, a.enrolment_token or None, key, interval=a.sync_interval,
                              min_new_interactions=a.sync_min_new, idle_after=a.sync_idle,
                              retention=a.session_retention,
                              insecure_http_hosts=tuple(a.insecure_http_host))


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
    _add_federation_options(p)
    a = p.parse_args(argv)
    try:
        return KioskConfig(db=a.db, bundle=a.bundle, data=a.data, host=a.host, port=a.port, k=a.k,
                           idle_timeout=a.idle_timeout, forget_sessions=not a.keep_sessions,
                           stock_share=a.stock_share, quick=a.quick, federation=_federation(a))
    except ValueError as exc:
        p.error(str(exc))
        raise  # unreachable: error() exits
