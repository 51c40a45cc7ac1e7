"""Server configuration: one frozen dataclass, from defaults, a file, the environment and flags.

Precedence, lowest first: the defaults below, a TOML or JSON file (``--config``), environment
variables ``EDGEREC_SERVER_<FIELD>`` (e.g. ``EDGEREC_SERVER_PORT=9000``), command-line flags.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

from ._exceptions import ServerConfigError

__all__ = ["ENV_PREFIX", "ServerConfig", "load_config"]

ENV_PREFIX = "EDGEREC_SERVER_"


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server reads at start-up. Paths are resolved against ``data_dir``."""

    data_dir: Path = Path("./edgerec-state")
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 8000
    #: largest request body (a masked vector is 4 bytes per model weight)
    max_body_bytes: int = 64 * 1024 * 1024
    #: largest JSON control body (enrolment)
    max_control_body_bytes: int = 64 * 1024
    token_ttl_s: float = 7 * 24 * 3600.0
    #: device credentials expire after this long; 0 = never
    credential_ttl_s: float = 0.0
    #: the delta of the (epsilon, delta) the audit reports
    dp_delta: float = 1e-5
    accountant: str = "rdp"
    #: how often deadlines are checked (and new rounds picked up); 0 = only on requests
    tick_interval_s: float = 0.5
    #: how long a replica's claim to close a stage holds: if it dies while closing, another
    #: replica closes the stage once the claim has lapsed (keep it above the slowest close)
    close_lease_s: float = 120.0
    #: the least a device is told to wait before polling again (``Retry-After``)
    retry_after_s: int = 1
    #: "not yet" polls per second the server aims to receive in all: a device waiting for a
    #: stage is told to come back in (its round's cohort / poll_rate) seconds, one without a
    #: round in (active devices / poll_rate); bounded by the two caps below
    poll_rate: float = 100.0
    max_retry_after_s: int = 30
    #: the longest a poll is held open until the round moves on (long polling), for devices
    #: that ask for it (``Prefer: wait=N``); 0: never hold
    long_poll_s: float = 25.0
    #: how long an idle connection is kept open for its device's next request: above a round's
    #: pace (a device in a round is back within seconds), so it is not closed under a device
    #: about to reuse it (uvicorn's 5 s default lost requests of 5,000-device rounds that way)
    keep_alive_s: float = 60.0
    max_idle_retry_after_s: int = 600
    #: serve /v1/models/* without credentials (bundles are signed and only hold the aggregate)
    public_models: bool = False
    log_level: str = "info"
    log_json: bool = True
    signing_key_file: str = "signing_key.pem"
    #: The enrolment authority that signs devices' certificates (SECURITY.md). "" (default):
    #: the bundle-signing key, here on the server. A file name: a separate key in the data dir.
    authority_key_file: str = ""
    #: Hex of an OFFLINE authority's public key: the server holds no authority key at all;
    #: enrolled devices wait until ``edgerec-server certify --authority-key PEM`` signs them.
    authority_public_key: str = ""
    #: how long an enrolment certificate is valid (the device's credential expiry, if earlier)
    certificate_ttl_s: float = 365 * 24 * 3600.0
    database_file: str = "state.sqlite3"
    #: "" (default): the SQLite file ``database_file`` in the data dir, for one server process.
    #: A ``postgresql://user@host/db`` URL: PostgreSQL (``edgerec[postgres]``), for fleets.
    database: str = ""
    #: open a round automatically this many seconds after the last one closed; 0 = never
    schedule_every_s: float = 0.0
    #: the scheduled rounds' parameters (``RoundParams`` fields; JSON in the environment)
    schedule_round: dict[str, Any] = field(default_factory=dict)
    #: Once rollout statements are in use (``rollout set``/``canary``), a model a training
    #: round publishes goes on canary to this share of the devices by itself, as
    #: ``rollout canary VERSION --share`` would put it (0, the default: it waits for that
    #: command). Skipped, with the reason logged, while another candidate is undecided.
    canary_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ServerConfigError(f"port must be in 0..65535, got {self.port}")
        if self.max_body_bytes < 1024 or self.max_control_body_bytes < 1024:
            raise ServerConfigError("body limits must be at least 1024 bytes")
        if not 0.0 < self.dp_delta < 1.0:
            raise ServerConfigError("dp_delta must be in (0, 1)")
        if self.authority_key_file and self.authority_public_key:
            raise ServerConfigError("set authority_key_file (a key here) or authority_public_key "
                                  "(an offline authority), not both")
        if not (self.poll_rate > 0 and 1 <= self.retry_after_s <= self.max_retry_after_s
                <= self.max_idle_retry_after_s):
            raise ServerConfigError("poll_rate must be positive and 1 <= retry_after_s <= "
                                  "max_retry_after_s <= max_idle_retry_after_s")
        if not 0 <= self.long_poll_s <= 300:
            raise ServerConfigError("long_poll_s must be in [0, 300] seconds")
        if not 1 <= self.keep_alive_s <= 3600:
            raise ServerConfigError("keep_alive_s must be in [1, 3600] seconds")
        if not 0.0 <= self.canary_share <= 1.0:
            raise ServerConfigError(f"canary_share must be in [0, 1], got {self.canary_share}")
        if not self.close_lease_s > 0:
            raise ServerConfigError("close_lease_s must be positive")
        if not self.certificate_ttl_s > 0:
            raise ServerConfigError("certificate_ttl_s must be positive")
        if self.database and not self.database.startswith(("postgresql://", "postgres://")):
            raise ServerConfigError("database must be a postgresql:// URL (or empty: the SQLite "
                                  "file in the data dir)")

    @property
    def database_path(self) -> Path:
        return Path(self.data_dir) / self.database_file

    @property
    def signing_key_path(self) -> Path:
        return Path(self.data_dir) / self.signing_key_file

    @property
    def authority_key_path(self) -> Path | None:
        """The authority's private key file, if the server holds one (None: offline)."""
        if self.authority_public_key:
            return None
        return Path(self.data_dir) / (self.authority_key_file or self.signing_key_file)


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None,
                **overrides: Any) -> ServerConfig:
    """The configuration from ``path`` (TOML/JSON), ``env`` (os.environ) and ``overrides``.

    ``overrides`` whose value is None are ignored, so unset flags do not mask the file or env.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if path is not None:
        values.update(_read_file(Path(path)))
    known = {f.name: f for f in fields(ServerConfig)}
    for name in known:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ServerConfigError(f"unknown configuration keys: {unknown}")
    default = ServerConfig()
    try:
        typed = {k: _coerce(v, _kind(getattr(default, k)), k) for k, v in values.items()}
    except (TypeError, ValueError) as exc:
        raise ServerConfigError(f"bad configuration: {exc}") from None
    return replace(default, **typed)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ServerConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            data = _toml().loads(text)
    except ValueError as exc:
        raise ServerConfigError(f"config file {path} does not parse: {exc}") from None
    data = data.get("server", data) if isinstance(data, dict) else data
    if not isinstance(data, dict):
        raise ServerConfigError(f"config file {path} must hold a table of settings")
    return data


def _toml() -> ModuleType:
    # A version check rather than try/except ImportError, so mypy knows tomllib is 3.11+.
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:  # pragma: no cover - Python 3.10
        import tomli

        return tomli
    except ImportError:
        raise ServerConfigError("TOML config files need Python 3.11+ or tomli; "
                              "use a .json file") from None


def _kind(default: Any) -> type:
    return Path if isinstance(default, Path) else type(default)


def _coerce(value: Any, kind: type, name: str) -> Any:
    if kind is bool:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{name}: expected a boolean, got {value!r}")
        return bool(value)
    if kind is Path:
        return Path(value)
    if kind in (int, float, str):
        return kind(value)
    if kind is dict and isinstance(value, str):
        value = json.loads(value)
    if kind is dict and isinstance(value, dict):
        return value
    raise ValueError(f"{name}: cannot use {value!r}")
