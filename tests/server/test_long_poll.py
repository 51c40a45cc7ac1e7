"""Long polling on a real server process: a poll that asks to be held (``Prefer: wait=N``) is
answered the moment the stage closes, or after N seconds with a ``Retry-After``; one that does
not ask is answered at once, as before."""

from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np

from edgerec.sync import RoundParticipant
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
