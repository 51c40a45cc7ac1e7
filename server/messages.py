"""A device's stage messages at the door, before and after any round sees them.

``checked_upload`` decodes an uploaded body and checks what the body alone can say (a device
message, from the device that sent it, for the round it was sent to); ``rejected`` is the HTTP
error a message the secure-aggregation code refused answers with (counted in the metrics);
``addressed`` picks a device's own message out of a closed stage's outbox. Whether the round
takes the message (its stage, duplicates, the database) is the coordinator's business.
"""

from __future__ import annotations

from edgerec._exceptions import MessageRejectedError
from edgerec.secagg import (
    BadSignatureError,
    DuplicateSenderError,
    Message,
    OutOfStageError,
    ReplayError,
    Stage,
    UnknownSenderError,
)
from edgerec.secagg.messages import CLIENT_MESSAGE_STAGE
from edgerec.sync import decode_secagg

from ._exceptions import BadRequestError, ConflictError, ForbiddenError, ServerError
from .metrics import Metrics
from .state import DeviceRecord

__all__ = ["addressed", "checked_upload", "rejected"]

_STATUS_OF = {ReplayError: 409, DuplicateSenderError: 409, OutOfStageError: 409,
              BadSignatureError: 403, UnknownSenderError: 403}


def checked_upload(device: DeviceRecord, round_id: int, body: bytes,
                   metrics: Metrics) -> tuple[Message, Stage]:
    """The device message in ``body`` and the stage it belongs to; raises the ``ServerError``
    the device is answered with when it does not decode, is not a device message, or names
    another sender or round."""
    try:
        message = decode_secagg(body)
    except MessageRejectedError as exc:
        raise rejected(exc, metrics) from None
    stage = CLIENT_MESSAGE_STAGE.get(type(message))
    if stage is None:
        raise BadRequestError("not a device message (server messages are not uploaded)")
    if message.sender != device.id:  # type: ignore[union-attr]
        raise ForbiddenError(f"message sender {message.sender} is not device {device.id}")  # type: ignore[union-attr]
    if message.round_id != round_id:
        raise BadRequestError(f"message for round {message.round_id} sent to round {round_id}")
    return message, stage


def rejected(exc: MessageRejectedError, metrics: Metrics) -> ServerError:
    """The error answering a message refused with ``exc`` (409, 403, else 400; its code is the
    refusal's class name), counted in ``metrics``."""
    reason = type(exc).__name__
    metrics.rejections.labels(reason).inc()
    status = _STATUS_OF.get(type(exc), 400)
    cls = {403: ForbiddenError, 409: ConflictError}.get(status, BadRequestError)
    error = cls(f"{reason}: {exc}")
    error.code = reason
    return error


def addressed(outbox: dict[int, bytes], device: DeviceRecord, round_id: int, stage: Stage) -> bytes:
    """``device``'s message in the outbox of ``stage`` (ConflictError: it missed a stage)."""
    body = outbox.get(device.id)
    if body is None:
        raise ConflictError(f"device {device.id} is not part of stage {stage.name} of round "
                            f"{round_id} (it missed an earlier stage)")
    return body
