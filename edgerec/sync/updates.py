"""Keeping the device's model current: the server's newest signed bundle, installed only if its
*signed* version is newer than any this device ran or installed.

The answer's ``X-Edgerec-Model-Version`` header is unsigned and never consulted: a lying header
could otherwise install an old bundle or hide a new one. The ETag only spares re-downloading
the archive installed last.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .._exceptions import BundleRollbackError, ServerRejectedError
from .api import BundleDownload
from .bundles import install_bundle
from .device import SyncRecords

if TYPE_CHECKING:
    from ..client import EdgeRec

__all__ = ["update_bundle"]


def update_bundle(rec: EdgeRec, records: SyncRecords, bundle_dir: Path, server_key: bytes | str,
                  latest: Callable[[str | None], BundleDownload | None]) -> bool:
    """Install the bundle ``latest(etag)`` returns into ``bundle_dir`` and switch ``rec`` to it
    if its signed version is newer than any this device ran or installed; True if it did.

    The same version as the running one is left alone (up to date); anything older raises
    ``BundleRollbackError``, and any other failed check a ``BundleError``: the old bundle keeps
    serving. A server without a model yet (404) installs nothing.
    """
    # The floor: the highest version ever installed, at least the running bundle's (so a device
    # that never synced starts from the bundle it was opened with).
    floor = records.raise_installed_version(rec.model_version)
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
