"""Attack: roll a device back to an older, validly signed model bundle (or freeze it on one).

The attacker is the server itself, or anyone on the path who kept old archives the real server
once published: every archive here is genuinely signed by the key the device pins. It serves
``/v1/models/latest`` over real HTTP on 127.0.0.1 with the archive it chooses and a lying
``X-Edgerec-Model-Version`` header. The device is a real ``edgerec.open(...)`` (SQLite file,
bundle folder) syncing with ``SyncSession`` over its default ``HttpxTransport``.

Protection (``edgerec.sync.client.SyncSession._update_bundle``): the device records the highest
signed version it ever installed (``sync_installed_version`` in its database) and installs a
bundle only when the *signed manifest's* ``model_version`` is above it and above the running
one; the header is never read for that decision. A refused bundle is reported as
``BUNDLE_REJECTED`` with "rollback refused" and the current bundle keeps serving, across
restarts. Archive members the signed manifest does not list are refused too.

Not protected (a freezing server): it can keep serving the device's current bundle, answer
304, or never announce a round; the device then stays on the newest model it has, it cannot
be made to go back.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import edgerec
from edgerec.bundle import load_bundle, write_bundle
from edgerec.data import Catalogue
from edgerec.model.config import ModelConfig
from edgerec.model.params import init_params
from edgerec.signing import generate_signing_key, public_key_bytes, sign_bytes
from edgerec.sync import (EnrolResponse, ErrorBody, SyncConditions, SyncSession, SyncStatus,
                          SyncTimeouts, encode)
from edgerec.sync.device import SyncRecords

VERSIONS = (1, 2, 3)


# -- the signed archives the attacker holds --------------------------------------------------
@dataclass(frozen=True)
class Signed:
    """The pinned public key, a signed archive of each version, and each version's folder."""

    public_key: bytes
    archives: dict[int, bytes]
    folders: dict[int, Path]


def _tiny_signed_bundle(folder: Path, version: int, sign) -> None:  # type: ignore[no-untyped-def]
    """An untrained bundle over 30 items (quick to export), signed; weights differ by version."""
    rng = np.random.default_rng(version)
    n_items = 30
    feats = (np.random.default_rng(0).random((n_items, 4)) < 0.3).astype(np.float32)
    cat = Catalogue(tuple(f"i{i}" for i in range(n_items)), tuple(f"Item {i}" for i in range(n_items)),
                    feats, tuple(f"f{j}" for j in range(4)))
    cfg = ModelConfig(dim=8, history=5)
    write_bundle(folder, init_params(cfg, n_items, 4, rng), cat, cfg, model_version=version,
                 parent_version=version - 1 or None, created_at=f"2024-01-0{version}T00:00:00Z",
                 sign=sign)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    from edgerec.sync import pack_bundle

    key = generate_signing_key()
    archives, folders = {}, {}
    for version in VERSIONS:
        folder = tmp_path_factory.mktemp(f"signed-v{version}") / "bundle"
        _tiny_signed_bundle(folder, version, lambda raw: sign_bytes(key, raw))
        archives[version], folders[version] = pack_bundle(folder), folder
    return Signed(public_key_bytes(key), archives, folders)


# -- the malicious server ----------------------------------------------------------------------
@dataclass
class Offer:
    """What ``/v1/models/latest`` answers: an archive and the version the header claims."""

    archive: bytes
    claimed_version: int

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.archive).hexdigest() + '"'


@dataclass
class RollbackServer:
    """A threaded HTTP server on 127.0.0.1 that speaks just enough of the protocol to enrol a
    device, open no round, and serve whatever bundle ``offer`` says with a lying header."""

    server_public_key: bytes
    offer: Offer | None = None
    requests: list[tuple[str, str]] = field(default_factory=list)
    httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def downloads(self) -> int:
        return sum(1 for method, path in self.requests if path == "/v1/models/latest")

    def answer(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        self.requests.append((method, path))
        if method == "POST" and path == "/v1/enrol":
            # Built from the dataclass through the codec, so new optional fields keep working.
            body = encode(EnrolResponse(device_id=1, credential="cred-1",
                                        server_public_key=self.server_public_key))
            return 201, {"Content-Type": "application/json"}, body
        if method == "GET" and path == "/v1/rounds/current":
            return 204, {}, b""
        if method == "GET" and path == "/v1/models/latest" and self.offer is not None:
            offer = self.offer
            if headers.get("if-none-match") == offer.etag:
                return 304, {"ETag": offer.etag}, b""
            return 200, {"Content-Type": "application/zip", "ETag": offer.etag,
                         "X-Edgerec-Model-Version": str(offer.claimed_version)}, offer.archive
        return 404, {"Content-Type": "application/json"}, encode(ErrorBody("not_found", path))

    def start(self) -> RollbackServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                status, headers, body = owner.answer(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if status not in (204, 304):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status not in (204, 304):
                    self.wfile.write(body)

            do_GET = do_POST = _serve

            def log_message(self, *args: object) -> None:  # keep the test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def server(signed: Signed) -> Iterator[RollbackServer]:
    srv = RollbackServer(signed.public_key).start()
    yield srv
    srv.stop()


# -- the device --------------------------------------------------------------------------------
@dataclass
class Device:
    """Where a device lives: its database file and bundle folder (it is reopened from them)."""

    db: Path
    bundle: Path
    public_key: bytes

    def open(self) -> edgerec.EdgeRec:
        return edgerec.open(self.db, bundle=self.bundle, public_key=self.public_key)


@pytest.fixture
def device(tmp_path: Path, signed: Signed) -> Device:
    """A device on bundle version 2 (signed by the pinned key) with a few events."""
    dev = Device(tmp_path / "app.db", tmp_path / "model-bundle", signed.public_key)
    shutil.copytree(signed.folders[2], dev.bundle)
    with dev.open() as rec:
        items = rec.bundle.catalogue.item_ids
        rec.log_many([{"user": "u1", "item": items[i], "event": "click"} for i in range(4)])
    return dev


def _sync(rec: edgerec.EdgeRec, server: RollbackServer, key: bytes):  # type: ignore[no-untyped-def]
    """One real sync: SyncSession with its own HttpxTransport to the attacker's URL."""
    return SyncSession(rec, server.url, enrolment_token="tok", server_key=key,
                       timeouts=SyncTimeouts(request=5.0),
                       allow=SyncConditions(min_new_interactions=0)).run()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _assert_on(dev: Device, rec: edgerec.EdgeRec, version: int) -> None:
    assert rec.model_version == version
    assert load_bundle(dev.bundle, public_key=dev.public_key).version == version
    assert len(rec.recommend("u1", k=3)) == 3  # and it still serves


def _assert_rollback_refused(result, before: int) -> None:  # type: ignore[no-untyped-def]
    assert result.status == SyncStatus.BUNDLE_REJECTED and not result.ok, result
    assert "rollback refused" in result.message, result.message
    assert result.model_version_before == result.model_version_after == before


# -- the attack --------------------------------------------------------------------------------
def test_an_older_signed_bundle_under_a_lying_header_is_refused_and_stays_refused(
        server: RollbackServer, device: Device, signed: Signed) -> None:
    key = signed.public_key

    # v1, genuinely signed, but the header says it is v9: refused, v2 keeps serving.
    server.offer = Offer(signed.archives[1], claimed_version=9)
    rec = device.open()
    files = _files(device.bundle)
    before = rec.recommend("u1", k=5)
    result = _sync(rec, server, key)
    _assert_rollback_refused(result, before=2)
    assert "signed model 1, created 2024-01-01" in result.message
    assert server.downloads() == 1  # it was downloaded and judged by its signed manifest
    _assert_on(device, rec, 2)
    assert _files(device.bundle) == files and rec.recommend("u1", k=5) == before
    rec.close()

    # The app restarts: still v2, the floor was persisted, and the replay is refused again.
    rec = device.open()
    _assert_on(device, rec, 2)
    assert SyncRecords(rec._state, rec._clock).installed_version() == 2
    _assert_rollback_refused(_sync(rec, server, key), before=2)
    _assert_on(device, rec, 2)

    # A genuinely newer v3 is installed, even under a header claiming it is older.
    server.offer = Offer(signed.archives[3], claimed_version=1)
    result = _sync(rec, server, key)
    assert result.status == SyncStatus.BUNDLE_INSTALLED and result.ok, result
    assert (result.model_version_before, result.model_version_after) == (2, 3)
    assert "installed model 3" in result.message
    _assert_on(device, rec, 3)

    # Then the previous v2 again, claiming v4: refused; v3 keeps serving, across a restart.
    server.offer = Offer(signed.archives[2], claimed_version=4)
    _assert_rollback_refused(_sync(rec, server, key), before=3)
    _assert_on(device, rec, 3)
    rec.close()
    rec = device.open()
    _assert_on(device, rec, 3)
    assert SyncRecords(rec._state, rec._clock).installed_version() == 3
    _assert_rollback_refused(_sync(rec, server, key), before=3)
    rec.close()


def _with_stowaway(archive: bytes) -> bytes:
    """The archive plus a member its signed manifest does not list (every listed file intact)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        dst.writestr("model.float.onnx", b"not covered by any signature")
    return out.getvalue()


def test_a_newer_signed_bundle_carrying_an_unlisted_file_is_refused(
        server: RollbackServer, device: Device, signed: Signed) -> None:
    server.offer = Offer(_with_stowaway(signed.archives[3]), claimed_version=3)
    with device.open() as rec:
        files = _files(device.bundle)
        result = _sync(rec, server, signed.public_key)
        assert result.status == SyncStatus.BUNDLE_REJECTED, result
        assert "not in the signed manifest" in result.message
        _assert_on(device, rec, 2)
        assert _files(device.bundle) == files
        assert not any(p.name.startswith(".model-bundle") for p in device.bundle.parent.iterdir())
