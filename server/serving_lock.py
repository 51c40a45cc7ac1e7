"""One serving process per SQLite state: a second ``edgerec-server serve`` on the same data dir
refuses to start instead of silently losing contributions.

The lock is an exclusive ``flock`` on ``<data dir>/serve.lock``, held for the life of the
process: the kernel releases it when the process ends however it ends (SIGKILL included), so a
crashed server never blocks its restart. The operator's commands (``token create``,
``round open``, ``audit``) do not take it: they are short transactions on the database, made
while the server runs. PostgreSQL state is shared by design (replicas) and takes no file lock.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from ._exceptions import ConflictError

__all__ = ["ServingLock"]

_FILE = "serve.lock"


class ServingLock:
    """Held while this process serves ``data_dir``; ``acquire`` raises ConflictError if another
    process holds it (naming that process's pid)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / _FILE
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock, but say so
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise ConflictError(
                f"another edgerec-server (pid {holder}) is serving {self.path.parent}: one process "
                "serves a SQLite data dir; stop it first, or use PostgreSQL (--database "
                "postgresql://...) for several replicas") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the flock
            self._file = None

    def __enter__(self) -> ServingLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
