"""Uploads ask for a tick after their answer (it closes a stage the upload completed); those
that ask while one is waiting to start share it, so a burst of 1,000 uploads does not queue
1,000 ticks behind the coordinator's lock. What must hold: every stored message is followed by
a tick that starts after it, whatever the interleaving."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from edgerec_server.app import Api


class _Coordinator:
    """Only what ``Api`` reads, and a tick that records what it could see (a unit-test fake)."""

    def __init__(self) -> None:
        self.state = self.config = SimpleNamespace()
        self.ticks: list[int] = []  # how many messages were stored when each tick started
        self.stored = 0
        self.api: Api | None = None

    def tick(self) -> None:
        assert self.api is not None and not self.api._tick_waiting  # cleared before it reads
        self.ticks.append(self.stored)


def _api() -> tuple[Api, _Coordinator]:
    co = _Coordinator()
    api = Api(co)  # type: ignore[arg-type]
    co.api = api
    return api, co


def test_uploads_waiting_for_the_same_tick_share_it():
    api, co = _api()

    async def burst() -> None:
        tasks = []
        for _ in range(5):  # five uploads answered before any tick has started
            co.stored += 1
            task = api._tick_later()
            if task is not None:
                tasks.append(task)
        assert len(tasks) == 1
        await tasks[0]()

    asyncio.run(burst())
    assert co.ticks == [5]  # one tick, after all five


def test_a_message_stored_while_a_tick_runs_gets_a_tick_of_its_own():
    api, co = _api()
    later: list = []
    real_tick = co.tick

    def tick_that_sees_an_upload_meanwhile() -> None:
        real_tick()
        if len(co.ticks) == 1:  # an upload is answered while the first tick runs
            co.stored += 1
            later.append(api._tick_later())

    co.tick = tick_that_sees_an_upload_meanwhile  # type: ignore[method-assign]

    async def run() -> None:
        co.stored += 1
        first = api._tick_later()
        assert first is not None
        await first()
        assert later and later[0] is not None  # not merged into the tick already running
        await later[0]()

    asyncio.run(run())
    assert co.ticks == [1, 2]  # the second message's tick started after it was stored
