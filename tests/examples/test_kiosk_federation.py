"""The kiosk's sync worker in process, against a server that is not there (a closed port).

What needs a live server (a round, a new bundle, erasure after a round, the ledger against the
server's records) is in ``test_kiosk_federated_round.py``, with real processes.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the kiosk needs its extra: pip install -e '.[kiosk]'")

from edgerec.sync import SyncStatus, SyncTimeouts  # noqa: E402
from examples.kiosk.app import COOKIE, FETCH_HEADER  # noqa: E402
from examples.kiosk.config import FederationSettings, parse_args  # noqa: E402
from examples.kiosk.federation import SyncWorker  # noqa: E402
from examples.kiosk.harness import free_port  # noqa: E402

FETCH = {FETCH_HEADER: "1"}
KEY = "ab" * 32


def settings(**overrides: Any) -> FederationSettings:
    """A server URL where nothing listens (the port was free a moment ago)."""
    base = dict(enrolment_token="tok", interval=60.0, idle_after=0.0, min_new_interactions=1)
    return FederationSettings(f"http://127.0.0.1:{free_port()}", **{**base, **overrides})


def federated(make_kiosk: Any, **overrides: Any) -> tuple[Any, SyncWorker]:
    fed = settings(**overrides)
    kiosk = make_kiosk(federation=fed)
    worker = SyncWorker(kiosk, fed, sync_options={"timeouts": SyncTimeouts(request=2.0)})
    kiosk.federation = worker.view
    return kiosk, worker


def visit(client: Any, clicks: int) -> list[str]:
    """A visitor clicks the first card ``clicks`` times, then presses "new visitor"."""
    picked = []
    for _ in range(clicks):
        item = re.search(r'data-item="([^"]+)"', client.get("/grid").text).group(1)
        assert client.post("/click", data={"item": item}, headers=FETCH).status_code == 200
        picked.append(item)
    assert client.post("/reset", headers=FETCH).status_code == 200
    return picked


def test_options_and_environment_configure_the_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert parse_args([]).federation is None  # nothing is sent unless a server is given
    key_file = tmp_path / "server.key"
    key_file.write_text(KEY + "\n")
    fed = parse_args(["--server", "http://127.0.0.1:9", "--enrolment-token", "secret-token",
                      "--server-key", str(key_file), "--sync-interval", "5", "--sync-min-new", "3",
                      "--sync-idle", "0", "--session-retention", "60"]).federation
    assert fed == FederationSettings("http://127.0.0.1:9", "secret-token", bytes.fromhex(KEY),
                                     interval=5, min_new_interactions=3, idle_after=0, retention=60)
    assert "secret-token" not in repr(fed)  # the token stays out of logs
    monkeypatch.setenv("EDGEREC_KIOSK_SERVER", "https://fl.example.com:8000")
    monkeypatch.setenv("EDGEREC_KIOSK_SERVER_KEY", KEY)
    monkeypatch.setenv("EDGEREC_KIOSK_SYNC_INTERVAL", "30")
    fed = parse_args([]).federation
    assert fed is not None and fed.server_key == bytes.fromhex(KEY) and fed.interval == 30
    # Plain http to a LAN host is clear text a network attacker reads: only if the operator names it.
    lan = ["--server", "http://10.0.0.2:8000"]
    assert parse_args([*lan, "--insecure-http-host", "10.0.0.2"]).federation.insecure_http_hosts == ("10.0.0.2",)
    for bad in (["--server-key", "12ab"], ["--server", "ftp://x"], ["--sync-interval", "0"], lan):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_unreachable_server_the_kiosk_serves_and_the_operator_sees_offline(
        make_kiosk: Any, serve: Any) -> None:
    kiosk, worker = federated(make_kiosk)
    started = time.perf_counter()
    result = worker.tick()
    assert result.status is SyncStatus.OFFLINE and not result.ok
    assert time.perf_counter() - started < 10  # a few retries with backoff, then it gives up
    with serve(kiosk) as c:
        assert c.get("/").status_code == 200
        page = c.get("/operator").text
        data = c.get("/operator.json").json()
    assert 'id="federation"' in page and "offline" in page
    fed = data["federation"]
    assert fed["last"]["status"] == "offline" and fed["rounds_joined"] == 0
    assert fed["model_version"] == 1 and fed["model_changed_at"] is None
    assert not fed["key_pinned"] and "never downloaded" in page
    # The enrolment request was put on the ledger before each try to send it (the ledger may
    # over-report bytes that never arrived, never under-report).
    assert fed["ledger_entries"] >= 1 and {row["kind"] for row in fed["ledger"]} == {"enrol"}
    assert fed["ledger_bytes"] == sum(row["bytes"] for row in fed["ledger"])
    assert len(fed["ledger"][0]["sha256"]) == 64 and fed["ledger"][0]["sha256"][:12] in page


def test_ended_sessions_are_held_for_a_round_then_erased_at_the_retention_bound(
        make_kiosk: Any, serve: Any) -> None:
    kiosk, worker = federated(make_kiosk, retention=3600.0)
    with serve(kiosk) as c:
        visit(c, 3)
        session = c.cookies[COOKIE]
        held = kiosk.ended_sessions()
        assert len(held) == 1 and held[0] != session  # the live visitor is not held
        assert kiosk.rec.store.count(held[0]) == 3 and kiosk.forgotten == 0
        fed = c.get("/operator.json").json()["federation"]
        assert (fed["held_sessions"], fed["held_events"]) == (1, 3)
        assert "held for the next round" in c.get("/operator").text
        worker.tick()  # offline, and the events are younger than the retention bound: kept
        assert kiosk.ended_sessions() == held
        worker._wall = lambda: time.time() + 3601  # an hour later, still no round
        worker.tick()
        assert kiosk.ended_sessions() == [] and worker.erased_at_retention == 3
        assert kiosk.rec.store.count() == 0
    # A restart finds no leftovers to erase at start: held sessions wait for the worker.
    kiosk.rec.log("kiosk-0123456789abcdef", "1", "click")
    assert kiosk.forget_orphans() == 0 and kiosk.ended_sessions() == ["kiosk-0123456789abcdef"]


def test_keep_sessions_keeps_them_with_a_server_too(make_kiosk: Any, serve: Any) -> None:
    fed = settings(retention=0.0)
    kiosk = make_kiosk(federation=fed, forget_sessions=False)
    worker = SyncWorker(kiosk, fed, sync_options={"timeouts": SyncTimeouts(request=2.0)})
    with serve(kiosk) as c:
        visit(c, 2)
    worker.tick()
    assert not kiosk.holds_sessions and kiosk.rec.store.count() == 2 and worker.erased_at_retention == 0


def test_conditions_say_mains_power_and_idle_after_the_last_input(make_kiosk: Any, clock: Any) -> None:
    kiosk, worker = federated(make_kiosk, idle_after=30.0, min_new_interactions=5)
    first = worker.conditions()
    assert first.charging and first.unmetered and first.min_new_interactions == 5
    assert not first.idle  # the kiosk just started: counts as input
    clock.advance(31)
    assert worker.conditions().idle
    kiosk.act("kiosk-x", kiosk.rec.bundle.catalogue.item_ids[0], "click")
    assert not worker.conditions().idle
