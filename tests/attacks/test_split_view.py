"""Attack: a lying server tells different devices different survivor sets (a split view), or
forwards one group's key shares selectively (isolation), to unmask a sum of fewer devices than
the threshold. Real ``ClientMachine`` devices; the server is the attacker (``secagg_attacker``).

Each attack is first shown to work against devices whose checks are switched off (so the test
would fail if the checks were missing), then shown to be refused by real devices, with nothing
below the threshold recoverable from what they revealed.
"""

from __future__ import annotations

import numpy as np
import pytest

import edgerec.secagg.client as client_module
from edgerec.secagg import BadSignatureError, UnsafeRequestError

from secagg_attacker import Attacker, NotRecoverable

A, B = 1, 2  # the two victims whose sum the attacker wants (n = 11, t = 6: far below t)


def _split_views(c: int) -> set[int]:
    """Every device is told a different survivor set holding A and B, arranged so that each of
    the nine others is 'dropped' in at least t = 6 views: their mask keys all come out."""
    others = list(range(3, 12))
    if c == A:
        dropped = others[:5]
    elif c == B:
        dropped = others[4:]
    else:
        i = others.index(c)
        dropped = [others[(i + d) % 9] for d in range(1, 6)]
    return set(range(1, 12)) - set(dropped)


def _run_split_view(attacker: Attacker) -> None:
    attacker.advertise()
    attacker.masked_input(attacker.share_keys())
    attacker.consistency(_split_views)
    attacker.unmask()


@pytest.fixture
def no_checks(monkeypatch):
    """Devices as they were before the consistency check: they believe any request."""
    monkeypatch.setattr(client_module, "check_unmask_request", lambda *a, **k: 10**6)


def test_the_split_view_attack_works_on_devices_without_the_check(no_checks):
    attacker = Attacker(n=11, threshold=6, min_fraction=0)
    _run_split_view(attacker)
    assert not attacker.refused
    assert np.array_equal(attacker.recover({A, B}), attacker.expected({A, B}))


@pytest.mark.parametrize("threshold, fraction", [(6, 0), (8, 2 / 3)])
def test_devices_refuse_a_split_view_and_reveal_nothing(threshold, fraction):
    attacker = Attacker(n=11, threshold=threshold, min_fraction=fraction)
    _run_split_view(attacker)
    # Every device signed only its own set: the signatures it is shown are over other sets (at
    # t = 8 the sets of 6 are refused even before signing: too few survivors).
    assert set(attacker.refused) == set(attacker.ids)
    # (a signer outside its own set, or a signature over another set: either way, refused)
    assert all(isinstance(e, (BadSignatureError, UnsafeRequestError)) for e in attacker.refused.values())
    assert not attacker.responses
    for group in ({A, B}, {A}, set(range(1, 12))):
        with pytest.raises(NotRecoverable):
            attacker.recover(group)


def test_signatures_over_other_sets_are_not_counted():
    """The attacker hands each device the signatures everyone made (over their own sets): a
    signature over another set fails verification, so it is refused, not ignored."""
    attacker = Attacker(n=11, threshold=6, min_fraction=0)
    attacker.advertise()
    attacker.masked_input(attacker.share_keys())
    attacker.consistency(lambda c: set(attacker.ids) if c != A else set(attacker.ids) - {11})
    attacker.unmask(signers_for=lambda c: set(attacker.ids) - {A} - ({11} if c == A else set()))
    assert isinstance(attacker.refused[A], BadSignatureError)
    assert set(attacker.responses) == set(attacker.ids) - {A}  # the others agree with each other


def test_too_few_signatures_over_a_set_are_refused():
    """A split into two halves: each device sees only its half's signatures, fewer than t."""
    attacker = Attacker(n=11, threshold=8)
    attacker.advertise()
    attacker.masked_input(attacker.share_keys())
    half = set(range(1, 7))
    attacker.consistency(lambda c: set(attacker.ids))
    attacker.unmask(signers_for=lambda c: half if c in half else set(attacker.ids) - half)
    assert set(attacker.refused) == set(attacker.ids)
    assert all(isinstance(e, UnsafeRequestError) for e in attacker.refused.values())


# -- isolation: one consistent survivor set, but shares forwarded selectively ----------------

GROUP = {1, 2, 3, 4, 5}  # the victims: 5 < t = 8
FAKE_DROPPED = {9, 10, 11}  # they send their inputs, but the attacker says they dropped


def _selective(sender: int, recipient: int) -> bool:
    """The group gets shares only from itself and the devices that will be 'dropped', so its
    inputs are masked only with devices whose masks the attacker can remove."""
    return not (recipient in GROUP and sender not in GROUP | FAKE_DROPPED)


def _run_isolation(attacker: Attacker) -> None:
    attacker.advertise()
    attacker.masked_input(attacker.share_keys(), forward_to=_selective)
    survivors = set(attacker.ids) - FAKE_DROPPED
    attacker.consistency(lambda c: survivors)
    attacker.unmask()


def test_the_isolation_attack_works_on_devices_without_the_checks(no_checks):
    attacker = Attacker(n=11, threshold=8)
    _run_isolation(attacker)
    assert not attacker.refused
    assert np.array_equal(attacker.recover(GROUP), attacker.expected(GROUP))


def test_devices_refuse_to_reveal_seeds_of_a_group_that_did_not_mask_with_them():
    attacker = Attacker(n=11, threshold=8)
    _run_isolation(attacker)
    outside = set(attacker.ids) - GROUP - FAKE_DROPPED
    assert set(attacker.refused) == outside  # asked for seed shares of peers that skipped them
    assert all(isinstance(attacker.refused[c], UnsafeRequestError) for c in outside)
    with pytest.raises(NotRecoverable):  # only 5 < t seed shares of each victim came out
        attacker.recover(GROUP)
    for u in GROUP:
        with pytest.raises(NotRecoverable):
            attacker.recover({u})
