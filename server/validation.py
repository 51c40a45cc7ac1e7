"""Checks on untrusted request input that run before anything parses or stores it.

Each check turns bad input into a 4xx ``ServerError`` with a message saying what is wrong, so
that no input a client chooses can reach a parser or the database in a shape that fails
there (a 500). The bounds are published in the OpenAPI document (``openapi.py`` reads them
from here, and a test compares the two).
"""

from __future__ import annotations

import re

from ._exceptions import BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError

__all__ = ["MAX_ID", "MAX_JSON_DEPTH", "check_content_length", "check_json_depth",
           "check_media_type", "parse_id", "shown"]

#: The largest id a round, device or model version can have: both state backends store ids as
#: signed 64-bit integers (SQLite INTEGER, PostgreSQL BIGINT), so nothing has a larger one.
MAX_ID = 2**63 - 1
#: How deep a JSON body may nest. Control messages are flat objects (depth 1); the margin is
#: for later fields. Python's parser recurses per level, so an unbounded depth is a crash.
MAX_JSON_DEPTH = 32

_INTEGER = re.compile(r"-?[0-9]+")  # ASCII only: str.isdigit() also accepts "²" and "٣"
_DIGITS = re.compile(r"[0-9]+")
# More digits than any id can have (after leading zeros); int() of 4,300 or more raises.
_MAX_ID_DIGITS = len(str(MAX_ID))


def shown(text: str, limit: int = 32) -> str:
    """``text`` cut to ``limit`` characters for an error message (a path can be 64 KiB)."""
    return text if len(text) <= limit else text[:limit] + "..."


def parse_id(text: str, name: str) -> int | None:
    """The id in a path segment; None when it is an integer outside ``0..MAX_ID``.

    Not an integer at all is a malformed request (400). An integer out of that range is well
    formed but names nothing that can exist: the caller answers 404 exactly as for an id that
    is not there, without ever handing the number to the database (where it would overflow).
    """
    if not _INTEGER.fullmatch(text):
        raise BadRequestError(f"{name} must be an integer, got {shown(text)!r}")
    digits = text.lstrip("-").lstrip("0") or "0"
    if text.startswith("-") and digits != "0":
        return None
    if len(digits) > _MAX_ID_DIGITS:
        return None
    value = int(digits)
    return value if value <= MAX_ID else None


def check_content_length(declared: str | None, limit: int) -> None:
    """Refuse a declared ``Content-Length`` that is not a decimal number (400) or exceeds
    ``limit`` (413), before any of the body is read."""
    if declared is None:
        return
    if not _DIGITS.fullmatch(declared):
        raise BadRequestError("Content-Length is not a number")
    digits = declared.lstrip("0") or "0"
    if len(digits) > len(str(limit)) or int(digits) > limit:
        raise PayloadTooLargeError(f"body of {shown(declared)} bytes; the limit is {limit}")


def check_media_type(header: str | None, expected: str) -> None:
    """Refuse a body declared as another media type than ``expected`` (415). A request without
    a ``Content-Type`` is read as ``expected``: simple clients often omit it, and the body is
    then checked as what the route takes anyway."""
    if header is None:
        return
    media_type = header.split(";", 1)[0].strip().lower()
    if media_type != expected:
        raise UnsupportedMediaTypeError(f"this route takes {expected}, not {shown(media_type)!r}")


def check_json_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse (400) a JSON text whose arrays and objects nest deeper than ``limit``.

    Runs before ``json.loads``, whose recursion a few thousand ``[`` would exhaust. Brackets
    inside strings do not count. Linear in the body (a hand-written scan: a regular expression
    for strings backtracks quadratically on unterminated ones).
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return  # every control message a device sends: no scan needed
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                raise BadRequestError(f"JSON body nests deeper than {limit} levels")
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
