"""Structured logs: one JSON object per line on stderr (or plain text with ``log_json=False``)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

__all__ = ["get_logger", "log_event", "setup_logging"]

_LOGGER = "edgerec_server"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "info", as_json: bool = True) -> None:
    """Send the server's logs (and uvicorn's errors) to stderr, JSON by default."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if as_json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(fields)s", defaults={"fields": ""}))
    for name in (_LOGGER, "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def get_logger() -> logging.Logger:
    return logging.getLogger(_LOGGER)


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with key-value ``fields`` (they become JSON keys)."""
    get_logger().log(level, event, extra={"fields": fields})


