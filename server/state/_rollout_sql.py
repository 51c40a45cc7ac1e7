"""The SQL of rollout statements (``StateBackend.add_rollout``, ``rollout``, ``rollouts``),
shared by both backends: a mixin of ``SqlBackend``, which supplies ``_tx`` and ``_all``."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from typing import Any

from .._exceptions import ConflictError
from .base import RolloutRecord

__all__ = ["RolloutSql"]

_COLS = ("seq, created_at, promoted, candidate, share, rejected, decision, reason, round_id,"
         " statement, signature")


class RolloutSql:
    """Rollout statements in SQL; one row per statement, ``seq`` its primary key."""

    def _tx(self) -> AbstractContextManager[Any]:  # pragma: no cover - SqlBackend's
        raise NotImplementedError

    def _all(self, sql: str, args: tuple = ()) -> list:  # pragma: no cover - SqlBackend's
        raise NotImplementedError

    def add_rollout(self, record: RolloutRecord) -> None:
        with self._tx() as c:
            newest = c.execute("SELECT MAX(seq) FROM rollouts").fetchone()[0]
            expected = 1 if newest is None else int(newest) + 1
            if record.seq != expected:
                raise ConflictError(f"rollout statement {record.seq} is not the next one "
                                    f"({expected}): another decision was stored first")
            # Two writers that both read the same MAX insert the same seq: the primary key
            # lets one commit and makes the other a ConflictError.
            c.execute(f"INSERT INTO rollouts ({_COLS}) VALUES ({', '.join('?' * 11)})",
                      (record.seq, record.created_at, record.promoted, record.candidate,
                       record.share, json.dumps(list(record.rejected)), record.decision,
                       record.reason, record.round_id, record.statement, record.signature))

    def rollout(self) -> RolloutRecord | None:
        rows = self._all(f"SELECT {_COLS} FROM rollouts ORDER BY seq DESC LIMIT 1")
        return _record(rows[0]) if rows else None

    def rollouts(self) -> list[RolloutRecord]:
        return [_record(r) for r in self._all(f"SELECT {_COLS} FROM rollouts ORDER BY seq")]


def _record(row: tuple) -> RolloutRecord:
    v = list(row)
    return RolloutRecord(int(v[0]), float(v[1]), int(v[2]), None if v[3] is None else int(v[3]),
                         float(v[4]), tuple(int(x) for x in json.loads(v[5])), v[6], v[7],
                         None if v[8] is None else int(v[8]), bytes(v[9]), bytes(v[10]))
