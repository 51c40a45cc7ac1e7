"""The device <-> server HTTP messages: frozen, versioned dataclasses (bytes via ``codec``).

Secure-aggregation messages are not here: they are ``edgerec.secagg`` messages and travel as
their own wire bytes (``application/octet-stream``). These are the small control messages
around them: enrolment, the round announcement, the round's status, acknowledgements, errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fedeval import EvalConfig
from ..fedeval.layout import METRICS
from ..privacy import DistributedNoise, FixedPoint
from ..secagg import SecAggConfig, Stage

__all__ = [
    "DOWNLOAD_NAMES",
    "EVALUATION",
    "PROTOCOL_VERSION",
    "ROUND_KINDS",
    "TRAINING",
    "UPLOAD_KINDS",
    "CertificateAnswer",
    "EnrolRequest",
    "EnrolResponse",
    "ErrorBody",
    "EvalAnnouncement",
    "RoundAnnouncement",
    "RolloutAnswer",
    "RoundStatus",
    "ServerKey",
    "UploadAck",
    "enrol_proof_bytes",
]

PROTOCOL_VERSION = 2  # 2: certificates, the consistency stage, discrete noise, sampling

#: The upload kind of each client stage; these are also the privacy ledger's kinds.
UPLOAD_KINDS: dict[Stage, str] = {
    Stage.ADVERTISE: "advertise_keys",
    Stage.SHARE_KEYS: "share_keys",
    Stage.MASKED_INPUT: "masked_input",
    Stage.CONSISTENCY: "consistency",
    Stage.UNMASK: "unmask",
}

#: URL name of the server message a device fetches to enter each client stage.
DOWNLOAD_NAMES: dict[Stage, str] = {
    Stage.SHARE_KEYS: "key_list",
    Stage.MASKED_INPUT: "forwarded_shares",
    Stage.CONSISTENCY: "consistency_request",
    Stage.UNMASK: "unmask_request",
}

#: An upload's ``then`` that waits for the round's final status (``?then=outcome``) rather
#: than a stage's server message (one of ``DOWNLOAD_NAMES``).
OUTCOME = "outcome"

#: Round kinds: a training round sums model deltas (a new model comes out of it); an
#: evaluation round sums ``edgerec.fedeval`` vectors (federated metrics come out, no model).
TRAINING, EVALUATION = "training", "evaluation"
ROUND_KINDS = (TRAINING, EVALUATION)

_ENROL_DOMAIN = b"edgerec/sync/v1/enrol\x00"


def enrol_proof_bytes(token: str, identity_key: bytes) -> bytes:
    """What a device signs with its identity key to enrol: proves it holds the private key."""
    return _ENROL_DOMAIN + token.encode() + b"\x00" + bytes(identity_key)


@dataclass(frozen=True)
class EnrolRequest:
    """Device -> server: an operator's enrolment token and the device's Ed25519 identity.

    ``proof`` is the identity key's signature over :func:`enrol_proof_bytes`.
    """

    token: str
    identity_key: bytes
    proof: bytes
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class EnrolResponse:
    """Server -> device: the device's id (its secure-aggregation id) and bearer credential.

    The credential is shown once; the server keeps only its hash. ``server_public_key`` is
    what bundles are signed with (pin it in the app rather than trusting this copy).
    ``certificate`` is the device's enrolment certificate (``edgerec.secagg.certificate``),
    empty while an offline enrolment authority has not signed it yet (the device fetches it
    later from ``GET /v1/certificate``).
    """

    device_id: int
    credential: str
    server_public_key: bytes
    expires_at: float | None = None
    certificate: bytes = b""
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class CertificateAnswer:
    """Server -> device: its enrolment certificate (empty: not signed by the authority yet)."""

    certificate: bytes
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class EvalAnnouncement:
    """What an evaluation round measures: an ``edgerec.fedeval.EvalConfig`` spelled out, the
    key of its vector layout, and the model version of each model slot.

    ``models`` are the config's slot names (installed first) and ``model_versions`` the
    published version each slot stands for: the first is the round's base model (what the
    device runs), the others candidates it downloads and verifies but does not install. A
    device rebuilds the config from these fields and refuses the round unless its own layout
    key for them is exactly ``layout_key`` (a layout it does not know: another version, or a
    key that does not match the parameters). The lean options (``metrics``, ``squares``,
    ``live``) are left out of the JSON at their defaults, so devices from before them still
    read full layouts; such a device meets a lean one as unknown fields and sends nothing.
    """

    layout_key: str
    models: tuple[str, ...]
    model_versions: tuple[int, ...]
    top_k: int
    max_held_out: int
    max_impressions: int
    attribution_s: float
    max_history: int
    metrics: tuple[str, ...] = field(default=METRICS, metadata={"omit_if_default": True})
    squares: bool = field(default=True, metadata={"omit_if_default": True})
    live: bool = field(default=True, metadata={"omit_if_default": True})

    @classmethod
    def of(cls, config: EvalConfig, versions: tuple[int, ...]) -> EvalAnnouncement:
        """The announcement of ``config`` evaluating ``versions`` (one per model slot)."""
        return cls(config.layout.key, config.models, tuple(versions), config.top_k,
                   config.max_held_out, config.max_impressions, float(config.attribution_s),
                   config.max_history, config.metrics, config.squares, config.live)

    def config(self) -> EvalConfig:
        """The config these fields describe (``ConfigError`` if they describe none)."""
        return EvalConfig(models=self.models, top_k=self.top_k, max_held_out=self.max_held_out,
                          max_impressions=self.max_impressions, attribution_s=self.attribution_s,
                          max_history=self.max_history, metrics=self.metrics,
                          squares=self.squares, live=self.live)


@dataclass(frozen=True)
class RoundAnnouncement:
    """Server -> device: a round it may join, with everything needed to privatize a delta.

    The delta is the difference from model ``base_model_version`` (flattened shared weights,
    ``vector_length`` floats). Noise is calibrated to ``min_survivors`` (the secure-aggregation
    threshold minus the ``colluders`` tolerated): no sum the server can unmask holds fewer
    honest devices. ``stage_deadline`` is the current stage's deadline in seconds since the
    epoch: a device waits for the stage at least until then plus a grace for the close, up to
    its own ``max_wait`` (:class:`~edgerec.sync.SyncTimeouts`). Devices check the rest against
    their :class:`~edgerec.sync.RoundPolicy`.

    ``frozen`` names shared weights (``edgerec.model.params.param_names``) this round leaves
    out: devices fine-tune with them held fixed and send only the other entries of the flattened
    delta, so ``vector_length`` is the number of federated entries (a device refuses the round
    unless its own model, with these frozen, has exactly that many). Empty: every weight. It is
    left out of the JSON when empty, so devices from before it existed still read such rounds.

    ``kind`` is ``"training"`` (the device sends a model delta) or ``"evaluation"`` (it sends
    the ``edgerec.fedeval`` vector ``evaluation`` describes: ``vector_length`` = the layout's
    length, ``clip`` = its L2 bound, through the same secure aggregation and noise). Both are
    left out of the JSON for a training round, so older devices still read those; an older
    device meeting an evaluation round refuses its unknown fields and sends nothing.
    """

    round_id: int
    vector_length: int
    min_participants: int
    max_participants: int
    threshold: int
    graph: str
    degree: int | None
    clip: float
    noise_multiplier: float
    min_survivors: int
    base_model_version: int
    stage: str
    stage_deadline: float
    #: q: each of the ``population`` devices active at opening was drawn into this round's
    #: cohort independently with this probability (1.0: every active device, no sampling).
    sampling_rate: float = 1.0
    population: int = 0
    colluders: int = 0
    fp_bits: int = 32
    fp_tail_sigmas: float = 12.0
    frozen: tuple[str, ...] = field(default=(), metadata={"omit_if_default": True})
    kind: str = field(default=TRAINING, metadata={"omit_if_default": True})
    evaluation: EvalAnnouncement | None = field(default=None, metadata={"omit_if_default": True})
    version: int = PROTOCOL_VERSION

    def secagg_config(self) -> SecAggConfig:
        """The round's secure-aggregation parameters as announced (a device holds the round to
        its own :class:`~edgerec.sync.RoundPolicy`'s version of them)."""
        return SecAggConfig(self.round_id, self.vector_length, self.min_participants,
                            self.graph, self.degree, self.threshold, colluders=self.colluders)

    def noise(self) -> DistributedNoise:
        """Each device's share of the Gaussian noise (``noise_multiplier`` 0: none)."""
        return DistributedNoise(self.clip, self.noise_multiplier, self.min_survivors)

    def fixed_point(self) -> FixedPoint:
        """The fixed-point code: room for ``max_participants`` encodings without wrapping."""
        return FixedPoint.for_noise(self.noise(), self.max_participants, self.vector_length,
                                    self.fp_bits, self.fp_tail_sigmas)


@dataclass(frozen=True)
class RoundStatus:
    """Server -> device or auditor: where a round is. ``state`` is open, done or aborted."""

    round_id: int
    state: str
    stage: str
    participants: int
    survivors: int | None = None
    model_version_in: int | None = None
    model_version_out: int | None = None
    reason: str = ""
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class UploadAck:
    """Server -> device: a stage message was stored. ``duplicate``: it already was (a retry)."""

    round_id: int
    kind: str
    duplicate: bool = False
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class ServerKey:
    """The server's bundle-signing public key (raw 32 bytes)."""

    public_key: bytes
    algorithm: str = "ed25519"
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class RolloutAnswer:
    """The server's newest signed rollout statement (``GET /v1/rollout``): the statement's
    bytes and the bundle key's signature over ``edgerec.sync.rollout.DOMAIN`` + those bytes.
    Devices verify it before reading a field of it (``edgerec.sync.rollout.open_statement``)."""

    statement: bytes
    signature: bytes
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class ErrorBody:
    """Any error answer: a short machine-readable ``code`` and a clear ``message``."""

    code: str
    message: str
    version: int = PROTOCOL_VERSION
