"""A real PostgreSQL server for the tests: Debian's ``postgresql`` binaries, started once per
session in a temporary directory on a free loopback port, and one fresh database per test.

``.ci/run`` installs the package where it is missing; elsewhere the fixture skips, saying how
to install it (README.md says so too). PostgreSQL refuses to run as root, so under root the
server runs as the ``postgres`` user that the Debian package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from edgerec_server.process import free_port

INSTALL_HINT = ("PostgreSQL's server binaries were not found (Debian: apt-get install postgresql; "
                ".ci/run installs them)")


@dataclass(frozen=True)
class PgServer:
    """A running PostgreSQL server that trusts local connections from ``user``."""

    host: str
    port: int
    user: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def pg_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: pg_config's bindir, Debian's versioned dir or PATH."""
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        bindir = Path(out.stdout.strip())
        if (bindir / "initdb").exists():
            return bindir
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if versions:
        return Path(versions[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_owner(root: Path) -> list[str]:
    """The command prefix that runs PostgreSQL as a non-root user (it refuses root)."""
    if os.getuid() != 0:
        return []
    shutil.chown(root, "postgres", "postgres")
    return ["runuser", "-u", "postgres", "--"]


@contextmanager
def running_postgres(bindir: Path, max_connections: int = 300) -> Iterator[PgServer]:
    """A PostgreSQL server in a new temporary directory, stopped and removed on exit."""
    root = Path(tempfile.mkdtemp(prefix="edgerec-pg-"))
    root.chmod(0o755)
    prefix = _as_owner(root)
    data, port = root / "data", free_port()
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "edgerec",
                    "--auth=trust", "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    # fsync off: the tests kill server replicas, never the database's machine.
    options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root}"
               f" -c fsync=off -c max_connections={max_connections}")
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"),
                    "-o", options, "-w", "start"], check=True, capture_output=True)
    try:
        yield PgServer("127.0.0.1", port, "edgerec")
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    """One PostgreSQL server for the whole test session."""
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'edgerec[postgres]'")
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip(INSTALL_HINT)
    with running_postgres(bindir) as server:
        yield server


@pytest.fixture
def pg_url(postgres: PgServer) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL server."""
    return postgres.create_database()
