"""Moving signed bundles between server and device: a zip archive of the bundle folder.

Server side: ``archive = pack_bundle(folder)``. Device side::

    bundle = install_bundle(archive, "model-bundle/", public_key=PINNED_SERVER_KEY)

``install_bundle`` unpacks into a staging folder (next to a new target, or inside the bundle
root of an existing one), refuses anything odd in the archive (paths with folders or ``..``,
links, duplicates, too many or too large members), verifies the manifest signature and every
file hash with ``edgerec.bundle.load_bundle``, refuses any member the signed manifest does not
list, refuses a signed bundle that is not newer than ``newer_than`` (rollback), and only then
makes it the live bundle in one atomic step (``edgerec.bundle.install_atomically``: a rename
into place, or a pointer switch). If anything fails, or the process dies at any instant, the
bundle already installed stays live.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

from .._exceptions import BundleFormatError, BundleRollbackError
from .._bundle_root import _step
from ..bundle import (MANIFEST_FILE, SIGNATURE_FILE, Bundle, Manifest, bundle_root,
                      install_atomically, load_bundle, resolve_bundle)
from ..signing import load_public_key

__all__ = ["MAX_ARCHIVE_MEMBERS", "MAX_UNPACKED_BYTES", "BundleRollbackError", "install_bundle",
           "pack_bundle", "verify_archive"]

MAX_ARCHIVE_MEMBERS = 32
MAX_UNPACKED_BYTES = 2 * 1024**3  # a zip bomb stops here, far above any real bundle
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # same folder, same bytes: stable ETags


def pack_bundle(folder: str | Path) -> bytes:
    """The archive of a bundle folder or root's live bundle (top-level files, sorted; same bytes
    for the same files)."""
    root = resolve_bundle(folder)
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise BundleFormatError(f"{root} has no files to pack")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            info = zipfile.ZipInfo(path.name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    return out.getvalue()


def install_bundle(archive: bytes, target_dir: str | Path, public_key: bytes | str, *,
                   newer_than: int | None = None,
                   check: Callable[[Manifest], None] | None = None) -> Bundle:
    """Verify ``archive`` against ``public_key`` and make it ``target_dir``'s live bundle.

    A missing ``target_dir`` becomes a plain bundle folder; onto an existing bundle it becomes
    (or stays) a bundle root whose live version is the new bundle (see ``edgerec.bundle``),
    switched to in one atomic step. The ``Bundle.path`` of an installed bundle may be given as
    ``target_dir``: installs go to its root. With ``newer_than``, a bundle whose signed
    ``model_version`` is not greater raises :class:`BundleRollbackError` (the decision rests on
    the signed manifest only). ``check(manifest)`` is called on the verified manifest before the
    switch (a ``BundleError`` it raises refuses the bundle: how a rollout statement's rules
    apply to what is installed). Raises a ``BundleError`` (format, integrity, signature, rollback)
    and changes nothing on failure; a malformed ``public_key`` is a ``ConfigError``.
    """
    load_public_key(public_key)  # a malformed key is refused before anything is touched
    verified: list[Bundle] = []

    def fill(staging: Path) -> Manifest:
        bundle = _unpack_verified(archive, staging, public_key)
        if newer_than is not None and bundle.manifest.model_version <= newer_than:
            raise BundleRollbackError(bundle.manifest, newer_than)
        if check is not None:
            check(bundle.manifest)
        verified.append(bundle)
        return bundle.manifest

    folder, _ = install_atomically(target_dir, fill)
    # Verified in staging; the rename kept every byte, so only the paths change.
    return dataclasses.replace(verified[-1], path=folder, root=bundle_root(target_dir))


def verify_archive(archive: bytes, public_key: bytes | str) -> Manifest:
    """The manifest of ``archive`` if it is a bundle signed by ``public_key``; else a BundleError."""
    with tempfile.TemporaryDirectory(prefix="edgerec-verify-") as tmp:
        return _unpack_verified(archive, Path(tmp), public_key).manifest


def _unpack_verified(archive: bytes, into: Path, public_key: bytes | str) -> Bundle:
    """Unpack ``archive`` into ``into`` and check everything; the verified bundle."""
    names = _unpack(archive, into)
    bundle = load_bundle(into, public_key=public_key)  # signature + every hash
    _check_listed(names, bundle.manifest)
    return bundle


def _check_listed(names: list[str], manifest: Manifest) -> None:
    # load_bundle checks only the files the manifest lists; anything else in the archive would
    # be installed next to them unverified (and could be read by a later edgerec), so refuse it.
    allowed = {MANIFEST_FILE, SIGNATURE_FILE, *manifest.files}
    unlisted = sorted(set(names) - allowed)
    if unlisted:
        raise BundleFormatError(f"bundle archive members {unlisted} are not in the signed manifest")


def _unpack(archive: bytes, into: Path) -> list[str]:
    """Write the archive's members into ``into``; their names."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            members = zf.infolist()
            _check_members(members)
            for info in members:
                with zf.open(info) as src, open(into / info.filename, "xb") as dst:
                    shutil.copyfileobj(src, dst)
                _step("member-written")
            return [info.filename for info in members]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as exc:
        if isinstance(exc, FileExistsError):
            raise BundleFormatError("bundle archive lists a file twice") from exc
        raise BundleFormatError(f"not a readable bundle archive: {exc}") from exc


def _check_members(members: list[zipfile.ZipInfo]) -> None:
    if not members or len(members) > MAX_ARCHIVE_MEMBERS:
        raise BundleFormatError(f"bundle archive has {len(members)} members")
    names = [m.filename for m in members]
    if len(set(names)) != len(names):
        raise BundleFormatError("bundle archive lists a file twice")
    for info in members:
        name = info.filename
        # A bundle is flat: one plain name per file, nothing that could climb or hide.
        if (not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith(".")
                or "\x00" in name or ":" in name):
            raise BundleFormatError(f"bundle archive member {name!r} is not a plain file name")
        mode = info.external_attr >> 16
        if info.is_dir() or (mode and (mode & 0o170000) not in (0, 0o100000)):
            raise BundleFormatError(f"bundle archive member {name!r} is not a regular file")
    if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
        raise BundleFormatError("bundle archive unpacks to more than the allowed size")
