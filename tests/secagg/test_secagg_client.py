"""The device refuses bad or unsafe server messages, and never reveals both shares of a peer."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from edgerec import ConfigError
from edgerec.secagg import (
    BadCertificateError,
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
from edgerec.secagg import AdvertiseKeys, crypto, statements


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
    # A server that also swaps the identity key and re-signs cannot certify the new key: the
    # pinned enrolment authority never signed it (a certificate from another authority, or
    # the victim's real certificate, does not fit).
    server_identity = crypto.ed25519_private(lambda n: b"\x66" * n)
    server_public = crypto.ed25519_public(server_identity)
    own_authority = crypto.ed25519_private(lambda n: b"\x77" * n)
    for certificate in (b"", victim.certificate, h.certify(victim.client_id, server_public, own_authority)):
        forged_advert = sign_message(AdvertiseKeys(h.config.round_id, victim.client_id, victim.enc_public_key,
                                                   attacker_key, certificate), server_identity)
        forged = PeerKeys(victim.client_id, server_public, victim.enc_public_key, attacker_key,
                          forged_advert.signature, certificate)
        with pytest.raises(BadCertificateError):
            h.clients[me].handle(replace(key_list, neighbours=(forged,) + key_list.neighbours[1:]))
    # Without a pinned authority, only pinned identities catch it.
    forged_advert = sign_message(AdvertiseKeys(h.config.round_id, victim.client_id, victim.enc_public_key,
                                               attacker_key), server_identity)
    forged = PeerKeys(victim.client_id, server_public, victim.enc_public_key, attacker_key,
                      forged_advert.signature)
    tampered = replace(key_list, neighbours=(forged,) + key_list.neighbours[1:])
    pinned = h.client(me, rng_label=b"pinned", peer_identities=h.identities, authority_key=None)
    pinned.advertise()
    with pytest.raises(BadSignatureError):
        pinned.handle(tampered)
    pinned.handle(key_list)
    h.clients[me].handle(key_list)  # the genuine list is still accepted


def test_expired_certificates_and_one_device_twice_are_refused(make_round):
    h = make_round()
    me = h.ids[0]
    key_list = _at_key_list(h)[me]
    late = h.client(me, rng_label=b"late", now=h.now + 7200)  # after every certificate expired
    late.advertise()
    with pytest.raises(BadCertificateError):
        late.handle(key_list)
    # The same identity in two seats: the server cannot make one device count twice.
    first, second, *rest = key_list.neighbours
    twin_key = h.keys[first.client_id]
    advert = sign_message(AdvertiseKeys(h.config.round_id, second.client_id, second.enc_public_key,
                                        second.mask_public_key,
                                        h.certify(second.client_id, first.identity_key)), twin_key)
    twin = PeerKeys(second.client_id, first.identity_key, second.enc_public_key, second.mask_public_key,
                    advert.signature, advert.certificate)
    with pytest.raises(UnsafeRequestError):
        h.clients[me].handle(replace(key_list, neighbours=(first, twin, *rest)))
    h.clients[me].handle(key_list)


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


def _at_consistency(h):
    h.advertise()
    h.reply(h.server.advance())
    h.reply(h.server.advance())
    return h.server.advance()


def _at_request(h):
    h.reply(_at_consistency(h))
    return h.server.advance()


@pytest.mark.parametrize(
    "make_survivors, error",
    [
        (lambda me, s: tuple(reversed(s)), MalformedMessageError),
        (lambda me, s: tuple(c for c in s if c != me), UnsafeRequestError),  # leaves me out
        (lambda me, s: s + (999,), MalformedMessageError),  # a device that never took part
        (lambda me, s: tuple(sorted({me, *s[:2]})), UnsafeRequestError),  # too few of my neighbours
    ],
)
def test_unsafe_survivor_sets_are_not_signed(make_round, make_survivors, error):
    h = make_round(n=6)
    me = h.ids[0]
    request = _at_consistency(h)[me]
    with pytest.raises(error):
        h.clients[me].handle(replace(request, survivors=make_survivors(me, request.survivors)))
    h.clients[me].handle(request)  # the genuine request still gets its signature


def _sign_survivors(h, signers, survivors, view_of):
    """Survivor signatures by ``signers`` (as they would make them, with the mask sets they
    signed with their inputs) over ``survivors``."""
    out = []
    for c in sorted(signers):
        bits = h.server._masked[c][0]
        statement = statements.survivors_statement(view_of.digest, h.config.round_id, sorted(survivors), c, bits)
        out.append((c, bits, crypto.sign(h.keys[c], statement)))
    return tuple(out)


def _bits_cleared(entry):
    peer, bits, signature = entry
    return peer, bytes(len(bits)), signature


@pytest.mark.parametrize(
    "change",
    [
        lambda me, r, h: dict(signatures=r.signatures[: h.clients[me]._threshold - 2]),  # too few
        lambda me, r, h: dict(signatures=r.signatures + r.signatures[:1]),  # one signer twice
        lambda me, r, h: dict(signatures=((*r.signatures[0][:2], b"\0" * 64),) + r.signatures[1:]),  # forged
        lambda me, r, h: dict(signatures=((999, b"", b"\0" * 64),) + r.signatures),  # not a neighbour
        lambda me, r, h: dict(signatures=r.signatures[1:]),  # a survivor's mask set missing
        lambda me, r, h: dict(signatures=(_bits_cleared(r.signatures[0]),) + r.signatures[1:]),  # altered
        lambda me, r, h: dict(mask_sets=r.signatures[:1], signatures=r.signatures[1:]),  # as a mask set
        lambda me, r, h: dict(mask_sets=r.signatures[:1]),  # both as signer and as mask set
    ],
)
def test_unsafe_unmask_requests_are_refused(make_round, change):
    h = make_round(n=6)
    me = h.ids[0]
    request = _at_request(h)[me]
    with pytest.raises((UnsafeRequestError, MalformedMessageError, BadSignatureError)):
        h.clients[me].handle(replace(request, **change(me, request, h)))
    response = h.clients[me].handle(request)  # the genuine request still gets its answer
    assert {p for p, _ in response.seed_shares} == set(h.ids)
    with pytest.raises(ReplayError):
        h.clients[me].handle(request)


def test_signatures_over_another_survivor_set_do_not_count(make_round):
    """The split view: a server shows one client signatures over a set other than the one it
    signed (say, the set it showed the other clients)."""
    h = make_round(n=7)
    me = h.ids[0]
    request = _at_request(h)[me]
    other_set = tuple(c for c in h.ids if c != h.ids[-1])
    forged = _sign_survivors(h, [c for c in h.ids if c != me], other_set, h.clients[me]._view)
    with pytest.raises(BadSignatureError):
        h.clients[me].handle(replace(request, signatures=forged))
    h.clients[me].handle(request)


def test_a_peer_that_did_not_mask_with_me_gets_no_seed_share(make_round):
    """The isolation attack: the server forwards a victim's shares to a few clients only, so
    that its input is masked with nobody the server cannot unmask; a neighbour whose seed share
    it then asks for refuses unless the victim signed that it masked with that neighbour."""
    h = make_round(n=6)
    me, victim = h.ids[0], h.ids[1]
    request = _at_request(h)[me]
    view = h.clients[me]._view
    neighbours = sorted(view.neighbours(victim))
    without_me = statements.bitmap([c for c in neighbours if c != me], neighbours)
    # Whether the victim's mask set comes with its survivor signature or with its masked input:
    survivors = sorted(h.clients[me]._survivors)
    as_signer = statements.survivors_statement(view.digest, h.config.round_id, survivors, victim, without_me)
    signed = (victim, without_me, crypto.sign(h.keys[victim], as_signer))
    signatures = tuple(signed if p == victim else (p, b, s) for p, b, s in request.signatures)
    with pytest.raises(UnsafeRequestError):
        h.clients[me].handle(replace(request, signatures=signatures))
    as_input = statements.mask_statement(view.digest, h.config.round_id, victim, without_me)
    others = tuple(e for e in request.signatures if e[0] != victim)
    with pytest.raises(UnsafeRequestError):
        h.clients[me].handle(replace(request, signatures=others,
                                     mask_sets=((victim, without_me, crypto.sign(h.keys[victim], as_input)),)))
    h.clients[me].handle(request)


# make_round only returns the Harness class, so sharing it across examples is harmless.
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_never_both_shares_of_one_peer(make_round, data):
    """Whatever survivor set the server makes a client sign (with enough signatures over it),
    the client reveals a seed share or a key share of each peer, never both."""
    h = make_round(n=7, seed=b"both")
    me = h.ids[0]
    requests = _at_consistency(h)
    others = [c for c in h.ids if c != me]
    chosen = data.draw(st.lists(st.sampled_from(others), unique=True, min_size=4))
    survivors = tuple(sorted({me, *chosen}))
    client = h.clients[me]
    try:
        client.handle(replace(requests[me], survivors=survivors))
    except UnsafeRequestError:
        assert len(survivors) < client._threshold
        return
    view = client._view
    signatures = _sign_survivors(h, [c for c in survivors if c != me], survivors, view)
    response = client.handle(UnmaskRequest(h.config.round_id, me, signatures, ()))
    seeds = {p for p, _ in response.seed_shares}
    keys = {p for p, _ in response.key_shares}
    assert not (seeds & keys)
    assert seeds == set(survivors) and keys == set(h.ids) - set(survivors)


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
