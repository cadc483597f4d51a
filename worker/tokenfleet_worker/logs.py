"""Structured logs: one `key=value` line per event. Callers never pass prompts or outputs."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any


def _quote(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def format_event(event: str, **fields: Any) -> str:
    return " ".join([f"event={_quote(event)}", *(f"{k}={_quote(v)}" for k, v in fields.items())])


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"ts={stamp}.{int(record.msecs):03d}Z level={record.levelname.lower()} logger={record.name} "
        message = record.getMessage()
        # Third-party lines (uvicorn's) are wrapped so every line stays key=value.
        line += message if message.startswith("event=") else format_event("log", msg=message)
        if record.exc_info:
            line += " exc=" + _quote(self.formatException(record.exc_info))
        return line


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def log_event(logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, format_event(event, **fields))
