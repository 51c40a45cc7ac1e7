"""The coordinating server's side of a round, as a sans-IO state machine.

``receive()`` takes each client message (rejecting bad ones with a specific error while the
round goes on); ``advance()`` closes the current stage and returns the messages to send, one
per client id. After the unmask stage ``advance()`` computes :attr:`result`. Any stage that
leaves too few clients raises :class:`~edgerec.RoundAbortedError` before anything is revealed.

An honest server is all this module implements; the clients do not rely on it being honest
(see ``client.py``). It does check what it can, so that one bad client cannot make the round
fail for everyone: signatures, certificates, signed mask sets that match what it forwarded,
survivor signatures over the set it sent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Collection, Mapping

import numpy as np

from .._exceptions import (
    BadSignatureError,
    ConfigError,
    DuplicateSenderError,
    MalformedMessageError,
    OutOfStageError,
    ReplayError,
    RoundAbortedError,
    UnknownSenderError,
    WrongLengthError,
    WrongRoundError,
)
from . import crypto, graph, shamir, statements, wire
from ._unmask import unmask_sum
from .certificate import check_certificate
from .client import SHARE_CIPHERTEXT_BYTES
from .config import MAX_CLIENT_ID, SecAggConfig
from .messages import (
    CLIENT_MESSAGE_STAGE,
    VERSION,
    AdvertiseKeys,
    ClientMessage,
    ConsistencyCheck,
    ConsistencyRequest,
    ForwardedShares,
    KeyList,
    MaskedInput,
    PeerKeys,
    ServerMessage,
    ShareKeys,
    Stage,
    UnmaskRequest,
    UnmaskResponse,
)

Rng = Callable[[int], bytes]


@dataclass(frozen=True, eq=False)
class AggregateResult:
    """The outcome of a round: the sum mod 2^32 of the survivors' inputs, and who they were."""

    round_id: int
    total: np.ndarray
    survivors: frozenset[int]
    dropped: frozenset[int]


class ServerMachine:
    """The server's part in one round.

    ``identities`` maps each enrolled client id to its raw Ed25519 public key; ``rng`` supplies
    the graph seed. With ``authority_key`` every advertisement must carry a certificate from
    that enrolment authority for its sender's identity key (valid at ``now``, if given). The
    server never holds a single client's unmasked input: it keeps a running sum of masked
    vectors and removes masks only for the survivor set the clients signed.
    """

    def __init__(self, config: SecAggConfig, identities: Mapping[int, bytes], rng: Rng, *,
                 authority_key: bytes | None = None, now: float | None = None) -> None:
        for client_id, key in identities.items():
            if not 0 <= client_id <= MAX_CLIENT_ID or len(key) != crypto.KEY_BYTES:
                raise ConfigError(f"enrolled client {client_id}: id out of range or key not 32 bytes")
        self.config = config
        self._identities = dict(identities)
        self._rng = rng
        self._authority, self._now = authority_key, now
        self._stage = Stage.ADVERTISE
        self._fingerprints: dict[type, dict[int, bytes]] = {kind: {} for kind in CLIENT_MESSAGE_STAGE}
        self._adverts: dict[int, AdvertiseKeys] = {}
        self._shares: dict[int, ShareKeys] = {}
        self._masked: dict[int, tuple[bytes, bytes]] = {}  # sender -> signed mask set
        self._checks: dict[int, bytes] = {}  # sender -> signature over the survivor set
        self._responses: dict[int, UnmaskResponse] = {}
        self._asked: dict[int, ConsistencyRequest] = {}
        self._requests: dict[int, UnmaskRequest] = {}
        self._graph: dict[int, frozenset[int]] = {}
        self._masked_with: dict[int, frozenset[int]] = {}  # whose shares each client received
        self._survivors: frozenset[int] = frozenset()
        self._survived = b""  # statements.survivors_digest(self._survivors): hashed once
        self._view = b""
        self._threshold = 0
        self._sum = np.zeros(config.vector_length, dtype=np.uint32)
        self._result: AggregateResult | None = None
        self._abort_reason = ""

    @property
    def stage(self) -> Stage:
        """The stage whose client messages are being collected."""
        return self._stage

    @property
    def pending(self) -> frozenset[int]:
        """Clients whose message for the current stage has not arrived yet."""
        # Each stage's senders: the clients it waits for, and those whose message arrived.
        senders: dict[Stage, tuple[Collection[int], Collection[int]]] = {
            Stage.ADVERTISE: (self._identities, self._adverts),
            Stage.SHARE_KEYS: (self._adverts, self._shares),
            Stage.MASKED_INPUT: (self._shares, self._masked),
            Stage.CONSISTENCY: (self._asked, self._checks),
            Stage.UNMASK: (self._requests, self._responses),
        }
        expected, arrived = senders.get(self._stage, ((), ()))
        return frozenset(expected) - frozenset(arrived)

    @property
    def expected(self) -> frozenset[int]:
        """Clients whose message the current stage waits for (arrived or not)."""
        return frozenset(self._eligible()) if self._stage <= Stage.UNMASK else frozenset()

    @property
    def result(self) -> AggregateResult:
        """The round's result; raises :class:`RoundAbortedError` unless the round is DONE."""
        if self._result is None:
            raise RoundAbortedError(self._abort_reason or f"round not finished (stage {self._stage.name})")
        return self._result

    # -- receiving -------------------------------------------------------------------------
    def receive(self, message: ClientMessage) -> None:
        """Accept one client message or raise a :class:`MessageRejectedError` subclass.

        A rejected message changes nothing, so the round goes on for everyone else.
        """
        kind = type(message)
        stage = CLIENT_MESSAGE_STAGE.get(kind)
        if stage is None or message.version != VERSION:
            raise MalformedMessageError("not a client message of a supported version")
        if message.round_id != self.config.round_id:
            raise WrongRoundError(f"round {message.round_id}, this is round {self.config.round_id}")
        identity = self._identities.get(message.sender)
        if identity is None:
            raise UnknownSenderError(f"client {message.sender} is not enrolled")
        signed = wire.signing_bytes(message)
        fingerprint = hashlib.sha256(signed + message.signature).digest()
        seen = self._fingerprints[kind]
        if seen.get(message.sender) == fingerprint:
            raise ReplayError(f"{kind.__name__} from {message.sender} already received")
        if stage != self._stage:
            raise OutOfStageError(f"{kind.__name__} while collecting stage {self._stage.name}")
        if message.sender not in self._eligible():
            raise OutOfStageError(f"client {message.sender} is not part of stage {stage.name}")
        if not crypto.verify(identity, message.signature, signed):
            raise BadSignatureError(f"{kind.__name__} from {message.sender}: signature does not verify")
        if message.sender in seen:
            raise DuplicateSenderError(f"a different {kind.__name__} from {message.sender} was received")
        self._accept(message)
        seen[message.sender] = fingerprint

    def _eligible(self) -> Collection[int]:
        eligible: dict[Stage, Collection[int]] = {
            Stage.ADVERTISE: self._identities,
            Stage.SHARE_KEYS: self._adverts,
            Stage.MASKED_INPUT: self._shares,
            Stage.CONSISTENCY: self._asked,
            Stage.UNMASK: self._requests,
        }
        return eligible[self._stage]

    def _accept(self, msg: ClientMessage) -> None:
        if isinstance(msg, AdvertiseKeys):
            self._accept_advert(msg)
        elif isinstance(msg, ShareKeys):
            self._accept_shares(msg)
        elif isinstance(msg, MaskedInput):
            self._accept_masked(msg)
        elif isinstance(msg, ConsistencyCheck):
            self._accept_check(msg)
        else:
            self._accept_response(msg)

    def _accept_advert(self, msg: AdvertiseKeys) -> None:
        if len(msg.enc_public_key) != crypto.KEY_BYTES or len(msg.mask_public_key) != crypto.KEY_BYTES:
            raise WrongLengthError("public keys must be 32 bytes")
        if not (crypto.is_usable_x25519(msg.enc_public_key) and crypto.is_usable_x25519(msg.mask_public_key)):
            raise MalformedMessageError("unusable (low-order) public key")
        if self._authority is not None:
            check_certificate(msg.certificate, self._authority, device_id=msg.sender,
                              identity_key=self._identities[msg.sender], now=self._now)
        self._adverts[msg.sender] = msg

    def _accept_shares(self, msg: ShareKeys) -> None:
        recipients = [r for r, _ in msg.ciphertexts]
        neighbours = self._graph[msg.sender]
        if len(recipients) != len(neighbours) or set(recipients) != neighbours:
            raise MalformedMessageError("shares must go to exactly the sender's neighbours")
        if any(len(ct) != SHARE_CIPHERTEXT_BYTES for _, ct in msg.ciphertexts):
            raise WrongLengthError(f"each share ciphertext must be {SHARE_CIPHERTEXT_BYTES} bytes")
        self._shares[msg.sender] = msg

    def _accept_masked(self, msg: MaskedInput) -> None:
        if len(msg.vector) != 4 * self.config.vector_length:
            raise WrongLengthError(f"vector of {len(msg.vector)} bytes, {4 * self.config.vector_length} expected")
        expected = statements.bitmap(self._masked_with[msg.sender], sorted(self._graph[msg.sender]))
        if msg.mask_set != expected:
            raise MalformedMessageError("the signed mask set is not the set of shares forwarded to it")
        statement = statements.mask_statement(self._view, self.config.round_id, msg.sender, msg.mask_set)
        if not crypto.verify(self._identities[msg.sender], msg.mask_signature, statement):
            raise BadSignatureError(f"mask set of {msg.sender} is not signed by it")
        # Only the running sum is kept: the server never stores one client's masked vector.
        np.add(self._sum, msg.values, out=self._sum)
        self._masked[msg.sender] = (msg.mask_set, msg.mask_signature)

    def _accept_check(self, msg: ConsistencyCheck) -> None:
        bits = self._masked[msg.sender][0]  # the mask set it signed with its input, restated
        statement = statements.survivors_statement(self._view, self.config.round_id, self._survived,
                                                   msg.sender, bits)
        if not crypto.verify(self._identities[msg.sender], msg.survivors_signature, statement):
            raise BadSignatureError(f"{msg.sender}'s signature over the survivor set does not verify")
        self._checks[msg.sender] = msg.survivors_signature

    def _accept_response(self, msg: UnmaskResponse) -> None:
        held = self._masked_with[msg.sender]
        seed_peers = [p for p, _ in msg.seed_shares]
        key_peers = [p for p, _ in msg.key_shares]
        wanted_seeds = (held & self._survivors) | {msg.sender}
        wanted_keys = held - self._survivors
        if len(seed_peers) != len(wanted_seeds) or set(seed_peers) != wanted_seeds:
            raise MalformedMessageError("seed shares must cover exactly the surviving peers it holds")
        if len(key_peers) != len(wanted_keys) or set(key_peers) != wanted_keys:
            raise MalformedMessageError("key shares must cover exactly the dropped peers it holds")
        if any(not 0 <= v < shamir.PRIME for _, v in msg.seed_shares + msg.key_shares):
            raise MalformedMessageError("share value outside the field")
        self._responses[msg.sender] = msg

    # -- closing stages --------------------------------------------------------------------
    def advance(self) -> dict[int, ServerMessage]:
        """Close the current stage; return the next stage's messages by recipient id.

        Closing the unmask stage returns ``{}`` and sets :attr:`result`. Raises
        :class:`RoundAbortedError` (and stays aborted) if the round cannot complete safely.
        """
        if self._stage == Stage.DONE:
            return {}
        if self._stage == Stage.ABORTED:
            raise RoundAbortedError(self._abort_reason)
        step = {
            Stage.ADVERTISE: self._close_advertise,
            Stage.SHARE_KEYS: self._close_share_keys,
            Stage.MASKED_INPUT: self._close_masked_input,
            Stage.CONSISTENCY: self._close_consistency,
            Stage.UNMASK: self._close_unmask,
        }[self._stage]
        try:
            out = step()
        except RoundAbortedError as exc:
            self._abort(str(exc))
            raise
        self._stage = Stage(self._stage + 1)
        return out

    def _abort(self, reason: str) -> None:
        self._stage, self._abort_reason = Stage.ABORTED, reason
        # Drop everything that could help reveal anything later.
        self._sum = np.zeros(0, dtype=np.uint32)
        self._responses.clear()

    def _close_advertise(self) -> dict[int, ServerMessage]:
        participants = tuple(sorted(self._adverts))
        degree, threshold = self.config.parameters_for(len(participants))
        seed = self._rng(32)
        self._graph = graph.neighbourhoods(participants, seed, degree)
        self._threshold = threshold
        self._view = statements.view_hash(self.config.round_id, participants, seed, degree, threshold)
        return {u: self._key_list(u, participants, seed, degree) for u in participants}

    def _key_list(self, u: int, participants: tuple[int, ...], seed: bytes, degree: int) -> KeyList:
        peers = tuple(self._peer_keys(v) for v in sorted(self._graph[u]))
        return KeyList(self.config.round_id, u, seed, degree, self._threshold, participants, peers)

    def _peer_keys(self, v: int) -> PeerKeys:
        a = self._adverts[v]
        return PeerKeys(v, self._identities[v], a.enc_public_key, a.mask_public_key, a.signature,
                        a.certificate)

    def _close_share_keys(self) -> dict[int, ServerMessage]:
        self._require(len(self._shares), "clients shared keys")
        inbox: dict[int, list[tuple[int, bytes]]] = {u: [] for u in self._shares}
        for sender in sorted(self._shares):
            for recipient, ct in self._shares[sender].ciphertexts:
                if recipient in inbox:
                    inbox[recipient].append((sender, ct))
        self._masked_with = {u: frozenset(s for s, _ in cts) for u, cts in inbox.items()}
        return {u: ForwardedShares(self.config.round_id, u, tuple(cts)) for u, cts in inbox.items()}

    def _close_masked_input(self) -> dict[int, ServerMessage]:
        survivors = frozenset(self._masked)
        self._require(len(survivors), "clients sent masked inputs")
        self._survivors, self._survived = survivors, statements.survivors_digest(survivors)
        # Check feasibility before asking anyone to sign, so an abort reveals nothing.
        self._check_recoverable(survivors)
        listed = tuple(sorted(survivors))
        self._asked = {u: ConsistencyRequest(self.config.round_id, u, listed) for u in listed}
        return dict(self._asked)

    def _close_consistency(self) -> dict[int, ServerMessage]:
        signers = frozenset(self._checks)
        # A client answers only if t of its neighbourhood (itself included) signed the set.
        answering = frozenset(u for u in signers if 1 + len(self._graph[u] & signers) >= self._threshold)
        self._require(len(answering), "clients can see enough survivor signatures")
        self._check_recoverable(answering)
        for u in sorted(answering):
            signed = sorted(self._graph[u] & signers)
            signatures = tuple((p, self._masked[p][0], self._checks[p]) for p in signed)
            # Survivors whose seed shares u reveals but that did not sign: their mask sets as
            # signed with their masked input (a signer's is in its survivor signature).
            unsigned = sorted((self._masked_with[u] & self._survivors) - signers)
            mask_sets = tuple((p, *self._masked[p]) for p in unsigned)
            self._requests[u] = UnmaskRequest(self.config.round_id, u, signatures, mask_sets)
        return dict(self._requests)

    def _check_recoverable(self, answering: frozenset[int]) -> None:
        for v in frozenset(self._shares) - self._survivors:
            holders = {w for w in answering if v in self._masked_with[w]}
            self._require(len(holders), f"holders of dropped client {v}'s key can answer")
        for u in self._survivors:
            holders = {w for w in answering if u in self._masked_with[w]} | ({u} & answering)
            self._require(len(holders), f"holders of survivor {u}'s seed can answer")

    def _require(self, count: int, what: str) -> None:
        if count < self._threshold:
            raise RoundAbortedError(f"only {count} {what}; threshold is {self._threshold}")

    def _close_unmask(self) -> dict[int, ServerMessage]:
        self._check_recoverable(frozenset(self._responses))
        total = self._sum
        dropped_keys = frozenset(self._shares) - self._survivors
        unmask_sum(total, self._responses, self._survivors, dropped_keys, self._masked_with,
                   self._adverts, self._threshold, self.config.round_id)
        total.flags.writeable = False
        dropped = frozenset(self._identities) - self._survivors
        self._result = AggregateResult(self.config.round_id, total, self._survivors, dropped)
        self._responses.clear()
        return {}
