"""Structured log lines: logfmt and JSON shapes, and redaction as the last step."""

from __future__ import annotations

import io
import json
import logging

from perfgen.exporter import logs

SECRET = "sk-live-abcdef123456"


def make(log_format: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    return logs.make_logger(log_format, lambda: [SECRET], stream), stream


def test_logfmt_line_quotes_and_skips_unknown_values():
    logger, stream = make("logfmt")
    logs.event(
        logger,
        logging.INFO,
        "probe finished",
        target="sim:fast",
        module="latency",
        success=True,
        ttft_seconds=0.1234567,
        reason=None,
        detail='HTTP 500: "oops"\n',
    )
    line = stream.getvalue().strip()
    assert line.startswith("ts=") and ' level=info msg="probe finished" ' in line
    assert "target=sim:fast module=latency success=true ttft_seconds=0.123457" in line
    assert "reason=" not in line
    assert 'detail="HTTP 500: \\"oops\\"\\n"' in line
    assert "\n" not in line


def test_json_line_is_one_object():
    logger, stream = make("json")
    logs.event(logger, logging.WARNING, "probe not run", module="health", budget_used=20)
    record = json.loads(stream.getvalue())
    assert record["level"] == "warning" and record["msg"] == "probe not run"
    assert record["module"] == "health" and record["budget_used"] == 20


def test_secret_values_are_redacted_in_every_format():
    for log_format in logs.LOG_FORMATS:
        logger, stream = make(log_format)
        logs.event(logger, logging.ERROR, f"upstream echoed {SECRET}", detail=f"key={SECRET}")
        assert SECRET not in stream.getvalue()
        assert "<redacted>" in stream.getvalue()


def test_set_format_switches_an_existing_logger():
    logger, stream = make("logfmt")
    logs.set_format(logger, "json")
    logs.event(logger, logging.INFO, "config reloaded")
    assert json.loads(stream.getvalue())["msg"] == "config reloaded"


def test_loggers_of_two_apps_are_independent():
    first, first_stream = make("logfmt")
    second, second_stream = make("json")
    logs.event(first, logging.INFO, "one")
    assert first_stream.getvalue() and not second_stream.getvalue()
