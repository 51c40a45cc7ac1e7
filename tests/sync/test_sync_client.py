"""rec.sync() without a real coordinator: enrolment, conditions, bundles (good and tampered),
retries, and the failures an app must survive (no network, a server answering junk)."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import edgerec
from edgerec._exceptions import ConfigError
from edgerec.bundle import load_bundle, write_bundle
from edgerec.signing import generate_signing_key, public_key_bytes, sign_bytes
from edgerec.sync import (Backoff, EnrolResponse, ErrorBody, Response, SyncConditions, SyncStatus,
                          encode, pack_bundle)

URL = "http://fl.test"


@pytest.fixture(scope="module")
def signed(tmp_path_factory, trained_bundle):
    """(public key, {version: archive}, folder of version 1) signed by one server key."""
    key = generate_signing_key()
    src = load_bundle(trained_bundle)
    archives, folders = {}, {}
    for version in (1, 2):
        folder = tmp_path_factory.mktemp(f"v{version}") / "bundle"
        write_bundle(folder, src.params, src.catalogue, src.config, model_version=version,
                     sign=lambda raw: sign_bytes(key, raw))
        archives[version], folders[version] = pack_bundle(folder), folder
    return public_key_bytes(key), archives, folders[1]


class FakeServer:
    """A Transport answering the routes a device uses, from canned parts; records requests."""

    def __init__(self, archive: bytes | None = None, version: int = 2, fail_first: int = 0):
        self.archive, self.version, self.fail_first = archive, version, fail_first
        self.requests: list[tuple[str, str, bytes | None]] = []

    def request(self, method, path, *, body=None, headers=None):
        from edgerec.sync import TransportError

        self.requests.append((method, path, body))
        if self.fail_first > 0:
            self.fail_first -= 1
            raise TransportError("connection refused (fake)")
        if path == "/v1/enrol":
            return Response(201, {}, encode(EnrolResponse(7, "cred-7", b"\x00" * 32)))
        if path == "/v1/rounds/current":
            return Response(204, {}, b"")
        if path == "/v1/models/latest":
            if self.archive is None:
                return Response(404, {}, encode(ErrorBody("not_found", "no model")))
            return Response(200, {"etag": f'"v{self.version}"', "x-edgerec-model-version": str(self.version)},
                            self.archive)
        return Response(404, {}, encode(ErrorBody("not_found", path)))


@pytest.fixture
def device(tmp_path, signed):
    """A device with a copy of bundle version 1 in its own folder and a few events."""
    import shutil

    folder = tmp_path / "bundle"
    shutil.copytree(signed[2], folder)
    rec = edgerec.open(tmp_path / "app.db", bundle=folder)
    items = rec.bundle.catalogue.item_ids
    rec.log_many([{"user": "u1", "item": items[i], "event": "click"} for i in range(5)])
    yield rec
    rec.close()


def _sync(rec, transport, **kw):
    sleeps: list[float] = []
    kw.setdefault("enrolment_token", "tok")
    result = rec.sync(URL, transport=transport, sleep=sleeps.append, jitter=lambda: 1.0, **kw)
    return result, sleeps


def test_enrols_once_keeps_identity_and_ledger_has_the_enrolment(device, signed):
    server = FakeServer()
    first, _ = _sync(device, server, server_key=signed[0])
    assert first.status == SyncStatus.NO_ROUND and first.ok and first.device_id == 7
    second, _ = _sync(device, server, enrolment_token=None, server_key=signed[0])
    assert second.device_id == 7
    enrols = [b for m, p, b in server.requests if p == "/v1/enrol"]
    assert len(enrols) == 1  # the identity was kept in the device database
    entry = device.ledger.entries()[0]
    assert entry.kind == "enrol" and entry.destination == URL
    assert entry.n_bytes == len(enrols[0]) and entry.sha256 == hashlib.sha256(enrols[0]).hexdigest()
    assert first.bytes_sent == len(enrols[0]) and second.bytes_sent == 0


def test_not_enrolled_without_a_token(device):
    result, _ = _sync(device, FakeServer(), enrolment_token=None)
    assert result.status == SyncStatus.NOT_ENROLLED and not result.ok


def test_installs_a_newer_signed_bundle_atomically(device, signed):
    key, archives, _ = signed
    result, _ = _sync(device, FakeServer(archives[2]), server_key=key)
    assert result.status == SyncStatus.BUNDLE_INSTALLED
    assert (result.model_version_before, result.model_version_after) == (1, 2)
    assert device.model_version == 2 and load_bundle(device.bundle.path, public_key=key).version == 2
    assert len(device.recommend("u1", k=3)) == 3
    again, _ = _sync(device, FakeServer(archives[2]), server_key=key)
    assert again.status == SyncStatus.NO_ROUND and again.model_version_after == 2


def _tampered(archive: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["catalogue.json"] += b" "
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize("make", [_tampered, lambda a: a[:100], lambda a: b"PK\x03\x04junk"])
def test_tampered_bundle_is_rejected_and_the_old_model_keeps_serving(device, signed, make):
    key, archives, _ = signed
    before = device.recommend("u1", k=5)
    files = sorted(p.name for p in device.bundle.path.iterdir())
    result, _ = _sync(device, FakeServer(make(archives[2])), server_key=key)
    assert result.status == SyncStatus.BUNDLE_REJECTED and not result.ok
    assert "old model kept" in result.message and result.model_version_after == 1
    assert device.model_version == 1 and device.recommend("u1", k=5) == before
    assert sorted(p.name for p in device.bundle.path.iterdir()) == files
    assert load_bundle(device.bundle.path, public_key=key).version == 1


def test_bundle_signed_by_another_key_is_rejected(device, signed):
    _, archives, _ = signed
    other = public_key_bytes(generate_signing_key())
    result, _ = _sync(device, FakeServer(archives[2]), server_key=other)
    assert result.status == SyncStatus.BUNDLE_REJECTED and device.model_version == 1


def test_conditions_gate_the_round_and_the_download(device, signed):
    key, archives, _ = signed
    server = FakeServer(archives[2])
    result, _ = _sync(device, server, server_key=key,
                      allow=SyncConditions(unmetered=False))
    assert result.status == SyncStatus.CONDITIONS_NOT_MET and "unmetered" in result.message
    assert device.model_version == 1 and not any(p == "/v1/models/latest" for _, p, _ in server.requests)
    result, _ = _sync(device, FakeServer(), allow=SyncConditions(min_new_interactions=50))
    assert result.status == SyncStatus.CONDITIONS_NOT_MET and "50 needed" in result.message


def test_retries_with_bounded_backoff(device):
    result, sleeps = _sync(device, FakeServer(fail_first=2), backoff=Backoff(attempts=3, base=0.5))
    assert result.status == SyncStatus.NO_ROUND
    assert sleeps == [0.5, 1.0]


def test_gives_up_after_the_bounded_attempts(tmp_path, device):
    server = FakeServer(fail_first=100)
    result, sleeps = _sync(device, server, backoff=Backoff(attempts=4, base=0.1, cap=0.25))
    assert result.status == SyncStatus.OFFLINE and len(server.requests) == 4
    assert sleeps == [0.1, 0.2, 0.25]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once the socket is closed


def test_unreachable_server_returns_offline_quickly_and_nothing_is_lost(device, signed):
    count = device.store.count()
    started = time.monotonic()
    result = device.sync(f"http://127.0.0.1:{_closed_port()}", enrolment_token="tok",
                         server_key=signed[0], timeout=2.0)
    assert result.status == SyncStatus.OFFLINE and "unreachable" in result.message
    assert time.monotonic() - started < 5.0
    assert device.store.count() == count and device.model_version == 1
    assert len(device.recommend("u1", k=3)) == 3
    assert device.log("u1", device.bundle.catalogue.item_ids[9], "click")


class _Junk(BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        body = b"\x00\xffnot a protocol message{"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def junk_server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Junk)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_server_answering_garbage_is_reported_and_the_device_keeps_working(device, signed, junk_server):
    before = device.recommend("u1", k=5)
    result = device.sync(junk_server, enrolment_token="tok", server_key=signed[0], timeout=2.0)
    assert result.status == SyncStatus.SERVER_ERROR and "unusable answer" in result.message
    assert device.recommend("u1", k=5) == before and device.model_version == 1


def test_bad_arguments_are_programmer_errors(device):
    with pytest.raises(ConfigError):
        device.sync("fl.example.com")
    with pytest.raises(ConfigError):
        device.sync(URL, allow={"unmetered": True})
    with pytest.raises(ConfigError):
        SyncConditions(min_new_interactions=-1)
