"""Polling at the server's pace: ``Retry-After`` is surfaced by ``ServerApi``, followed with
jitter and within bounds by every wait and retry, and a device waits for a stage until the
announced deadline (plus grace), never past ``max_wait``. All on a fake clock."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgerec.secagg import Stage
from edgerec.sync import (Backoff, ErrorBody, NotYet, Response, RoundAnnouncement,
                          RoundParticipant, RoundStatus, ServerApi, ServerRejectedError,
                          SyncRuntime, SyncTimeouts, TransportError, encode)
from edgerec.sync.retry import parse_retry_after
from edgerec.sync.waiting import poll_until

from test_sync_client import FakeServer, _sync, device, signed  # noqa: F401  (fixtures)

EPOCH = 1_700_000_000.0  # the fake wall clock's start


class FakeTime:
    """Monotonic and wall clocks that move only when the code under test sleeps."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.elapsed

    def wall(self) -> float:
        return EPOCH + self.elapsed

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.elapsed += seconds

    def runtime(self, jitter: float = 0.5) -> SyncRuntime:
        return SyncRuntime(clock=self.clock, wall_clock=self.wall, sleep=self.sleep,
                           jitter=lambda: jitter)


def _answers(*answers):
    """A poll returning ``answers`` in turn, then NotYet (no hint) for ever; counts its calls."""
    queue = list(answers)
    calls = []

    def poll():
        calls.append(1)
        return queue.pop(0) if queue else NotYet()

    poll.calls = calls  # type: ignore[attr-defined]
    return poll


# -- the server's hint, as ServerApi surfaces it ---------------------------------------------------
class Stub:
    def __init__(self, *answers: Response) -> None:
        self.answers = list(answers)

    def request(self, method, path, *, body=None, headers=None):
        return self.answers.pop(0)


def test_not_yet_answers_carry_the_servers_retry_after():
    api = ServerApi(Stub(Response(204, {"retry-after": "7"}, b""), Response(204, {}, b""),
                         Response(204, {"retry-after": "3"}, b""), Response(204, {}, b"")), "d1.x")
    assert api.poll_round() == NotYet(7.0)
    assert api.poll_round() == NotYet(None)
    assert api.poll_message(3, Stage.SHARE_KEYS) == NotYet(3.0)
    assert api.download(3, Stage.SHARE_KEYS) is None  # the old form still says "not yet" as None


def test_an_open_round_is_not_yet_and_a_settled_one_is_its_status():
    open_ = RoundStatus(3, "open", "unmask", 5)
    done = RoundStatus(3, "done", "unmask", 5, 5, 1, 2)
    api = ServerApi(Stub(Response(200, {"retry-after": "2"}, encode(open_)),
                         Response(200, {}, encode(done))), "d1.x")
    assert api.poll_outcome(3) == NotYet(2.0)
    assert api.poll_outcome(3) == done


def test_error_answers_carry_retry_after():
    busy = Response(503, {"retry-after": "12"}, encode(ErrorBody("busy", "try later")))
    with pytest.raises(ServerRejectedError) as err:
        ServerApi(Stub(busy), "d1.x").round_status(3)
    assert (err.value.status, err.value.retry_after) == (503, 12.0)


@pytest.mark.parametrize("raw, seconds", [
    ("5", 5.0), (" 0 ", 0.0), ("1.5", 1.5), ("-1", None), ("inf", None), ("nan", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", None), ("", None)])
def test_retry_after_is_read_in_seconds_and_garbage_is_no_hint(raw, seconds):
    assert parse_retry_after({"retry-after": raw}) == seconds
    assert parse_retry_after({}) is None


# -- the pause between polls --------------------------------------------------------------------
@given(hint=st.one_of(st.none(), st.floats(0, 1e12)), remaining=st.floats(0, 1e5),
       poll=st.floats(0, 10), draw=st.floats(0, 1, exclude_max=True))
def test_a_pause_follows_the_hint_with_jitter_within_the_devices_bounds(hint, remaining, poll, draw):
    timeouts = SyncTimeouts(poll_interval=poll)
    pause = timeouts.pause(hint, remaining, lambda: draw)
    assert 0 <= pause <= remaining  # never past the wait's own deadline
    if hint is None:
        assert pause == min(poll, remaining)  # no header: the device's own interval
    else:
        wanted = max(poll, hint * (0.5 + draw))
        assert pause == min(wanted, remaining)
        assert pause >= min(poll, remaining)  # never below poll_interval
        assert pause <= max(poll, 1.5 * hint)  # jitter in [0.5, 1.5) x hint


def test_the_hint_is_followed_with_jitter_and_no_header_means_poll_interval():
    fake = FakeTime()
    poll = _answers(NotYet(4.0), NotYet(4.0), NotYet(None), "key list")
    timeouts = SyncTimeouts(poll_interval=0.5, stage_timeout=60)
    draws = iter([0.0, 0.99, 0.5])
    runtime = SyncRuntime(clock=fake.clock, wall_clock=fake.wall, sleep=fake.sleep,
                          jitter=lambda: next(draws))
    assert poll_until(poll, "it", timeouts=timeouts, runtime=runtime) == "key list"
    assert fake.sleeps == pytest.approx([2.0, 5.96, 0.5])


def test_a_small_hint_never_polls_faster_than_poll_interval():
    fake = FakeTime()
    poll = _answers(NotYet(0.0), NotYet(0.1), "ok")
    poll_until(poll, "it", timeouts=SyncTimeouts(poll_interval=2.0), runtime=fake.runtime())
    assert fake.sleeps == [2.0, 2.0]


# -- how long a device waits ----------------------------------------------------------------------
def test_a_device_keeps_waiting_until_the_announced_deadline_plus_grace():
    fake = FakeTime()
    timeouts = SyncTimeouts(poll_interval=1.0, stage_timeout=10, stage_grace=5, max_wait=1000)
    poll = _answers(*[NotYet(3.0)] * 40, "closed")  # the stage closes after ~120 s
    got = poll_until(poll, "it", timeouts=timeouts, runtime=fake.runtime(),
                     stage_deadline=EPOCH + 118)
    assert got == "closed" and fake.elapsed > 100  # far beyond its stage_timeout of 10 s


def test_a_wait_gives_up_at_the_announced_deadline_plus_grace_and_not_before():
    fake = FakeTime()
    timeouts = SyncTimeouts(poll_interval=1.0, stage_timeout=10, stage_grace=5, max_wait=1000)
    poll = _answers()
    with pytest.raises(TransportError, match="no answer for the key list"):
        poll_until(poll, "the key list", timeouts=timeouts, runtime=fake.runtime(),
                   stage_deadline=EPOCH + 100)
    assert fake.elapsed == pytest.approx(105)  # the deadline plus grace, exactly: never past it


def test_an_early_or_unknown_deadline_still_waits_stage_timeout():
    for deadline in (None, EPOCH - 50, math.nan, math.inf):
        fake = FakeTime()
        with pytest.raises(TransportError):
            poll_until(_answers(), "it", runtime=fake.runtime(), stage_deadline=deadline,
                       timeouts=SyncTimeouts(poll_interval=1.0, stage_timeout=10))
        assert fake.elapsed == pytest.approx(10)


@given(deadline=st.floats(0, 1e15), hint=st.floats(0, 1e12))
def test_a_lying_deadline_or_hint_holds_a_device_no_longer_than_max_wait(deadline, hint):
    fake = FakeTime()
    timeouts = SyncTimeouts(poll_interval=1.0, stage_timeout=10, max_wait=300)
    with pytest.raises(TransportError):
        poll_until(lambda: NotYet(hint), "it", timeouts=timeouts, runtime=fake.runtime(),
                   stage_deadline=EPOCH + deadline, refresh=lambda: EPOCH + deadline + 1)
    assert 10 - 1e-9 <= fake.elapsed <= 300 + 1e-9
    assert all(s <= 300 for s in fake.sleeps)


def test_a_hostile_huge_retry_after_is_capped_by_the_waits_own_deadline():
    fake = FakeTime()
    poll = _answers(NotYet(1e9), "answer")
    got = poll_until(poll, "it", timeouts=SyncTimeouts(stage_timeout=30), runtime=fake.runtime())
    assert got == "answer" and fake.sleeps == [30.0]  # asked once more at its own deadline


def test_a_later_stage_deadline_from_the_server_extends_the_wait_once_per_deadline():
    fake = FakeTime()
    timeouts = SyncTimeouts(poll_interval=1.0, stage_timeout=10, stage_grace=5, max_wait=1000)
    asked = []

    def refresh():
        asked.append(fake.elapsed)
        return EPOCH + 200  # the stage now collected closes at +200 s

    with pytest.raises(TransportError):
        poll_until(_answers(), "it", timeouts=timeouts, runtime=fake.runtime(),
                   stage_deadline=EPOCH + 50, refresh=refresh)
    assert fake.elapsed == pytest.approx(205)  # the new deadline plus grace
    assert asked == [pytest.approx(55), pytest.approx(205)]  # the same deadline again: no more


# -- retries of one request -----------------------------------------------------------------------
def _failing(*errors, then="ok"):
    queue = list(errors)

    def request():
        if queue:
            raise queue.pop(0)
        return then

    return request


def test_a_busy_server_is_retried_after_its_retry_after_with_jitter():
    fake = FakeTime()
    busy = ServerRejectedError(503, "busy", "later", retry_after=8.0)
    got = Backoff(attempts=3).call(_failing(busy, busy), fake.runtime(jitter=0.25))
    assert got == "ok" and fake.sleeps == [6.0, 6.0]  # 8 x 0.75, above the backoff's own draw


def test_a_hint_above_max_retry_after_ends_the_retries_at_once():
    fake = FakeTime()
    hostile = ServerRejectedError(429, "slow_down", "come back next year", retry_after=3e7)
    with pytest.raises(ServerRejectedError):
        Backoff(attempts=5, max_retry_after=60).call(_failing(hostile), fake.runtime())
    assert fake.sleeps == []


def test_backoff_without_a_hint_and_final_answers():
    fake = FakeTime()
    got = Backoff(attempts=3, base=1.0).call(_failing(TransportError("x"), TransportError("y")),
                                             fake.runtime(jitter=0.5))
    assert got == "ok" and fake.sleeps == [0.5, 1.0]
    with pytest.raises(ServerRejectedError):  # a 404 is the server's final word
        Backoff().call(_failing(ServerRejectedError(404, "nf", "no", retry_after=1)), fake.runtime())
    assert fake.sleeps == [0.5, 1.0]


def test_backoff_stops_before_its_deadline():
    fake = FakeTime()
    busy = ServerRejectedError(503, "busy", "later", retry_after=10.0)
    with pytest.raises(ServerRejectedError):
        Backoff(attempts=5).call(_failing(busy), fake.runtime(), deadline=5.0)
    assert fake.sleeps == []


# -- the participant waits as the announcement allows -------------------------------------------
ANN = RoundAnnouncement(round_id=4, vector_length=3, min_participants=3, max_participants=5,
                        threshold=3, graph="complete", degree=None, clip=1.0, noise_multiplier=0.0,
                        min_survivors=3, base_model_version=1, stage="advertise_keys",
                        stage_deadline=EPOCH + 120)


class _SlowRound:
    """Answers "open" with ``Retry-After: hint`` until ``done_at`` fake seconds, then done; the
    round's current announcement says ``deadline``."""

    def __init__(self, fake: FakeTime, done_at: float, hint: str = "5", deadline: float = EPOCH + 120):
        self.fake, self.done_at, self.hint, self.deadline = fake, done_at, hint, deadline
        self.polls = 0

    def request(self, method, path, *, body=None, headers=None):
        if path == "/v1/rounds/current":
            return Response(200, {}, encode(replace(ANN, stage_deadline=self.deadline)))
        self.polls += 1
        if self.fake.elapsed < self.done_at:
            return Response(200, {"retry-after": self.hint}, encode(RoundStatus(4, "open", "unmask", 5)))
        return Response(200, {}, encode(RoundStatus(4, "done", "unmask", 5, 5, 1, 2)))


def _participant(server, fake, **timeouts):
    from edgerec.sync import DeviceIdentity

    identity = DeviceIdentity(1, b"\x01" * 32, "d1.x")
    return RoundParticipant(ServerApi(server, "d1.x"), identity, ANN, np.zeros(3),
                            authority_key=b"\x02" * 32, runtime=fake.runtime(),
                            timeouts=SyncTimeouts(**{"poll_interval": 0.5, **timeouts}))


def test_the_participant_paces_its_polls_by_the_hint_and_waits_out_the_announced_deadline():
    fake = FakeTime()
    server = _SlowRound(fake, done_at=110)
    outcome = _participant(server, fake, stage_timeout=10).result()
    assert outcome.status.state == "done" and fake.elapsed >= 110
    assert set(fake.sleeps) == {5.0}  # the hint, jittered by the fake's 0.5 draw: x 1.0
    assert server.polls == len(fake.sleeps) + 1  # about 110 / 5 polls, not 110 / 0.5


def test_the_participant_gives_up_at_max_wait_whatever_the_server_announces():
    fake = FakeTime()
    server = _SlowRound(fake, done_at=1e9, deadline=EPOCH + 1e8)
    with pytest.raises(TransportError, match="round 4"):
        _participant(server, fake, stage_timeout=10, max_wait=600).result()
    assert fake.elapsed == pytest.approx(600)


# -- the whole sync ---------------------------------------------------------------------------------
class _Busy(FakeServer):
    """Answers the round query 503 ``busy`` times (``Retry-After: retry``), then 204 with
    ``Retry-After: idle`` (no round: come back in that long)."""

    def __init__(self, busy: int, retry: str, idle: str = "90"):
        super().__init__()
        self.busy, self.retry, self.idle = busy, retry, idle

    def request(self, method, path, *, body=None, headers=None):
        if path != "/v1/rounds/current":
            return super().request(method, path, body=body, headers=headers)
        self.requests.append((method, path, body))
        if self.busy:
            self.busy -= 1
            return Response(503, {"retry-after": self.retry}, encode(ErrorBody("busy", "later")))
        return Response(204, {"retry-after": self.idle}, b"")


def test_a_sync_honours_retry_after_and_hands_the_idle_hint_to_the_app(device):
    result, sleeps = _sync(device, _Busy(busy=2, retry="2"))
    assert result.status.value == "no_round" and result.retry_after == 90.0
    assert sleeps == [3.0, 3.0]  # 2 s x 1.5 (the fake jitter's top draw), above the backoff's own


def test_a_sync_told_to_wait_for_ever_stops_at_once_and_says_so(device):
    result, sleeps = _sync(device, _Busy(busy=1, retry="31536000"))
    assert result.status.value == "server_error" and result.retry_after == 31536000.0
    assert sleeps == []
