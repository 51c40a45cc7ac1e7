"""The device side of a round, as a sans-IO state machine.

``advertise()`` opens the round; then every server message goes to ``handle()``, which returns
the one message to send back. A message that fails a check raises a
:class:`~edgerec.MessageRejectedError` subclass and leaves the machine exactly as it was.

What the device checks before it reveals anything (the server may lie; SECURITY.md):

* every neighbour's keys are signed by that neighbour, whose identity key carries an
  enrolment certificate from the pinned authority (``Trust``), one seat per identity;
* the graph and threshold follow from the configuration (the threshold floor included);
* it masks only with neighbours whose shares reached it, and signs that set;
* it signs the survivor set it is given, and reveals shares only after ``t`` of its
  neighbourhood signed the same set in the same view; seed shares only for survivors that
  signed that they masked with it, key shares only for neighbours outside the set.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from .._exceptions import (
    ConfigError,
    MalformedMessageError,
    OutOfStageError,
    ReplayError,
    RoundAbortedError,
    UnsafeRequestError,
    WrongLengthError,
    WrongRoundError,
)
from . import crypto, masking, shamir, statements, wire
from ._verify import Trust, View, check_peer, check_unmask_request, distinct_identities
from .config import MAX_CLIENT_ID, SecAggConfig
from .messages import (
    SERVER_MESSAGE_STAGE,
    VERSION,
    AdvertiseKeys,
    ClientMessage,
    ClientMessageT,
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
#: Plaintext of one routed share: the self-mask seed share then the mask-key share.
SHARE_PLAINTEXT_BYTES = 2 * shamir.SHARE_BYTES
SHARE_CIPHERTEXT_BYTES = SHARE_PLAINTEXT_BYTES + crypto.AEAD_TAG_BYTES


class ClientMachine:
    """One device's part in one round.

    ``identity_key`` is the device's raw Ed25519 private key; ``vector`` its uint32 input;
    ``rng(n) -> n random bytes`` (``os.urandom`` in production). ``authority_key`` is the pinned
    enrolment authority (raw Ed25519 public key): peers must show certificates it signed, valid
    at ``now``; ``certificate`` is this device's own, sent with its keys. ``peer_identities``
    optionally pins neighbours' identity keys as well. Without ``authority_key`` and
    ``peer_identities`` the device believes the identity keys the server relays, which a lying
    server can replace with its own: only for tests and closed setups.
    """

    def __init__(
        self,
        config: SecAggConfig,
        client_id: int,
        identity_key: bytes,
        vector: np.ndarray,
        rng: Rng,
        *,
        authority_key: bytes | None = None,
        certificate: bytes = b"",
        now: float | None = None,
        peer_identities: Mapping[int, bytes] | None = None,
    ) -> None:
        if not 0 <= client_id <= MAX_CLIENT_ID:
            raise ConfigError(f"client id must be in [0, {MAX_CLIENT_ID}]")
        values = np.asarray(vector)
        if values.dtype != np.uint32 or values.shape != (config.vector_length,):
            raise ConfigError(f"input must be a uint32 vector of length {config.vector_length}")
        if authority_key is not None and (len(authority_key) != crypto.KEY_BYTES or now is None):
            raise ConfigError("authority_key must be 32 bytes, and needs the time (now=...)")
        self.config = config
        self.client_id = client_id
        self._identity_key = identity_key
        self._public_key = crypto.ed25519_public(identity_key)
        self._certificate = bytes(certificate)
        self._trust = Trust(authority_key, now, peer_identities)
        self._input = values
        self._rng = rng
        self._stage = Stage.ADVERTISE
        self._handled: dict[type, ServerMessage] = {}
        self._peers: dict[int, PeerKeys] = {}
        self._view: View | None = None
        self._neighbours: frozenset[int] = frozenset()
        self._threshold = 0
        # Shares this device holds: peer -> (seed share, key share); its own seed share apart.
        self._held: dict[int, tuple[int, int]] = {}
        self._own_seed_share = 0
        self._survivors: frozenset[int] = frozenset()
        self._bits = b""
        # This round's X25519 key objects: made by advertise(), forgotten (None) after unmask.
        self._enc_key: X25519PrivateKey | None = None
        self._mask_key: X25519PrivateKey | None = None

    @property
    def stage(self) -> Stage:
        """The stage whose server message this machine awaits (DONE after answering unmask)."""
        return self._stage

    def advertise(self) -> AdvertiseKeys:
        """Stage 0: make this round's X25519 keys and return them signed, with the certificate."""
        if self._stage != Stage.ADVERTISE:
            raise OutOfStageError("keys were already advertised this round")
        self._enc_private, enc_public = crypto.x25519_keypair(self._rng)
        self._mask_private, mask_public = crypto.x25519_keypair(self._rng)
        # Key objects, loaded once: each is used with every neighbour.
        self._enc_key, self._mask_key = crypto.x25519_key(self._enc_private), crypto.x25519_key(self._mask_private)
        msg = AdvertiseKeys(self.config.round_id, self.client_id, enc_public, mask_public,
                            self._certificate)
        self._stage = Stage.SHARE_KEYS
        return self._sign(msg)

    def handle(self, message: ServerMessage) -> ClientMessage:
        """Process one server message and return the reply; rejects with a specific error."""
        expected_stage = SERVER_MESSAGE_STAGE.get(type(message))
        if expected_stage is None or message.version != VERSION:
            raise MalformedMessageError("not a server message of a supported version")
        if message.round_id != self.config.round_id:
            raise WrongRoundError(f"round {message.round_id}, this is round {self.config.round_id}")
        if message.recipient != self.client_id:
            raise MalformedMessageError(f"addressed to {message.recipient}, not {self.client_id}")
        if self._handled.get(type(message)) == message:
            raise ReplayError(f"{type(message).__name__} already handled")
        if expected_stage != self._stage:
            raise OutOfStageError(f"{type(message).__name__} in stage {self._stage.name}")
        handler = {KeyList: self._on_key_list, ForwardedShares: self._on_forwarded,
                   ConsistencyRequest: self._on_consistency_request,
                   UnmaskRequest: self._on_unmask_request}[type(message)]
        reply = handler(message)  # type: ignore[operator]
        self._handled[type(message)] = message
        self._stage = Stage(self._stage + 1)
        return reply

    # -- stage 1: check the neighbours' keys, deal and encrypt shares ----------------------
    def _on_key_list(self, msg: KeyList) -> ShareKeys:
        view = View(msg.round_id, msg.participants, msg.graph_seed, msg.degree, msg.threshold)
        neighbours = self._check_key_list(msg, view)
        peers = {p.client_id: p for p in msg.neighbours}
        for peer in msg.neighbours:
            check_peer(peer, self.config.round_id, self._trust)
        distinct_identities(msg.neighbours, self._public_key)
        self_seed = self._rng(masking.SEED_BYTES)
        holders = sorted(neighbours | {self.client_id})
        xs = [shamir.x_of(c) for c in holders]
        seed_shares = shamir.split(int.from_bytes(self_seed, "big"), xs, msg.threshold, self._rng)
        key_secret = int.from_bytes(self._mask_private, "big")
        key_shares = shamir.split(key_secret, xs, msg.threshold, self._rng)
        ciphertexts = []
        for holder, seed_share, key_share in zip(holders, seed_shares, key_shares):
            if holder == self.client_id:
                # Keep only the own seed share; the own key share is never revealed, so dropped.
                self._own_seed_share = seed_share
                continue
            plaintext = shamir.to_bytes(seed_share) + shamir.to_bytes(key_share)
            ciphertexts.append((holder, self._seal_for(peers[holder], plaintext)))
        self._self_seed, self._peers, self._threshold = self_seed, peers, msg.threshold
        self._neighbours, self._view = neighbours, view
        return self._sign(ShareKeys(msg.round_id, self.client_id, tuple(ciphertexts)))

    def _check_key_list(self, msg: KeyList, view: View) -> frozenset[int]:
        participants = msg.participants
        if list(participants) != sorted(set(participants)) or self.client_id not in participants:
            raise MalformedMessageError("participants must be sorted, unique, and include me")
        if participants[-1] > MAX_CLIENT_ID:
            raise MalformedMessageError("participant id out of range")
        try:
            degree, threshold = self.config.parameters_for(len(participants))
        except RoundAbortedError as exc:
            raise UnsafeRequestError(f"refusing the round: {exc}") from exc
        if (msg.degree, msg.threshold) != (degree, threshold):
            raise UnsafeRequestError(
                f"server set degree {msg.degree}, threshold {msg.threshold}; "
                f"the configuration gives {degree}, {threshold}"
            )
        if len(msg.graph_seed) != 32:
            raise WrongLengthError("graph seed must be 32 bytes")
        neighbours = view.neighbours(self.client_id)  # the ring is built once, for later stages too
        listed = [p.client_id for p in msg.neighbours]
        if len(listed) != len(neighbours) or set(listed) != neighbours:
            raise MalformedMessageError("the key list does not match my neighbours in the graph")
        return neighbours

    def _seal_for(self, peer: PeerKeys, plaintext: bytes) -> bytes:
        assert self._enc_key is not None  # made by advertise(), the stage before this one
        round_id, me, them = self.config.round_id, self.client_id, peer.client_id
        key = crypto.share_key(self._enc_key, peer.enc_public_key, round_id, me, them)
        return crypto.seal(key, plaintext, crypto.share_aad(round_id, me, them))

    # -- stage 2: decrypt the shares held for neighbours, mask the input -------------------
    def _on_forwarded(self, msg: ForwardedShares) -> MaskedInput:
        senders = [sender for sender, _ in msg.ciphertexts]
        if len(set(senders)) != len(senders) or not set(senders) <= set(self._peers):
            raise MalformedMessageError("forwarded shares from non-neighbours or twice from one")
        if len(senders) + 1 < self._threshold:
            raise UnsafeRequestError(
                f"only {len(senders)} neighbours shared keys; threshold {self._threshold} cannot be met"
            )
        held = {sender: self._open_from(sender, ct) for sender, ct in msg.ciphertexts}
        masked = self._input.copy()
        masking.apply(masked, self._self_seed, +1)
        assert self._mask_key is not None  # made by advertise(), two stages before this one
        for sender in senders:
            peer = self._peers[sender]
            seed = crypto.mask_seed(
                self._mask_key, peer.mask_public_key, self.config.round_id, self.client_id, sender
            )
            masking.apply(masked, seed, masking.pairwise_sign(self.client_id, sender))
        self._held = held
        assert self._view is not None
        bits = self._bits = statements.bitmap(held, sorted(self._neighbours))
        statement = statements.mask_statement(self._view.digest, msg.round_id, self.client_id, bits)
        mask_signature = crypto.sign(self._identity_key, statement)
        return self._sign(MaskedInput.from_array(msg.round_id, self.client_id, masked, bits, mask_signature))

    def _open_from(self, sender: int, ciphertext: bytes) -> tuple[int, int]:
        if len(ciphertext) != SHARE_CIPHERTEXT_BYTES:
            raise WrongLengthError(f"share from {sender}: {len(ciphertext)} bytes")
        assert self._enc_key is not None  # made by advertise(), two stages before this one
        round_id, me = self.config.round_id, self.client_id
        key = crypto.share_key(self._enc_key, self._peers[sender].enc_public_key, round_id, sender, me)
        plaintext = crypto.open_sealed(key, ciphertext, crypto.share_aad(round_id, sender, me))
        try:
            return (
                shamir.from_bytes(plaintext[: shamir.SHARE_BYTES]),
                shamir.from_bytes(plaintext[shamir.SHARE_BYTES :]),
            )
        except ValueError as exc:
            raise MalformedMessageError(f"share from {sender} is not a field element") from exc

    # -- stage 3: sign the survivor set --------------------------------------------------------
    def _on_consistency_request(self, msg: ConsistencyRequest) -> ConsistencyCheck:
        assert self._view is not None
        survivors = msg.survivors
        if list(survivors) != sorted(set(survivors)) or not set(survivors) <= set(self._view.participants):
            raise MalformedMessageError("survivors must be sorted, unique participants")
        if self.client_id not in survivors:
            raise UnsafeRequestError("the survivor set leaves out this device, which sent its input")
        nearby = len((self._neighbours | {self.client_id}) & set(survivors))
        if nearby < self._threshold:
            raise UnsafeRequestError(f"only {nearby} of my neighbourhood survived; threshold {self._threshold}")
        self._survivors = frozenset(survivors)
        statement = statements.survivors_statement(self._view.digest, msg.round_id, survivors,
                                                   self.client_id, self._bits)
        return self._sign(ConsistencyCheck(msg.round_id, self.client_id,
                                           crypto.sign(self._identity_key, statement)))

    # -- stage 4: reveal exactly one share per neighbour, if enough agree ---------------------
    def _on_unmask_request(self, msg: UnmaskRequest) -> UnmaskResponse:
        assert self._view is not None
        survivors = self._survivors
        keys = {p: peer.identity_key for p, peer in self._peers.items()}
        alive = frozenset(self._held) & survivors
        # Signers are my surviving neighbours (only their keys are known to me, and they are the
        # ones holding my shares); each signed the whole survivor set I signed.
        agreeing = 1 + check_unmask_request(msg.signatures, msg.mask_sets, me=self.client_id,
                                            survivors=survivors, neighbours=self._neighbours,
                                            alive=alive, view=self._view, keys=keys)
        if agreeing < self._threshold:
            raise UnsafeRequestError(f"only {agreeing} of my neighbourhood signed this survivor set; "
                                     f"threshold {self._threshold}")
        gone = frozenset(self._held) - survivors
        seed_shares = sorted([(p, self._held[p][0]) for p in alive] + [(self.client_id, self._own_seed_share)])
        key_shares = sorted((p, self._held[p][1]) for p in gone)
        response = UnmaskResponse(msg.round_id, self.client_id, tuple(seed_shares), tuple(key_shares))
        # The round is over for this device: forget every secret it held.
        self._held, self._own_seed_share, self._self_seed = {}, 0, b""
        self._mask_private = self._enc_private = b""
        self._mask_key = self._enc_key = None
        return self._sign(response)

    def _sign(self, msg: ClientMessageT) -> ClientMessageT:
        return wire.sign_message(msg, self._identity_key)
