"""The persistence interface: every piece of server state goes through a ``StateBackend``.

Each method is one transaction that is durable when it returns, so the server acknowledges
nothing it has not written. ``SqliteBackend`` is the embedded default; a PostgreSQL backend
implements the same Protocol (plain SQL, no SQLite-only features beyond upserts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

__all__ = ["DeviceRecord", "EvaluationRecord", "EventRecord", "ModelRecord", "OperatorTokenRecord",
           "RolloutRecord", "RoundRecord", "StageMessage", "StateBackend", "TokenRecord"]


@dataclass(frozen=True)
class TokenRecord:
    """An enrolment token (only its SHA-256 is stored)."""

    id: int
    token_hash: bytes
    created_at: float
    expires_at: float
    max_uses: int
    uses: int
    revoked_at: float | None
    note: str


@dataclass(frozen=True)
class DeviceRecord:
    """An enrolled device: its id is also its secure-aggregation id. ``certificate`` is its
    enrolment certificate from the authority (None until the authority has signed one)."""

    id: int
    identity_key: bytes
    credential_hash: bytes
    enrolled_at: float
    expires_at: float | None
    revoked_at: float | None
    token_id: int | None
    certificate: bytes | None = None


@dataclass(frozen=True)
class RoundRecord:
    """A round and, once closed, what the privacy audit reports about it."""

    id: int
    params: dict[str, Any]
    state: str  # "open", "done" or "aborted"
    stage: int  # edgerec.secagg.Stage being collected while open
    stage_started_at: float
    opened_at: float
    closed_at: float | None
    seed: bytes  # the server's randomness for this round: replay is deterministic
    base_version: int
    out_version: int | None
    vector_length: int
    population: int  # devices active at opening: the cohort (members) was drawn from them
    participants: int | None
    survivors: int | None
    epsilon: float | None
    reason: str
    #: The stage being collected is closing: no more messages for it (``claim_stage``).
    frozen: bool = False
    #: The server replica closing it, and until when its claim holds (then another may).
    lease_owner: str | None = None
    lease_until: float | None = None


@dataclass(frozen=True)
class StageMessage:
    """An accepted secure-aggregation message; ``body`` is None once the round has closed."""

    seq: int
    round_id: int
    device_id: int
    stage: int
    sha256: bytes
    size: int
    body: bytes | None
    accepted_at: float


@dataclass(frozen=True)
class ModelRecord:
    """A published model version (the signed archive is fetched separately)."""

    version: int
    parent: int | None
    created_at: float
    sha256: str
    round_id: int | None
    size: int


@dataclass(frozen=True)
class EvaluationRecord:
    """What an evaluation round measured (``server/evaluation_store.py``), stored with its
    completion.

    ``sum_vector`` is the decoded, noised sum of the survivors' vectors in the layout's slot
    order (what was released), ``noise_std`` the std of its noise per slot, ``estimate`` the
    metrics read from it (``edgerec.fedeval.FederatedEval.to_dict()``). ``epsilon`` is what this
    round alone costs, ``cumulative_epsilon`` what every completed round costs up to it (both
    at the server's delta; ``inf`` without noise). ``config`` is the ``EvalConfig`` spelled
    out; ``base_version`` the model in the installed slot, ``candidate_version`` the other.
    """

    round_id: int
    created_at: float
    base_version: int
    candidate_version: int | None
    layout_key: str
    config: dict[str, Any]
    devices: int
    noise_multiplier: float
    clip: float
    epsilon: float
    cumulative_epsilon: float
    noise_std: float
    sum_vector: tuple[float, ...]
    estimate: dict[str, Any]


@dataclass(frozen=True)
class OperatorTokenRecord:
    """An operator's bearer token for the operator routes (``/v1/analytics``); only its
    SHA-256 is stored."""

    id: int
    token_hash: bytes
    created_at: float
    revoked_at: float | None
    note: str


@dataclass(frozen=True)
class RolloutRecord:
    """A signed rollout statement (``edgerec.sync.rollout``) and the decision that made it.

    ``statement`` and ``signature`` are what devices receive (``GET /v1/rollout``); the other
    fields repeat the statement's for queries and the audit. ``decision`` is ``canary`` (a
    candidate goes to a share of devices), ``promote``, ``reject`` or ``set`` (the operator
    named the promoted version); ``round_id`` the evaluation round a decision rests on.
    """

    seq: int
    created_at: float
    promoted: int
    candidate: int | None
    share: float
    rejected: tuple[int, ...]
    decision: str
    reason: str
    round_id: int | None
    statement: bytes
    signature: bytes


@dataclass(frozen=True)
class EventRecord:
    """One line of the operations log (tokens, enrolments, revocations, rounds)."""

    seq: int
    ts: float
    kind: str
    detail: dict[str, Any]


class StateBackend(Protocol):
    """What the server needs from a database. Each call is one durable transaction."""

    # tokens and devices
    def add_token(self, token_hash: bytes, now: float, expires_at: float, max_uses: int,
                  note: str) -> TokenRecord: ...
    def find_token(self, token_hash: bytes) -> TokenRecord | None: ...
    def revoke_token(self, token_id: int, now: float) -> bool: ...
    def tokens(self) -> list[TokenRecord]: ...
    def enrol(self, token_id: int, identity_key: bytes, credential_hash: bytes, now: float,
              expires_at: float | None) -> DeviceRecord: ...
    def device(self, device_id: int) -> DeviceRecord | None: ...
    def reissue_credential(self, identity_key: bytes, token_id: int, credential_hash: bytes,
                           now: float, expires_at: float | None) -> DeviceRecord | None:
        """A retried enrolment: the device with ``identity_key`` gets ``credential_hash`` (and
        ``expires_at``) in place of its old credential, only if it is not revoked, it enrolled
        with token ``token_id``, and that token is neither revoked nor expired at ``now``
        (uses are not counted: it is the same enrolment). One compare-and-set transaction.
        Returns the device as stored afterwards (its ``credential_hash`` tells whether it was
        replaced), or None if no device has that key."""
        ...
    def revoke_device(self, device_id: int, now: float) -> bool: ...
    def active_devices(self, now: float) -> list[DeviceRecord]:
        """Devices that may be drawn into a round: not revoked, not expired, certified."""
        ...
    def set_certificate(self, device_id: int, certificate: bytes) -> bool: ...
    def uncertified_devices(self) -> list[DeviceRecord]: ...
    def certificates(self) -> list[tuple[int, bytes]]:
        """(device id, certificate) of every certified device: the audit's public list."""
        ...

    # rounds and their messages
    def create_round(self, params: dict[str, Any], seed: bytes, now: float, base_version: int,
                     vector_length: int, members: Sequence[int],
                     population: int | None = None) -> RoundRecord: ...
    def round(self, round_id: int) -> RoundRecord | None: ...
    def rounds(self, state: str | None = None) -> list[RoundRecord]: ...
    def members(self, round_id: int) -> dict[int, bytes]: ...
    def is_member(self, round_id: int, device_id: int) -> bool:
        """Whether ``device_id`` was drawn into round ``round_id`` (False if there is no such
        round): one indexed lookup, made on every device request about a round."""
        ...
    def claim_stage(self, round_id: int, stage: int, owner: str, now: float,
                    lease_s: float) -> bool:
        """Freeze ``stage`` of an open round (no message for it is accepted after this) and
        make ``owner`` the replica that closes it, until ``now + lease_s``. False if the round
        is not open at that stage, or another owner's claim has not expired."""
        ...
    def set_stage(self, round_id: int, stage: int, started_at: float,
                  owner: str | None = None) -> bool:
        """Open ``stage`` (the previous one closed): only from ``stage - 1`` and, with
        ``owner``, only while that owner's claim holds. Clears the claim; False if refused."""
        ...
    def add_message(self, round_id: int, device_id: int, stage: int, body: bytes, sha256: bytes,
                    now: float) -> StageMessage:
        """Store an accepted message; ``StageClosedError`` unless the round is open, collecting
        ``stage`` and not frozen (checked in the same transaction)."""
        ...
    def stage_activity(self, round_id: int, stage: int) -> tuple[int, float | None]:
        """(messages stored for ``stage``, when the last one was accepted)."""
        ...
    def message_digest(self, round_id: int, device_id: int, stage: int) -> bytes | None: ...
    def messages(self, round_id: int, stage: int | None = None) -> list[StageMessage]:
        """The round's messages in acceptance order (only ``stage``'s, if given)."""
        ...
    def abort_round(self, round_id: int, now: float, reason: str, participants: int | None) -> None: ...
    def complete_round(self, round_id: int, now: float, *, participants: int, survivors: int,
                       epsilon: float, model_version: int, archive: bytes, sha256: str,
                       strategy: str, strategy_step: int,
                       strategy_arrays: dict[str, np.ndarray], owner: str | None = None) -> None:
        """Publish the round's model and close it; with ``owner``, only while that replica's
        claim on the round holds (ConflictError otherwise, and nothing is written)."""
        ...

    def complete_evaluation(self, record: EvaluationRecord, *, participants: int,
                            owner: str | None = None) -> None:
        """Store an evaluation round's result and close the round (done, no model; its
        ``epsilon`` the record's cumulative figure; message bodies erased) in one transaction;
        with ``owner``, only while that replica's claim holds (ConflictError otherwise, and
        nothing is written). ConflictError too if the round is not open."""
        ...
    def evaluations(self) -> list[EvaluationRecord]:
        """Every stored evaluation, oldest round first."""
        ...
    def evaluation(self, round_id: int) -> EvaluationRecord | None: ...

    # operator tokens
    def add_operator_token(self, token_hash: bytes, now: float, note: str) -> OperatorTokenRecord: ...
    def find_operator_token(self, token_hash: bytes) -> OperatorTokenRecord | None: ...
    def revoke_operator_token(self, token_id: int, now: float) -> bool: ...

    # rollout statements
    def add_rollout(self, record: RolloutRecord) -> None:
        """Store the next rollout statement: only if ``record.seq`` is one more than the newest
        stored (1 for the first), else ConflictError and nothing is written (two replicas or
        operators deciding at once: one wins)."""
        ...
    def rollout(self) -> RolloutRecord | None:
        """The newest rollout statement, or None before the first."""
        ...
    def rollouts(self) -> list[RolloutRecord]:
        """Every rollout statement, oldest first."""
        ...

    # models and optimizer state
    def add_model(self, version: int, parent: int | None, now: float, archive: bytes,
                  sha256: str, round_id: int | None) -> ModelRecord: ...
    def latest_model(self) -> ModelRecord | None: ...
    def model(self, version: int) -> ModelRecord | None: ...
    def model_archive(self, version: int) -> bytes | None: ...
    def strategy_state(self, name: str) -> tuple[int, dict[str, np.ndarray]] | None: ...

    # operations log
    def log_event(self, kind: str, detail: dict[str, Any], now: float) -> None: ...
    def events(self, limit: int = 1000) -> list[EventRecord]: ...

    def close(self) -> None: ...
