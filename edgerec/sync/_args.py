"""The sync's argument checks (every failure a ConfigError, raised before anything is sent)."""

from __future__ import annotations

from ..finetune import FineTuneConfig
from .._exceptions import ConfigError
from ..secagg import crypto
from .retry import Backoff
from .status import SyncConditions
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
                backoff: object, timeout: object, insecure_http_hosts: object = ()) -> None:
    check_server_url(url, insecure_http_hosts)  # https, or http to loopback / a named host
    if token is not None and (not isinstance(token, str) or not token):
        raise ConfigError("enrolment_token must be a non-empty str or None")
    if key is not None and not isinstance(key, (bytes, str)):
        raise ConfigError("server_key must be the pinned key as bytes or hex str, or None")
    if allow is not None and not isinstance(allow, SyncConditions):
        raise ConfigError("allow must be a SyncConditions")
    if budget is not None and not isinstance(budget, FineTuneConfig):
        raise ConfigError("budget must be a FineTuneConfig")
    if not isinstance(backoff, Backoff):
        raise ConfigError("backoff must be a Backoff")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError("timeout must be a positive number of seconds")
