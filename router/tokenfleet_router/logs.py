"""Structured logs: one `key=value` line per event. Never pass prompts or API keys here."""

from __future__ import annotations

import logging
import sys
from typing import Any


def _format_value(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def format_fields(event: str, fields: dict[str, Any]) -> str:
    return " ".join([f"event={event}", *(f"{k}={_format_value(v)}" for k, v in fields.items())])


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, format_fields(event, fields))


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
    root = logging.getLogger("tokenfleet")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
