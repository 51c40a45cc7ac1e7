"""Several ``edgerec-server`` processes on one PostgreSQL database, no load balancer: each device
spreads its requests over the replicas (round robin, skipping one that does not answer, as a
balancer's health check would). Any replica accepts any message; one replica closes each stage
(a claim in the database); a replica killed at any point is replaced without loss.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from edgerec.model.params import flatten, param_names
from edgerec.privacy import rounding_bound
from edgerec.sync import (RoundParticipant, ServerApi, SyncTimeouts, install_bundle, new_identity_key)

from benchmarks._fleet_devices import SpreadTransport  # the fleet benchmark's devices spread the same way
from srv_helpers import authority_key, cli, serve


class Fleet:
    """Replicas of one server on one PostgreSQL database (they share the data dir's keys)."""

    def __init__(self, data_dir, pg_url: str, n: int, lease_s: float = 2.0) -> None:
        self.env = {**os.environ, "EDGEREC_SERVER_TICK_INTERVAL_S": "0.1",
                    "EDGEREC_SERVER_LOG_LEVEL": "warning", "EDGEREC_SERVER_DATABASE": pg_url,
                    "EDGEREC_SERVER_CLOSE_LEASE_S": str(lease_s)}
        self.data_dir = data_dir
        self.replicas = [serve(data_dir, self.env) for _ in range(n)]

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    def kill_and_replace(self, i: int) -> None:
        """SIGKILL replica ``i`` (whatever it was doing) and start a new process on its port."""
        self.replicas[i].kill()
        self.replicas[i] = serve(self.data_dir, self.env, self.replicas[i].port)

    def stop(self) -> None:
        for r in self.replicas:
            r.stop()


@pytest.fixture
def fleet_dir(tmp_path, bundle_dir, pg_url):
    d = tmp_path / "keys"
    cli(d, "init", "--bundle", str(bundle_dir), "--database", pg_url)
    return d


def _devices(fleet: Fleet, token: str, n: int):
    out = []
    for _ in range(n):
        transport = SpreadTransport(fleet.urls, connections=4)
        identity = ServerApi(transport).enrol(token, new_identity_key())
        out.append((identity, ServerApi(transport, identity.credential)))
    return out


def _round(fleet: Fleet, pg_url: str, tmp_path, n: int, seed: int):
    """Enrol ``n`` devices through the replicas, open a round, and their participants."""
    db = ("--database", pg_url)
    token = cli(fleet.data_dir, "token", "create", "--uses", str(n), *db)
    devices = _devices(fleet, token, n)
    opened = json.loads(cli(fleet.data_dir, "round", "open", "--min", str(n), "--noise", "0",
                            "--deadlines", "60,60,60,60", *db))
    assert opened["cohort"] == n
    pinned = authority_key(fleet.data_dir, *db)
    api = devices[0][1]
    base = install_bundle(api.latest_bundle().archive, tmp_path / f"base{seed}", api.public_key())
    weights = flatten(base.params, param_names(base.config)).astype(np.float64)
    rng = np.random.default_rng(seed)
    deltas = [d / np.linalg.norm(d) * 0.5 for d in rng.normal(0, 1, (n, weights.size))]
    parts = [RoundParticipant(a, identity, a.current_round(), deltas[i], authority_key=pinned,
                              timeouts=SyncTimeouts(poll_interval=0.05, stage_timeout=90))
             for i, (identity, a) in enumerate(devices)]
    return parts, weights, deltas


def _published(parts, tmp_path, name: str) -> np.ndarray:
    api = parts[0].api
    new = install_bundle(api.latest_bundle().archive, tmp_path / name, api.public_key())
    return flatten(new.params, param_names(new.config)).astype(np.float64)


def _fedavg_tolerance(parts, n: int) -> float:
    return rounding_bound(parts[0].announcement.fixed_point(), n) / n + 1e-6


def test_three_replicas_serve_one_round_and_publish_exactly_the_fedavg(fleet_dir, pg_url, tmp_path):
    fleet = Fleet(fleet_dir, pg_url, 3)
    try:
        parts, weights, deltas = _round(fleet, pg_url, tmp_path, 8, seed=1)
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(lambda p: p.run(), parts))
        assert {(o.status.state, o.status.survivors, o.status.model_version_out)
                for o in outcomes} == {("done", 8, 2)}
        got = _published(parts, tmp_path, "new")
        np.testing.assert_allclose(got, weights + np.mean(deltas, axis=0), rtol=0,
                                   atol=_fedavg_tolerance(parts, 8))
    finally:
        fleet.stop()


def test_a_replica_killed_in_every_stage_loses_nothing_acknowledged(fleet_dir, pg_url, tmp_path):
    fleet = Fleet(fleet_dir, pg_url, 3)
    try:
        parts, weights, deltas = _round(fleet, pg_url, tmp_path, 6, seed=2)
        steps = ("advertise", "share_keys", "masked_input", "consistency", "unmask")
        with ThreadPoolExecutor(6) as pool:
            for i, step in enumerate(steps):
                # Every device's message of this stage is acknowledged (stored), then a replica
                # dies, possibly while it holds the claim to close the stage.
                list(pool.map(lambda p, s=step: getattr(p, s)(), parts))
                fleet.kill_and_replace(i % 3)
            outcomes = list(pool.map(lambda p: p.result(), parts))
        assert {(o.status.state, o.status.survivors) for o in outcomes} == {("done", 6)}
        got = _published(parts, tmp_path, "new")
        np.testing.assert_allclose(got, weights + np.mean(deltas, axis=0), rtol=0,
                                   atol=_fedavg_tolerance(parts, 6))
        audit = json.loads(cli(fleet_dir, "audit", "--json", "--database", pg_url))["rounds"]
        assert [(r["state"], r["participants"], r["survivors"]) for r in audit] == [("done", 6, 6)]
    finally:
        fleet.stop()
