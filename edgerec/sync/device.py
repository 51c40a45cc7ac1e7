"""What the sync client keeps in the device database (``DeviceState`` rows, JSON values).

- ``sync_identity``: device id, Ed25519 identity key, bearer credential and enrolment
  certificate, and the server they belong to. Secret: it lives in the app's own database file
  like the events do.
- ``sync_bundle_etag``: the ETag of the last bundle installed from the server, or found to be
  the version already running (a cache hint only: it saves re-downloading the same archive, it
  never decides what gets installed).
- ``sync_installed_version``: the highest signed model version this device ever ran or
  installed (never lowered). A bundle is installed only if its signed version exceeds it, so a
  server cannot roll the device back, even after a restart or with a stale bundle folder.
- ``sync_rollout``: the newest signed rollout statement this device accepted (its bytes and
  signature, ``edgerec.sync.rollout``) and every model version a statement it accepted ever
  rejected. Once there is one, it decides what the device installs (a server that stops
  sending statements cannot lift it), and an older statement is refused as a replay.
- ``sync_rounds``: the rounds this device sent a delta to (id and noise multiplier), which is
  what its own privacy charge is computed from.
- ``sync_last_mark``: the store's ``high_water_mark()`` when the device last took part, so that
  "at least N new interactions" counts only events logged since (``count_since``). A mark,
  not a count: pruning and erasure delete old rows and must not read as negative progress.
  (Devices from before it kept ``sync_last_count``; it is ignored, and their first check counts
  every stored event as new.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from .._exceptions import StoreError
from ..store import DeviceState
from .api import DeviceIdentity

__all__ = ["SyncRecords", "device_epsilon"]

_IDENTITY, _ETAG, _ROUNDS, _MARK = "sync_identity", "sync_bundle_etag", "sync_rounds", "sync_last_mark"
_INSTALLED, _ROLLOUT = "sync_installed_version", "sync_rollout"


@dataclass
class SyncRecords:
    """Typed access to the sync client's rows in ``DeviceState``."""

    state: DeviceState
    clock: Callable[[], float]

    def _get(self, key: str) -> Any:
        row = self.state.get(key)
        if row is None:
            return None
        try:
            return json.loads(row.value.decode())
        except (UnicodeDecodeError, ValueError) as exc:
            raise StoreError(f"device state {key!r} is not valid JSON") from exc

    def _put(self, key: str, value: Any, model_version: int | None = None) -> None:
        self.state.put(key, json.dumps(value).encode(), model_version=model_version, now=self.clock())

    # -- identity ----------------------------------------------------------------------------
    def identity(self, server_url: str) -> DeviceIdentity | None:
        """The identity enrolled with ``server_url``, if any (another server's does not count)."""
        saved = self._get(_IDENTITY)
        if not saved or saved.get("server") != server_url or saved.get("device_id") is None:
            return None
        return DeviceIdentity(int(saved["device_id"]), bytes.fromhex(saved["identity_key"]),
                              saved["credential"], bytes.fromhex(saved.get("certificate", "")))

    def pending_key(self, server_url: str, make: Callable[[], bytes]) -> bytes:
        """The identity key to enrol with: made once and saved before it is used, so a retry
        after a lost answer presents the same key."""
        saved = self._get(_IDENTITY)
        if saved and saved.get("server") == server_url:
            return bytes.fromhex(saved["identity_key"])
        key = make()
        self._put(_IDENTITY, {"server": server_url, "identity_key": key.hex(), "device_id": None,
                              "credential": None})
        return key

    def save_identity(self, server_url: str, identity: DeviceIdentity) -> None:
        self._put(_IDENTITY, {"server": server_url, "identity_key": identity.identity_key.hex(),
                              "device_id": identity.device_id, "credential": identity.credential,
                              "certificate": identity.certificate.hex()})

    # -- bundles -----------------------------------------------------------------------------
    def etag(self) -> str | None:
        return self._get(_ETAG)

    def save_etag(self, etag: str, model_version: int) -> None:
        self._put(_ETAG, etag, model_version)

    def installed_version(self) -> int | None:
        """The highest model version this device ever ran or installed; None before any sync."""
        saved = self._get(_INSTALLED)
        if saved is None:
            return None
        if isinstance(saved, bool) or not isinstance(saved, int):
            raise StoreError(f"device state {_INSTALLED!r} is not an int")
        return saved

    def raise_installed_version(self, version: int) -> int:
        """Record ``version`` as installed unless a higher one already is; the highest.

        Never lowers the record: it is the floor that makes an older signed bundle a rollback.
        """
        saved = self.installed_version()
        if saved is not None and saved >= version:
            return saved
        self._put(_INSTALLED, int(version), int(version))
        return int(version)

    def installed_at(self, version: int) -> float | None:
        """When ``version`` was recorded as installed (its sync install, or the first sync that
        found it running); None if the record is of another version, or there is none."""
        row = self.state.get(_INSTALLED)
        return row.updated if row is not None and row.model_version == version else None

    # -- rollout statements ------------------------------------------------------------------
    def rollout(self) -> tuple[bytes, bytes, frozenset[int]] | None:
        """The newest accepted rollout statement's bytes and signature, and every version the
        statements this device accepted rejected; None before the first."""
        saved = self._get(_ROLLOUT)
        if saved is None:
            return None
        try:
            return (bytes.fromhex(saved["statement"]), bytes.fromhex(saved["signature"]),
                    frozenset(int(v) for v in saved["rejected"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"device state {_ROLLOUT!r} is malformed") from exc

    def save_rollout(self, statement: bytes, signature: bytes, rejected: frozenset[int]) -> None:
        """Keep ``statement`` (verified by the caller) as the newest, with the rejected versions
        seen so far (the caller passes the union: the record only grows)."""
        self._put(_ROLLOUT, {"statement": statement.hex(), "signature": signature.hex(),
                             "rejected": sorted(rejected)})

    # -- participation -----------------------------------------------------------------------
    def rounds(self) -> list[dict[str, Any]]:
        return list(self._get(_ROUNDS) or [])

    def add_round(self, round_id: int, noise_multiplier: float) -> list[dict[str, Any]]:
        """Note that this device's delta goes to ``round_id`` (before it leaves); all rounds."""
        rounds = [r for r in self.rounds() if r["round_id"] != round_id]
        rounds.append({"round_id": int(round_id), "z": float(noise_multiplier)})
        self._put(_ROUNDS, rounds)
        return rounds

    def last_mark(self) -> int:
        """The store's high-water mark when this device last took part (0 before any round)."""
        saved = self._get(_MARK)
        if saved is None:
            return 0
        if isinstance(saved, bool) or not isinstance(saved, int) or saved < 0:
            raise StoreError(f"device state {_MARK!r} is not a non-negative int")
        return saved

    def save_mark(self, mark: int) -> None:
        self._put(_MARK, int(mark))


def device_epsilon(rounds: list[dict[str, Any]], delta: float) -> float | None:
    """This device's own cumulative epsilon over the rounds it sent a delta to.

    Each such round is a Gaussian release of this device's clipped delta at that round's
    noise multiplier, composed with dp-accounting (``edgerec.privacy.device_epsilon``) with no
    amplification by sampling: the server knows which devices took part, so against it no
    sampling can be assumed. Zero-out neighbours (SECURITY.md). A round with ``z == 0`` (or
    with noise from a reproducible source, recorded as 0) makes it infinite for good. None when
    dp-accounting is not installed here.
    """
    if not rounds:
        return 0.0
    try:
        from ..privacy import device_epsilon as compose

        return compose([float(r["z"]) for r in rounds], delta)
    except ImportError:
        return None
