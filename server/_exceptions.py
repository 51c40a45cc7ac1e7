"""Every error the server raises on purpose; each carries the HTTP status it answers with.

::

    ServerError (500)
    ├── BadRequestError (400)      a body or parameter that does not parse or fit
    ├── UnauthorizedError (401)    no, unknown, malformed or expired credentials or token
    ├── ForbiddenError (403)       revoked, used up, or not allowed (e.g. not a participant)
    ├── NotFoundError (404)
    ├── ConflictError (409)        the request clashes with the state (round full, stage over)
    │   └── StageClosedError (409)  a message for a stage that is no longer collected
    ├── GoneError (410)            the round was aborted
    ├── PayloadTooLargeError (413)
    ├── UnsupportedMediaTypeError (415)  a body declared as another type than the route takes
    ├── StateError (500)           the persistent state is unusable (e.g. a newer schema)
    └── ServerConfigError          the server's own settings are wrong (a start-up error, never
                                   an HTTP answer: the command prints it and exits 2)

Route handlers translate these into an ``edgerec.sync.ErrorBody``; anything else is a bug and
answers 500 with no detail.
"""

from __future__ import annotations


class ServerError(Exception):
    """Base class of the server's errors."""

    status = 500
    code = "server_error"


class BadRequestError(ServerError):
    status, code = 400, "bad_request"


class UnauthorizedError(ServerError):
    status, code = 401, "unauthorized"


class ForbiddenError(ServerError):
    status, code = 403, "forbidden"


class NotFoundError(ServerError):
    status, code = 404, "not_found"


class ConflictError(ServerError):
    status, code = 409, "conflict"


class StageClosedError(ConflictError):
    """A stage message that arrived after its stage closed (or froze, to be closed), possibly
    on another replica: the device answers as to any late message (the code devices know)."""

    code = "OutOfStageError"


class GoneError(ServerError):
    status, code = 410, "round_aborted"


class PayloadTooLargeError(ServerError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaTypeError(ServerError):
    status, code = 415, "unsupported_media_type"


class StateError(ServerError):
    status, code = 500, "state_error"


class ServerConfigError(ServerError):
    """A setting of the server (file, environment or flag) that cannot be used."""

    status, code = 500, "server_config"
