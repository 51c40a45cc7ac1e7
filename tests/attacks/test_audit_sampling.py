"""Attack: an audit whose epsilon assumes sampling that never happened (hostile review).

The old coordinator made every active device a member of every round and admitted whoever
advertised first, while the audit accounted Poisson sampling at q = max participants /
population: a device in all 100 rounds had epsilon ~96 where the audit said 7.9. Here a real
``edgerec-server`` process on 127.0.0.1 runs rounds with 20 enrolled devices taking part through
real secure aggregation (``RoundParticipant`` over HTTP): several rounds drawn at q = 0.2, one
of them aborted (nobody advertises) and one with a device dropping out, then one at q = 1. The
test reads from the server's own database what was actually drawn (each round's member list and
population) and computes epsilon independently with dp-accounting from exactly those numbers.
The noise multiplier is large (z = 8) so that amplification by sampling actually lowers the
figure here, and the test checks the audit counts it exactly, no more.

Protection (``server/opening.py`` ``open_round``, ``server/rounds.py`` ``draw_cohort``,
``server/audit.py``): each round draws its cohort from the devices active at opening, every
device independently with the announced probability q, from the OS's CSPRNG; only drawn members
get the announcement or may upload (404 otherwise, even with a borrowed announcement); nobody
drawn is refused for coming late. The audit accounts each completed round as k of N sampled
without replacement (zero-out relation), k = N as a plain Gaussian, and shows q, k, N per round
(``edgerec.privacy.releases_epsilon``).

Not protected: the exact cohort, participant and survivor counts are published; devices cannot
verify that the server drew honestly (amplification rests on it).
"""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dp_accounting as dp
import httpx
import numpy as np
import pytest

from edgerec.sync import RoundParticipant, ServerRejectedError, SyncTimeouts

# The server tests' helpers and fixtures (a real server process, simulated devices): tests/server
# is on the path for every test (pythonpath in pyproject.toml).
from srv_helpers import Device, authority_key, cli, enrol_devices
from srv_helpers import bundle_dir, data_dir, server, server_factory  # noqa: F401  (fixtures)

N_DEVICES = 20
Z, DELTA = 8.0, 1e-5
# (q, --min, who takes part; None: the smallest minimum whose threshold fits every device). On
# the complete graph the threshold (> 2/3 of the cohort) grows with the cohort and the minimum
# with it, so every draw of 4 or more fits and one device may always drop; an unlucky draw (too
# small, or one the parameters do not fit) is refused and drawn again: that conditions only on
# the cohort's size, which the accounting conditions on anyway.
PLAN = [(0.2, 4, "all"), (0.2, 4, "nobody"), (0.2, 4, "all"), (0.2, 4, "one drops"),
        (1.0, None, "all")]


def _minimum_for_everyone() -> int:
    """The smallest ``--min`` whose secure-aggregation threshold fits a cohort of everyone."""
    from edgerec_server._exceptions import BadRequestError
    from edgerec_server.rounds import RoundParams

    for m in range(3, N_DEVICES + 1):
        try:
            RoundParams(min_participants=m).for_cohort(N_DEVICES)
            return m
        except BadRequestError:
            continue
    raise AssertionError("no minimum fits a cohort of every device")


def _open(data_dir: Path, q: float, minimum: int, deadlines: str) -> dict:
    """``edgerec-server round open --sample-rate q``, drawing again while a draw does not fit."""
    from edgerec_server.cli import main

    for _ in range(200):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["round", "open", "--data-dir", str(data_dir), "--sample-rate", str(q),
                         "--min", str(minimum), "--clip", "1", "--noise", str(Z),
                         "--deadlines", deadlines])
        if code == 0:
            return json.loads(out.getvalue())
        assert "drew" in err.getvalue(), err.getvalue()  # only an unlucky draw may fail
    raise AssertionError(f"no usable draw at q={q} in 200 tries")


def _delta(rng: np.random.Generator, length: int) -> np.ndarray:
    d = rng.normal(0, 1, length)
    return d / np.linalg.norm(d) * 0.5


def _outsider_is_refused(outsider: Device, ann, pinned: bytes) -> None:
    """A device that was not drawn gets no announcement, and cannot join with a borrowed one."""
    assert outsider.api.current_round() is None
    part = RoundParticipant(outsider.api, outsider.identity, ann, np.zeros(ann.vector_length),
                            authority_key=pinned,
                            timeouts=SyncTimeouts(poll_interval=0.05, stage_timeout=10))
    with pytest.raises(ServerRejectedError) as refused:
        part.advertise()
    assert refused.value.status == 404  # as for a round that does not exist: it learns nothing


def _take_part(dev: Device, delta: np.ndarray, drops: bool, pinned: bytes):
    part = RoundParticipant(dev.api, dev.identity, dev.api.current_round(), delta,
                            authority_key=pinned,
                            timeouts=SyncTimeouts(poll_interval=0.05, stage_timeout=60))
    if not drops:
        return part.run()
    part.advertise()
    part.share_keys()  # then it vanishes: it was drawn, took part, and did not survive
    return None


def _run_round(devices: dict[int, Device], opened: dict, q: float, who: str,
               rng: np.random.Generator, pinned: bytes) -> None:
    members = opened["members"]
    assert opened["population"] == N_DEVICES and opened["sampling_rate"] == q
    assert set(members) <= set(devices) and len(members) == opened["cohort"]
    ann = devices[members[0]].api.current_round()
    assert ann is not None and ann.round_id == opened["round_id"]
    assert ann.sampling_rate == q and ann.population == N_DEVICES
    assert ann.max_participants == len(members)
    outsiders = [d for i, d in devices.items() if i not in members]
    if outsiders:
        _outsider_is_refused(outsiders[0], ann, pinned)
    if who == "nobody":
        return
    deltas = {i: _delta(rng, ann.vector_length) for i in members}
    dropper = members[-1] if who == "one drops" else None
    with ThreadPoolExecutor(len(members)) as pool:
        outcomes = list(pool.map(lambda i: _take_part(devices[i], deltas[i], i == dropper, pinned),
                                 members))
    done = [o for o in outcomes if o is not None]
    assert done and {o.status.state for o in done} == {"done"}, outcomes


def _drawn(data_dir: Path) -> list[tuple[int, str, int, int, float]]:
    """(round, state, population, drawn members, z) per round, from the server's database."""
    conn = sqlite3.connect(f"file:{data_dir / 'state.sqlite3'}?mode=ro", uri=True)
    try:
        rounds = conn.execute("SELECT id, state, population, params FROM rounds ORDER BY id").fetchall()
        drawn = dict(conn.execute("SELECT round_id, COUNT(*) FROM round_members GROUP BY round_id"))
    finally:
        conn.close()
    return [(rid, state, n, drawn[rid], json.loads(params)["noise_multiplier"])
            for rid, state, n, params in rounds]


def _independent_epsilons(drawn) -> tuple[dict[int, float], float]:
    """Cumulative epsilon after each completed round, by dp-accounting, from the drawn numbers,
    and the figure without amplification (every round a plain Gaussian).

    Two valid bounds, the smaller wins (``edgerec/privacy/releases.py`` says why): sampling k of
    N without replacement for replace-one neighbours, where swapping who is in a fixed-size
    cohort moves the sum by up to 2C (so multiplier z / 2), and the plain Gaussian of each round.
    """
    relation = dp.NeighboringRelation
    amplified = dp.rdp.RdpAccountant(neighboring_relation=relation.REPLACE_ONE)
    plain = dp.rdp.RdpAccountant(neighboring_relation=relation.REPLACE_SPECIAL)
    out = {}
    for rid, state, n, k, z in drawn:
        if state != "done":
            continue  # an aborted round released nothing
        sampled = dp.SampledWithoutReplacementDpEvent(n, k, dp.GaussianDpEvent(z / 2))
        amplified.compose(dp.GaussianDpEvent(z) if k == n else sampled)
        plain.compose(dp.GaussianDpEvent(z))
        out[rid] = min(float(amplified.get_epsilon(DELTA)), float(plain.get_epsilon(DELTA)))
    return out, float(plain.get_epsilon(DELTA))


def _old_poisson_epsilon(drawn) -> float:
    """What the old audit would have said, even given the drawn sizes: Poisson at q = k / N."""
    acct = dp.rdp.RdpAccountant()
    for _, state, n, k, z in drawn:
        if state == "done":
            acct.compose(dp.PoissonSampledDpEvent(k / n, dp.GaussianDpEvent(z)))
    return float(acct.get_epsilon(DELTA))


def test_audit_epsilon_is_dp_accountings_for_what_the_coordinator_drew(server, data_dir):
    token = cli(data_dir, "token", "create", "--uses", str(N_DEVICES))
    devices = {d.identity.device_id: d for d in enrol_devices(server.url, token, N_DEVICES)}
    rng = np.random.default_rng(11)
    pinned = authority_key(data_dir)  # every device pins the enrolment authority
    opened = []
    for q, minimum, who in PLAN:
        minimum = minimum or _minimum_for_everyone()
        deadlines = {"nobody": "2,30,30,30", "one drops": "30,30,2,30"}.get(who, "30,30,30,30")
        opened.append(_open(data_dir, q, minimum, deadlines))
        _run_round(devices, opened[-1], q, who, rng, pinned)
        if who == "nobody":  # the advertise deadline passes: the round aborts, releasing nothing
            status = _wait_closed(devices[opened[-1]["members"][0]], opened[-1]["round_id"])
            assert status == "aborted"

    drawn = _drawn(data_dir)
    assert [(k, n) for _, _, n, k, _ in drawn] == [(o["cohort"], o["population"]) for o in opened]
    assert [s for _, s, _, _, _ in drawn] == ["done", "aborted", "done", "done", "done"]
    assert drawn[-1][2] == drawn[-1][3] == N_DEVICES  # q = 1 drew every active device

    rows = httpx.get(server.url + "/v1/audit", timeout=30).json()["rounds"]
    assert rows == json.loads(cli(data_dir, "audit", "--json"))["rounds"]
    assert [(r["sampling_rate"], r["cohort"], r["population"]) for r in rows] == [
        (q, k, n) for (q, _, _), (_, _, n, k, _) in zip(PLAN, drawn)]
    assert [r["amplification"] for r in rows] == [
        "none" if k == n else f"sampling without replacement, {k} of {n}" for _, _, n, k, _ in drawn]
    assert {r["neighbouring_relation"] for r in rows} == {"zero-out"}
    assert rows[3]["survivors"] == rows[3]["cohort"] - 1  # accounted on the draw, not on survivors

    expected, unamplified = _independent_epsilons(drawn)
    got = {r["round_id"]: r["cumulative_epsilon"] for r in rows if r["state"] == "done"}
    assert got == pytest.approx(expected, rel=1e-9)
    assert rows[1]["cumulative_epsilon"] is None  # aborted: released nothing
    # The sampling that did happen is counted (never worse than none: the smaller bound wins;
    # strictly better depends on the sizes the CSPRNG drew, which the equality above checks),
    assert got[rows[-1]["round_id"]] <= unamplified
    sampled = got[rows[3]["round_id"]]  # and none that did not: after the rounds at q = 0.2,
    assert sampled > 2 * _old_poisson_epsilon(drawn[:4])  # the old figure was 3x too low
    table = cli(data_dir, "audit")
    assert f"{drawn[0][3]}/{N_DEVICES}" in table and f"{N_DEVICES}/{N_DEVICES}" in table


def _wait_closed(device: Device, round_id: int, timeout: float = 30.0) -> str:
    """The round's state once it is no longer open."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        status = device.api.round_status(round_id)
        if status.state != "open":
            return status.state
        time.sleep(0.1)
    raise AssertionError(f"round {round_id} still open after {timeout} s")
