"""The server never stores an individual unmasked delta: search its database for them."""

from __future__ import annotations

import json
import sqlite3

import numpy as np

from edgerec.sync import RoundParticipant, SyncTimeouts

from srv_helpers import authority_key, cli, enrol_devices


def _stored_bytes(data_dir) -> bytes:
    """Every byte of the state: the database file and its WAL, plus every blob read back."""
    raw = b"".join(p.read_bytes() for p in sorted(data_dir.glob("state.sqlite3*")))
    conn = sqlite3.connect(f"file:{data_dir / 'state.sqlite3'}?mode=ro", uri=True)
    try:
        blobs = [row[0] for table, col in (("stage_bodies", "body"), ("models", "archive"),
                                           ("strategy_state", "arrays"))
                 for row in conn.execute(f"SELECT {col} FROM {table} WHERE {col} IS NOT NULL")]
    finally:
        conn.close()
    return raw + b"".join(bytes(b) for b in blobs)


def _windows(vector: np.ndarray, dtype: str, width: int = 8) -> list[bytes]:
    """A few runs of consecutive entries: any stored copy of the vector would contain them."""
    arr = np.ascontiguousarray(vector, dtype=dtype)
    return [arr[i : i + width].tobytes() for i in range(0, arr.size - width, max(1, arr.size // 5))]


def test_database_holds_no_individual_delta_during_or_after_a_round(server, data_dir):
    token = cli(data_dir, "token", "create", "--uses", "4")
    devices = enrol_devices(server.url, token, 4)
    cli(data_dir, "round", "open", "--min", "4", "--deadline", "30")
    length = devices[0].api.current_round().vector_length
    rng = np.random.default_rng(11)
    deltas = [rng.normal(0, 0.05, length) for _ in devices]
    pinned = authority_key(data_dir)
    parts = [RoundParticipant(d.api, d.identity, d.api.current_round(), deltas[i], authority_key=pinned,
                              timeouts=SyncTimeouts(poll_interval=0.05))
             for i, d in enumerate(devices)]
    for step in ("advertise", "share_keys", "masked_input"):
        for part in parts:
            getattr(part, step)()
    needles = []
    for part, delta in zip(parts, deltas):
        needles += _windows(part.private.encoded, "<u4")  # what would be masked
        needles += _windows(delta, "<f8") + _windows(delta, "<f4")  # the float delta itself
    stored = _stored_bytes(data_dir)
    masked = next(body for kind, body in devices[0].uploads if kind == "masked_input")
    assert masked[64:128] in stored  # control: the search does find what is stored (masked)
    assert not [n for n in needles if n in stored]
    for step in ("consistency", "unmask"):
        for part in parts:
            getattr(part, step)()
    assert {p.result().status.state for p in parts} == {"done"}
    stored = _stored_bytes(data_dir)
    assert not [n for n in needles if n in stored]
    # After the round only digests and sizes of its messages remain.
    conn = sqlite3.connect(f"file:{data_dir / 'state.sqlite3'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT COUNT(*), (SELECT COUNT(*) FROM stage_bodies), SUM(size)"
                            " FROM stage_messages").fetchone()
    finally:
        conn.close()
    assert rows[0] == 5 * 4 and rows[1] == 0 and rows[2] > 4 * length * 4  # 5 stages, 4 devices
    # The sum itself is published (as the new model), which is the point.
    assert json.loads(cli(data_dir, "audit", "--json"))["rounds"][0]["survivors"] == 4
