"""Long polling on a real server process: a poll that asks to be held (``Prefer: wait=N``) is
answered the moment the stage closes, or after N seconds with a ``Retry-After``; one that does
not ask is answered at once, as before."""

from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np

from edgerec.sync import RoundParticipant, ServerApi
from edgerec_server.longpoll import preferred_wait

from srv_helpers import authority_key, cli, enrol_devices


def test_the_wait_a_device_prefers_is_read_and_capped():
    assert preferred_wait({"prefer": "wait=8"}, 25.0) == 8.0
    assert preferred_wait({"prefer": "respond-async, wait=100"}, 25.0) == 25.0
    assert preferred_wait({"prefer": "handling=lenient"}, 25.0) == 0.0
    assert preferred_wait({"prefer": "wait=-3"}, 25.0) == 0.0
    assert preferred_wait({}, 25.0) == 0.0


def test_a_held_poll_is_answered_when_the_stage_closes(server, data_dir):
    token = cli(data_dir, "token", "create", "--uses", "4")
    devices = enrol_devices(server.url, token, 4)
    opened = json.loads(cli(data_dir, "round", "open", "--min", "4", "--noise", "0",
                            "--deadlines", "60,60,60,60"))
    pinned = authority_key(data_dir)
    parts = [RoundParticipant(d.api, d.identity, d.api.current_round(),
                              np.zeros(opened["federated_weights"]), authority_key=pinned)
             for d in devices]
    for p in parts[:3]:
        p.advertise()
    url = f"{server.url}/v1/rounds/{opened['round_id']}/messages/key_list"
    auth = {"Authorization": f"Bearer {devices[0].identity.credential}"}

    started = time.monotonic()
    answer = httpx.get(url, headers=auth, timeout=30)  # no Prefer: answered at once
    assert answer.status_code == 204 and "retry-after" in answer.headers
    assert time.monotonic() - started < 20

    started = time.monotonic()
    answer = httpx.get(url, headers={**auth, "Prefer": "wait=2"}, timeout=30)  # held, nothing came
    assert answer.status_code == 204 and time.monotonic() - started >= 1.9
    assert int(answer.headers["retry-after"]) >= 1

    threading.Timer(1.0, parts[3].advertise).start()  # the last advert closes the stage
    started = time.monotonic()
    answer = httpx.get(url, headers={**auth, "Prefer": "wait=25"}, timeout=60)
    held = time.monotonic() - started
    assert answer.status_code == 200 and answer.content  # the key list, not a 204
    assert 0.9 <= held < 25  # held until the close, not for the whole wait


class _Counting:
    """A real transport that counts the requests a device makes."""

    def __init__(self, url: str) -> None:
        from edgerec.sync import HttpxTransport

        self.inner, self.requests = HttpxTransport(url, timeout=60.0), []

    def request(self, method, path, *, body=None, headers=None):  # type: ignore[no-untyped-def]
        self.requests.append((method, path))
        return self.inner.request(method, path, body=body, headers=headers)


def _held_devices(url: str, token: str, n: int, hold: float) -> list:
    """(api holding its polls and uploads ``hold`` s, identity, counting transport) per device."""
    out = []
    for d in enrol_devices(url, token, n):
        transport = _Counting(url)
        out.append((ServerApi(transport, d.identity.credential, hold=hold), d.identity, transport))
    return out


def _all_at_once(calls) -> list:  # type: ignore[no-untyped-def]
    """Run the calls side by side (held uploads wait for each other) and return their results."""
    results: list = [None] * len(calls)

    def run(i: int) -> None:
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_a_held_upload_is_answered_with_what_the_device_fetches_next(server, data_dir):
    """With ``then`` and ``Prefer: wait`` the upload is the stage's poll too: a whole round is
    five requests a device (one per stage) instead of ten, and ends with the same model."""
    token = cli(data_dir, "token", "create", "--uses", "4")
    devices = _held_devices(server.url, token, 4, hold=25)
    opened = json.loads(cli(data_dir, "round", "open", "--min", "4", "--noise", "0",
                            "--deadlines", "60,60,60,60"))
    pinned = authority_key(data_dir)
    parts = [RoundParticipant(api, identity, api.current_round(),
                              np.full(opened["federated_weights"], 0.01 * (i + 1)),
                              authority_key=pinned, hold_uploads=True)
             for i, (api, identity, _) in enumerate(devices)]
    for _, _, transport in devices:
        transport.requests.clear()
    for step in ("advertise", "share_keys", "masked_input", "consistency", "unmask"):
        _all_at_once([getattr(p, step) for p in parts])
    results = _all_at_once([p.result for p in parts])
    assert {(r.status.state, r.status.survivors) for r in results} == {("done", 4)}
    for _, _, transport in devices:  # one upload a stage, and not one poll
        assert [m for m, _ in transport.requests] == ["POST"] * 5, transport.requests
        assert all("?then=" in path for _, path in transport.requests)


def test_a_held_upload_with_nothing_ready_answers_the_ack_and_a_bad_then_stores_nothing(
        server, data_dir):
    token = cli(data_dir, "token", "create", "--uses", "4")
    devices = _held_devices(server.url, token, 4, hold=2)
    opened = json.loads(cli(data_dir, "round", "open", "--min", "4", "--noise", "0",
                            "--deadlines", "60,60,60,60"))
    pinned = authority_key(data_dir)
    api, identity, _ = devices[0]
    part = RoundParticipant(api, identity, api.current_round(),
                            np.zeros(opened["federated_weights"]), authority_key=pinned,
                            hold_uploads=True)
    started = time.monotonic()
    part.advertise()  # the other three have not advertised: held 2 s, then the ack
    assert time.monotonic() - started >= 1.9 and part._ahead is None

    sent: list = []

    def capture(kind, body):  # type: ignore[no-untyped-def]
        sent.append(body)
        raise RuntimeError("captured, not sent")

    other, other_identity, _ = devices[1]
    spy = ServerApi(other.transport, other.credential, on_upload=capture, hold=2)
    try:
        RoundParticipant(spy, other_identity, other.current_round(),
                         np.zeros(opened["federated_weights"]), authority_key=pinned,
                         hold_uploads=True).advertise()
    except RuntimeError:
        pass
    url = f"{server.url}/v1/rounds/{opened['round_id']}/messages"
    auth = {"Authorization": f"Bearer {other.credential}", "Content-Type": "application/octet-stream"}
    refused = httpx.post(url + "?then=model", content=sent[0], headers=auth, timeout=30)
    assert refused.status_code == 400 and "then must be one of" in refused.json()["message"]
    stored = httpx.post(url, content=sent[0], headers=auth, timeout=30)
    assert stored.status_code == 202 and stored.json()["duplicate"] is False  # the 400 kept nothing
