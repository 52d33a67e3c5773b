"""Structured logs for the exporter: logfmt by default, JSON on request.

Every record goes through `redact` as it is formatted. Code that logs is expected
never to pass a key, but a provider error body or an exception message may echo one
back, and a leaked key in a log shipper cannot be taken back.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from perfgen.config import redact, redact_urls

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


class _ServerErrors(logging.Handler):
    """aiohttp's own error records (a request its parser refused, a crashed handler) as one
    structured, redacted line on the exporter's logger, without a traceback.

    A malformed request is the client's doing, not ours: its traceback says nothing, and
    the message may quote whatever the client sent (a header with a key, a URL with one in
    its query), so it is redacted like everything else and cut to one short line.
    """

    def __init__(self, target: logging.Logger, secrets: Callable[[], list[str]]) -> None:
        super().__init__(logging.DEBUG)
        self.target = target
        self.secrets = secrets

    def emit(self, record: logging.LogRecord) -> None:
        try:
            error = record.exc_info[1] if record.exc_info else None
            text = f"{type(error).__name__}: {error}" if error else record.getMessage()
            # Whole text first, then shortened: a cut first could keep a key's start.
            text = redact_urls(redact(text, self.secrets))
            text = _RELATIVE_QUERY.sub("?...", text)
            where = None
            if error is not None and error.__traceback__ is not None:
                frame = traceback.extract_tb(error.__traceback__)[-1]
                where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
            # The parser's errors carry their status; anything else is our own 500.
            status = getattr(error, "code", None) if error is not None else None
            if not isinstance(status, int):
                status = 500 if error is not None else None
            args = record.args
            event(
                self.target,
                logging.DEBUG if record.levelno < logging.WARNING else logging.WARNING,
                "HTTP request failed" if status == 500 else "bad HTTP request",
                remote=args[0] if isinstance(args, tuple) and args else None,
                status=status,
                error=_one_line(text),
                at=where,
            )
        except Exception:  # noqa: BLE001 (logging must never raise into aiohttp)
            self.handleError(record)


# A request target's query (`/probe?target=...&key=...`) quoted without a scheme.
_RELATIVE_QUERY = re.compile(r"\?[^\s'\"<>]+")
_ERROR_LIMIT = 200


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _ERROR_LIMIT else line[: _ERROR_LIMIT - 3] + "..."


def server_logger(target: logging.Logger, secrets: Callable[[], list[str]]) -> logging.Logger:
    """The logger to give aiohttp's server (AppRunner(logger=...)) in place of
    `aiohttp.server`: its records come out as `_ServerErrors` lines on `target`."""
    logger = logging.Logger("aiohttp.server", logging.INFO)
    logger.addHandler(_ServerErrors(target, secrets))
    logger.propagate = False
    return logger
