"""The device refuses bad or unsafe server messages, and never reveals both shares of a peer."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from edgerec import ConfigError
from edgerec.secagg import (
    BadCiphertextError,
    BadSignatureError,
    ClientMachine,
    ForwardedShares,
    MalformedMessageError,
    OutOfStageError,
    PeerKeys,
    ReplayError,
    Stage,
    UnmaskRequest,
    UnsafeRequestError,
    WrongLengthError,
    WrongRoundError,
    sign_message,
)
from edgerec.secagg import AdvertiseKeys, crypto


def _at_key_list(h):
    h.advertise()
    return h.server.advance()


def test_out_of_stage_and_replay(make_round):
    h = make_round()
    me = h.ids[0]
    fresh = h.client(me, rng_label=b"x")
    key_lists = _at_key_list(h)
    with pytest.raises(OutOfStageError):  # nothing is handled before advertising
        fresh.handle(key_lists[me])
    with pytest.raises(OutOfStageError):
        h.clients[me].advertise()
    h.clients[me].handle(key_lists[me])
    with pytest.raises(ReplayError):
        h.clients[me].handle(key_lists[me])
    with pytest.raises(OutOfStageError):
        h.clients[me].handle(UnmaskRequest(h.config.round_id, me, (), ()))


def test_wrong_round_and_wrong_recipient(make_round):
    h = make_round()
    me, other = h.ids[:2]
    key_lists = _at_key_list(h)
    with pytest.raises(WrongRoundError):
        h.clients[me].handle(replace(key_lists[me], round_id=h.config.round_id + 1))
    with pytest.raises(MalformedMessageError):
        h.clients[me].handle(key_lists[other])
    h.clients[me].handle(key_lists[me])  # untouched by the rejections


def test_swapped_or_unsigned_peer_keys_are_refused(make_round):
    h = make_round()
    me = h.ids[0]
    key_list = _at_key_list(h)[me]
    victim = key_list.neighbours[0]
    attacker_key = crypto.x25519_keypair(lambda n: b"\x55" * n)[1]
    swapped = replace(victim, mask_public_key=attacker_key)
    with pytest.raises(BadSignatureError):
        h.clients[me].handle(replace(key_list, neighbours=(swapped,) + key_list.neighbours[1:]))
    # A server that also swaps the identity key and re-signs is caught only by pinned identities.
    server_identity = crypto.ed25519_private(lambda n: b"\x66" * n)
    forged_advert = sign_message(
        AdvertiseKeys(h.config.round_id, victim.client_id, victim.enc_public_key, attacker_key), server_identity
    )
    forged = PeerKeys(
        victim.client_id, crypto.ed25519_public(server_identity), victim.enc_public_key, attacker_key,
        forged_advert.signature,
    )
    tampered = replace(key_list, neighbours=(forged,) + key_list.neighbours[1:])
    pinned = h.client(me, rng_label=b"pinned", peer_identities=h.identities)
    pinned.advertise()
    with pytest.raises(BadSignatureError):
        pinned.handle(tampered)
    pinned.handle(key_list)


@pytest.mark.parametrize(
    "change, error",
    [
        (lambda kl: dict(degree=kl.degree - 2), UnsafeRequestError),  # a weaker graph
        (lambda kl: dict(threshold=kl.threshold - 1), UnsafeRequestError),  # a weaker threshold
        (lambda kl: dict(participants=kl.participants[:2]), UnsafeRequestError),  # below min_clients
        (lambda kl: dict(participants=tuple(reversed(kl.participants))), MalformedMessageError),
        (lambda kl: dict(neighbours=kl.neighbours[1:]), MalformedMessageError),  # a neighbour missing
        (lambda kl: dict(graph_seed=kl.graph_seed[:16]), WrongLengthError),
        (lambda kl: dict(neighbours=(replace(kl.neighbours[0], signature=b"\0" * 10),) + kl.neighbours[1:]),
         WrongLengthError),
    ],
)
def test_inconsistent_key_lists_are_refused(make_round, change, error):
    h = make_round(n=6)
    me = h.ids[0]
    key_list = _at_key_list(h)[me]
    with pytest.raises(error):
        h.clients[me].handle(replace(key_list, **change(key_list)))
    h.clients[me].handle(key_list)


def _at_forwarded(h):
    h.advertise()
    h.reply(h.server.advance())
    return h.server.advance()


def test_tampered_or_redirected_shares_are_refused(make_round):
    h = make_round(n=6)
    me, other = h.ids[:2]
    forwarded = _at_forwarded(h)
    mine = forwarded[me]
    (sender, ct), *rest = mine.ciphertexts
    flipped = bytes([ct[0] ^ 1]) + ct[1:]
    with pytest.raises(BadCiphertextError):
        h.clients[me].handle(replace(mine, ciphertexts=((sender, flipped), *rest)))
    relabelled = tuple((s, c) for (s, _), (_, c) in zip(mine.ciphertexts, mine.ciphertexts[1:] + mine.ciphertexts[:1]))
    with pytest.raises(BadCiphertextError):  # the server claims another sender
        h.clients[me].handle(replace(mine, ciphertexts=relabelled))
    theirs = dict(forwarded[other].ciphertexts)
    redirected = tuple((s, theirs.get(s, c)) for s, c in mine.ciphertexts)
    with pytest.raises(BadCiphertextError):  # a share meant for someone else
        h.clients[me].handle(replace(mine, ciphertexts=redirected))
    with pytest.raises(WrongLengthError):
        h.clients[me].handle(replace(mine, ciphertexts=((sender, ct[:-1]), *rest)))
    with pytest.raises(MalformedMessageError):  # from a non-neighbour, or twice from one
        h.clients[me].handle(replace(mine, ciphertexts=((sender, ct), (sender, ct), *rest)))
    with pytest.raises(UnsafeRequestError):  # too few partners to mask with
        h.clients[me].handle(replace(mine, ciphertexts=mine.ciphertexts[:1]))
    # The machine is unchanged by all that: the genuine message still works, the round completes.
    masked = h.reply(forwarded)
    assert set(masked) == set(h.ids)
    h.finish(h.server.advance())
    assert np.array_equal(h.server.result.total, h.expected(h.ids))


def test_a_client_refusing_a_tampered_message_counts_as_dropped(make_round):
    h = make_round(n=6)
    victim = h.ids[2]
    forwarded = _at_forwarded(h)
    sender, ct = forwarded[victim].ciphertexts[0]
    forwarded[victim] = replace(
        forwarded[victim], ciphertexts=((sender, ct[:-1] + bytes([ct[-1] ^ 1])),) + forwarded[victim].ciphertexts[1:]
    )
    with pytest.raises(BadCiphertextError):
        h.clients[victim].handle(forwarded[victim])
    h.reply(forwarded, who=[c for c in h.ids if c != victim])
    h.finish(h.server.advance())
    survivors = [c for c in h.ids if c != victim]
    assert np.array_equal(h.server.result.total, h.expected(survivors))


def _at_request(h):
    h.advertise()
    h.reply(h.server.advance())
    h.reply(h.server.advance())
    return h.server.advance()


@pytest.mark.parametrize(
    "make_request",
    [
        lambda me, r: (r.survivors[1:], r.dropped + r.survivors[:1] + r.survivors[:1]),  # dup
        lambda me, r: (r.survivors, r.dropped + r.survivors[:1]),  # both lists: the attack
        lambda me, r: (r.survivors + (me,), r.dropped),  # itself
        lambda me, r: (r.survivors[1:], r.dropped),  # a neighbour it has seen is left out
        lambda me, r: (r.survivors + (999,), r.dropped),  # a peer it never saw
        lambda me, r: ((), r.survivors + r.dropped),  # fewer surviving neighbours than t - 1
    ],
)
def test_unsafe_unmask_requests_are_refused(make_round, make_request):
    h = make_round(n=6)
    me = h.ids[0]
    request = _at_request(h)[me]
    survivors, dropped = make_request(me, request)
    with pytest.raises((UnsafeRequestError, MalformedMessageError)):
        h.clients[me].handle(replace(request, survivors=survivors, dropped=dropped))
    response = h.clients[me].handle(request)  # the genuine request still gets its answer
    assert {p for p, _ in response.seed_shares} == set(request.survivors) | {me}
    with pytest.raises(ReplayError):
        h.clients[me].handle(request)
    other = replace(request, survivors=request.survivors[1:], dropped=request.dropped + request.survivors[:1])
    with pytest.raises(OutOfStageError):  # a second, different view: never answered
        h.clients[me].handle(other)


# make_round only returns the Harness class, so sharing it across examples is harmless.
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_never_both_shares_of_one_peer(make_round, data):
    h = make_round(n=7, seed=b"both")
    me = h.ids[0]
    request = _at_request(h)[me]
    partners = sorted(request.survivors + request.dropped)
    labels = data.draw(st.lists(st.sampled_from(["s", "d", "both", "none"]), min_size=len(partners), max_size=len(partners)))
    survivors = tuple(p for p, x in zip(partners, labels) if x in ("s", "both"))
    dropped = tuple(p for p, x in zip(partners, labels) if x in ("d", "both"))
    asked = replace(request, survivors=survivors, dropped=dropped)
    try:
        response = h.clients[me].handle(asked)
    except (UnsafeRequestError, MalformedMessageError):
        assert "both" in labels or "none" in labels or len(survivors) + 1 < h.clients[me]._threshold
        return
    seeds = {p for p, _ in response.seed_shares}
    keys = {p for p, _ in response.key_shares}
    assert not (seeds & keys)
    assert seeds == set(survivors) | {me} and keys == set(dropped)


def test_bad_inputs_at_construction(make_round):
    h = make_round()
    me = h.ids[0]
    with pytest.raises(ConfigError):
        ClientMachine(h.config, me, h.keys[me], np.zeros(3, dtype=np.uint32), lambda n: bytes(n))
    with pytest.raises(ConfigError):
        ClientMachine(h.config, me, h.keys[me], np.zeros(h.config.vector_length, dtype=np.int64), lambda n: bytes(n))
    with pytest.raises(ConfigError):
        ClientMachine(h.config, -1, h.keys[me], h.inputs[me], lambda n: bytes(n))


def test_the_forwarded_message_type_is_checked(make_round):
    h = make_round()
    me = h.ids[0]
    _at_key_list(h)
    with pytest.raises(OutOfStageError):
        h.clients[me].handle(ForwardedShares(h.config.round_id, me, ()))
    with pytest.raises(MalformedMessageError):
        h.clients[me].handle(object())  # type: ignore[arg-type]
    assert h.clients[me].stage == Stage.SHARE_KEYS
