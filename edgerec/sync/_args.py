"""The sync's argument checks (every failure a ConfigError, raised before anything is sent)."""

from __future__ import annotations

from typing import Iterable

from ..finetune import FineTuneConfig
from .._exceptions import ConfigError
from ..secagg import crypto
from .policy import RoundPolicy
from .runtime import SyncRuntime
from .status import SyncConditions
from .timeouts import SyncTimeouts
from .transport import check_server_url

__all__ = ["check_args", "raw_key"]


def raw_key(key: bytes | str | None) -> bytes | None:
    """A pinned Ed25519 public key as 32 raw bytes (given raw or as hex)."""
    if key is None:
        return None
    try:
        raw = bytes.fromhex(key) if isinstance(key, str) else bytes(key)
    except ValueError:
        raise ConfigError("a pinned key must be 32 raw bytes or their hex") from None
    if len(raw) != crypto.KEY_BYTES:
        raise ConfigError("a pinned key must be 32 raw bytes or their hex")
    return raw


def check_args(url: object, token: object, key: object, allow: object, budget: object,
               policy: object, timeouts: object, runtime: object,
               insecure_http_hosts: Iterable[str] = ()) -> None:
    """Raise ConfigError for the first of ``SyncSession``'s arguments that is not usable."""
    check_server_url(url, insecure_http_hosts)  # https, or http to loopback / a named host
    if token is not None and (not isinstance(token, str) or not token):
        raise ConfigError("enrolment_token must be a non-empty str or None")
    if key is not None and not isinstance(key, (bytes, str)):
        raise ConfigError("server_key must be the pinned key as bytes or hex str, or None")
    for name, value, kind in (("allow", allow, SyncConditions), ("budget", budget, FineTuneConfig),
                              ("policy", policy, RoundPolicy), ("timeouts", timeouts, SyncTimeouts),
                              ("runtime", runtime, SyncRuntime)):
        if value is not None and not isinstance(value, kind):
            raise ConfigError(f"{name} must be a {kind.__name__} or None")
