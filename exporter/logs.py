"""Structured logs for the exporter: logfmt by default, JSON on request.

Every record goes through `redact` as it is formatted. Code that logs is expected
never to pass a key, but a provider error body or an exception message may echo one
back, and a leaked key in a log shipper cannot be taken back.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from perfgen.config import redact

LOG_FORMATS = ("logfmt", "json")
LOGGER_NAME = "perfgen.exporter"


def _no_secrets() -> list[str]:
    return []


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """ts, level, msg, then the record's structured fields in the order they were given."""
    fields: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "msg": record.getMessage(),
    }
    # An unknown value is left out rather than logged as an empty `key=`.
    extra = getattr(record, "fields", None) or {}
    fields.update((name, value) for name, value in extra.items() if value is not None)
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        fields["error"] = f"{type(error).__name__}: {error}"
    return fields


def _logfmt_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    if text and not any(c in text for c in ' ="\\') and text.isprintable():
        return text
    # JSON string quoting is valid logfmt quoting and escapes every control character.
    return json.dumps(text, ensure_ascii=False)


def format_logfmt(fields: Mapping[str, Any]) -> str:
    return " ".join(f"{name}={_logfmt_value(value)}" for name, value in fields.items())


def format_json(fields: Mapping[str, Any]) -> str:
    return json.dumps(fields, default=str, separators=(",", ":"))


class StructuredFormatter(logging.Formatter):
    """One line per record in logfmt or JSON, with secrets replaced as the last step."""

    def __init__(
        self, log_format: str = "logfmt", secrets: Callable[[], list[str]] = _no_secrets
    ) -> None:
        super().__init__()
        if log_format not in LOG_FORMATS:
            raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
        self.log_format = log_format
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        line = format_json(fields) if self.log_format == "json" else format_logfmt(fields)
        return redact(line, self.secrets)


def make_logger(
    log_format: str,
    secrets: Callable[[], list[str]] = _no_secrets,
    stream: TextIO | None = None,
) -> logging.Logger:
    """A logger owned by one exporter app, writing one line per record to `stream`.

    It is deliberately not registered with `logging.getLogger`: two apps in one process
    (tests, embedding) must not share handlers or formats.
    """
    logger = logging.Logger(LOGGER_NAME, logging.INFO)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(StructuredFormatter(log_format, secrets))
    logger.addHandler(handler)
    return logger


def set_format(logger: logging.Logger, log_format: str) -> None:
    """Switch the format of a logger's handlers, e.g. after a config reload."""
    for handler in logger.handlers:
        formatter = handler.formatter
        if isinstance(formatter, StructuredFormatter) and formatter.log_format != log_format:
            handler.setFormatter(StructuredFormatter(log_format, formatter.secrets))


def event(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """Log one structured event; `fields` become logfmt pairs or JSON keys.

    The fields travel in one `extra` entry because names such as `module` are already
    LogRecord attributes and logging refuses to overwrite them.
    """
    logger.log(level, message, extra={"fields": fields})


def probe_line(message: str, **fields: Any) -> str:
    """A logfmt line for a probe's own debug log (the debug view shows these as text)."""
    return format_logfmt(
        {"msg": message, **{name: value for name, value in fields.items() if value is not None}}
    )
