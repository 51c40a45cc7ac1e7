"""A real ``edgerec-server`` process keeping its state in a real PostgreSQL server: the whole
round over HTTP, a SIGKILL mid-round that loses nothing acknowledged, and the operator's
commands on the same database. And the SQLite side of sharing state: one server per data dir.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from edgerec.model.params import flatten, param_names
from edgerec.privacy import rounding_bound
from edgerec.sync import RoundParticipant, SyncTimeouts, install_bundle

from srv_helpers import ServerProcess, authority_key, cli, enrol_devices, serve


@pytest.fixture
def pg_dir(tmp_path, bundle_dir, pg_url):
    """A data dir (signing key only) whose state lives in PostgreSQL, with model version 1."""
    d = tmp_path / "keys"
    cli(d, "init", "--bundle", str(bundle_dir), "--database", pg_url)
    assert not (d / "state.sqlite3").exists()
    return d


def _serve(data_dir, pg_url, port: int | None = None) -> ServerProcess:
    env = {**os.environ, "EDGEREC_SERVER_TICK_INTERVAL_S": "0.1",
           "EDGEREC_SERVER_LOG_LEVEL": "warning", "EDGEREC_SERVER_DATABASE": pg_url}
    return serve(data_dir, env, port or 0)


def test_a_round_on_postgresql_survives_a_sigkill_and_publishes_the_fedavg(pg_dir, pg_url, tmp_path):
    server = _serve(pg_dir, pg_url)
    db = ("--database", pg_url)
    try:
        token = cli(pg_dir, "token", "create", "--uses", "6", *db)
        devices = enrol_devices(server.url, token, 6)
        opened = json.loads(cli(pg_dir, "round", "open", "--min", "6", "--noise", "0",
                                "--deadlines", "60,60,60,60", *db))
        assert opened["cohort"] == 6
        pinned = authority_key(pg_dir, *db)
        base = install_bundle(devices[0].api.latest_bundle().archive, tmp_path / "base",
                              devices[0].api.public_key())
        weights = flatten(base.params, param_names(base.config)).astype(np.float64)
        rng = np.random.default_rng(3)
        deltas = [d / np.linalg.norm(d) * 0.5 for d in rng.normal(0, 1, (6, weights.size))]
        parts = [RoundParticipant(d.api, d.identity, d.api.current_round(), deltas[i],
                                  authority_key=pinned,
                                  timeouts=SyncTimeouts(poll_interval=0.05, stage_timeout=90))
                 for i, d in enumerate(devices)]
        for p in parts:
            p.advertise()  # acknowledged: in PostgreSQL before the answer
        server.kill()
        server = _serve(pg_dir, pg_url, server.port)  # a new process, the same database

        def rest(p: RoundParticipant):
            for step in (p.share_keys, p.masked_input, p.consistency, p.unmask):
                step()
            return p.result()

        with ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(rest, parts))
        assert {o.status.state for o in outcomes} == {"done"}
        assert {o.status.survivors for o in outcomes} == {6}
        new = install_bundle(devices[1].api.latest_bundle().archive, tmp_path / "new",
                             devices[1].api.public_key())
        got = flatten(new.params, param_names(new.config)).astype(np.float64)
        tolerance = rounding_bound(parts[0].announcement.fixed_point(), 6) / 6 + 1e-6
        np.testing.assert_allclose(got, weights + np.mean(deltas, axis=0), rtol=0, atol=tolerance)
        audit = json.loads(cli(pg_dir, "audit", "--json", *db))["rounds"]
        assert [(r["state"], r["survivors"], r["model_version_out"]) for r in audit] == [("done", 6, 2)]
        assert httpx.get(server.url + "/v1/audit").json()["rounds"][-1]["survivors"] == 6
    finally:
        server.stop()


def test_a_second_server_on_one_sqlite_data_dir_refuses_to_start(server, data_dir):
    with pytest.raises(RuntimeError, match="exited with 2") as refused:
        serve(data_dir, server.spec.env)
    assert f"(pid {server.proc.pid}) is serving" in str(refused.value)
    assert httpx.get(server.url + "/healthz").status_code == 200  # the first serves on
    server.kill()  # a SIGKILLed server leaves no lock behind
    serve(data_dir, server.spec.env, server.port).stop()


def test_a_postgresql_url_is_required_and_its_driver_named(tmp_path):
    from edgerec_server.cli import main

    assert main(["audit", "--data-dir", str(tmp_path), "--database", "mysql://x"]) == 2
