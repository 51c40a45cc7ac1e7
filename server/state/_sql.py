"""The SQL both state backends share: every ``StateBackend`` method, in plain SQL.

Statements use ``?`` placeholders and only SQL that SQLite and PostgreSQL both run (upserts
with ``ON CONFLICT``, no ``PRAGMA``); a dialect subclass supplies the connection, the
transaction (``_tx``), how an insert returns its new id (``_insert``) and the schema.
"""

from __future__ import annotations

import io
import json
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any, Sequence

import numpy as np

from .._exceptions import ConflictError, ForbiddenError, StageClosedError
from ._rollout_sql import RolloutSql
from .base import (DeviceRecord, EvaluationRecord, EventRecord, ModelRecord, OperatorTokenRecord,
                   RoundRecord, StageMessage, TokenRecord)

__all__ = ["SqlBackend", "purge"]

_ROUND_COLS = ("id, params, state, stage, stage_started_at, opened_at, closed_at, seed, base_version,"
               " out_version, vector_length, population, participants, survivors, epsilon, reason,"
               " frozen, lease_owner, lease_until")
# A message's body lives apart from its digest (stage_bodies): purging a closed round deletes
# whole rows, so their pages are freed, not left sparse in the digests' table.
_MSG_SELECT = ("SELECT m.seq, m.round_id, m.device_id, m.stage, m.sha256, m.size, b.body, m.accepted_at"
               " FROM stage_messages m LEFT JOIN stage_bodies b ON b.seq = m.seq")
_MODEL_COLS = "version, parent, created_at, sha256, round_id, size"
_TOKEN_COLS = "id, token_hash, created_at, expires_at, max_uses, uses, revoked_at, note"
_DEVICE_COLS = ("id, identity_key, credential_hash, enrolled_at, expires_at, revoked_at, token_id,"
                " certificate")
_EVAL_COLS = ("round_id, created_at, base_version, candidate_version, layout_key, config, devices,"
              " noise_multiplier, clip, epsilon, cumulative_epsilon, noise_std, sum_vector, estimate")
_OPERATOR_COLS = "id, token_hash, created_at, revoked_at, note"


class SqlBackend(RolloutSql, ABC):
    """:class:`~.base.StateBackend` in SQL; subclasses bind it to one database engine."""

    #: Row-lock clauses where the engine has them (SQLite's write transactions are exclusive).
    _FOR_SHARE = ""
    _FOR_UPDATE = ""

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Any]:
        """One transaction: yields an object with ``execute(sql, args)`` (``?`` placeholders)
        and ``executemany``; commits on exit, rolls back on an exception, and turns the
        engine's errors into ``ConflictError`` / ``StateError``."""

    @abstractmethod
    def _insert(self, c: Any, sql: str, args: tuple, key: str) -> int:
        """Run an INSERT in transaction ``c`` and return the new row's ``key`` column."""

    def _reclaim(self) -> None:
        """Give the space of purged message bodies back (after a round closed); engines that
        reuse it on their own (PostgreSQL's autovacuum) need nothing here."""

    def _one(self, sql: str, args: tuple = ()) -> Any:
        with self._tx() as c:
            return c.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple = ()) -> list:
        with self._tx() as c:
            return c.execute(sql, args).fetchall()

    # -- tokens and devices ------------------------------------------------------------------
    def add_token(self, token_hash: bytes, now: float, expires_at: float, max_uses: int,
                  note: str) -> TokenRecord:
        with self._tx() as c:
            token_id = self._insert(c, "INSERT INTO tokens (token_hash, created_at, expires_at,"
                                    " max_uses, note) VALUES (?, ?, ?, ?, ?)",
                                    (token_hash, now, expires_at, max_uses, note), "id")
            return TokenRecord(token_id, token_hash, now, expires_at, max_uses, 0, None, note)

    def find_token(self, token_hash: bytes) -> TokenRecord | None:
        row = self._one(f"SELECT {_TOKEN_COLS} FROM tokens WHERE token_hash = ?", (token_hash,))
        return TokenRecord(*row) if row else None

    def revoke_token(self, token_id: int, now: float) -> bool:
        with self._tx() as c:
            return c.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                             (now, token_id)).rowcount == 1

    def tokens(self) -> list[TokenRecord]:
        return [TokenRecord(*row) for row in self._all(f"SELECT {_TOKEN_COLS} FROM tokens ORDER BY id")]

    def enrol(self, token_id: int, identity_key: bytes, credential_hash: bytes, now: float,
              expires_at: float | None) -> DeviceRecord:
        with self._tx() as c:
            # Use the token and add the device in one transaction: a token is never over-used.
            used = c.execute("UPDATE tokens SET uses = uses + 1 WHERE id = ? AND uses < max_uses"
                             " AND revoked_at IS NULL AND expires_at > ?", (token_id, now)).rowcount
            if used != 1:
                raise ForbiddenError("the enrolment token is used up, revoked or expired")
            device_id = self._insert(c, "INSERT INTO devices (identity_key, credential_hash,"
                                     " enrolled_at, expires_at, token_id) VALUES (?, ?, ?, ?, ?)",
                                     (identity_key, credential_hash, now, expires_at, token_id), "id")
            return DeviceRecord(device_id, identity_key, credential_hash, now, expires_at, None,
                                token_id, None)

    def device(self, device_id: int) -> DeviceRecord | None:
        row = self._one(f"SELECT {_DEVICE_COLS} FROM devices WHERE id = ?", (device_id,))
        return DeviceRecord(*row) if row else None

    def reissue_credential(self, identity_key: bytes, token_id: int, credential_hash: bytes,
                           now: float, expires_at: float | None) -> DeviceRecord | None:
        with self._tx() as c:
            c.execute("UPDATE devices SET credential_hash = ?, expires_at = ? WHERE identity_key = ?"
                      " AND token_id = ? AND revoked_at IS NULL AND EXISTS (SELECT 1 FROM tokens"
                      " WHERE id = ? AND revoked_at IS NULL AND expires_at > ?)",
                      (credential_hash, expires_at, identity_key, token_id, token_id, now))
            row = c.execute(f"SELECT {_DEVICE_COLS} FROM devices WHERE identity_key = ?",
                            (identity_key,)).fetchone()
            return DeviceRecord(*row) if row else None

    def revoke_device(self, device_id: int, now: float) -> bool:
        with self._tx() as c:
            return c.execute("UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                             (now, device_id)).rowcount == 1

    def active_devices(self, now: float) -> list[DeviceRecord]:
        rows = self._all(f"SELECT {_DEVICE_COLS} FROM devices WHERE revoked_at IS NULL AND (expires_at IS NULL"
                         " OR expires_at > ?) AND certificate IS NOT NULL ORDER BY id", (now,))
        return [DeviceRecord(*row) for row in rows]

    def set_certificate(self, device_id: int, certificate: bytes) -> bool:
        with self._tx() as c:
            return c.execute("UPDATE devices SET certificate = ? WHERE id = ?",
                             (certificate, device_id)).rowcount == 1

    def uncertified_devices(self) -> list[DeviceRecord]:
        rows = self._all(f"SELECT {_DEVICE_COLS} FROM devices WHERE certificate IS NULL AND revoked_at IS NULL"
                         " ORDER BY id")
        return [DeviceRecord(*row) for row in rows]

    def certificates(self) -> list[tuple[int, bytes]]:
        rows = self._all("SELECT id, certificate FROM devices WHERE certificate IS NOT NULL ORDER BY id")
        return [(int(i), bytes(cert)) for i, cert in rows]

    # -- rounds ------------------------------------------------------------------------------
    def create_round(self, params: dict[str, Any], seed: bytes, now: float, base_version: int,
                     vector_length: int, members: Sequence[int],
                     population: int | None = None) -> RoundRecord:
        with self._tx() as c:
            if c.execute("SELECT 1 FROM rounds WHERE state = 'open'").fetchone():
                raise ConflictError("a round is already open; it must finish or abort first")
            round_id = self._insert(
                c, "INSERT INTO rounds (params, state, stage, stage_started_at, opened_at, seed,"
                " base_version, vector_length, population) VALUES (?, 'open', 0, ?, ?, ?, ?, ?, ?)",
                (json.dumps(params), now, now, seed, base_version, vector_length,
                 len(members) if population is None else population), "id")
            c.executemany("INSERT INTO round_members VALUES (?, ?)", [(round_id, d) for d in members])
            row = c.execute(f"SELECT {_ROUND_COLS} FROM rounds WHERE id = ?", (round_id,)).fetchone()
            return _round(row)

    def round(self, round_id: int) -> RoundRecord | None:
        row = self._one(f"SELECT {_ROUND_COLS} FROM rounds WHERE id = ?", (round_id,))
        return _round(row) if row else None

    def rounds(self, state: str | None = None) -> list[RoundRecord]:
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        return [_round(r) for r in self._all(f"SELECT {_ROUND_COLS} FROM rounds {where} ORDER BY id", args)]

    def members(self, round_id: int) -> dict[int, bytes]:
        rows = self._all("SELECT d.id, d.identity_key FROM round_members m JOIN devices d"
                         " ON d.id = m.device_id WHERE m.round_id = ? ORDER BY d.id", (round_id,))
        return {int(i): bytes(k) for i, k in rows}

    def is_member(self, round_id: int, device_id: int) -> bool:
        row = self._one("SELECT 1 FROM round_members WHERE round_id = ? AND device_id = ?",
                        (round_id, device_id))
        return row is not None

    def claim_stage(self, round_id: int, stage: int, owner: str, now: float,
                    lease_s: float) -> bool:
        with self._tx() as c:
            return c.execute(
                "UPDATE rounds SET frozen = 1, lease_owner = ?, lease_until = ? WHERE id = ?"
                " AND state = 'open' AND stage = ? AND (lease_owner IS NULL OR lease_owner = ?"
                " OR lease_until < ?)", (owner, now + lease_s, round_id, stage, owner, now)
            ).rowcount == 1

    def set_stage(self, round_id: int, stage: int, started_at: float,
                  owner: str | None = None) -> bool:
        sql = ("UPDATE rounds SET stage = ?, stage_started_at = ?, frozen = 0, lease_owner = NULL,"
               " lease_until = NULL WHERE id = ? AND state = 'open' AND stage = ?")
        args: tuple = (stage, started_at, round_id, stage - 1)
        if owner is not None:
            sql, args = sql + " AND lease_owner = ?", args + (owner,)
        with self._tx() as c:
            return c.execute(sql, args).rowcount == 1

    def add_message(self, round_id: int, device_id: int, stage: int, body: bytes, sha256: bytes,
                    now: float) -> StageMessage:
        with self._tx() as c:
            # The round row is read under a shared lock (PostgreSQL; SQLite's write transaction
            # is exclusive anyway), so a replica's claim_stage cannot commit between this
            # check and the insert: no message joins a stage after it froze.
            row = c.execute(f"SELECT stage, frozen FROM rounds WHERE id = ? AND state = 'open'"
                            f"{self._FOR_SHARE}", (round_id,)).fetchone()
            if row is None or int(row[0]) != stage or row[1]:
                raise StageClosedError(f"round {round_id} is not collecting stage {stage} now")
            seq = self._insert(c, "INSERT INTO stage_messages (round_id, device_id, stage, sha256,"
                               " size, accepted_at) VALUES (?, ?, ?, ?, ?, ?)",
                               (round_id, device_id, stage, sha256, len(body), now), "seq")
            c.execute("INSERT INTO stage_bodies (seq, body) VALUES (?, ?)", (seq, body))
            return StageMessage(seq, round_id, device_id, stage, sha256, len(body), body, now)

    def message_digest(self, round_id: int, device_id: int, stage: int) -> bytes | None:
        row = self._one("SELECT sha256 FROM stage_messages WHERE round_id = ? AND device_id = ?"
                        " AND stage = ?", (round_id, device_id, stage))
        return bytes(row[0]) if row else None

    def stage_activity(self, round_id: int, stage: int) -> tuple[int, float | None]:
        row = self._one("SELECT COUNT(*), MAX(accepted_at) FROM stage_messages WHERE round_id = ?"
                        " AND stage = ?", (round_id, stage))
        return int(row[0]), (None if row[1] is None else float(row[1]))

    def messages(self, round_id: int, stage: int | None = None) -> list[StageMessage]:
        where, args = ("AND m.stage = ?", (round_id, stage)) if stage is not None else ("", (round_id,))
        rows = self._all(f"{_MSG_SELECT} WHERE m.round_id = ? {where} ORDER BY m.seq", args)
        return [StageMessage(r[0], r[1], r[2], r[3], bytes(r[4]), r[5],
                             None if r[6] is None else bytes(r[6]), r[7]) for r in rows]

    def abort_round(self, round_id: int, now: float, reason: str, participants: int | None) -> None:
        with self._tx() as c:
            c.execute("UPDATE rounds SET state = 'aborted', closed_at = ?, reason = ?, participants = ?"
                      " WHERE id = ? AND state = 'open'", (now, reason, participants, round_id))
            purge(c, round_id)
        self._reclaim()

    def complete_round(self, round_id: int, now: float, *, participants: int, survivors: int,
                       epsilon: float, model_version: int, archive: bytes, sha256: str,
                       strategy: str, strategy_step: int,
                       strategy_arrays: dict[str, np.ndarray], owner: str | None = None) -> None:
        with self._tx() as c:
            base = c.execute(f"SELECT base_version, lease_owner FROM rounds WHERE id = ? AND"
                             f" state = 'open'{self._FOR_UPDATE}", (round_id,)).fetchone()
            if base is None:
                raise ConflictError(f"round {round_id} is not open")
            if owner is not None and base[1] != owner:
                raise ConflictError(f"round {round_id} is being closed by another server")
            c.execute("INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (model_version, base[0], now, sha256, round_id, len(archive), archive))
            c.execute("INSERT INTO strategy_state VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE"
                      " SET step = excluded.step, arrays = excluded.arrays",
                      (strategy, strategy_step, _pack(strategy_arrays)))
            c.execute("UPDATE rounds SET state = 'done', stage = 4, closed_at = ?, out_version = ?,"
                      " participants = ?, survivors = ?, epsilon = ? WHERE id = ?",
                      (now, model_version, participants, survivors, epsilon, round_id))
            purge(c, round_id)
        self._reclaim()

    def complete_evaluation(self, record: EvaluationRecord, *, participants: int,
                            owner: str | None = None) -> None:
        with self._tx() as c:
            row = c.execute(f"SELECT lease_owner FROM rounds WHERE id = ? AND state = 'open'"
                            f"{self._FOR_UPDATE}", (record.round_id,)).fetchone()
            if row is None:
                raise ConflictError(f"round {record.round_id} is not open")
            if owner is not None and row[0] != owner:
                raise ConflictError(f"round {record.round_id} is being closed by another server")
            c.execute(f"INSERT INTO evaluations ({_EVAL_COLS}) VALUES"
                      f" ({', '.join('?' * 14)})", _eval_row(record))
            c.execute("UPDATE rounds SET state = 'done', stage = 4, closed_at = ?, out_version = NULL,"
                      " participants = ?, survivors = ?, epsilon = ? WHERE id = ?",
                      (record.created_at, participants, record.devices, record.cumulative_epsilon,
                       record.round_id))
            purge(c, record.round_id)
        self._reclaim()

    def evaluations(self) -> list[EvaluationRecord]:
        return [_evaluation(r) for r in self._all(f"SELECT {_EVAL_COLS} FROM evaluations ORDER BY round_id")]

    def evaluation(self, round_id: int) -> EvaluationRecord | None:
        row = self._one(f"SELECT {_EVAL_COLS} FROM evaluations WHERE round_id = ?", (round_id,))
        return _evaluation(row) if row else None

    # -- operator tokens ---------------------------------------------------------------------
    def add_operator_token(self, token_hash: bytes, now: float, note: str) -> OperatorTokenRecord:
        with self._tx() as c:
            token_id = self._insert(c, "INSERT INTO operator_tokens (token_hash, created_at, note)"
                                    " VALUES (?, ?, ?)", (token_hash, now, note), "id")
            return OperatorTokenRecord(token_id, token_hash, now, None, note)

    def find_operator_token(self, token_hash: bytes) -> OperatorTokenRecord | None:
        row = self._one(f"SELECT {_OPERATOR_COLS} FROM operator_tokens WHERE token_hash = ?",
                        (token_hash,))
        return OperatorTokenRecord(row[0], bytes(row[1]), row[2], row[3], row[4]) if row else None

    def revoke_operator_token(self, token_id: int, now: float) -> bool:
        with self._tx() as c:
            return c.execute("UPDATE operator_tokens SET revoked_at = ? WHERE id = ? AND revoked_at"
                             " IS NULL", (now, token_id)).rowcount == 1

    # -- models ------------------------------------------------------------------------------
    def add_model(self, version: int, parent: int | None, now: float, archive: bytes,
                  sha256: str, round_id: int | None) -> ModelRecord:
        with self._tx() as c:
            c.execute("INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (version, parent, now, sha256, round_id, len(archive), archive))
        return ModelRecord(version, parent, now, sha256, round_id, len(archive))

    def latest_model(self) -> ModelRecord | None:
        row = self._one(f"SELECT {_MODEL_COLS} FROM models ORDER BY version DESC LIMIT 1")
        return ModelRecord(*row) if row else None

    def model(self, version: int) -> ModelRecord | None:
        row = self._one(f"SELECT {_MODEL_COLS} FROM models WHERE version = ?", (version,))
        return ModelRecord(*row) if row else None

    def model_archive(self, version: int) -> bytes | None:
        row = self._one("SELECT archive FROM models WHERE version = ?", (version,))
        return bytes(row[0]) if row else None

    def strategy_state(self, name: str) -> tuple[int, dict[str, np.ndarray]] | None:
        row = self._one("SELECT step, arrays FROM strategy_state WHERE name = ?", (name,))
        if row is None:
            return None
        with np.load(io.BytesIO(row[1]), allow_pickle=False) as npz:
            return int(row[0]), {k: npz[k] for k in npz.files}

    # -- operations log ----------------------------------------------------------------------
    def log_event(self, kind: str, detail: dict[str, Any], now: float) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO events (ts, kind, detail) VALUES (?, ?, ?)",
                      (now, kind, json.dumps(detail, sort_keys=True)))

    def events(self, limit: int = 1000) -> list[EventRecord]:
        rows = self._all("SELECT seq, ts, kind, detail FROM events ORDER BY seq DESC LIMIT ?", (limit,))
        return [EventRecord(s, t, k, json.loads(d)) for s, t, k, d in reversed(rows)]


def _round(row: tuple) -> RoundRecord:
    values = list(row)
    values[1] = json.loads(values[1])
    values[7] = bytes(values[7])
    values[16] = bool(values[16])
    return RoundRecord(*values)


def _eval_row(r: EvaluationRecord) -> tuple:
    return (r.round_id, r.created_at, r.base_version, r.candidate_version, r.layout_key,
            json.dumps(r.config, sort_keys=True), r.devices, r.noise_multiplier, r.clip, r.epsilon,
            r.cumulative_epsilon, r.noise_std, json.dumps(list(r.sum_vector)),
            json.dumps(r.estimate, sort_keys=True))


def _evaluation(row: tuple) -> EvaluationRecord:
    v = list(row)
    return EvaluationRecord(int(v[0]), float(v[1]), int(v[2]), None if v[3] is None else int(v[3]),
                            v[4], json.loads(v[5]), int(v[6]), float(v[7]), float(v[8]), float(v[9]),
                            float(v[10]), float(v[11]), tuple(json.loads(v[12])), json.loads(v[13]))


def purge(c: Any, round_id: int) -> None:
    """Drop the message bodies of a closed round (in transaction ``c``)."""
    # A closed round needs no message bodies (masked vectors, shares): keep digests and sizes.
    c.execute("DELETE FROM stage_bodies WHERE seq IN (SELECT seq FROM stage_messages"
              " WHERE round_id = ?)", (round_id,))


def _pack(arrays: dict[str, np.ndarray]) -> bytes:
    out = io.BytesIO()
    named: dict[str, Any] = dict(arrays)  # numpy's stub types **kwds of savez as its bool flag
    np.savez(out, **named)
    return out.getvalue()
