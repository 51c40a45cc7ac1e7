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
from edgerec.sync import (Backoff, EnrolResponse, ErrorBody, Response, RoundAnnouncement,
                          SyncConditions, SyncRuntime, SyncSession, SyncStatus, SyncTimeouts,
                          encode, pack_bundle)
from edgerec.sync.device import SyncRecords
from edgerec.sync.transport import check_server_url

URL = "https://fl.test"  # plain http is refused for non-loopback hosts (see test_http_*)


@pytest.fixture(scope="module")
def signed(tmp_path_factory, trained_bundle):
    """(public key, {version: archive}, folder of version 1) signed by one server key.

    ``archives["1b"]`` is another, validly signed bundle that also says it is version 1."""
    key = generate_signing_key()
    src = load_bundle(trained_bundle)
    archives, folders = {}, {}
    for version, hyper in ((1, {}), (2, {}), ("1b", {"other": True})):
        folder = tmp_path_factory.mktemp(f"v{version}") / "bundle"
        write_bundle(folder, src.params, src.catalogue, src.config,
                     model_version=1 if version == "1b" else version, hyperparameters=hyper,
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


def _sync(rec, transport, backoff=None, **kw):
    sleeps: list[float] = []
    kw.setdefault("enrolment_token", "tok")
    if backoff is not None:
        kw["timeouts"] = SyncTimeouts(backoff=backoff)
    runtime = SyncRuntime(sleep=sleeps.append, jitter=lambda: 1.0)
    result = rec.sync(URL, transport=transport, runtime=runtime, **kw)
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


def test_new_events_are_counted_from_a_mark_that_pruning_and_erasure_cannot_lower(tmp_path, device):
    """30 events, a round, then a restart with max_rows=10 prunes 20: 3 new events are 3 new,
    not 13 - 30 = -17 (which would hold the device out of rounds until 20 more arrived)."""
    items = device.bundle.catalogue.item_ids
    device.log_many([{"user": "u2", "item": items[i % 7], "ts": 1000.0 + i} for i in range(25)])
    SyncRecords(device.device_state, device.clock).save_mark(device.store.high_water_mark())  # as a round does
    folder, path = device.bundle.root, device.store.path
    device.close()
    with edgerec.open(path, bundle=folder, retention=edgerec.Retention(max_rows=10)) as rec:
        assert rec.store.count() == 10
        rec.log_many([{"user": "u3", "item": items[i]} for i in range(3)])
        assert _sync(rec, FakeServer(), allow=SyncConditions(min_new_interactions=3))[0].status == SyncStatus.NO_ROUND
        rec.forget("u1")
        result, _ = _sync(rec, FakeServer(), allow=SyncConditions(min_new_interactions=4))
        assert result.status == SyncStatus.CONDITIONS_NOT_MET and "3 new" in result.message, result.message


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
                         server_key=signed[0], timeouts=SyncTimeouts(request=2.0))
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
    result = device.sync(junk_server, enrolment_token="tok", server_key=signed[0], timeouts=SyncTimeouts(request=2.0))
    assert result.status == SyncStatus.SERVER_ERROR and "unusable answer" in result.message
    assert device.recommend("u1", k=5) == before and device.model_version == 1


def test_bad_arguments_are_programmer_errors(device):
    with pytest.raises(ConfigError):
        device.sync("fl.example.com")
    with pytest.raises(ConfigError):
        device.sync(URL, allow={"unmetered": True})
    with pytest.raises(ConfigError):
        SyncConditions(min_new_interactions=-1)


# -- rollback and freeze protection: only the signed manifest decides what is newer ---------------
def _files(rec):
    return {p.name: p.read_bytes() for p in rec.bundle.path.iterdir()}


def _records(rec):
    return SyncRecords(rec._state, rec._clock)


def test_the_installed_version_is_recorded_from_the_opened_bundle_then_from_installs(device, signed):
    key, archives, _ = signed
    assert _records(device).installed_version() is None
    _sync(device, FakeServer(None), server_key=key)  # the server has no model yet (404)
    assert _records(device).installed_version() == 1  # the bundle the device was opened with
    _sync(device, FakeServer(archives[2]), server_key=key)
    assert _records(device).installed_version() == 2
    assert _records(device).raise_installed_version(1) == 2  # never lowered


def test_an_older_signed_bundle_with_a_header_saying_newer_is_refused(device, signed):
    key, archives, _ = signed
    assert _sync(device, FakeServer(archives[2]), server_key=key)[0].status == SyncStatus.BUNDLE_INSTALLED
    files, before = _files(device), device.recommend("u1", k=5)
    result, _ = _sync(device, FakeServer(archives[1], version=9), server_key=key)  # header: 9
    assert result.status == SyncStatus.BUNDLE_REJECTED and not result.ok
    assert "rollback refused" in result.message and "signed model 1" in result.message
    assert "model 2 this device has installed" in result.message
    assert result.model_version_after == 2 and device.model_version == 2
    assert _files(device) == files and device.recommend("u1", k=5) == before
    assert _records(device).etag() == '"v2"'  # the refused archive's ETag is not remembered


def test_a_newer_signed_bundle_with_a_header_saying_older_is_installed(device, signed):
    key, archives, _ = signed
    result, _ = _sync(device, FakeServer(archives[2], version=0), server_key=key)  # header: 0
    assert result.status == SyncStatus.BUNDLE_INSTALLED and result.model_version_after == 2
    assert "installed model 2" in result.message
    assert load_bundle(device.bundle.path, public_key=key).version == 2


def test_another_signed_bundle_with_the_installed_version_is_not_installed(device, signed):
    # Equal is not newer: nothing is installed. Not an error either: it is what a server sends
    # when it re-signed the bundle the app shipped (edgerec-server init imports it as version 1).
    key, archives, _ = signed
    files = _files(device)
    result, _ = _sync(device, FakeServer(archives["1b"], version=2), server_key=key)  # header: 2
    assert result.status == SyncStatus.NO_ROUND and result.model_version_after == 1
    assert device.model_version == 1 and _files(device) == files
    assert device.bundle.manifest.hyperparameters == {}


def test_the_bundle_already_running_is_up_to_date_not_an_error(device, signed):
    key, archives, _ = signed
    files = _files(device)
    result, _ = _sync(device, FakeServer(archives[1], version=1), server_key=key)
    assert result.status == SyncStatus.NO_ROUND and result.ok and device.model_version == 1
    assert _files(device) == files and _records(device).etag() == '"v1"'  # next time: 304


def test_the_version_installed_before_is_refused_once_a_newer_one_runs(device, signed):
    key, archives, _ = signed
    _sync(device, FakeServer(archives[2]), server_key=key)
    result, _ = _sync(device, FakeServer(archives["1b"], version=3), server_key=key)
    assert result.status == SyncStatus.BUNDLE_REJECTED and "rollback refused" in result.message
    assert device.model_version == 2


def test_the_recorded_version_is_the_floor_even_when_the_running_bundle_is_older(device, signed):
    # E.g. the app put an old bundle folder back: the server still cannot go below what the
    # device once installed.
    key, archives, _ = signed
    _records(device).raise_installed_version(3)
    result, _ = _sync(device, FakeServer(archives[2], version=4), server_key=key)
    assert result.status == SyncStatus.BUNDLE_REJECTED and "not newer than model 3" in result.message
    assert device.model_version == 1


class _Announcing(FakeServer):
    """A FakeServer that also announces a round built on ``base`` (an older model)."""

    def __init__(self, archive: bytes, version: int, base: int):
        super().__init__(archive, version)
        self.base = base

    def request(self, method, path, *, body=None, headers=None):
        if path != "/v1/rounds/current":
            return super().request(method, path, body=body, headers=headers)
        self.requests.append((method, path, body))
        ann = RoundAnnouncement(
            round_id=5, vector_length=10, min_participants=2, max_participants=4, threshold=2,
            graph="complete", degree=None, clip=1.0, noise_multiplier=0.0, min_survivors=2,
            base_model_version=self.base, stage="advertise", stage_deadline=time.time() + 60)
        return Response(200, {}, encode(ann))


def test_a_round_on_an_older_model_installs_nothing(device, signed):
    key, archives, _ = signed
    _sync(device, FakeServer(archives[2]), server_key=key)
    files = _files(device)
    server = _Announcing(archives[2], version=1, base=1)  # also a header saying 1
    result, _ = _sync(device, server, server_key=key)
    assert result.status == SyncStatus.MODEL_OUT_OF_DATE and "builds on model 1" in result.message
    assert device.model_version == 2 and _files(device) == files
    assert not any(p.endswith("/messages") for _, p, _ in server.requests)  # nothing was sent


@pytest.mark.parametrize("url", [
    "http://fl.example.com", "http://10.0.0.2:8000", "http://127.0.0.1.evil.test",
    "http://localhost.evil.test", "http://127.0.0.1@evil.test/", "http://evil.test#@127.0.0.1",
    "http://[fe80::1]:80", "ftp://127.0.0.1", "http://", "http://127.0.0.1:bad"])
def test_http_to_a_non_loopback_host_is_refused(device, url):
    with pytest.raises(ConfigError):
        SyncSession(device, url, transport=FakeServer())
    with pytest.raises(ConfigError):
        device.sync(url, transport=FakeServer())


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000", "http://127.8.9.10", "http://localhost:9", "http://LocalHost.",
    "http://[::1]:8000/", "http://[::ffff:127.0.0.1]", "https://fl.example.com",
    "https://10.0.0.2:8443/base"])
def test_loopback_http_and_any_https_are_accepted(device, url):
    assert check_server_url(url) == url
    SyncSession(device, url, transport=FakeServer()).close()


def test_http_to_a_host_the_app_names_is_accepted(device, signed):
    lab = "http://Lab.Test:8000"
    assert check_server_url(lab, ("lab.test",)) == lab
    with pytest.raises(ConfigError, match="insecure_http_hosts"):
        check_server_url("http://lab.test.evil.test", ("lab.test",))  # by exact name only
    with pytest.raises(ConfigError, match="tuple of host names"):
        check_server_url(lab, "lab.test")  # a str would mean its letters
    with pytest.raises(ConfigError):
        check_server_url(lab, ("",))
    result = device.sync(lab, transport=FakeServer(signed[1][2]), enrolment_token="tok",
                         server_key=signed[0], insecure_http_hosts=("lab.test",))
    assert result.status == SyncStatus.BUNDLE_INSTALLED
