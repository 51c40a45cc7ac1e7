"""Reading small URL-encoded forms strictly: every bad input becomes a ``BadRequest`` (4xx).

The kiosk's forms are a handful of short fields, so the body is read whole with a size cap and
parsed with the standard library (no multipart support is needed, or accepted).
"""

from __future__ import annotations

from typing import Mapping
from urllib.parse import parse_qs

from starlette.requests import Request

__all__ = ["BadRequest", "query_fields", "read_form", "single_fields"]

MAX_BODY = 4096
MAX_FIELD = 200
_FORM_TYPE = "application/x-www-form-urlencoded"


class BadRequest(Exception):
    """A request the kiosk refuses, with the HTTP status and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def single_fields(raw: Mapping[str, list[str]]) -> dict[str, str]:
    """One value per field; a repeated or over-long field is a 400."""
    out = {}
    for name, values in raw.items():
        if len(values) != 1:
            raise BadRequest(400, f"field {name[:40]!r} given {len(values)} times")
        if len(values[0]) > MAX_FIELD:
            raise BadRequest(400, f"field {name[:40]!r} is longer than {MAX_FIELD} characters")
        out[name] = values[0]
    return out


def _parse(text: str) -> dict[str, str]:
    try:
        raw = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=20,
                       errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"malformed form: {exc}") from exc
    return single_fields(raw)


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded POST body (none if empty); 413, 415 or 400 when it is bad."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BadRequest(413, f"form larger than {MAX_BODY} bytes")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not body:
        return {}  # a bare POST (the "new visitor" button needs no fields)
    if ctype != _FORM_TYPE:
        raise BadRequest(415, f"send the form as {_FORM_TYPE}, not {ctype or 'no content type'}")
    try:
        text = body.decode("ascii")  # URL-encoded forms are ASCII; %-escapes carry UTF-8
    except UnicodeDecodeError as exc:
        raise BadRequest(400, "malformed form: not URL-encoded") from exc
    return _parse(text)


def query_fields(request: Request) -> dict[str, str]:
    """The query string's fields, with the same rules as a form."""
    return _parse(request.url.query)
