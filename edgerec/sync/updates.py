"""Keeping the device's model current: the version the newest signed rollout statement assigns
to this device or, from a server without rollout statements, the newest signed bundle installed
only if its *signed* version is newer than any this device ran or installed.

The answer's ``X-Edgerec-Model-Version`` header is unsigned and never consulted: a lying header
could otherwise install an old bundle or hide a new one. The ETag only spares re-downloading
the archive installed last.

Under a rollout statement (``edgerec.sync.rollout``): the statement is verified under the
pinned key and kept (``SyncRecords.rollout``); a server answer older than the kept one is a
replay and refused, and a server that stops sending one does not lift it. The device installs
the version the statement assigns to it and nothing else: never a rejected version, and an
older one than it ever installed only when it is the statement's promoted version (a canary
device going back after its candidate was rejected); any other older version is a rollback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .._exceptions import BundleRollbackError, RolloutRefusedError, ServerRejectedError
from ..bundle import Manifest
from .api import BundleDownload, ServerApi
from .bundles import install_bundle
from .device import SyncRecords
from .messages import RolloutAnswer
from .rollout import RolloutStatement, check_install, open_statement

if TYPE_CHECKING:
    from ..client import EdgeRec

__all__ = ["Rollout", "newest_statement", "update_bundle"]


@dataclass(frozen=True)
class Rollout:
    """Who this device is, where it asks for the rollout statement, and for one version's
    bundle."""

    device_id: int
    statement: Callable[[], RolloutAnswer | None]
    bundle: Callable[[int], BundleDownload]

    @classmethod
    def of(cls, api: ServerApi, device_id: int, retry: Callable[[Callable[[], Any]], Any]) -> Rollout:
        """The server's routes through ``api``, each request under ``retry``."""
        return cls(device_id, lambda: retry(api.rollout),
                   lambda version: retry(lambda: api.bundle(version)))


def update_bundle(rec: EdgeRec, records: SyncRecords, bundle_dir: Path, server_key: bytes | str,
                  latest: Callable[[str | None], BundleDownload | None],
                  rollout: Rollout | None = None) -> bool:
    """Bring ``rec`` to the model it should run; True if a bundle was installed.

    With ``rollout``, the newest valid statement (the server's, or the one kept) decides
    (module docstring); without any statement, the bundle ``latest(etag)`` returns is installed
    into ``bundle_dir`` if its signed version is newer than any this device ran or installed.
    The same version as the running one is left alone (up to date); anything older raises
    ``BundleRollbackError``, a version a statement does not allow ``RolloutRefusedError``, and
    any other failed check a ``BundleError``: the old bundle keeps serving. A server without a
    model yet (404) installs nothing.
    """
    # The floor: the highest version ever installed, at least the running bundle's (so a device
    # that never synced starts from the bundle it was opened with).
    floor = records.raise_installed_version(rec.model_version)
    if rollout is not None:
        found = newest_statement(records, server_key, rollout.statement)
        if found is not None:
            return _follow(rec, records, bundle_dir, server_key, found, rollout, floor)
    try:
        download = latest(records.etag())
    except ServerRejectedError as exc:
        if exc.status != 404:
            raise
        return False
    if download is None:
        return False
    try:
        bundle = install_bundle(download.archive, bundle_dir, server_key, newer_than=floor)
    except BundleRollbackError as exc:
        if not exc.manifest.model_version == floor == rec.model_version:
            raise  # older than what this device runs or once ran: a rollback
        # The version running here (the first sync after enrolment; or the server's own
        # signature of the bundle the app shipped): up to date, nothing is installed, and the
        # ETag spares the next download.
        records.save_etag(download.etag, exc.manifest.model_version)
        return False
    rec.install(bundle)
    records.raise_installed_version(bundle.version)
    records.save_etag(download.etag, bundle.version)
    return True


def newest_statement(records: SyncRecords, server_key: bytes | str,
                     ask: Callable[[], RolloutAnswer | None]
                     ) -> tuple[RolloutStatement, frozenset[int]] | None:
    """The newest valid statement (the server's ``ask()`` answer if it verifies and is at least
    as new as the kept one, which it then replaces) and every version rejected so far; None
    when neither the server nor this device has one. ``RolloutRefusedError`` for an answer that
    does not verify, or is older than, or differs at the same number from, the kept one."""
    kept = records.rollout()
    current = open_statement(kept[0], kept[1], server_key) if kept else None
    rejected = kept[2] if kept else frozenset()
    answer = ask()
    if answer is not None:
        offered = open_statement(answer.statement, answer.signature, server_key,
                                 current.seq if current else None)
        if current is not None and offered.seq == current.seq:
            if kept is not None and answer.statement != kept[0]:
                raise RolloutRefusedError(f"rollout statement refused: a different statement "
                                          f"numbered {offered.seq} than the one this device has")
        else:
            rejected = rejected | frozenset(offered.rejected)
            records.save_rollout(answer.statement, answer.signature, rejected)
            current = offered
    return None if current is None else (current, rejected | frozenset(current.rejected))


def _follow(rec: EdgeRec, records: SyncRecords, bundle_dir: Path, server_key: bytes | str,
            found: tuple[RolloutStatement, frozenset[int]], rollout: Rollout, floor: int) -> bool:
    """Install the version ``found``'s statement assigns to this device (if not running it)."""
    statement, rejected = found
    target = statement.version_for(rollout.device_id)
    check_install(statement, rollout.device_id, target, rejected)
    if rec.model_version == target:
        return False

    def allowed(manifest: Manifest) -> None:  # on the signed manifest, before the switch
        check_install(statement, rollout.device_id, manifest.model_version, rejected)

    download = rollout.bundle(target)
    # Older than the floor only for the promoted version: the signed statement says so.
    newer_than = None if target == statement.promoted else floor
    bundle = install_bundle(download.archive, bundle_dir, server_key, newer_than=newer_than,
                            check=allowed)
    rec.install(bundle)
    records.raise_installed_version(bundle.version)
    records.save_etag(download.etag, bundle.version)
    return True
