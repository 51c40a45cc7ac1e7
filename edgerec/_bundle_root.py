"""Bundle roots: versioned bundle folders under one folder, and one atomic pointer switch.

A bundle root (what ``edgerec.bundle.install_atomically`` makes of a folder that already holds a
bundle) looks like::

    model-bundle/
      CURRENT                       the live version's folder name (one line)
      .versions/v000002-m11-.../    the previous bundle (kept for a process still loading it)
      .versions/v000003-m12-.../    the live bundle: manifest.json, model.int8.onnx, ...

An install stages a complete bundle, fsyncs it, renames it into ``.versions``, then replaces
``CURRENT`` by rename (the one switch) and fsyncs the root: a crash at any instant leaves the old
complete bundle or the new one live, never neither. Cleanup removes staging, trash and
superseded versions, never the live one. Private: ``edgerec.bundle`` is the public face.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from ._exceptions import BundleFormatError

try:  # POSIX; Windows has no flock (see _root_lock)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from .bundle import Manifest

MODEL_FILE, WEIGHTS_FILE = "model.int8.onnx", "weights.npz"
CATALOGUE_FILE, FEATURES_FILE = "catalogue.json", "features.npy"
MANIFEST_FILE, SIGNATURE_FILE = "manifest.json", "manifest.sig"
REQUIRED = (MODEL_FILE, WEIGHTS_FILE, CATALOGUE_FILE, FEATURES_FILE)
_REQUIRED = REQUIRED
#: A large catalogue's top-k graph (edgerec.model.export_shortlist): optional, listed and hashed
#: in the manifest when there (devices that predate it verify it and ignore it).
SHORTLIST_FILE = "shortlist.int8.onnx"

POINTER_FILE, VERSIONS_DIR = "CURRENT", ".versions"
_STAGING, _TRASH, _POINTER_TMP, _LOCK = ".incoming-", ".trash-", ".CURRENT.tmp-", ".lock"
_VERSION_RE = re.compile(r"v(\d{6,})-m(-?\d+)-[0-9a-f]{8}")
# Staging next to a folder (first installs; and the pre-root installer's rename away, rename in,
# whose crash could leave a full copy each): .<name>.incoming-*, .old-*, .new-*.
_LEGACY_SIBLINGS = ("incoming-", "old-", "new-")
_LEGACY_FILES = (MANIFEST_FILE, SIGNATURE_FILE, *_REQUIRED, SHORTLIST_FILE, "model.float.onnx",
                 "shortlist.float.onnx")

#: Tests only: called with the name of each install step as it completes (crash injection).
_step_hook: Callable[[str], None] | None = None



def _step(name: str) -> None:
    if _step_hook is not None:
        _step_hook(name)

def resolve_bundle(path: str | Path) -> Path:
    """The folder holding the live bundle's files: ``path`` itself, or where its pointer leads.

    Raises ``BundleFormatError`` for a pointer that does not name a version folder.
    """
    path = Path(path)
    name = _read_pointer(path)
    return path if name is None else path / VERSIONS_DIR / name


def bundle_root(path: str | Path) -> Path:
    """Where installs into ``path`` go: ``path``, or the root of the version folder it names.

    Version folders are immutable, and ``Bundle.path`` of an installed bundle is one: installing
    "into" it installs into its root instead.
    """
    path = Path(path)
    if (_VERSION_RE.fullmatch(path.name) and path.parent.name == VERSIONS_DIR
            and (path.parent.parent / POINTER_FILE).is_file()):
        return path.parent.parent
    return path


def _read_pointer(root: Path) -> str | None:
    """The live version's folder name, or None when ``root`` has no pointer (a plain folder)."""
    try:
        raw = (root / POINTER_FILE).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise BundleFormatError(f"cannot read the bundle pointer {root / POINTER_FILE}: "
                                f"{exc}") from exc
    name = raw.decode("ascii", "replace").strip()
    if not _VERSION_RE.fullmatch(name):
        raise BundleFormatError(f"{root / POINTER_FILE} does not name a bundle version: "
                                f"{raw[:64]!r}")
    if not (root / VERSIONS_DIR / name).is_dir():
        raise BundleFormatError(f"{root / POINTER_FILE} names {name}, which is missing")
    return name


def _seq(name: str) -> int | None:
    match = _VERSION_RE.fullmatch(name)
    return int(match[1]) if match else None


def install_atomically(target: str | Path,
                       fill: Callable[[Path], Manifest]) -> tuple[Path, Manifest]:
    """Make a bundle with ``fill`` and make it ``target``'s bundle in one atomic step.

    ``fill(folder)`` writes (and checks) a complete bundle into an empty staging folder and
    returns its manifest; if it raises, nothing changes and the staging folder is removed.
    A missing or empty ``target`` becomes a plain bundle folder (staged next to it, renamed into
    place). Onto an existing bundle, ``target`` becomes (or stays) a bundle root and the new
    bundle its live version; a plain bundle there stays live until the pointer switch.
    Returns the folder holding the new bundle's files, and its manifest.
    """
    root = bundle_root(Path(target))
    if _is_empty_or_missing(root):
        manifest = _install_new(root, fill)
        if manifest is not None:
            clean_bundle_root(root)  # what crashed installs left next to it
            return root, manifest
    return _install_version(root, fill)


def _is_empty_or_missing(path: Path) -> bool:
    try:
        return not any(path.iterdir())
    except FileNotFoundError:
        return not path.is_symlink()
    except NotADirectoryError:
        return False


def _install_new(target: Path, fill: Callable[[Path], Manifest]) -> Manifest | None:
    """A plain bundle folder at ``target``; None if another bundle got there first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.incoming-", dir=target.parent))
    try:
        manifest = fill(staged)
        _step("staged")
        _sync_tree(staged)
        _step("synced")
        try:
            os.rename(staged, target)  # atomic; replaces an empty folder, never a bundle
        except OSError:
            if _is_empty_or_missing(target):
                raise
            shutil.rmtree(staged, ignore_errors=True)
            return None  # a concurrent install won: become a version on top of it
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
    _step("installed")
    return manifest


def _install_version(root: Path, fill: Callable[[Path], Manifest]) -> tuple[Path, Manifest]:
    """Stage into ``root/.versions``, then switch ``root/CURRENT`` to it (under the root lock)."""
    created = _make_dir(root)
    with _root_lock(root, wait=True):
        _clean_locked(root, keep_previous=True)  # disk space first, then a new copy
        versions = root / VERSIONS_DIR
        _make_dir(versions)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=versions))
        try:
            manifest = fill(staging)
            _step("staged")
            _sync_tree(staging)
            _step("synced")
            final = versions / _version_name(versions, manifest.model_version)
            os.rename(staging, final)
            _fsync_dir(versions)
            _step("renamed")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            _undo_empty(root, versions, created)
            raise
        _switch(root, final.name)
        _clean_locked(root, keep_previous=True)
        _step("installed")
    return final, manifest


def _version_name(versions: Path, model_version: int) -> str:
    seqs = [s for s in (_seq(p.name) for p in versions.iterdir()) if s is not None]
    return f"v{max(seqs, default=0) + 1:06d}-m{model_version}-{secrets.token_hex(4)}"


def _switch(root: Path, name: str) -> None:
    """The one atomic step: ``root/CURRENT`` names ``name`` (written aside, synced, renamed)."""
    tmp = root / f"{_POINTER_TMP}{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, f"{name}\n".encode())
        _fsync_fd(fd)
    finally:
        os.close(fd)
    _step("pointer-written")
    _replace(tmp, root / POINTER_FILE)
    _step("pointer-replaced")
    _fsync_dir(root)  # the rename itself survives a power loss only once its folder is synced
    _step("switched")


def clean_bundle_root(target: str | Path, *, keep_previous: bool = True) -> int:
    """Remove what crashed or superseded installs left at ``target``; how many entries went.

    Removes staging folders, versions other than the live one (and, with ``keep_previous``, the
    one before it), the files of a plain bundle a root replaced, temporary pointers, and the
    ``.<name>.incoming-*``/``.old-*``/``.new-*`` folders older edgerec versions left next to it.
    Never the live bundle. Best effort: what cannot be removed now (a file in use on Windows) is
    left for the next call; while another process installs into ``target`` it does nothing.
    """
    root = bundle_root(Path(target))
    if not root.is_dir():
        return 0
    try:
        with _root_lock(root, wait=False) as held:
            return _clean_locked(root, keep_previous) if held else 0
    except OSError:
        return 0


def _clean_locked(root: Path, keep_previous: bool) -> int:
    try:
        live = _read_pointer(root)
    except BundleFormatError:
        return 0  # a damaged pointer: remove nothing, load_bundle reports it
    versions = root / VERSIONS_DIR
    removed = sum(_remove(p, versions) for p in _stale_versions(versions, live, keep_previous))
    removed += sum(_remove(p) for p in _listdir(root) if p.name.startswith(_POINTER_TMP))
    if live is not None:  # the files of the plain bundle this root replaced; manifest first
        removed += sum(_remove(root / n) for n in _LEGACY_FILES if (root / n).is_file())
    if live is not None or (root / MANIFEST_FILE).is_file():  # only once there is a bundle here:
        removed += sum(_remove(p) for p in _legacy_siblings(root))  # an .old-* may be the only copy
    if live is None:
        _rmdir_quietly(versions)  # what an install that never switched left in a plain folder
    return removed


def _stale_versions(versions: Path, live: str | None, keep_previous: bool) -> list[Path]:
    entries = [p for p in _listdir(versions) if p.name != _LOCK]
    keep = set()
    if live is not None:
        keep.add(live)
        live_seq = _seq(live) or 0
        older = [p.name for p in entries if (seq := _seq(p.name)) is not None and seq < live_seq]
        if keep_previous and older:
            keep.add(max(older, key=lambda n: _seq(n) or 0))
    # Not kept: staging and trash folders, versions that never became live (a crash before the
    # switch) and superseded ones.
    return sorted((p for p in entries if p.name not in keep), key=lambda p: p.name)


def _legacy_siblings(root: Path) -> list[Path]:
    prefix = f".{root.name}."
    return [p for p in _listdir(root.parent) if p.name.startswith(prefix)
            and p.name[len(prefix):].startswith(_LEGACY_SIBLINGS) and p.is_dir()]


def _remove(path: Path, trash_in: Path | None = None) -> int:
    """Delete a file or folder (1), or leave it for the next cleanup (0)."""
    try:
        if path.is_dir() and not path.is_symlink():
            if trash_in is not None and not path.name.startswith(_TRASH):
                # Renamed first, so a crash halfway through rmtree leaves a .trash-* folder,
                # never a half-deleted one under a version's name.
                trash = trash_in / f"{_TRASH}{secrets.token_hex(4)}-{path.name}"
                os.rename(path, trash)
                path = trash
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:
        return 0
    _step("removed")
    return 1


def _listdir(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _rmdir_quietly(folder: Path) -> None:
    try:
        folder.rmdir()  # only ever succeeds on an empty folder
    except OSError:
        pass


def _undo_empty(root: Path, versions: Path, created_root: bool) -> None:
    """After a refused install, leave a plain folder (or no folder) as it was."""
    if _read_pointer_quietly(root) is None:
        _rmdir_quietly(versions)
        if created_root:
            _rmdir_quietly(root)


def _read_pointer_quietly(root: Path) -> str | None:
    try:
        return _read_pointer(root)
    except BundleFormatError:
        return None


def _make_dir(path: Path) -> bool:
    """Create ``path`` (and its parents) if missing; whether it was created."""
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        if not path.is_dir():
            raise BundleFormatError(f"{path} is not a folder") from None
        return False
    _fsync_dir(path.parent)
    return True


# -- durability and locking (POSIX; what differs on Windows is said where it does) ----------------
def _fsync_fd(fd: int) -> None:
    os.fsync(fd)
    if fcntl is not None and hasattr(fcntl, "F_FULLFSYNC"):
        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)  # macOS: fsync does not flush the drive's cache


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        _fsync_fd(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":
        return  # a folder cannot be opened on Windows; NTFS journals the rename itself
    _fsync_path(path)


def _sync_tree(folder: Path) -> None:
    """Every file of a (flat) bundle folder on disk, then the folder's entries."""
    for path in folder.iterdir():
        if path.is_file():
            _fsync_path(path)
    _fsync_dir(folder)


def _replace(src: Path, dst: Path) -> None:
    # Windows refuses to replace a file another process has open (a reader of CURRENT): retry.
    for attempt in range(50):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if os.name != "nt" or attempt == 49:
                raise
            time.sleep(0.02)


@contextmanager
def _root_lock(root: Path, *, wait: bool) -> Iterator[bool]:
    """Hold ``root``'s install lock; yields False when ``wait`` is off and another holds it.

    POSIX: ``flock`` on the root folder itself, so no lock file appears in a bundle folder and
    the OS releases it when its holder dies (a crash never leaves it held). Windows: a byte
    lock on ``.versions/.lock``.
    """
    if fcntl is None:  # pragma: no cover - Windows
        with _windows_lock(root, wait) as held:
            yield held
        return
    fd = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def _windows_lock(root: Path, wait: bool) -> Iterator[bool]:  # pragma: no cover - Windows
    # Only called where fcntl is missing (Windows). Elsewhere msvcrt does not exist: this is the
    # error its import would raise, spelled as a platform check so mypy checks msvcrt's
    # Windows-only functions on Windows and skips them elsewhere.
    if sys.platform != "win32":
        raise ModuleNotFoundError("No module named 'msvcrt'", name="msvcrt")
    import msvcrt

    _make_dir(root / VERSIONS_DIR)
    fd = os.open(root / VERSIONS_DIR / _LOCK, os.O_RDWR | os.O_CREAT)
    try:
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                break
            except OSError:
                if not wait:
                    yield False
                    return
                time.sleep(0.05)
        try:
            yield True
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    finally:
        os.close(fd)
