"""Argument checks of the privacy ledger: every failure is a ConfigError, raised before anything
is written."""

from __future__ import annotations

import math
import re

from .._exceptions import ConfigError

#: Custom ledger kinds: ``x_`` then lower-case letters, digits and underscores.
CUSTOM_KIND = re.compile(r"x_[a-z0-9_]{1,30}")


def payload_bytes(payload: object) -> bytes:
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ConfigError(f"payload must be the exact bytes sent (bytes), got {type(payload).__name__}")
    # A copy: the hash must be of these bytes even if the caller's buffer changes afterwards.
    return bytes(payload)


def kind(kind: object, kinds: frozenset[str]) -> str:
    if not isinstance(kind, str) or not (kind in kinds or CUSTOM_KIND.fullmatch(kind)):
        raise ConfigError(f"kind must be one of {sorted(kinds)} or match 'x_[a-z0-9_]+', got {kind!r}")
    return kind


def finite(value: object, name: str, *, nonnegative: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    result = float(value)
    if not math.isfinite(result) or (nonnegative and result < 0.0):
        raise ConfigError(f"{name} must be a finite number{' >= 0' if nonnegative else ''}, got {value!r}")
    return result


def optional_number(value: object, name: str) -> float | None:
    return None if value is None else finite(value, name)


def optional_epsilon(value: object) -> float | None:
    # +inf is a true figure here (no differential privacy); NaN and -inf are not.
    if isinstance(value, float) and value == math.inf:
        return math.inf
    return optional_number(value, "epsilon")


def optional_delta(value: object) -> float | None:
    result = optional_number(value, "delta")
    if result is not None and result > 1.0:
        raise ConfigError(f"delta must be at most 1, got {value!r}")
    return result


def int_at_least(value: object, minimum: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def optional_version(value: object) -> int | None:
    return None if value is None else int_at_least(value, 0, "model_version")


def optional_text(value: object, name: str, max_len: int, *, allow_int: bool = False) -> str | None:
    if value is None:
        return None
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not 0 < len(value) <= max_len or not value.isprintable():
        raise ConfigError(f"{name} must be a printable, non-empty str of at most {max_len} characters, "
                          f"got {value!r}")
    return value
