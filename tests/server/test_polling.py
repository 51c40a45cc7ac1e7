"""``Retry-After`` for devices told "not yet": the cohort's polls add up to about ``poll_rate``
per second whatever its size, within the caps, and never past the stage's deadline."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from edgerec_server import load_config
from edgerec_server.polling import idle_hint, stage_hint

from srv_helpers import World

CONFIG = load_config(env={}, poll_rate=100.0, retry_after_s=1, max_retry_after_s=30,
                     max_idle_retry_after_s=600)


@given(cohort=st.integers(0, 10**7), now=st.floats(0, 1e9), left=st.floats(-100, 1e4))
def test_a_stage_hint_bounds_the_poll_rate_within_the_caps_and_the_deadline(cohort, now, left):
    deadline = now + left
    hint = stage_hint(cohort, now, deadline, CONFIG)
    by_deadline = max(1, math.ceil(deadline - now) + 1)
    assert isinstance(hint, int) and 1 <= hint <= 30
    assert hint <= by_deadline  # never told to come back after the deadline
    if cohort / hint > CONFIG.poll_rate + 1e-9:  # a faster rate only to meet the deadline
        assert hint in (by_deadline, 30)


@given(cohort=st.integers(1, 10**6))
def test_a_larger_cohort_never_polls_more_often(cohort):
    assert stage_hint(cohort + 1, 0.0, None, CONFIG) >= stage_hint(cohort, 0.0, None, CONFIG)


def test_idle_devices_are_spread_over_up_to_ten_minutes():
    assert idle_hint(10, CONFIG) == 1
    assert idle_hint(5_000, CONFIG) == 50
    assert idle_hint(10**7, CONFIG) == 600


def test_not_yet_answers_carry_the_hint_for_the_round(tmp_path, bundle_dir):
    from edgerec_server import RoundParams

    world = World(tmp_path, bundle_dir, poll_rate=2.0, max_retry_after_s=30)
    try:
        devices = world.devices(6)
        idle = world.client.get("/v1/rounds/current",
                                headers={"Authorization": f"Bearer {devices[0].identity.credential}"})
        assert idle.status_code == 204 and idle.headers["Retry-After"] == "3"  # 6 devices / 2
        world.co.open_round(RoundParams.from_dict({"min_participants": 6, "deadlines": [300] * 4}))
        record = world.state.rounds("open")[0]
        wait = world.client.get(f"/v1/rounds/{record.id}/messages/key_list",
                                headers={"Authorization": f"Bearer {devices[0].identity.credential}"})
        assert wait.status_code == 204 and wait.headers["Retry-After"] == "3"
        status = world.client.get(f"/v1/rounds/{record.id}",
                                  headers={"Authorization": f"Bearer {devices[0].identity.credential}"})
        assert status.status_code == 200 and status.headers["Retry-After"] == "3"
    finally:
        world.close()
