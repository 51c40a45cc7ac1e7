"""Sans-IO secure aggregation: the server learns the sum of the devices' vectors, nothing else.

After Bonawitz et al. 2017 (SecAgg, the active-adversary variant) with the sparse neighbour
graph of Bell et al. 2020 (SecAgg+). Five stages: advertise keys (with enrolment
certificates), share keys, masked input (with a signed mask set), consistency check (clients
sign the survivor set), unmask. Clients and the server
are state machines that take messages and return messages; randomness is passed in as
``rng(n) -> bytes``; there is no clock, socket or ``os.urandom`` in this package.

A round, from the server's side::

    server = ServerMachine(config, enrolled_public_keys, os.urandom)
    for msg in incoming:   server.receive(msg)        # AdvertiseKeys
    outbox = server.advance()                          # {client_id: KeyList}
    ...                    server.receive(msg)        # ShareKeys
    outbox = server.advance()                          # {client_id: ForwardedShares}
    ...                    server.receive(msg)        # MaskedInput
    outbox = server.advance()                          # {client_id: ConsistencyRequest}
    ...                    server.receive(msg)        # ConsistencyCheck
    outbox = server.advance()                          # {client_id: UnmaskRequest}
    ...                    server.receive(msg)        # UnmaskResponse
    server.advance(); server.result.total              # the sum mod 2^32

and from a device's: ``msg = client.advertise()`` then ``reply = client.handle(server_msg)``
for each of the four server messages. Certificates (``certificate.py``) come from the
operator's enrolment authority; ``issue_certificate`` is how the authority makes one.

The errors are edgerec's own (``edgerec._exceptions``), re-exported here for drivers.
"""

from __future__ import annotations

from .._exceptions import (
    BadCertificateError,
    BadCiphertextError,
    BadSignatureError,
    DuplicateSenderError,
    MalformedMessageError,
    MessageRejectedError,
    OutOfStageError,
    ReplayError,
    RoundAbortedError,
    SecAggError,
    UnknownSenderError,
    UnsafeRequestError,
    WrongLengthError,
    WrongRoundError,
)
from .certificate import (
    Certificate,
    check_certificate,
    decode_certificate,
    encode_certificate,
    issue_certificate,
)
from .client import ClientMachine
from .config import SecAggConfig, min_threshold
from .messages import (
    VERSION,
    AdvertiseKeys,
    ClientMessage,
    ConsistencyCheck,
    ConsistencyRequest,
    ForwardedShares,
    KeyList,
    MaskedInput,
    Message,
    PeerKeys,
    ServerMessage,
    ShareKeys,
    Stage,
    UnmaskRequest,
    UnmaskResponse,
)
from .server import AggregateResult, ServerMachine
from .simulate import RoundOutcome, deterministic_rng, simulate_round
from .wire import decode, encode, sign_message, signature_ok, signing_bytes

__all__ = [
    "AdvertiseKeys",
    "AggregateResult",
    "BadCertificateError",
    "BadCiphertextError",
    "BadSignatureError",
    "Certificate",
    "ClientMachine",
    "ClientMessage",
    "ConsistencyCheck",
    "ConsistencyRequest",
    "DuplicateSenderError",
    "ForwardedShares",
    "KeyList",
    "MalformedMessageError",
    "MaskedInput",
    "Message",
    "MessageRejectedError",
    "OutOfStageError",
    "PeerKeys",
    "ReplayError",
    "RoundAbortedError",
    "RoundOutcome",
    "SecAggConfig",
    "SecAggError",
    "ServerMachine",
    "ServerMessage",
    "ShareKeys",
    "Stage",
    "UnknownSenderError",
    "UnmaskRequest",
    "UnmaskResponse",
    "UnsafeRequestError",
    "VERSION",
    "WrongLengthError",
    "WrongRoundError",
    "check_certificate",
    "decode",
    "decode_certificate",
    "deterministic_rng",
    "encode",
    "encode_certificate",
    "issue_certificate",
    "min_threshold",
    "sign_message",
    "signature_ok",
    "signing_bytes",
    "simulate_round",
]
