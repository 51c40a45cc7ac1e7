"""``edgerec-server round open --epsilon E --planned-rounds R``: the operator chooses epsilon, the
server chooses z for the cohort it drew, and the audit's epsilon after R such rounds is <= E.

Against a real server process: devices enrol and read the round's z over HTTP, and one round
runs to the end so that the audit itself (``GET /v1/audit``) shows the epsilon spent."""

from __future__ import annotations

import contextlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgerec.privacy import Release, noise_for_releases, releases_epsilon
from edgerec.sync import RoundParticipant, SyncTimeouts

from srv_helpers import authority_key, cli, enrol_devices

pytest.importorskip("dp_accounting", reason="calibration needs dp-accounting")


def _min_for(cohort: int) -> int:
    """The smallest ``--min`` whose default threshold fits a cohort of ``cohort``."""
    from edgerec_server._exceptions import BadRequestError
    from edgerec_server.rounds import RoundParams

    for m in range(3, cohort + 1):
        try:
            RoundParams(min_participants=m).for_cohort(cohort)
            return m
        except BadRequestError:
            continue
    raise AssertionError(f"no minimum fits a cohort of {cohort}")


def _run(data_dir: Path, *args: str) -> tuple[int, str, str]:
    """``edgerec-server`` in-process: exit code, stdout, stderr."""
    from edgerec_server.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--data-dir", str(data_dir)])
    return code, out.getvalue(), err.getvalue()


def _open(data_dir: Path, *flags: str) -> tuple[dict, str]:
    """``round open`` with ``flags``, drawing again while a draw does not fit the threshold."""
    for _ in range(100):
        code, out, err = _run(data_dir, "round", "open", *flags)
        if code == 0:
            return json.loads(out), err
        assert "drew" in err, err  # only an unlucky draw may fail
    raise AssertionError("no usable draw in 100 tries")


def _audited(data_dir: Path, round_id: int, rounds: int, scale: float = 1.0) -> float:
    """The audit's cumulative epsilon after ``rounds`` rounds like ``round_id`` (z times ``scale``),
    with the audit's own functions, delta and accountant."""
    from edgerec_server import SqliteBackend, load_config
    from edgerec_server.audit import cumulative_epsilon, release_of

    config = load_config(data_dir=data_dir, env={})
    state = SqliteBackend(config.database_path)
    try:
        release = release_of(state.round(round_id))
    finally:
        state.close()
    scaled = Release(release.population, release.cohort, release.noise_multiplier * scale)
    return cumulative_epsilon([scaled] * rounds, config.dp_delta, config.accountant)


def test_sampled_rounds_get_the_z_of_their_draw(server, data_dir):
    devices = enrol_devices(server.url, cli(data_dir, "token", "create", "--uses", "20"), 20)
    opened, err = _open(data_dir, "--expected", "12", "--min", str(_min_for(12)),
                        "--epsilon", "8", "--planned-rounds", "20", "--deadline", "30")
    population, cohort, z = opened["population"], opened["cohort"], opened["noise_multiplier"]
    assert population == 20 and cohort == len(opened["members"])
    assert z == noise_for_releases(8.0, population=population, cohort=cohort, rounds=20, delta=1e-5)
    drawn = f"{cohort} of 20" if cohort < 20 else "all 20"
    assert f"epsilon 8 over 20 planned rounds of {drawn} devices (delta 1e-05): " \
           f"noise multiplier z = {z:.4g}" in err
    assert (opened["target_epsilon"], opened["planned_rounds"], opened["delta"]) == (8.0, 20, 1e-5)
    # What the devices are told, over HTTP from the server process.
    member = next(d for d in devices if d.identity.device_id in opened["members"])
    assert member.api.current_round().noise_multiplier == z
    # The audit's epsilon after 20 rounds like this one: within the budget, and not by much.
    assert _audited(data_dir, opened["round_id"], 20) <= 8.0 < _audited(data_dir, opened["round_id"], 20, 0.998)


def test_a_full_round_spends_at_most_the_chosen_epsilon_in_the_audit(server, data_dir, tmp_path):
    """Everyone takes part (plain Gaussian releases): one planned round, run to the end."""
    devices = enrol_devices(server.url, cli(data_dir, "token", "create", "--uses", "6"), 6)
    opened, err = _open(data_dir, "--min", str(_min_for(6)), "--epsilon", "2", "--planned-rounds", "1",
                        "--deadlines", "30,30,30,30")
    z = opened["noise_multiplier"]
    assert opened["cohort"] == opened["population"] == 6
    assert z == noise_for_releases(2.0, population=6, cohort=6, rounds=1)
    assert "epsilon 2 over 1 planned rounds of all 6 devices (delta 1e-05)" in err
    assert _audited(data_dir, opened["round_id"], 1) <= 2.0 < _audited(data_dir, opened["round_id"], 1, 0.998)

    pinned = authority_key(data_dir)
    rng = np.random.default_rng(3)

    def take_part(dev):
        ann = dev.api.current_round()
        assert ann.noise_multiplier == z
        delta = rng.normal(0, 1, ann.vector_length)
        return RoundParticipant(dev.api, dev.identity, ann, delta / np.linalg.norm(delta) * 0.5,
                                authority_key=pinned,
                                timeouts=SyncTimeouts(poll_interval=0.05, stage_timeout=60)).run()

    with ThreadPoolExecutor(len(devices)) as pool:
        outcomes = list(pool.map(take_part, devices))
    assert {o.status.state for o in outcomes} == {"done"}
    row = httpx.get(server.url + "/v1/audit").json()["rounds"][-1]
    assert row["noise_multiplier"] == z and row["differentially_private"]
    assert 2.0 * 0.99 < row["cumulative_epsilon"] <= 2.0
    assert row["cumulative_epsilon"] == pytest.approx(releases_epsilon([Release(6, 6, z)], 1e-5), rel=1e-12)


def test_epsilon_flags_are_checked(data_dir, capsys):
    with pytest.raises(SystemExit):  # argparse: one or the other
        cli(data_dir, "round", "open", "--noise", "1", "--epsilon", "8", "--planned-rounds", "5")
    assert "not allowed with" in capsys.readouterr().err
    for flags, message in [
            (("--epsilon", "8"), "--epsilon needs --planned-rounds"),
            (("--planned-rounds", "5"), "go with --epsilon"),
            (("--noise", "1", "--delta", "1e-6"), "go with --epsilon"),
            (("--epsilon", "0", "--planned-rounds", "5"), "--epsilon must be a positive number"),
            (("--epsilon", "nan", "--planned-rounds", "5"), "--epsilon must be a positive number"),
            (("--epsilon", "8", "--planned-rounds", "0"), "--planned-rounds must be at least 1"),
            (("--epsilon", "8", "--planned-rounds", "5", "--delta", "1"), "--delta must be in (0, 1)")]:
        code, _, err = _run(data_dir, "round", "open", *flags)
        assert code == 2 and message in err, (flags, err)
    assert cli(data_dir, "round", "list") == ""  # nothing was opened


def test_an_unreachable_epsilon_opens_nothing(server, data_dir):
    enrol_devices(server.url, cli(data_dir, "token", "create", "--uses", "4"), 4)
    code, _, err = _run(data_dir, "round", "open", "--min", str(_min_for(4)), "--epsilon", "1e-7",
                        "--planned-rounds", "100000")
    assert code == 2 and "no noise multiplier up to" in err
    assert cli(data_dir, "round", "list") == ""
