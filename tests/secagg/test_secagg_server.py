"""The server rejects every kind of bad message with its own error, and the round goes on."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edgerec import ConfigError
from edgerec.secagg import (
    ServerMachine,
    AdvertiseKeys,
    BadCertificateError,
    BadSignatureError,
    ConsistencyCheck,
    DuplicateSenderError,
    MalformedMessageError,
    MaskedInput,
    OutOfStageError,
    ReplayError,
    RoundAbortedError,
    ShareKeys,
    Stage,
    UnknownSenderError,
    UnmaskResponse,
    WrongLengthError,
    WrongRoundError,
    sign_message,
)
from edgerec.secagg import crypto, shamir


def _continue_and_check(h, stage_outbox: dict, stage: Stage) -> None:
    """From the server's outbox for ``stage``, finish honestly; the sum must be everyone's."""
    outbox = stage_outbox
    for current in (Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.CONSISTENCY, Stage.UNMASK):
        if current < stage:
            continue
        h.reply(outbox)
        outbox = h.server.advance()
    assert h.server.stage == Stage.DONE
    assert np.array_equal(h.server.result.total, h.expected(h.ids))


def _resigned(h, msg, **changes):
    return sign_message(replace(msg, **changes), h.keys[msg.sender])


def test_bad_signature_is_rejected(make_round):
    h = make_round()
    first, *rest = h.ids
    advert = h.clients[first].advertise()
    other_key = crypto.x25519_keypair(lambda n: b"\x11" * n)[1]
    with pytest.raises(BadSignatureError):  # the server (or a MITM) swapped a key
        h.server.receive(replace(advert, mask_public_key=other_key))
    with pytest.raises(BadSignatureError):  # signed by someone else's identity key
        h.server.receive(sign_message(advert, h.keys[rest[0]]))
    h.server.receive(advert)
    h.advertise(rest)
    _continue_and_check(h, h.server.advance(), Stage.SHARE_KEYS)


def test_wrong_round_is_rejected(make_round):
    h = make_round()
    advert = h.clients[h.ids[0]].advertise()
    with pytest.raises(WrongRoundError):
        h.server.receive(_resigned(h, advert, round_id=advert.round_id + 1))
    h.server.receive(advert)
    h.advertise(h.ids[1:])
    _continue_and_check(h, h.server.advance(), Stage.SHARE_KEYS)


def test_replays_are_rejected_even_in_a_later_stage(make_round):
    h = make_round()
    adverts = h.advertise()
    with pytest.raises(ReplayError):
        h.server.receive(adverts[h.ids[0]])
    key_lists = h.server.advance()
    with pytest.raises(ReplayError):
        h.server.receive(adverts[h.ids[1]])
    shares = h.reply(key_lists)
    with pytest.raises(ReplayError):
        h.server.receive(shares[h.ids[2]])
    forwarded = h.server.advance()
    masked = h.reply(forwarded)
    with pytest.raises(ReplayError):  # a replayed masked input must not be added twice
        h.server.receive(masked[h.ids[3]])
    _continue_and_check(h, h.server.advance(), Stage.CONSISTENCY)


def test_wrong_lengths_are_rejected(make_round):
    h = make_round()
    first = h.ids[0]
    advert = h.clients[first].advertise()
    with pytest.raises(WrongLengthError):
        h.server.receive(_resigned(h, advert, enc_public_key=advert.enc_public_key[:31]))
    h.server.receive(advert)
    h.advertise(h.ids[1:])
    shares = h.reply(h.server.advance(), send=False)
    short_ct = tuple((r, ct[:-1]) for r, ct in shares[first].ciphertexts)
    with pytest.raises(WrongLengthError):
        h.server.receive(_resigned(h, shares[first], ciphertexts=short_ct))
    h.send(shares)
    masked = h.reply(h.server.advance(), send=False)
    for bad in (masked[first].vector[:-4], masked[first].vector + bytes(4), b""):
        with pytest.raises(WrongLengthError):
            h.server.receive(_resigned(h, masked[first], vector=bad))
    h.send(masked)
    _continue_and_check(h, h.server.advance(), Stage.CONSISTENCY)


def test_a_second_different_message_from_one_sender_is_a_duplicate(make_round):
    h = make_round()
    first = h.ids[0]
    h.advertise()
    again = h.client(first, rng_label=b"again")  # same identity, fresh ephemeral keys: a different, valid advert
    with pytest.raises(DuplicateSenderError):
        h.server.receive(again.advertise())
    shares = h.reply(h.server.advance())
    masked = h.reply(h.server.advance(), send=False)
    h.send(masked)
    tweaked = masked[first].values.copy()
    tweaked[0] += 1
    with pytest.raises(DuplicateSenderError):  # the first masked input stays, once
        h.server.receive(sign_message(MaskedInput.from_array(h.config.round_id, first, tweaked), h.keys[first]))
    assert shares
    _continue_and_check(h, h.server.advance(), Stage.CONSISTENCY)


def test_out_of_stage_messages_are_rejected(make_round):
    h = make_round(n=6)
    late, early = h.ids[-1], h.ids[0]
    with pytest.raises(OutOfStageError):  # shares before any key list exists
        h.server.receive(sign_message(ShareKeys(h.config.round_id, early, ()), h.keys[early]))
    h.advertise(h.ids[:-1])
    key_lists = h.server.advance()
    with pytest.raises(OutOfStageError):  # advertising after the stage closed
        h.server.receive(h.clients[late].advertise())
    dropout = h.ids[1]
    h.reply(key_lists, who=[c for c in key_lists if c != dropout])
    forwarded = h.server.advance()
    masked_from_dropout = sign_message(
        MaskedInput.from_array(h.config.round_id, dropout, h.inputs[dropout]), h.keys[dropout]
    )
    with pytest.raises(OutOfStageError):  # did not share keys, so cannot send a masked input
        h.server.receive(masked_from_dropout)
    h.reply(forwarded)
    requests = h.server.advance()
    with pytest.raises(OutOfStageError):  # was not asked to sign the survivors
        h.server.receive(sign_message(ConsistencyCheck(h.config.round_id, dropout, bytes(64)), h.keys[dropout]))
    with pytest.raises(OutOfStageError):  # nor, later, to unmask
        h.server.receive(sign_message(UnmaskResponse(h.config.round_id, dropout, (), ()), h.keys[dropout]))
    h.finish(requests)
    survivors = [c for c in h.ids if c not in (late, dropout)]
    assert h.server.result.survivors == frozenset(survivors)
    assert np.array_equal(h.server.result.total, h.expected(survivors))


def test_an_uncertified_advertisement_is_rejected(make_round):
    h = make_round()
    first = h.ids[0]
    advert = h.clients[first].advertise()
    other = h.certify(h.ids[1], h.identities[h.ids[1]])  # a real certificate, someone else's
    for bad in (b"", other, advert.certificate[:-1] + bytes([advert.certificate[-1] ^ 1])):
        with pytest.raises(BadCertificateError):
            h.server.receive(_resigned(h, advert, certificate=bad))
    h.server.receive(advert)
    h.advertise(h.ids[1:])
    _continue_and_check(h, h.server.advance(), Stage.SHARE_KEYS)


def test_unknown_sender_is_rejected(make_round):
    h = make_round()
    stranger = crypto.ed25519_private(lambda n: b"\x33" * n)
    advert = AdvertiseKeys(h.config.round_id, 999, *[crypto.x25519_keypair(lambda n: b"\x44" * n)[1]] * 2)
    with pytest.raises(UnknownSenderError):
        h.server.receive(sign_message(advert, stranger))
    h.advertise()
    _continue_and_check(h, h.server.advance(), Stage.SHARE_KEYS)


def test_malformed_contents_are_rejected(make_round):
    h = make_round()
    first = h.ids[0]
    advert = h.clients[first].advertise()
    with pytest.raises(MalformedMessageError):  # a low-order point would zero every shared secret
        h.server.receive(_resigned(h, advert, mask_public_key=bytes(32)))
    h.server.receive(advert)
    h.advertise(h.ids[1:])
    shares = h.reply(h.server.advance(), send=False)
    cts = shares[first].ciphertexts
    for bad in (cts[:-1], cts + cts[:1], ((12345, cts[0][1]),) + cts[1:]):
        with pytest.raises(MalformedMessageError):
            h.server.receive(_resigned(h, shares[first], ciphertexts=bad))
    h.send(shares)
    masked = h.reply(h.server.advance(), send=False)
    good_masked = masked[first]
    bits = bytearray(good_masked.mask_set)
    bits[0] ^= 0x80  # claims one neighbour more or less than the server forwarded to it
    for bad in (replace(good_masked, mask_set=bytes(bits)),
                replace(good_masked, mask_signature=bytes(64))):
        with pytest.raises((MalformedMessageError, BadSignatureError)):
            h.server.receive(sign_message(bad, h.keys[first]))
    h.send(masked)
    checks = h.reply(h.server.advance(), send=False)
    with pytest.raises(BadSignatureError):  # signed some other set
        h.server.receive(_resigned(h, checks[first], survivors_signature=bytes(64)))
    h.send(checks)
    responses = h.reply(h.server.advance(), send=False)
    good = responses[first]
    peer = good.seed_shares[0][0]
    for bad in (
        replace(good, key_shares=((peer, 1),)),  # a key share nobody asked for
        replace(good, seed_shares=good.seed_shares[1:]),  # a missing seed share
        replace(good, seed_shares=((peer, shamir.PRIME),) + good.seed_shares[1:]),  # not a field element
    ):
        with pytest.raises(MalformedMessageError):
            h.server.receive(sign_message(bad, h.keys[first]))
    h.send(responses)
    h.server.advance()
    assert np.array_equal(h.server.result.total, h.expected(h.ids))


def test_too_few_advertisers_abort_and_the_abort_sticks(make_round):
    h = make_round(n=5)
    h.advertise(h.ids[:2])
    assert h.server.pending == frozenset(h.ids[2:])
    with pytest.raises(RoundAbortedError):
        h.server.advance()
    assert h.server.stage == Stage.ABORTED
    with pytest.raises(RoundAbortedError):
        h.server.advance()
    with pytest.raises(RoundAbortedError):
        h.server.result


def test_too_few_answers_abort_before_any_share_is_revealed(make_round):
    h = make_round(n=5, threshold=4)
    h.advertise()
    h.reply(h.server.advance())
    forwarded = h.server.advance()
    h.reply(forwarded, who=h.ids[:3])  # two drop: 3 masked inputs < t = 4
    with pytest.raises(RoundAbortedError):
        h.server.advance()  # no unmask request was ever produced


def test_a_lying_key_share_aborts_instead_of_a_wrong_sum(make_round):
    h = make_round(n=5, threshold=4)  # exactly t answer: no spare share, the public key catches it
    dropout = h.ids[-1]
    h.advertise()
    h.reply(h.server.advance())
    h.reply(h.server.advance(), who=h.ids[:-1])
    h.reply(h.server.advance())
    responses = h.reply(h.server.advance(), send=False)
    liar = h.ids[0]  # the smallest x, so its share is among the t used
    lie = responses[liar]
    forged = tuple((p, (v + 1) % shamir.PRIME) for p, v in lie.key_shares)
    responses[liar] = sign_message(replace(lie, key_shares=forged), h.keys[liar])
    assert any(p == dropout for p, _ in forged)
    h.send(responses)
    with pytest.raises(RoundAbortedError, match="mask key"):
        h.server.advance()


def test_a_lying_seed_share_is_caught_by_a_spare_share(make_round):
    h = make_round(n=6)  # t = 5, six seed shares per survivor
    h.advertise()
    h.reply(h.server.advance())
    h.reply(h.server.advance())
    h.reply(h.server.advance())
    responses = h.reply(h.server.advance(), send=False)
    liar = h.ids[0]
    forged = tuple((p, (v + 1) % shamir.PRIME) for p, v in responses[liar].seed_shares)
    responses[liar] = sign_message(replace(responses[liar], seed_shares=forged), h.keys[liar])
    h.send(responses)
    with pytest.raises(RoundAbortedError, match="inconsistent"):
        h.server.advance()


def test_pending_tracks_each_stage(make_round):
    h = make_round(n=4)
    assert h.server.pending == frozenset(h.ids)
    h.advertise()
    assert h.server.pending == frozenset()
    key_lists = h.server.advance()
    assert h.server.pending == frozenset(h.ids)
    h.reply(key_lists, who=h.ids[:3])
    assert h.server.pending == frozenset(h.ids[3:])


def test_enrolment_is_checked(make_round):
    h = make_round()
    with pytest.raises(ConfigError):
        ServerMachine(h.config, {1: b"short"}, lambda n: bytes(n))
    with pytest.raises(ConfigError):
        ServerMachine(h.config, {2**32: bytes(32)}, lambda n: bytes(n))
