"""The coordinating server's side of a round, as a sans-IO state machine.

``receive()`` takes each client message (rejecting bad ones with a specific error while the
round goes on); ``advance()`` closes the current stage and returns the messages to send, one
per client id. After the unmask stage ``advance()`` computes :attr:`result`. Any stage that
leaves too few clients raises :class:`~edgerec.RoundAbortedError` before anything is revealed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Container, Mapping

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
from . import crypto, graph, masking, shamir, wire
from .client import SHARE_CIPHERTEXT_BYTES
from .config import MAX_CLIENT_ID, SecAggConfig
from .messages import (
    CLIENT_MESSAGE_STAGE,
    VERSION,
    AdvertiseKeys,
    ClientMessage,
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
    the graph seed. The server never holds a single client's unmasked input: it keeps a running
    sum of masked vectors and removes masks only for the set it has closed.
    """

    def __init__(self, config: SecAggConfig, identities: Mapping[int, bytes], rng: Rng) -> None:
        for client_id, key in identities.items():
            if not 0 <= client_id <= MAX_CLIENT_ID or len(key) != crypto.KEY_BYTES:
                raise ConfigError(f"enrolled client {client_id}: id out of range or key not 32 bytes")
        self.config = config
        self._identities = dict(identities)
        self._rng = rng
        self._stage = Stage.ADVERTISE
        self._fingerprints: dict[type, dict[int, bytes]] = {kind: {} for kind in CLIENT_MESSAGE_STAGE}
        self._adverts: dict[int, AdvertiseKeys] = {}
        self._shares: dict[int, ShareKeys] = {}
        self._masked: set[int] = set()
        self._responses: dict[int, UnmaskResponse] = {}
        self._requests: dict[int, UnmaskRequest] = {}
        self._graph: dict[int, frozenset[int]] = {}
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
        if self._stage == Stage.ADVERTISE:
            return frozenset(self._identities) - frozenset(self._adverts)
        if self._stage == Stage.SHARE_KEYS:
            return frozenset(self._adverts) - frozenset(self._shares)
        if self._stage == Stage.MASKED_INPUT:
            return frozenset(self._shares) - frozenset(self._masked)
        if self._stage == Stage.UNMASK:
            return frozenset(self._requests) - frozenset(self._responses)
        return frozenset()

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

    def _eligible(self) -> Container[int]:
        return {
            Stage.ADVERTISE: self._identities,
            Stage.SHARE_KEYS: self._adverts,
            Stage.MASKED_INPUT: self._shares,
            Stage.UNMASK: self._requests,
        }[self._stage]

    def _accept(self, msg: ClientMessage) -> None:
        if isinstance(msg, AdvertiseKeys):
            self._accept_advert(msg)
        elif isinstance(msg, ShareKeys):
            self._accept_shares(msg)
        elif isinstance(msg, MaskedInput):
            if len(msg.vector) != 4 * self.config.vector_length:
                raise WrongLengthError(f"vector of {len(msg.vector)} bytes, {4 * self.config.vector_length} expected")
            # Only the running sum is kept: the server never stores one client's masked vector.
            np.add(self._sum, msg.values, out=self._sum)
            self._masked.add(msg.sender)
        else:
            self._accept_response(msg)

    def _accept_advert(self, msg: AdvertiseKeys) -> None:
        if len(msg.enc_public_key) != crypto.KEY_BYTES or len(msg.mask_public_key) != crypto.KEY_BYTES:
            raise WrongLengthError("public keys must be 32 bytes")
        if not (crypto.is_usable_x25519(msg.enc_public_key) and crypto.is_usable_x25519(msg.mask_public_key)):
            raise MalformedMessageError("unusable (low-order) public key")
        self._adverts[msg.sender] = msg

    def _accept_shares(self, msg: ShareKeys) -> None:
        recipients = [r for r, _ in msg.ciphertexts]
        neighbours = self._graph[msg.sender]
        if len(recipients) != len(neighbours) or set(recipients) != neighbours:
            raise MalformedMessageError("shares must go to exactly the sender's neighbours")
        if any(len(ct) != SHARE_CIPHERTEXT_BYTES for _, ct in msg.ciphertexts):
            raise WrongLengthError(f"each share ciphertext must be {SHARE_CIPHERTEXT_BYTES} bytes")
        self._shares[msg.sender] = msg

    def _accept_response(self, msg: UnmaskResponse) -> None:
        request = self._requests[msg.sender]
        seed_peers = [p for p, _ in msg.seed_shares]
        key_peers = [p for p, _ in msg.key_shares]
        wanted_seeds = set(request.survivors) | {msg.sender}
        if len(seed_peers) != len(wanted_seeds) or set(seed_peers) != wanted_seeds:
            raise MalformedMessageError("seed shares must cover exactly the survivors asked about")
        if len(key_peers) != len(request.dropped) or set(key_peers) != set(request.dropped):
            raise MalformedMessageError("key shares must cover exactly the dropped asked about")
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
        return {u: self._key_list(u, participants, seed, degree) for u in participants}

    def _key_list(self, u: int, participants: tuple[int, ...], seed: bytes, degree: int) -> KeyList:
        peers = tuple(self._peer_keys(v) for v in sorted(self._graph[u]))
        return KeyList(self.config.round_id, u, seed, degree, self._threshold, participants, peers)

    def _peer_keys(self, v: int) -> PeerKeys:
        a = self._adverts[v]
        return PeerKeys(v, self._identities[v], a.enc_public_key, a.mask_public_key, a.signature)

    def _close_share_keys(self) -> dict[int, ServerMessage]:
        self._require(len(self._shares), "clients shared keys")
        inbox: dict[int, list[tuple[int, bytes]]] = {u: [] for u in self._shares}
        for sender in sorted(self._shares):
            for recipient, ct in self._shares[sender].ciphertexts:
                if recipient in inbox:
                    inbox[recipient].append((sender, ct))
        return {u: ForwardedShares(self.config.round_id, u, tuple(cts)) for u, cts in inbox.items()}

    def _close_masked_input(self) -> dict[int, ServerMessage]:
        survivors = frozenset(self._masked)
        self._require(len(survivors), "clients sent masked inputs")
        # Check feasibility before asking anyone to reveal a share, so an abort reveals nothing.
        self._check_recoverable(survivors)
        dropped = frozenset(self._shares) - survivors
        for u in sorted(survivors):
            near = self._graph[u]
            self._requests[u] = UnmaskRequest(
                self.config.round_id, u, tuple(sorted(near & survivors)), tuple(sorted(near & dropped))
            )
        return dict(self._requests)

    def _check_recoverable(self, answering: frozenset[int]) -> None:
        for v in frozenset(self._shares) - frozenset(self._masked):
            self._require(len(self._graph[v] & answering), f"neighbours of dropped client {v} can answer")
        for u in self._masked:
            self._require(len((self._graph[u] | {u}) & answering), f"holders of survivor {u}'s seed can answer")

    def _require(self, count: int, what: str) -> None:
        if count < self._threshold:
            raise RoundAbortedError(f"only {count} {what}; threshold is {self._threshold}")

    def _close_unmask(self) -> dict[int, ServerMessage]:
        answering = frozenset(self._responses)
        self._check_recoverable(answering)
        seed_points: dict[int, dict[int, int]] = {u: {} for u in self._masked}
        key_points: dict[int, dict[int, int]] = {v: {} for v in set(self._shares) - self._masked}
        for responder, response in self._responses.items():
            x = shamir.x_of(responder)
            for peer, value in response.seed_shares:
                seed_points[peer][x] = value
            for peer, value in response.key_shares:
                key_points[peer][x] = value
        total = self._sum
        for u in sorted(seed_points):
            masking.apply(total, self._rebuild(seed_points[u], u), -1)
        for v in sorted(key_points):
            self._remove_pairwise(total, v, self._rebuild_mask_key(key_points[v], v))
        total.flags.writeable = False
        survivors = frozenset(self._masked)
        dropped = frozenset(self._identities) - survivors
        self._result = AggregateResult(self.config.round_id, total, survivors, dropped)
        self._responses.clear()
        return {}

    def _rebuild(self, points: dict[int, int], owner: int) -> bytes:
        try:
            secret = shamir.reconstruct(points, self._threshold)
            return secret.to_bytes(32, "big")
        except (ValueError, OverflowError) as exc:
            raise RoundAbortedError(f"shares of client {owner}'s secret are inconsistent") from exc

    def _rebuild_mask_key(self, points: dict[int, int], v: int) -> bytes:
        private = self._rebuild(points, v)
        if crypto.x25519_public(private) != self._adverts[v].mask_public_key:
            raise RoundAbortedError(f"rebuilt mask key of client {v} does not match its advertised key")
        return private

    def _remove_pairwise(self, total: np.ndarray, v: int, private: bytes) -> None:
        """Undo the masks survivors added for their dropped neighbour ``v``."""
        # Every surviving neighbour w of v got v's shares (both were in the share stage), so w
        # masked with v; v's own masked vector never arrived, so w's half does not cancel.
        for w in sorted(self._graph[v] & self._masked):
            seed = crypto.mask_seed(private, self._adverts[w].mask_public_key, self.config.round_id, v, w)
            masking.apply(total, seed, -masking.pairwise_sign(w, v))
