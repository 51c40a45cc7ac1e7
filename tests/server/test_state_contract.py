"""The ``StateBackend`` contract, run on both backends: SQLite (a real file) and PostgreSQL (a
real server, ``pg_helpers``). Whatever the server relies on — one transaction per call, the
constraints that stop double use, what a closed round keeps — holds on each the same way.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgerec_server._exceptions import ConflictError, ForbiddenError, StageClosedError
from edgerec_server.state import SqliteBackend, StateBackend

from state_helpers import NOW, _device, _open, _round

def test_a_token_is_found_by_its_hash_counted_and_revoked_once(state):
    token = state.add_token(b"h1", NOW, NOW + 60, 2, "two phones")
    assert state.find_token(b"h1") == token
    assert state.find_token(b"nope") is None
    with pytest.raises(ConflictError):
        state.add_token(b"h1", NOW, NOW + 60, 1, "")
    assert state.revoke_token(token.id, NOW + 1) is True
    assert state.revoke_token(token.id, NOW + 2) is False
    assert [t.revoked_at for t in state.tokens()] == [NOW + 1]


def test_enrolment_uses_the_token_and_refuses_used_up_revoked_or_expired_tokens(state):
    token = state.add_token(b"h", NOW, NOW + 60, 1, "")
    device = state.enrol(token.id, b"key-1", b"cred", NOW, NOW + 500)
    assert state.device(device.id) == device
    assert state.find_token(b"h").uses == 1
    with pytest.raises(ForbiddenError):
        state.enrol(token.id, b"key-2", b"cred", NOW, None)  # used up
    expired = state.add_token(b"e", NOW, NOW + 1, 5, "")
    with pytest.raises(ForbiddenError):
        state.enrol(expired.id, b"key-3", b"cred", NOW + 2, None)
    other = state.add_token(b"o", NOW, NOW + 60, 5, "")
    with pytest.raises(ConflictError):  # one identity key, one seat
        state.enrol(other.id, b"key-1", b"cred", NOW, None)
    assert state.find_token(b"o").uses == 0  # the failed enrolment used nothing


def test_only_certified_unrevoked_unexpired_devices_are_active(state):
    a = _device(state, b"a" * 32)
    b = _device(state, b"b" * 32, certified=False)
    c = _device(state, b"c" * 32)
    token = state.add_token(b"x", NOW, NOW + 60, 1, "")
    d = state.enrol(token.id, b"d" * 32, b"cred", NOW, NOW + 10).id
    state.set_certificate(d, b"cert")
    assert state.revoke_device(c, NOW) is True and state.revoke_device(c, NOW) is False
    assert [x.id for x in state.active_devices(NOW + 5)] == [a, d]
    assert [x.id for x in state.active_devices(NOW + 20)] == [a]
    assert [x.id for x in state.uncertified_devices()] == [b]
    assert state.certificates() == [(a, b"cert-aaaa"), (c, b"cert-cccc"), (d, b"cert")]


def test_concurrent_enrolments_never_over_use_a_token(place):
    backends = [_open(*place) for _ in range(4)]
    token = backends[0].add_token(b"shared", NOW, NOW + 60, 3, "")
    wins: list[int] = []
    refusals: list[Exception] = []

    def enrol(i: int) -> None:
        try:
            wins.append(backends[i % 4].enrol(token.id, bytes([i]) * 32, b"c", NOW, None).id)
        except ForbiddenError as exc:
            refusals.append(exc)

    threads = [threading.Thread(target=enrol, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 3 and len(refusals) == 9
    assert backends[1].find_token(b"shared").uses == 3
    for b in backends:
        b.close()


# -- rounds and messages --------------------------------------------------------------------------
def test_a_round_keeps_its_parameters_members_and_one_message_per_device_and_stage(state):
    a, b = _device(state, b"a" * 32), _device(state, b"b" * 32)
    record = _round(state, [a, b])
    assert (record.state, record.stage, record.population, record.vector_length) == ("open", 0, 7, 10)
    assert record.params == {"clip": 1.0, "frozen": ["a"]} and record.seed == b"s" * 32
    assert state.round(record.id) == record and state.rounds("open") == [record]
    assert state.members(record.id) == {a: b"a" * 32, b: b"b" * 32}
    m = state.add_message(record.id, a, 0, b"body-a", b"d" * 32, NOW + 1)
    assert state.message_digest(record.id, a, 0) == b"d" * 32
    assert state.message_digest(record.id, b, 0) is None
    with pytest.raises(ConflictError):
        state.add_message(record.id, a, 0, b"other", b"e" * 32, NOW + 2)
    state.set_stage(record.id, 1, NOW + 3)
    assert (state.round(record.id).stage, state.round(record.id).stage_started_at) == (1, NOW + 3)
    assert state.messages(record.id) == [m]


def test_only_one_round_is_open_even_when_two_servers_open_at_once(place):
    first, second = _open(*place), _open(*place)
    device = _device(first)
    outcomes: list[str] = []

    def open_one(backend: StateBackend) -> None:
        try:
            _round(backend, [device])
            outcomes.append("opened")
        except ConflictError:
            outcomes.append("refused")

    threads = [threading.Thread(target=open_one, args=(b,)) for b in (first, second, first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["opened", "refused", "refused", "refused"]
    assert len(second.rounds("open")) == 1
    first.close()
    second.close()


def test_an_aborted_round_keeps_digests_but_no_bodies_and_stays_closed(state):
    a = _device(state)
    record = _round(state, [a])
    state.add_message(record.id, a, 0, b"secret", b"d" * 32, NOW)
    state.abort_round(record.id, NOW + 5, "too few", 1)
    closed = state.round(record.id)
    assert (closed.state, closed.reason, closed.participants, closed.closed_at) == (
        "aborted", "too few", 1, NOW + 5)
    [kept] = state.messages(record.id)
    assert kept.body is None and kept.sha256 == b"d" * 32 and kept.size == 6
    state.abort_round(record.id, NOW + 9, "again", 0)  # a closed round does not change
    assert state.round(record.id).reason == "too few"
    _round(state, [a])  # and a new one may open


def test_completing_a_round_publishes_the_model_and_optimizer_state_in_one_step(state):
    a = _device(state)
    state.add_model(1, None, NOW, b"archive-1", "sha1", None)
    record = _round(state, [a])
    for stage in (1, 2, 3):
        assert state.set_stage(record.id, stage, NOW)
    state.add_message(record.id, a, 3, b"masked", b"d" * 32, NOW)
    arrays = {"m": np.arange(6, dtype=np.float32).reshape(2, 3), "v": np.ones(3)}
    state.complete_round(record.id, NOW + 9, participants=3, survivors=2, epsilon=1.5,
                         model_version=2, archive=b"archive-2", sha256="sha2", strategy="fedadam",
                         strategy_step=4, strategy_arrays=arrays)
    done = state.round(record.id)
    assert (done.state, done.out_version, done.survivors, done.epsilon) == ("done", 2, 2, 1.5)
    assert state.latest_model().version == 2 and state.model(2).parent == 1
    assert state.model_archive(2) == b"archive-2" and state.model(2).size == 9
    step, stored = state.strategy_state("fedadam")
    assert step == 4 and set(stored) == {"m", "v"}
    np.testing.assert_array_equal(stored["m"], arrays["m"])
    assert all(m.body is None for m in state.messages(record.id))
    with pytest.raises(ConflictError):  # a round completes once
        state.complete_round(record.id, NOW, participants=1, survivors=1, epsilon=1.0,
                             model_version=3, archive=b"x", sha256="s", strategy="fedadam",
                             strategy_step=5, strategy_arrays={})
    assert state.latest_model().version == 2 and state.strategy_state("fedadam")[0] == 4


def test_a_model_version_is_published_once(state):
    state.add_model(1, None, NOW, b"a", "s", None)
    with pytest.raises(ConflictError):
        state.add_model(1, None, NOW, b"b", "t", None)
    assert state.model_archive(1) == b"a" and state.model(9) is None and state.model_archive(9) is None


def test_the_operations_log_keeps_order_and_limits(state):
    for i in range(5):
        state.log_event("tick", {"i": i, "nested": {"ok": True}}, NOW + i)
    assert [e.detail["i"] for e in state.events()] == [0, 1, 2, 3, 4]
    assert [e.detail["i"] for e in state.events(limit=2)] == [3, 4]
    assert state.events()[0].detail["nested"] == {"ok": True}


def test_what_one_connection_commits_another_reads(place):
    writer, reader = _open(*place), _open(*place)
    _device(writer)
    assert len(reader.active_devices(NOW)) == 1
    writer.close()
    reader.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2048), stamp=st.floats(0, 2e9, allow_nan=False),
       note=st.text(max_size=40).filter(lambda s: "\x00" not in s))
def test_values_round_trip_exactly(state, body, stamp, note):
    # One database serves every example: a random prefix keeps token hashes unique.
    token = state.add_token(os.urandom(16) + body, stamp, stamp + 1, 1, note)
    assert state.find_token(token.token_hash) == token
    state.log_event("note", {"note": note, "stamp": stamp}, stamp)
    assert state.events(limit=1)[0].detail == {"note": note, "stamp": stamp}


def test_a_retried_enrolment_replaces_the_credential_only_on_its_own_valid_token(state):
    token = state.add_token(b"t", NOW, NOW + 60, 1, "")
    device = state.enrol(token.id, b"key", b"old", NOW, None)
    again = state.reissue_credential(b"key", token.id, b"new", NOW + 1, NOW + 99)
    assert (again.id, again.credential_hash, again.expires_at) == (device.id, b"new", NOW + 99)
    assert state.find_token(b"t").uses == 1  # the same enrolment: no use spent
    other = state.add_token(b"o", NOW, NOW + 60, 1, "")
    assert state.reissue_credential(b"key", other.id, b"x", NOW, None).credential_hash == b"new"
    assert state.reissue_credential(b"key", token.id, b"late", NOW + 61, None).credential_hash == b"new"
    state.revoke_device(device.id, NOW + 2)
    assert state.reissue_credential(b"key", token.id, b"y", NOW + 3, None).credential_hash == b"new"
    assert state.reissue_credential(b"nobody", token.id, b"z", NOW, None) is None


def test_membership_is_per_round(state):
    a, b = _device(state, b"a" * 32), _device(state, b"b" * 32)
    record = _round(state, [a])
    assert state.is_member(record.id, a) and not state.is_member(record.id, b)
    assert not state.is_member(record.id + 1, a)


# -- replicas: claiming a stage to close it --------------------------------------------------
def test_a_frozen_or_other_stage_takes_no_message_and_one_replica_claims_it(state):
    a, b = _device(state, b"a" * 32), _device(state, b"b" * 32)
    record = _round(state, [a, b])
    state.add_message(record.id, a, 0, b"advert", b"d" * 32, NOW + 1)
    with pytest.raises(StageClosedError):
        state.add_message(record.id, b, 1, b"early", b"e" * 32, NOW + 1)
    assert state.stage_activity(record.id, 0) == (1, NOW + 1)
    assert state.claim_stage(record.id, 0, "replica-1", NOW + 2, 10.0)
    assert not state.claim_stage(record.id, 0, "replica-2", NOW + 3, 10.0)  # claim holds
    assert state.claim_stage(record.id, 0, "replica-1", NOW + 3, 10.0)  # its owner may renew
    frozen = state.round(record.id)
    assert (frozen.frozen, frozen.lease_owner, frozen.lease_until) == (True, "replica-1", NOW + 13)
    with pytest.raises(StageClosedError):
        state.add_message(record.id, b, 0, b"late", b"f" * 32, NOW + 4)
    assert not state.set_stage(record.id, 1, NOW + 5, owner="replica-2")
    assert state.claim_stage(record.id, 0, "replica-2", NOW + 14, 10.0)  # lapsed: taken over
    assert not state.set_stage(record.id, 1, NOW + 15, owner="replica-1")
    assert state.set_stage(record.id, 1, NOW + 15, owner="replica-2")
    opened = state.round(record.id)
    assert (opened.stage, opened.frozen, opened.lease_owner) == (1, False, None)
    assert not state.set_stage(record.id, 1, NOW + 16)  # only from the stage before
    assert not state.claim_stage(record.id, 0, "replica-1", NOW + 16, 10.0)  # stage 0 is over
    state.add_message(record.id, b, 1, b"shares", b"g" * 32, NOW + 17)
    assert [m.device_id for m in state.messages(record.id, stage=1)] == [b]
    assert [m.device_id for m in state.messages(record.id, stage=0)] == [a]


def test_only_the_claiming_replica_completes_the_round(state):
    a = _device(state)
    state.add_model(1, None, NOW, b"archive-1", "sha1", None)
    record = _round(state, [a])
    assert state.claim_stage(record.id, 0, "replica-1", NOW, 10.0)
    publish = dict(participants=1, survivors=1, epsilon=1.0, model_version=2, archive=b"m",
                   sha256="s", strategy="fedavg", strategy_step=1, strategy_arrays={})
    with pytest.raises(ConflictError):
        state.complete_round(record.id, NOW, owner="replica-2", **publish)
    assert state.latest_model().version == 1 and state.round(record.id).state == "open"
    state.complete_round(record.id, NOW, owner="replica-1", **publish)
    assert state.round(record.id).state == "done"


def test_no_message_joins_a_stage_after_it_froze_under_concurrent_uploads(place):
    writers = [_open(*place) for _ in range(4)]
    closer = _open(*place)
    ids = [_device(writers[0], bytes([i + 1]) * 32) for i in range(40)]
    record = _round(writers[0], ids)
    outcomes: dict[int, str] = {}

    def upload(w: int) -> None:
        for device in ids[w::4]:
            try:
                writers[w].add_message(record.id, device, 0, b"advert", b"d" * 32, NOW)
                outcomes[device] = "stored"
            except StageClosedError:
                outcomes[device] = "closed"

    threads = [threading.Thread(target=upload, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    assert closer.claim_stage(record.id, 0, "closer", NOW, 60.0)
    at_freeze = {m.device_id for m in closer.messages(record.id, stage=0)}
    for t in threads:
        t.join()
    stored = {d for d, how in outcomes.items() if how == "stored"}
    assert at_freeze == stored == {m.device_id for m in closer.messages(record.id, stage=0)}
    for b in (*writers, closer):
        b.close()


def test_a_closed_round_gives_its_message_space_back_to_the_sqlite_file(tmp_path):
    import sqlite3

    state = SqliteBackend(tmp_path / "state.sqlite3")
    ids = [_device(state, i.to_bytes(2, "big") * 16) for i in range(1, 201)]
    pages = lambda: sqlite3.connect(tmp_path / "state.sqlite3").execute(  # noqa: E731
        "PRAGMA page_count").fetchone()[0]
    before = pages()
    record = _round(state, ids)
    for d in ids[:20]:  # large bodies (overflow pages)...
        state.add_message(record.id, d, 0, os.urandom(200_000), b"d" * 32, NOW)
    for d in ids[20:]:  # ...and small ones, which share pages with each other
        state.add_message(record.id, d, 0, os.urandom(15_000), b"d" * 32, NOW)
    assert pages() > before + (20 * 200_000 + 180 * 15_000) // 4096
    state.abort_round(record.id, NOW, "done with it", 200)
    # A few pages of digests, members and the round; not 4.4 MB of bodies, nor sparse pages.
    assert pages() < before + 40
    state.close()


# -- rollout statements ---------------------------------------------------------------------------
