"""The device side of a round, as a sans-IO state machine.

``advertise()`` opens the round; then every server message goes to ``handle()``, which returns
the one message to send back. A message that fails a check raises a
:class:`~edgerec.MessageRejectedError` subclass and leaves the machine exactly as it was.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from .._exceptions import (
    BadSignatureError,
    ConfigError,
    MalformedMessageError,
    OutOfStageError,
    ReplayError,
    RoundAbortedError,
    UnsafeRequestError,
    WrongLengthError,
    WrongRoundError,
)
from . import crypto, graph, masking, shamir, wire
from .config import MAX_CLIENT_ID, SecAggConfig
from .messages import (
    SERVER_MESSAGE_STAGE,
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
#: Plaintext of one routed share: the self-mask seed share then the mask-key share.
SHARE_PLAINTEXT_BYTES = 2 * shamir.SHARE_BYTES
SHARE_CIPHERTEXT_BYTES = SHARE_PLAINTEXT_BYTES + crypto.AEAD_TAG_BYTES


class ClientMachine:
    """One device's part in one round.

    ``identity_key`` is the device's raw Ed25519 private key; ``vector`` its uint32 input;
    ``rng(n) -> n random bytes`` (``os.urandom`` in production). ``peer_identities`` optionally
    pins neighbours' Ed25519 public keys from a directory the device trusts; without it the
    device trusts the identity keys the server relays and checks the signatures under them.
    """

    def __init__(
        self,
        config: SecAggConfig,
        client_id: int,
        identity_key: bytes,
        vector: np.ndarray,
        rng: Rng,
        *,
        peer_identities: Mapping[int, bytes] | None = None,
    ) -> None:
        if not 0 <= client_id <= MAX_CLIENT_ID:
            raise ConfigError(f"client id must be in [0, {MAX_CLIENT_ID}]")
        values = np.asarray(vector)
        if values.dtype != np.uint32 or values.shape != (config.vector_length,):
            raise ConfigError(f"input must be a uint32 vector of length {config.vector_length}")
        self.config = config
        self.client_id = client_id
        self._identity_key = identity_key
        self._input = values
        self._rng = rng
        self._pins = peer_identities
        self._stage = Stage.ADVERTISE
        self._handled: dict[type, ServerMessage] = {}
        self._peers: dict[int, PeerKeys] = {}
        self._threshold = 0
        # Shares this device holds: peer -> (seed share, key share); its own seed share apart.
        self._held: dict[int, tuple[int, int]] = {}
        self._own_seed_share = 0

    @property
    def stage(self) -> Stage:
        """The stage whose server message this machine awaits (DONE after answering unmask)."""
        return self._stage

    def advertise(self) -> AdvertiseKeys:
        """Stage 0: make this round's X25519 keys and return them signed."""
        if self._stage != Stage.ADVERTISE:
            raise OutOfStageError("keys were already advertised this round")
        self._enc_private, enc_public = crypto.x25519_keypair(self._rng)
        self._mask_private, mask_public = crypto.x25519_keypair(self._rng)
        msg = AdvertiseKeys(self.config.round_id, self.client_id, enc_public, mask_public)
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
        if isinstance(message, KeyList):
            reply: ClientMessage = self._on_key_list(message)
        elif isinstance(message, ForwardedShares):
            reply = self._on_forwarded(message)
        else:
            reply = self._on_unmask_request(message)
        self._handled[type(message)] = message
        self._stage = Stage(self._stage + 1)
        return reply

    # -- stage 1: check the neighbours' keys, deal and encrypt shares ----------------------
    def _on_key_list(self, msg: KeyList) -> ShareKeys:
        neighbours = self._check_key_list(msg)
        peers = {p.client_id: p for p in msg.neighbours}
        for peer in msg.neighbours:
            self._check_peer(peer)
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
        return self._sign(ShareKeys(msg.round_id, self.client_id, tuple(ciphertexts)))

    def _check_key_list(self, msg: KeyList) -> frozenset[int]:
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
        neighbours = graph.neighbours_of(self.client_id, participants, msg.graph_seed, degree)
        listed = [p.client_id for p in msg.neighbours]
        if len(listed) != len(neighbours) or set(listed) != neighbours:
            raise MalformedMessageError("the key list does not match my neighbours in the graph")
        return neighbours

    def _check_peer(self, peer: PeerKeys) -> None:
        sizes = (len(peer.identity_key), len(peer.enc_public_key), len(peer.mask_public_key))
        if sizes != (32, 32, 32) or len(peer.signature) != crypto.SIGNATURE_BYTES:
            raise WrongLengthError(f"peer {peer.client_id}: key or signature of the wrong size")
        if self._pins is not None and self._pins.get(peer.client_id) != peer.identity_key:
            raise BadSignatureError(f"peer {peer.client_id}: identity key is not the pinned one")
        advert = AdvertiseKeys(
            self.config.round_id, peer.client_id, peer.enc_public_key, peer.mask_public_key, peer.signature
        )
        if not wire.signature_ok(advert, peer.identity_key):
            raise BadSignatureError(f"peer {peer.client_id}: advertised keys are not signed by it")
        if not (crypto.is_usable_x25519(peer.enc_public_key) and crypto.is_usable_x25519(peer.mask_public_key)):
            raise MalformedMessageError(f"peer {peer.client_id}: unusable public key")

    def _seal_for(self, peer: PeerKeys, plaintext: bytes) -> bytes:
        round_id, me, them = self.config.round_id, self.client_id, peer.client_id
        key = crypto.share_key(self._enc_private, peer.enc_public_key, round_id, me, them)
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
        for sender in senders:
            peer = self._peers[sender]
            seed = crypto.mask_seed(
                self._mask_private, peer.mask_public_key, self.config.round_id, self.client_id, sender
            )
            masking.apply(masked, seed, masking.pairwise_sign(self.client_id, sender))
        self._held = held
        return self._sign(MaskedInput.from_array(msg.round_id, self.client_id, masked))

    def _open_from(self, sender: int, ciphertext: bytes) -> tuple[int, int]:
        if len(ciphertext) != SHARE_CIPHERTEXT_BYTES:
            raise WrongLengthError(f"share from {sender}: {len(ciphertext)} bytes")
        round_id, me = self.config.round_id, self.client_id
        key = crypto.share_key(self._enc_private, self._peers[sender].enc_public_key, round_id, sender, me)
        plaintext = crypto.open_sealed(key, ciphertext, crypto.share_aad(round_id, sender, me))
        try:
            return (
                shamir.from_bytes(plaintext[: shamir.SHARE_BYTES]),
                shamir.from_bytes(plaintext[shamir.SHARE_BYTES :]),
            )
        except ValueError as exc:
            raise MalformedMessageError(f"share from {sender} is not a field element") from exc

    # -- stage 3: reveal exactly one share per neighbour -----------------------------------
    def _on_unmask_request(self, msg: UnmaskRequest) -> UnmaskResponse:
        survivors, dropped = set(msg.survivors), set(msg.dropped)
        if len(survivors) != len(msg.survivors) or len(dropped) != len(msg.dropped):
            raise MalformedMessageError("a peer is listed twice")
        if survivors & dropped:
            raise UnsafeRequestError(f"peers {sorted(survivors & dropped)} listed as both survived and dropped")
        if self.client_id in survivors | dropped:
            raise UnsafeRequestError("the request lists this device itself")
        if survivors | dropped != set(self._held):
            raise UnsafeRequestError("the request does not match the neighbours that shared keys with me")
        if len(survivors) + 1 < self._threshold:
            raise UnsafeRequestError(f"only {len(survivors)} surviving neighbours; threshold {self._threshold}")
        seed_shares = sorted([(p, self._held[p][0]) for p in survivors] + [(self.client_id, self._own_seed_share)])
        key_shares = sorted((p, self._held[p][1]) for p in dropped)
        response = UnmaskResponse(msg.round_id, self.client_id, tuple(seed_shares), tuple(key_shares))
        # The round is over for this device: forget every secret it held.
        self._held, self._own_seed_share, self._self_seed = {}, 0, b""
        self._mask_private = self._enc_private = b""
        return self._sign(response)

    def _sign(self, msg: ClientMessage) -> ClientMessage:
        return wire.sign_message(msg, self._identity_key)
