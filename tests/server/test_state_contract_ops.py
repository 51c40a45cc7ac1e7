"""The ``StateBackend`` contract for what operators keep (evaluation estimates, operator tokens,
rollout statements), on both backends, like ``test_state_contract.py``."""

from __future__ import annotations

import math
import threading
from dataclasses import replace

import pytest

from edgerec_server._exceptions import ConflictError
from edgerec_server.state import EvaluationRecord, RolloutRecord

from state_helpers import NOW, _device, _open, _round


def _evaluation(round_id: int, **change) -> EvaluationRecord:
    return replace(EvaluationRecord(
        round_id, NOW + 9, 1, 2, "edgerec.fedeval/1;models=installed,candidate", {"top_k": 10},
        devices=3, noise_multiplier=0.0, clip=4.795831523312719, epsilon=math.inf,
        cumulative_epsilon=math.inf, noise_std=1e-9, sum_vector=(0.1, 1 / 3, 2.0, 0.0),
        estimate={"metrics": {"installed.hr@10": {"value": None, "low": 0.25}}}), **change)


def test_an_evaluation_is_stored_with_its_round_in_one_step_by_its_claimer_only(state):
    a = _device(state)
    record = _round(state, [a])
    state.add_message(record.id, a, 0, b"keys", b"d" * 32, NOW)
    assert state.claim_stage(record.id, 0, "replica-1", NOW, 10.0)
    stored = _evaluation(record.id)
    with pytest.raises(ConflictError):  # another replica's claim: nothing is written
        state.complete_evaluation(stored, participants=4, owner="replica-2")
    assert state.evaluations() == [] and state.round(record.id).state == "open"
    state.complete_evaluation(stored, participants=4, owner="replica-1")
    done = state.round(record.id)
    assert (done.state, done.out_version, done.participants, done.survivors) == ("done", None, 4, 3)
    assert math.isinf(done.epsilon) and done.closed_at == NOW + 9
    assert state.evaluation(record.id) == stored and state.evaluations() == [stored]  # exactly
    assert all(m.body is None for m in state.messages(record.id))
    with pytest.raises(ConflictError):  # a round completes once
        state.complete_evaluation(_evaluation(record.id, epsilon=1.0), participants=4)
    later = _round(state, [a])
    state.complete_evaluation(_evaluation(later.id, candidate_version=None, epsilon=0.5,
                                          cumulative_epsilon=2.5), participants=3)
    assert [e.round_id for e in state.evaluations()] == [record.id, later.id]
    assert state.evaluation(later.id).candidate_version is None and state.evaluation(999) is None


def test_an_operator_token_is_found_by_its_hash_and_revoked_once(state):
    token = state.add_operator_token(b"op-hash", NOW, "dashboard")
    assert state.find_operator_token(b"op-hash") == token and token.revoked_at is None
    with pytest.raises(ConflictError):
        state.add_operator_token(b"op-hash", NOW, "again")
    assert state.find_operator_token(b"other") is None
    assert state.revoke_operator_token(token.id, NOW + 1)
    assert not state.revoke_operator_token(token.id, NOW + 2)
    assert state.find_operator_token(b"op-hash").revoked_at == NOW + 1


def _rollout(seq: int, **change) -> RolloutRecord:
    record = RolloutRecord(seq, NOW + seq, 1, 2, 0.25, (), "canary", "model 2 on a canary", None,
                           b'{"seq":%d}' % seq, bytes([seq]) * 64)
    return replace(record, **change)


def test_rollout_statements_are_numbered_one_by_one_and_kept_exactly(state):
    assert state.rollout() is None and state.rollouts() == []
    with pytest.raises(ConflictError):
        state.add_rollout(_rollout(2))  # the first is 1
    first = _rollout(1)
    state.add_rollout(first)
    second = _rollout(2, promoted=1, candidate=None, share=0.0, rejected=(2, 5), decision="reject",
                      reason="worse beyond the interval", round_id=7)
    state.add_rollout(second)
    for stale in (_rollout(2), _rollout(1), _rollout(4)):  # replayed or skipping: refused
        with pytest.raises(ConflictError):
            state.add_rollout(stale)
    assert state.rollout() == second and state.rollouts() == [first, second]


def test_only_one_of_two_concurrent_decisions_is_stored(place):
    backends = [_open(*place) for _ in range(2)]
    backends[0].add_rollout(_rollout(1))
    wins: list[str] = []
    barrier = threading.Barrier(2)

    def decide(i: int) -> None:
        barrier.wait()
        try:
            backends[i].add_rollout(_rollout(2, decision=f"replica-{i}"))
            wins.append(f"replica-{i}")
        except ConflictError:
            pass

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and backends[1].rollout().decision == wins[0]
    for b in backends:
        b.close()
