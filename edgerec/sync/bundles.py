"""Moving signed bundles between server and device: a zip archive of the bundle folder.

Server side: ``archive = pack_bundle(folder)``. Device side::

    bundle = install_bundle(archive, "model-bundle/", public_key=PINNED_SERVER_KEY)

``install_bundle`` unpacks into a staging folder next to the target, refuses anything odd in
the archive (paths with folders or ``..``, links, duplicates, too many or too large members),
verifies the manifest signature and every file hash with ``edgerec.bundle.load_bundle``, and
only then swaps the folder in atomically (``edgerec.bundle.replace_dir``). If anything fails,
the staging folder is removed and the bundle already installed stays as it was.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from pathlib import Path

from .._exceptions import BundleFormatError
from ..bundle import Bundle, Manifest, load_bundle, replace_dir

__all__ = ["MAX_ARCHIVE_MEMBERS", "MAX_UNPACKED_BYTES", "install_bundle", "pack_bundle",
           "verify_archive"]

MAX_ARCHIVE_MEMBERS = 32
MAX_UNPACKED_BYTES = 2 * 1024**3  # a zip bomb stops here, far above any real bundle
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # same folder, same bytes: stable ETags


def pack_bundle(folder: str | Path) -> bytes:
    """The archive of a bundle folder (its top-level files, sorted; deterministic bytes)."""
    root = Path(folder)
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


def install_bundle(archive: bytes, target_dir: str | Path, public_key: bytes | str) -> Bundle:
    """Verify ``archive`` against ``public_key`` and install it at ``target_dir`` atomically.

    Raises a ``BundleError`` (format, integrity or signature) and changes nothing on failure.
    """
    target = Path(target_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.incoming-", dir=target.parent))
    try:
        _unpack(archive, staging)
        load_bundle(staging, public_key=public_key)  # signature + every hash, before the swap
        replace_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load_bundle(target, public_key=public_key)


def verify_archive(archive: bytes, public_key: bytes | str) -> Manifest:
    """The manifest of ``archive`` if it is a bundle signed by ``public_key``; else a BundleError."""
    with tempfile.TemporaryDirectory(prefix="edgerec-verify-") as tmp:
        _unpack(archive, Path(tmp))
        return load_bundle(tmp, public_key=public_key).manifest


def _unpack(archive: bytes, into: Path) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            members = zf.infolist()
            _check_members(members)
            for info in members:
                with zf.open(info) as src, open(into / info.filename, "xb") as dst:
                    shutil.copyfileobj(src, dst)
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
