"""SIGKILL the server during each stage of a round; restart it on the same data dir; nothing
acknowledged is lost and the round completes (or aborts by its deadline)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from edgerec.model.params import flatten, param_names
from edgerec.secagg import RoundAbortedError, Stage
from edgerec.sync import UPLOAD_KINDS, Backoff, RoundParticipant, SyncTimeouts, install_bundle

from srv_helpers import authority_key, cli, enrol_devices

STEPS = ("advertise", "share_keys", "masked_input", "consistency", "unmask")


def _retry(call, attempts: int = 20):
    """A direct API call right after a restart may meet a dead pooled connection."""
    from edgerec.sync import TransportError

    for i in range(attempts):
        try:
            return call()
        except TransportError:
            if i == attempts - 1:
                raise
            time.sleep(0.1)


def test_sigkill_in_every_stage_loses_nothing_acknowledged(server_factory, data_dir, tmp_path):
    server = server_factory()
    port = server.port
    token = cli(data_dir, "token", "create", "--uses", "5")
    devices = enrol_devices(server.url, token, 5)
    round_id = json.loads(cli(data_dir, "round", "open", "--min", "4", "--deadline", "60"))["round_id"]
    ann = devices[0].api.current_round()
    rng = np.random.default_rng(3)
    deltas = [rng.normal(0, 0.01, ann.vector_length) for _ in devices]
    pinned = authority_key(data_dir)
    parts = [RoundParticipant(d.api, d.identity, d.api.current_round(), deltas[i], authority_key=pinned,
                              timeouts=SyncTimeouts(poll_interval=0.05, stage_timeout=60,
                                                    backoff=Backoff(attempts=21, base=0.05, cap=0.1)))
             for i, d in enumerate(devices)]
    key_lists = {}
    for index, step in enumerate(STEPS):
        for part in parts[:3]:
            getattr(part, step)()  # acknowledged by the server (202)
        if index == 1:
            key_lists = {d.identity.device_id: d.api.download(round_id, Stage.SHARE_KEYS) for d in devices}
        server.kill()
        server = server_factory(port)
        # The enrolled devices, the round and its accepted messages are all still there.
        status = _retry(lambda: devices[0].api.round_status(round_id))
        assert status.state == "open" and status.participants == 5 - 2 * (index == 0)
        assert status.stage == UPLOAD_KINDS[Stage(index)]  # still collecting this step's stage
        last_kind, last_body = devices[0].uploads[-1]
        resend = _retry(lambda: devices[0].api.transport.request(
            "POST", f"/v1/rounds/{round_id}/messages", body=last_body,
            headers={"Authorization": f"Bearer {devices[0].identity.credential}",
                     "Content-Type": "application/octet-stream"}))
        assert resend.status == 202 and json.loads(resend.body)["duplicate"] is True, last_kind
        if index == 1:  # the replayed round hands out byte-identical key lists
            for d in devices:
                again = _retry(lambda d=d: d.api.download(round_id, Stage.SHARE_KEYS))
                assert again == key_lists[d.identity.device_id]
        for part in parts[3:]:
            getattr(part, step)()
    outcomes = [p.result() for p in parts]
    assert {o.status.state for o in outcomes} == {"done"}
    assert {o.status.survivors for o in outcomes} == {5}

    download = _retry(lambda: devices[0].api.latest_bundle())
    key = bytes.fromhex(cli(data_dir, "public-key"))
    new = install_bundle(download.archive, tmp_path / "new", key)
    base = install_bundle(data_dir_archive(data_dir, 1), tmp_path / "base", key)
    names = param_names(base.config)
    expected = flatten(base.params, names).astype(np.float64) + np.mean(deltas, axis=0)
    np.testing.assert_allclose(flatten(new.params, names), expected, atol=1e-5)
    audit = json.loads(cli(data_dir, "audit", "--json"))["rounds"]
    assert [(r["round_id"], r["state"], r["survivors"]) for r in audit] == [(round_id, "done", 5)]


def data_dir_archive(data_dir, version: int) -> bytes:
    from edgerec_server.state import SqliteBackend

    state = SqliteBackend(data_dir / "state.sqlite3")
    try:
        return state.model_archive(version)
    finally:
        state.close()


def test_round_past_its_deadline_after_a_restart_aborts_and_the_model_stays(server_factory, data_dir):
    server = server_factory()
    token = cli(data_dir, "token", "create", "--uses", "5")
    devices = enrol_devices(server.url, token, 5)
    round_id = json.loads(cli(data_dir, "round", "open", "--min", "4", "--deadline", "2"))["round_id"]
    pinned = authority_key(data_dir)
    parts = [RoundParticipant(d.api, d.identity, d.api.current_round(),
                              np.zeros(d.api.current_round().vector_length), authority_key=pinned,
                              timeouts=SyncTimeouts(poll_interval=0.05))
             for d in devices[:2]]
    for part in parts:
        part.advertise()
    server.kill()
    time.sleep(2.5)  # the advertise deadline passes while the server is down
    server = server_factory(server.port)
    give_up = time.monotonic() + 10
    while _retry(lambda: devices[0].api.round_status(round_id)).state == "open":
        assert time.monotonic() < give_up
        time.sleep(0.1)
    status = devices[0].api.round_status(round_id)
    assert status.state == "aborted" and "participants" in status.reason
    with pytest.raises(RoundAbortedError):
        parts[0].share_keys()
    assert devices[0].api.latest_bundle().model_version == 1
    assert devices[0].api.current_round() is None
