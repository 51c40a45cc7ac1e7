"""The coordinator in-process with a fake clock: the cohort draw, deadlines, replay, FedAdam
state, the audit's epsilon. Devices are real ``edgerec.sync`` participants over Starlette's TestClient;
their "sleep" advances nothing but lets the server tick, so every wait is deterministic."""

from __future__ import annotations

import json
import math
import random

import dp_accounting as dp
import numpy as np
import pytest
from scipy.stats import binom, chi2

from edgerec.federated import FedAdam, StrategyState
from edgerec.secagg import RoundAbortedError, Stage
from edgerec.sync import HttpxTransport, ServerRejectedError
from edgerec_server import Coordinator, RoundParams, load_config
from edgerec_server import opening
from edgerec_server._exceptions import BadRequestError, ConflictError, NotFoundError
from edgerec_server.audit import audit_rows
from edgerec_server.cli import main
from edgerec_server.publisher import flat_weights
from edgerec_server.rounds import draw_cohort, rate_for_expected

from srv_helpers import World, cli


@pytest.fixture
def world(tmp_path, bundle_dir):
    w = World(tmp_path / "state", bundle_dir)
    yield w
    w.close()


def test_advertise_deadline_with_too_few_aborts_and_keeps_the_model(world):
    apis = world.devices(5)
    record = world.co.open_round(RoundParams(min_participants=4, max_participants=5, deadlines=(10, 10, 10, 10)))
    # The cohort of 5 needs t = 4 (> 2/3 of 5), so every one of the 5 must advertise.
    assert world.state.round(record.id).params["min_participants"] == 5
    parts = [world.participant(a) for a in apis[:3]]
    for p in parts:
        p.advertise()
    world.tick(9.9)
    assert world.co.status(record.id).state == "open"
    world.tick(0.2)
    status = world.co.status(record.id)
    assert status.state == "aborted" and "3 participants" in status.reason
    with pytest.raises(RoundAbortedError):
        parts[0].share_keys()
    assert world.publisher.latest().version == 1 and apis[0].current_round() is None
    assert [r["state"] for r in audit_rows(world.state, 1e-5)] == ["aborted"]


def _min_for(cohort: int) -> int:
    """The smallest minimum whose default threshold fits a cohort of ``cohort`` (q = 1 rounds)."""
    return next(m for m in range(3, cohort + 1) if _fits(m, cohort))


def _fits(minimum: int, cohort: int, **params) -> bool:
    try:
        RoundParams(min_participants=minimum, **params).for_cohort(cohort)
        return True
    except BadRequestError:
        return False


def test_announcements_say_how_many_colluders_the_threshold_covers(world):
    apis = world.devices(10)
    world.co.open_round(RoundParams(min_participants=4, colluders=2))
    ann = apis[0].current_round()
    assert (ann.colluders, ann.threshold, ann.min_survivors) == (2, 8, 6)




def test_a_drawn_member_is_never_refused_as_full_however_late(world):
    apis = world.devices(5)
    # q = 1, and an old-style cap of 4 that no longer caps anything
    record = world.co.open_round(RoundParams(min_participants=_min_for(5), max_participants=4))
    assert sorted(world.state.members(record.id)) == sorted(a.identity.device_id for a in apis)
    parts = [world.participant(a) for a in apis]
    for p in parts:
        p.advertise()  # the fifth too: the old cap of 4 is not a cap any more
    ann = apis[4].current_round()
    assert ann is not None and ann.max_participants == 5
    assert ann.sampling_rate == 1.0 and ann.population == 5


def test_a_non_member_gets_no_announcement_and_404_on_upload(world, monkeypatch):
    apis = world.devices(6)
    ids = [a.identity.device_id for a in apis]
    # The draw, fixed for this test: the first four (the CSPRNG draw has its own tests).
    monkeypatch.setattr(opening, "draw_cohort", lambda devices, rate: list(devices)[:4])
    record = world.co.open_round(RoundParams(min_participants=4, sampling_rate=0.5))
    assert sorted(world.state.members(record.id)) == ids[:4]
    assert world.state.round(record.id).population == 6
    assert apis[5].current_round() is None
    ann = apis[0].current_round()
    assert ann.sampling_rate == 0.5 and ann.population == 6 and ann.max_participants == 4
    # It learnt the round from a member: whatever it uploads is refused before it is read, as
    # if there were no such round (test_bad_input.py: it learns nothing about the round).
    refused = world.client.post(f"/v1/rounds/{record.id}/messages", content=b"\x00" * 64, headers={
        "Authorization": f"Bearer {apis[5].identity.credential}",  # type: ignore[attr-defined]
        "Content-Type": "application/octet-stream"})
    assert refused.status_code == 404 and "is a member of" in refused.json()["message"]


def test_too_small_a_draw_opens_nothing(world):
    apis = world.devices(5)
    with pytest.raises(ConflictError, match="drew 0 of 5 active devices"):
        world.co.open_round(RoundParams(min_participants=4, sampling_rate=1e-12))
    assert world.state.rounds() == [] and apis[0].current_round() is None
    assert "round_opened" not in [e.kind for e in world.state.events()]


def test_too_large_a_draw_for_the_threshold_opens_nothing(world):
    world.devices(12)
    # The default threshold grows with the draw (and the minimum with it): every draw of 4 or
    # more fits. An operator's fixed threshold does not: 3 is below the floor (9) for 12.
    assert _fits(4, 12) and _fits(4, 4, threshold=3) and not _fits(4, 12, threshold=3)
    with pytest.raises(ConflictError, match="drew 12 of 12 active devices, too many"):
        world.co.open_round(RoundParams(min_participants=4, threshold=3))
    assert world.state.rounds() == []


def test_too_small_a_draw_for_the_threshold_opens_nothing(world):
    world.devices(4)
    # An operator's threshold of 5 needs 6 devices (t <= degree): 4 drawn are too few.
    with pytest.raises(ConflictError, match="drew 4 of 4 active devices, too few"):
        world.co.open_round(RoundParams(min_participants=3, threshold=5))
    assert world.state.rounds() == []


def test_q_one_draws_everyone_and_the_draw_uses_the_os_csprng():
    assert draw_cohort(range(1000), 1.0) == list(range(1000))
    random.seed(0)
    np.random.seed(0)
    first = draw_cohort(range(256), 0.5)
    random.seed(0)
    np.random.seed(0)
    assert draw_cohort(range(256), 0.5) != first  # seeding random/numpy does not fix the draw


def test_the_draw_is_an_independent_bernoulli_q_per_device():
    """Each device's inclusion ~ Bernoulli(q), independently: per-device counts and the cohort
    size's distribution (a fixed-size or correlated draw fails the latter) at p < 1e-6."""
    n, q, draws = 40, 0.3, 3000
    sizes, counts = [], np.zeros(n)
    for _ in range(draws):
        cohort = draw_cohort(range(n), q)
        sizes.append(len(cohort))
        counts[cohort] += 1
    # Per device: Binomial(draws, q); |z| < 6 has p ~ 2e-9 each, below 1e-7 for all 40.
    z = (counts - draws * q) / math.sqrt(draws * q * (1 - q))
    assert np.abs(z).max() < 6, z
    # Cohort sizes against Binomial(n, q): chi-square over bins with >= 20 expected draws.
    expected = draws * binom.pmf(np.arange(n + 1), n, q)
    observed = np.bincount(sizes, minlength=n + 1).astype(float)
    keep = expected >= 20
    exp_b = np.append(expected[keep], expected[~keep].sum())
    obs_b = np.append(observed[keep], observed[~keep].sum())
    stat = ((obs_b - exp_b) ** 2 / exp_b).sum()
    assert chi2.sf(stat, len(exp_b) - 1) > 1e-6, (stat, obs_b, exp_b)


def test_expected_turnout_sets_the_rate_and_round_open_prints_the_draw(world, capsys):
    apis = world.devices(8)
    assert rate_for_expected(4, 8) == 0.5 and rate_for_expected(20, 8) == 1.0
    opened = json.loads(cli(world.tmp, "round", "open", "--min", str(_min_for(8)), "--expected", "20",
                            "--max", "5"))
    assert "--max is ignored" in capsys.readouterr().err  # a cap would truncate the draw
    assert opened["sampling_rate"] == 1.0 and opened["population"] == 8
    assert opened["members"] == sorted(a.identity.device_id for a in apis) and opened["cohort"] == 8
    world.tick()
    assert apis[0].current_round().round_id == opened["round_id"]
    with pytest.raises(SystemExit):
        cli(world.tmp, "round", "open", "--sample-rate", "0.5", "--expected", "4")
    assert "not allowed with" in capsys.readouterr().err
    assert main(["round", "open", "--sample-rate", "1.5", "--data-dir", str(world.tmp)]) == 2
    assert "sampling_rate must be in (0, 1]" in capsys.readouterr().err


def test_replay_after_restart_serves_identical_messages_and_fedadam_state_persists(world):
    apis = world.devices(4)
    params = RoundParams(min_participants=4, max_participants=4, strategy="fedadam", server_lr=0.1)
    record = world.co.open_round(params)
    rng = np.random.default_rng(5)
    length = apis[0].current_round().vector_length
    deltas = [rng.normal(0, 0.02, length) for _ in apis]
    parts = [world.participant(a, d) for a, d in zip(apis, deltas)]
    for step in ("advertise", "share_keys", "masked_input", "consistency"):
        for p in parts:
            getattr(p, step)()

    def served() -> dict:
        return {(a.identity.device_id, stage): a.download(record.id, stage) for a in apis
                for stage in (Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.CONSISTENCY, Stage.UNMASK)}

    before = served()
    assert None not in before.values()  # every stage up to the unmask request was closed
    world.restart()
    for p, a in zip(parts, apis):
        p.api.transport = a.transport = HttpxTransport(client=world.client)
    assert served() == before  # survivor sets and the signatures over them included
    for p in parts:
        p.unmask()
    assert {p.result().status.model_version_out for p in parts} == {2}
    base = flat_weights(world.publisher.load(1)).astype(np.float32)
    expected, state = FedAdam(lr=0.1).apply(base, np.mean(deltas, axis=0), StrategyState())
    got = flat_weights(world.publisher.load(2))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    step, arrays = world.state.strategy_state("fedadam")
    assert step == 1 and np.allclose(arrays["m"], state.arrays["m"], atol=1e-6)


def test_audit_epsilon_of_unsampled_rounds_is_the_plain_gaussians(world):
    apis = world.devices(4)
    for _ in range(2):
        world.co.open_round(RoundParams(min_participants=4, noise_multiplier=1.0))  # q = 1
        parts = [world.participant(a) for a in apis]
        for step in ("advertise", "share_keys", "masked_input", "consistency", "unmask"):
            for p in parts:
                getattr(p, step)()
        assert parts[0].result().status.state == "done"
    rows = audit_rows(world.state, 1e-5)
    expected = []
    for k in (1, 2):  # every active device was drawn: no amplification, k Gaussian releases
        acct = dp.rdp.RdpAccountant(neighboring_relation=dp.NeighboringRelation.REPLACE_ONE)
        acct.compose(dp.GaussianDpEvent(1.0), k)
        expected.append(acct.get_epsilon(1e-5))
    assert [r["cumulative_epsilon"] for r in rows] == pytest.approx(expected, rel=1e-6)
    assert [(r["sampling_rate"], r["cohort"], r["population"], r["amplification"]) for r in rows] == [
        (1.0, 4, 4, "none")] * 2
    assert rows[1]["model_version_out"] == 3
    # Five stages from four devices, the same shapes both times: what ledgers are matched against.
    assert [r["messages_received"] for r in rows] == [20, 20]
    assert rows[0]["bytes_received"] == rows[1]["bytes_received"] > 0
    table = cli(world.tmp, "audit").splitlines()
    assert table[0].split()[:4] == ["round", "state", "q", "cohort/N"]
    assert table[2].split()[:4] == ["2", "done", "1", "4/4"]
    assert table[2].split()[8] == f"{expected[1]:.3f}"


def test_a_round_without_noise_shows_infinite_epsilon(world):
    apis = world.devices(4)
    world.co.open_round(RoundParams(min_participants=4, noise_multiplier=0.0))
    parts = [world.participant(a) for a in apis]
    for step in ("advertise", "share_keys", "masked_input", "consistency", "unmask"):
        for p in parts:
            getattr(p, step)()
    (row,) = audit_rows(world.state, 1e-5)
    assert row["cumulative_epsilon"] is None and row["differentially_private"] is False
    assert json.loads(cli(world.tmp, "audit", "--json"))["rounds"][0]["cumulative_epsilon"] is None
    assert cli(world.tmp, "audit").splitlines()[1].split()[8] == "inf"


def test_open_round_preconditions(world, tmp_path):
    with pytest.raises(ConflictError, match="active devices"):
        world.co.open_round(RoundParams(min_participants=3, max_participants=3))
    world.devices(3)
    # Three devices are never enough on the complete graph: t > 2/3 of 3 is 3, above degree 2.
    with pytest.raises(ConflictError, match="drew 3 of 3 active devices, too few"):
        world.co.open_round(RoundParams(min_participants=3, max_participants=3))
    world.devices(1)
    world.co.open_round(RoundParams(min_participants=4, max_participants=4))
    with pytest.raises(ConflictError, match="already open"):
        world.co.open_round(RoundParams(min_participants=4, max_participants=4))
    empty = World(tmp_path / "empty", None)
    try:
        with pytest.raises(NotFoundError, match="init"):
            empty.co.open_round(RoundParams(min_participants=4, max_participants=4))
    finally:
        empty.close()


def test_a_schedule_opens_rounds_when_devices_are_there(tmp_path, bundle_dir):
    w = World(tmp_path / "sched", bundle_dir)
    try:
        w.config = load_config(data_dir=w.tmp, tick_interval_s=0, schedule_every_s=60, env={},
                               schedule_round={"min_participants": 4, "max_participants": 4})
        w.co = Coordinator(w.state, w.publisher, w.config, clock=w.clock)
        w.tick()
        assert w.state.rounds() == []  # no devices yet
        w.devices(4)
        w.tick()
        (first,) = w.state.rounds()
        w.tick(301)  # the advertise deadline passes with nobody: aborted
        assert w.co.status(first.id).state == "aborted"
        w.tick(30)
        assert len(w.state.rounds()) == 1  # not yet: 60 s after the last round closed
        w.tick(31)
        assert [r.state for r in w.state.rounds()] == ["aborted", "open"]
    finally:
        w.close()


def _quiet_world(world, n: int, quiet: float | None):
    apis = world.devices(n)
    params = RoundParams(min_participants=n - 1, max_participants=n, deadlines=(100, 100, 100, 100),
                         quiet_close=quiet)
    record = world.co.open_round(params)
    assert world.state.round(record.id).params["threshold"] == 4  # of 5: one may drop
    parts = [world.participant(a) for a in apis]
    for step in ("advertise", "share_keys"):
        for p in parts:
            getattr(p, step)()
    return record, parts


def test_quiet_close_ends_a_stage_soon_after_the_last_answer_once_enough_answered(world):
    record, parts = _quiet_world(world, 5, quiet=2.0)
    for p in parts[:4]:  # the fifth device has vanished
        p.masked_input()
    world.tick(1.9)
    assert world.co.status(record.id).stage == "masked_input"  # not yet: still within quiet
    world.tick(0.2)
    assert world.co.status(record.id).stage == "consistency"  # long before the 100 s deadline
    for p in parts[:4]:
        p.consistency()
    assert world.co.status(record.id).stage == "unmask"  # every survivor signed: closed at once
    for p in parts[:4]:
        p.unmask()
    assert {p.result().status.model_version_out for p in parts[:4]} == {2}
    assert audit_rows(world.state, 1e-5)[-1]["survivors"] == 4


def test_quiet_close_waits_for_the_deadline_while_too_few_answered(world):
    record, parts = _quiet_world(world, 5, quiet=2.0)
    for p in parts[:1]:  # one answer is below any threshold: silence alone must not close
        p.masked_input()
    world.tick(50)
    assert world.co.status(record.id).stage == "masked_input"


def test_without_quiet_close_a_vanished_device_holds_the_stage_until_its_deadline(world):
    record, parts = _quiet_world(world, 5, quiet=None)
    for p in parts[:4]:
        p.masked_input()
    world.tick(99)
    assert world.co.status(record.id).stage == "masked_input"
    world.tick(1.5)
    assert world.co.status(record.id).stage == "consistency"


def test_a_survivor_that_does_not_sign_is_left_out_of_unmasking_but_its_input_counts(world):
    """The consistency stage closes at its deadline with t signatures: the round completes, the
    silent survivor's masked input stays in the sum, and it is not asked to unmask."""
    apis = world.devices(7)
    record = world.co.open_round(RoundParams(min_participants=7, deadlines=(100, 100, 100, 10)))
    assert world.state.round(record.id).params["threshold"] == 5
    length = apis[0].current_round().vector_length
    deltas = [np.full(length, 0.001 * (i + 1)) for i in range(7)]  # inside the clip bound
    parts = [world.participant(a, d) for a, d in zip(apis, deltas)]
    for step in ("advertise", "share_keys", "masked_input"):
        for p in parts:
            getattr(p, step)()
    assert world.co.status(record.id).stage == "consistency"
    for p in parts[:5]:  # the two last survivors never sign
        p.consistency()
    world.tick(9.9)
    assert world.co.status(record.id).stage == "consistency"
    world.tick(0.2)
    assert world.co.status(record.id).stage == "unmask"
    with pytest.raises(ServerRejectedError) as missed:
        apis[6].download(record.id, Stage.UNMASK)
    assert missed.value.status == 409 and "missed an earlier stage" in missed.value.message
    for p in parts[:5]:
        p.unmask()
    outcomes = [p.result() for p in parts]
    assert {(o.status.state, o.status.survivors) for o in outcomes} == {("done", 7)}
    got = flat_weights(world.publisher.load(2)) - flat_weights(world.publisher.load(1))
    np.testing.assert_allclose(got, np.mean(deltas, axis=0), atol=1e-4)  # all seven inputs
    assert audit_rows(world.state, 1e-5)[-1]["messages_received"] == 7 * 3 + 5 + 5
