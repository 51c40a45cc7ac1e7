"""A lying secure-aggregation server, for the attack tests (imported as ``secagg_attacker``).

It drives real ``ClientMachine`` devices (real keys, real certificates from an authority the
attacker does not hold) but sends each of them whatever it likes, then tries to rebuild a sum
of a chosen group of inputs from what the devices revealed. Its reconstruction is the one an
attacker would run: if the devices ever reveal enough, :meth:`Attacker.recover` returns the
exact sum; otherwise it raises ``NotRecoverable``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from edgerec.secagg import (
    ClientMachine,
    ConsistencyRequest,
    ForwardedShares,
    KeyList,
    MessageRejectedError,
    PeerKeys,
    SecAggConfig,
    UnmaskRequest,
    crypto,
    deterministic_rng,
    encode_certificate,
    issue_certificate,
    shamir,
)
from edgerec.secagg import graph, masking

NOW = 1_000_000.0


class NotRecoverable(Exception):
    """The devices did not reveal enough to rebuild the sum asked for."""


@dataclass
class Attacker:
    """``n`` honest devices (ids 1..n, complete graph unless ``degree``) and a lying server."""

    n: int
    threshold: int
    length: int = 8
    min_fraction: float = 2 / 3
    round_id: int = 7
    devices: dict[int, ClientMachine] = field(default_factory=dict)
    inputs: dict[int, np.ndarray] = field(default_factory=dict)
    adverts: dict = field(default_factory=dict)
    masked: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)
    responses: dict = field(default_factory=dict)
    refused: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from fractions import Fraction

        fraction = Fraction(self.min_fraction).limit_denominator(100)
        self.config = SecAggConfig(self.round_id, self.length, threshold=self.threshold,
                                   min_fraction=fraction)
        authority = crypto.ed25519_private(os.urandom)  # the operator's: never the attacker's
        self.authority = crypto.ed25519_public(authority)
        rng = np.random.default_rng(self.n)
        self.ids = list(range(1, self.n + 1))
        self.keys = {c: crypto.ed25519_private(deterministic_rng(b"id/%d" % c)) for c in self.ids}
        for c in self.ids:
            public = crypto.ed25519_public(self.keys[c])
            cert = encode_certificate(issue_certificate(authority, c, public, NOW - 60, NOW + 3600))
            self.inputs[c] = rng.integers(0, 2**32, self.length, dtype=np.uint32)
            self.devices[c] = ClientMachine(self.config, c, self.keys[c], self.inputs[c], os.urandom,
                                            authority_key=self.authority, now=NOW, certificate=cert)

    # -- the stages, honestly until the attacker says otherwise ----------------------------
    def advertise(self) -> None:
        self.adverts = {c: d.advertise() for c, d in self.devices.items()}
        self.seed = os.urandom(32)
        self.degree = self.n - 1
        self.graph = graph.neighbourhoods(self.ids, self.seed, self.degree)

    def share_keys(self) -> dict:
        shares = {}
        for c, d in self.devices.items():
            peers = tuple(self._peer(v) for v in sorted(self.graph[c]))
            key_list = KeyList(self.round_id, c, self.seed, self.degree, self.threshold,
                               tuple(self.ids), peers)
            shares[c] = self._ask(c, key_list)
        return shares

    def masked_input(self, shares: dict, forward_to=lambda sender, recipient: True) -> None:
        """Forward shares (only those ``forward_to`` allows), collect the masked inputs."""
        for c in self.ids:
            inbox = tuple((s, ct) for s in sorted(shares) for r, ct in shares[s].ciphertexts
                          if r == c and forward_to(s, c))
            reply = self._ask(c, ForwardedShares(self.round_id, c, inbox))
            if reply is not None:
                self.masked[c] = reply
        self.masked_with = {c: {s for s in shares if forward_to(s, c) and s != c} for c in self.ids}

    def consistency(self, survivors_of) -> None:
        """Ask each device to sign ``survivors_of(device)`` (a different set each, if it likes);
        a device left out of its own set is not asked (it is 'dropped')."""
        self.views = {c: tuple(sorted(survivors_of(c))) for c in self.masked if c in survivors_of(c)}
        for c, view in self.views.items():
            reply = self._ask(c, ConsistencyRequest(self.round_id, c, view))
            if reply is not None:
                self.checks[c] = reply

    def unmask(self, signers_for=None) -> None:
        """Send each device the survivor signatures of ``signers_for(device)`` (default: every
        signature anyone made) and the mask sets of the survivors it holds shares of."""
        for c in self.checks:
            signers = set(self.checks if signers_for is None else signers_for(c)) - {c}
            signatures = tuple((p, self.masked[p].mask_set, self.checks[p].survivors_signature)
                               for p in sorted(signers) if p in self.checks)
            alive = sorted(p for p in self.masked_with[c] if p in self.views[c] and p not in signers)
            mask_sets = tuple((p, self.masked[p].mask_set, self.masked[p].mask_signature) for p in alive)
            reply = self._ask(c, UnmaskRequest(self.round_id, c, signatures, mask_sets))
            if reply is not None:
                self.responses[c] = reply

    # -- the attacker's reconstruction -------------------------------------------------------
    def recover(self, group: set[int]) -> np.ndarray:
        """The sum of ``group``'s inputs from their masked inputs and the revealed shares."""
        total = np.zeros(self.length, dtype=np.uint32)
        seeds = self._secrets("seed_shares")
        keys = self._secrets("key_shares")
        for u in group:
            if u not in self.masked or u not in seeds:
                raise NotRecoverable(f"no masked input or self-mask seed of {u}")
            total += self.masked[u].values
            masking.apply(total, seeds[u].to_bytes(32, "big"), -1)
            for w in self.masked_with[u] - group:
                if w not in keys:
                    raise NotRecoverable(f"{u} masked with {w}, whose key stays secret")
                private = keys[w].to_bytes(32, "big")
                seed = crypto.mask_seed(private, self.adverts[u].mask_public_key, self.round_id, w, u)
                masking.apply(total, seed, -masking.pairwise_sign(u, w))
        return total

    def expected(self, group: set[int]) -> np.ndarray:
        return np.sum([self.inputs[u] for u in group], axis=0, dtype=np.uint32)

    def _secrets(self, kind: str) -> dict[int, int]:
        points: dict[int, dict[int, int]] = {}
        for responder, response in self.responses.items():
            for peer, value in getattr(response, kind):
                points.setdefault(peer, {})[shamir.x_of(responder)] = value
        return {p: shamir.reconstruct(pts, self.threshold) for p, pts in points.items()
                if len(pts) >= self.threshold}

    def _peer(self, v: int) -> PeerKeys:
        a = self.adverts[v]
        return PeerKeys(v, crypto.ed25519_public(self.keys[v]), a.enc_public_key, a.mask_public_key,
                        a.signature, a.certificate)

    def _ask(self, c: int, message):  # type: ignore[no-untyped-def]
        if c in self.refused:
            return None
        try:
            return self.devices[c].handle(message)
        except MessageRejectedError as exc:
            self.refused[c] = exc
            return None
