"""Canary and rollback: which model version devices run, and the rule that moves it.

The server keeps a *promoted* version apart from the newest published one, in signed rollout
statements (``edgerec.sync.rollout.RolloutStatement``, signed by the bundle key devices pin,
stored one row each in the state's ``rollouts`` table, served by ``GET /v1/rollout``):

- Before the first statement nothing changes: devices install the newest published model.
- ``start_canary`` holds a published version as the *candidate*: the devices whose
  ``canary_bucket(device id, candidate)`` is below the share install it, every other device
  stays on (or goes to) the promoted version. From the first statement on, a newly published
  model reaches no device until a statement names it.
- An evaluation round then compares candidate and promoted on the devices that run the promoted
  version (rounds draw only devices the statement assigns the round's base, the promoted
  version, to: a canary device runs another model and could not take part).
- ``decide`` applies :func:`decision_rule` to the newest evaluation of that pair and, unless it
  says "keep collecting", signs the next statement: *promote* (every device moves to the
  candidate) or *reject* (the candidate joins the rejected versions, which only grow; canary
  devices go back to the promoted version, the one older install devices accept, and only
  because the signed statement names it). Each decision, "keep" included, is written to the
  operations log with its reason; statements and their reasons are in ``GET /v1/audit``.

The decision is the operator's command (``edgerec-server rollout decide``), not automatic at the
end of an evaluation round: it is a signed, irreversible act (a rejected version never installs
again), the operator may want several rounds before it, and a scheduler can run the command
after each round; ``add_rollout``'s compare-and-set makes concurrent decisions safe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edgerec._exceptions import ConfigError
from edgerec.sync import RolloutAnswer
from edgerec.sync.rollout import DOMAIN, RolloutStatement, statement_bytes

from ._exceptions import BadRequestError, ConflictError, NotFoundError
from .publisher import Publisher
from .state import EvaluationRecord, ModelRecord, RolloutRecord, StateBackend

__all__ = ["DEFAULT_SHARE", "METRIC", "Decision", "answer", "current", "decide", "decision_rule",
           "rollout_rows", "serving_base", "served_version", "set_promoted", "start_canary"]

#: The canary share when the operator names none.
DEFAULT_SHARE = 0.1
#: The paired difference the rule reads (candidate minus installed, per device, with interval).
METRIC = "candidate-installed.ndcg@10"
PROMOTE, REJECT, KEEP = "promote", "reject", "keep"


@dataclass(frozen=True)
class Decision:
    """What ``decide`` concluded, and why; ``record`` is the statement it signed (None: kept)."""

    action: str
    reason: str
    round_id: int | None
    low: float | None
    high: float | None
    record: RolloutRecord | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.action, "reason": self.reason, "round_id": self.round_id,
                "metric": METRIC, "low": self.low, "high": self.high,
                "seq": self.record.seq if self.record else None}


def decision_rule(low: float | None, high: float | None, margin: float) -> tuple[str, str]:
    """The stated rule on the interval [low, high] of :data:`METRIC`: *reject* when its upper
    end is below 0 (the candidate is worse beyond the interval), *promote* when its lower end
    is at least ``-margin`` (not worse by more than the margin), else *keep* collecting.
    Pure."""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return KEEP, f"{METRIC} has no interval yet (no device could measure it)"
    span = f"{METRIC} in [{low:.4f}, {high:.4f}]"
    if high < 0:
        return REJECT, f"{span}: worse beyond the interval (upper end < 0)"
    if low >= -margin:
        return PROMOTE, f"{span}: not worse beyond the margin (lower end >= -{margin:g})"
    return KEEP, f"{span}: inconclusive at margin {margin:g}; keep collecting"


def current(state: StateBackend) -> RolloutStatement | None:
    """The newest stored statement, or None before the first."""
    record = state.rollout()
    return None if record is None else _statement_of(record)


def serving_base(state: StateBackend, publisher: Publisher) -> ModelRecord:
    """The model rounds build on and measure: the promoted version, or the newest published
    one before the first statement."""
    statement = current(state)
    if statement is None:
        return publisher.latest()
    record = state.model(statement.promoted)
    if record is None:
        raise NotFoundError(f"the promoted model {statement.promoted} is not stored")
    return record


def served_version(state: StateBackend, device_id: int | None) -> int | None:
    """What ``/v1/models/latest`` serves: the version the statement assigns to ``device_id``
    (the promoted one to an anonymous caller); the newest published before any statement."""
    statement = current(state)
    if statement is not None:
        return statement.promoted if device_id is None else statement.version_for(device_id)
    latest = state.latest_model()
    return None if latest is None else latest.version


def answer(state: StateBackend) -> RolloutAnswer | None:
    """What ``GET /v1/rollout`` sends: the newest statement's bytes and signature."""
    record = state.rollout()
    return None if record is None else RolloutAnswer(record.statement, record.signature)


def start_canary(state: StateBackend, publisher: Publisher, candidate: int, share: float,
                 now: float, promoted: int | None = None) -> RolloutRecord:
    """Hold published version ``candidate`` as the candidate for ``share`` of the devices.

    ``promoted`` defaults to the current statement's, or (first statement) the newest published
    version below the candidate. BadRequestError: an unpublished, rejected or not newer
    candidate, a share outside (0, 1]; ConflictError: another candidate is still undecided.
    """
    if not 0 < share <= 1:
        raise BadRequestError(f"the canary share must be in (0, 1], got {share}")
    statement = current(state)
    if statement is not None and statement.candidate not in (None, candidate):
        raise ConflictError(f"candidate {statement.candidate} is still undecided: run 'rollout "
                            "decide' (or decide it with --promote/--reject) first")
    if promoted is None:
        promoted = statement.promoted if statement else _below(state, candidate)
    rejected = statement.rejected if statement else ()
    for version in (candidate, promoted):
        if state.model(version) is None:
            raise BadRequestError(f"no published model version {version}")
    if candidate in rejected:
        raise BadRequestError(f"model {candidate} was rejected: it is never offered again")
    if candidate <= promoted:
        raise BadRequestError(f"the candidate {candidate} must be newer than the promoted "
                              f"version {promoted}")
    return _sign(state, publisher, now, promoted=promoted, candidate=candidate, share=share,
                 rejected=rejected, decision="canary", round_id=None,
                 reason=f"model {candidate} goes to a canary share of {share:g}; "
                        f"the others stay on model {promoted}")


def set_promoted(state: StateBackend, publisher: Publisher, version: int, now: float) -> RolloutRecord:
    """The operator names the promoted version (no candidate): e.g. the first statement, after
    which new models reach devices only once a statement names them."""
    statement = current(state)
    if state.model(version) is None:
        raise BadRequestError(f"no published model version {version}")
    rejected = statement.rejected if statement else ()
    if version in rejected:
        raise BadRequestError(f"model {version} was rejected: it is never offered again")
    if statement is not None and statement.candidate is not None:
        raise ConflictError(f"candidate {statement.candidate} is still undecided: decide first")
    return _sign(state, publisher, now, promoted=version, candidate=None, share=0.0,
                 rejected=rejected, decision="set", round_id=None,
                 reason=f"the operator set model {version} as the promoted version")


def decide(state: StateBackend, publisher: Publisher, now: float, margin: float = 0.0,
           override: str | None = None) -> Decision:
    """Apply :func:`decision_rule` to the newest evaluation of candidate against promoted (or
    the operator's ``override``, ``"promote"`` or ``"reject"``), log it, and sign the next
    statement unless the rule says keep collecting. BadRequestError: no candidate pending."""
    if not (math.isfinite(margin) and margin >= 0):
        raise BadRequestError(f"the margin must be >= 0, got {margin}")
    statement = current(state)
    if statement is None or statement.candidate is None:
        raise BadRequestError("no candidate is on canary: nothing to decide")
    promoted, candidate = statement.promoted, statement.candidate
    found = _newest_evaluation(state, promoted, candidate)
    low = high = None
    if found is not None:
        metric = found.estimate.get("metrics", {}).get(METRIC) or {}
        low, high = metric.get("low"), metric.get("high")
    round_id = found.round_id if found else None
    if override is not None:
        if override not in (PROMOTE, REJECT):
            raise BadRequestError(f"override must be {PROMOTE!r} or {REJECT!r}")
        action, reason = override, f"the operator decided to {override} model {candidate}"
    elif found is None:
        action, reason = KEEP, (f"no evaluation round has compared candidate {candidate} with "
                                f"model {promoted} yet: open one with 'round open --kind "
                                f"evaluation --candidate {candidate}'")
    else:
        action, reason = decision_rule(low, high, margin)
        reason = f"evaluation round {round_id} ({found.devices} devices): {reason}"
    record = None
    if action == PROMOTE:
        record = _sign(state, publisher, now, promoted=candidate, candidate=None, share=0.0,
                       rejected=statement.rejected, decision=PROMOTE, round_id=round_id,
                       reason=f"model {candidate} promoted: {reason}")
    elif action == REJECT:
        record = _sign(state, publisher, now, promoted=promoted, candidate=None, share=0.0,
                       rejected=tuple(sorted({*statement.rejected, candidate})), decision=REJECT,
                       round_id=round_id, reason=f"model {candidate} rejected, back to model "
                                                 f"{promoted}: {reason}")
    decision = Decision(action, reason, round_id, low, high, record)
    state.log_event("rollout_decided", {"candidate": candidate, "promoted": promoted,
                                        "margin": margin, **decision.to_dict()}, now)
    return decision


def rollout_rows(state: StateBackend) -> list[dict[str, Any]]:
    """Every signed statement, oldest first, with the decision and reason behind it (audit)."""
    return [{"seq": r.seq, "created_at": r.created_at, "decision": r.decision, "reason": r.reason,
             "promoted": r.promoted, "candidate": r.candidate, "share": r.share,
             "rejected": list(r.rejected), "evaluation_round_id": r.round_id,
             "statement": r.statement.decode(), "signature": r.signature.hex()}
            for r in state.rollouts()]


def _sign(state: StateBackend, publisher: Publisher, now: float, *, promoted: int,
          candidate: int | None, share: float, rejected: tuple[int, ...], decision: str,
          round_id: int | None, reason: str) -> RolloutRecord:
    newest = state.rollout()
    try:
        statement = RolloutStatement(seq=1 if newest is None else newest.seq + 1, promoted=promoted,
                                     candidate=candidate, share=float(share),
                                     rejected=tuple(rejected), issued_at=float(now), reason=reason)
    except ConfigError as exc:
        raise BadRequestError(f"rollout statement: {exc}") from None
    raw = statement_bytes(statement)
    record = RolloutRecord(statement.seq, float(now), promoted, candidate, float(share),
                           tuple(rejected), decision, reason, round_id, raw,
                           publisher.sign(DOMAIN + raw))
    state.add_rollout(record)
    state.log_event("rollout_signed", {"seq": record.seq, "decision": decision, "reason": reason,
                                       "promoted": promoted, "candidate": candidate,
                                       "share": share, "rejected": list(rejected)}, now)
    return record


def _statement_of(record: RolloutRecord) -> RolloutStatement:
    return RolloutStatement(seq=record.seq, promoted=record.promoted, candidate=record.candidate,
                            share=record.share, rejected=record.rejected,
                            issued_at=record.created_at, reason=record.reason)


def _newest_evaluation(state: StateBackend, promoted: int, candidate: int) -> EvaluationRecord | None:
    pairs = [e for e in state.evaluations()
             if e.base_version == promoted and e.candidate_version == candidate]
    return pairs[-1] if pairs else None


def _below(state: StateBackend, candidate: int) -> int:
    """The newest published version older than ``candidate``."""
    for version in range(candidate - 1, 0, -1):
        if state.model(version) is not None:
            return version
    raise BadRequestError(f"no published model older than {candidate} to keep as promoted")
