"""Signed rollout statements on the device (``edgerec.sync.rollout``, ``updates.newest_statement``):
only the pinned key's signature over the domain-separated bytes opens one; forged, unsigned,
tampered, malformed and replayed statements are refused; the canary share is the share of
devices it says; a device installs only the version a statement assigns to it, never a
rejected one."""

from __future__ import annotations

import json

import pytest

from edgerec.signing import generate_signing_key, public_key_bytes, sign_bytes
from edgerec.sync import RolloutAnswer, RolloutRefusedError
from edgerec.sync.rollout import (DOMAIN, RolloutStatement, canary_bucket, check_install,
                                  open_statement, statement_bytes)
from edgerec.sync.updates import newest_statement

KEY = generate_signing_key()
PINNED = public_key_bytes(KEY)


def _signed(statement: RolloutStatement, key=KEY) -> tuple[bytes, bytes]:
    raw = statement_bytes(statement)
    return raw, sign_bytes(key, DOMAIN + raw)


def _st(seq=1, promoted=1, candidate=2, share=0.5, rejected=()) -> RolloutStatement:
    return RolloutStatement(seq=seq, promoted=promoted, candidate=candidate, share=share,
                            rejected=rejected, issued_at=1e9, reason="test")


def test_a_statement_signed_by_the_pinned_key_opens_to_the_same_statement():
    statement = _st(rejected=(3,))
    assert open_statement(*_signed(statement), PINNED) == statement


@pytest.mark.parametrize("how", ["other key", "unsigned", "tampered", "no domain"])
def test_forged_unsigned_tampered_or_undomained_statements_are_refused(how):
    raw, signature = _signed(_st())
    if how == "other key":
        signature = sign_bytes(generate_signing_key(), DOMAIN + raw)
    elif how == "unsigned":
        signature = b""
    elif how == "tampered":
        raw = raw.replace(b'"share":0.5', b'"share":1.0')
    else:  # a signature over the bare bytes (as a bundle manifest is signed) is not one
        signature = sign_bytes(KEY, raw)
    with pytest.raises(RolloutRefusedError, match="signature does not verify"):
        open_statement(raw, signature, PINNED)


@pytest.mark.parametrize("change", [
    {"extra": 1}, {"seq": 0}, {"share": 1.5}, {"promoted": "1"}, {"rejected": [1]},
    {"candidate": 1}, {"rejected": [4, 3]}, {"format": 2}])
def test_malformed_statements_are_refused_even_when_signed(change):
    fields = {**_st().to_dict(), **change}
    raw = json.dumps(fields, sort_keys=True).encode()
    with pytest.raises(RolloutRefusedError, match="malformed"):
        open_statement(raw, sign_bytes(KEY, DOMAIN + raw), PINNED)


def test_an_older_statement_is_a_replay():
    with pytest.raises(RolloutRefusedError, match="replay"):
        open_statement(*_signed(_st(seq=2)), PINNED, newest_seq=3)
    assert open_statement(*_signed(_st(seq=3)), PINNED, newest_seq=3).seq == 3


def test_the_canary_is_the_stated_share_of_devices_and_differs_per_candidate():
    on = [canary_bucket(d, 2) < 0.1 for d in range(20_000)]
    assert abs(sum(on) / len(on) - 0.1) < 0.01
    other = [canary_bucket(d, 3) < 0.1 for d in range(20_000)]
    assert on != other
    statement = _st(share=0.1)
    assert [statement.version_for(d) for d in range(50)] == [2 if x else 1 for x in on[:50]]
    assert _st(candidate=None, share=0.0).version_for(5) == 1


def test_a_device_installs_only_its_assigned_version_and_never_a_rejected_one():
    statement = _st(share=1.0, rejected=(3,))  # every device on the canary of 2
    check_install(statement, 7, 2)
    for version, words in ((1, "assigns model 2"), (3, "rejected it"), (4, "assigns model 2")):
        with pytest.raises(RolloutRefusedError, match=words):
            check_install(statement, 7, version)
    with pytest.raises(RolloutRefusedError, match="rejected it"):  # the device's own memory
        check_install(statement, 7, 2, rejected=frozenset({2}))


class _Records:
    """The two ``SyncRecords`` methods ``newest_statement`` uses, in memory."""

    def __init__(self):
        self.saved = None

    def rollout(self):
        return self.saved

    def save_rollout(self, statement, signature, rejected):
        self.saved = (statement, signature, rejected)


def test_the_kept_statement_rules_when_the_server_sends_none_or_an_older_one():
    records = _Records()
    assert newest_statement(records, PINNED, lambda: None) is None
    first = RolloutAnswer(*_signed(_st(seq=1, candidate=2)))
    second = RolloutAnswer(*_signed(_st(seq=2, candidate=None, share=0.0, rejected=(2,))))
    statement, rejected = newest_statement(records, PINNED, lambda: first)
    assert statement.seq == 1 and rejected == frozenset()
    statement, rejected = newest_statement(records, PINNED, lambda: second)
    assert statement.seq == 2 and rejected == {2}
    # The server goes quiet: the kept statement still decides.
    statement, rejected = newest_statement(records, PINNED, lambda: None)
    assert statement.seq == 2 and rejected == {2}
    with pytest.raises(RolloutRefusedError, match="replay"):
        newest_statement(records, PINNED, lambda: first)
    other = RolloutAnswer(*_signed(_st(seq=2, candidate=None, share=0.0, rejected=(2, 5))))
    with pytest.raises(RolloutRefusedError, match="different statement"):
        newest_statement(records, PINNED, lambda: other)
    assert records.saved[0] == second.statement
