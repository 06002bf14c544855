"""Logging: headwater logs through stdlib :mod:`logging`, with structured fields.

Loggers are named ``headwater`` and below (``headwater.sync``). Records carry their fields
(``table``, ``client``, ``rows``, ``duration``, ...) as attributes, so any handler can use
them; :func:`configure_logging` installs a handler that prints them as ``key=value`` text or
as one JSON object per line.

Registered secrets (see :mod:`headwater.redaction`) never reach the output: every record is
redacted when it is made, and the formatters here redact again what they write (message,
fields, traceback, stack), so fields passed as ``extra=`` are covered too.

Example:
    >>> import headwater as hw
    >>> hw.configure_logging(level="info", format="json")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, Literal, TextIO

from headwater.redaction import redact

__all__ = ["TRACE", "JsonFormatter", "TextFormatter", "configure_logging", "level_number"]

#: A level below DEBUG, for CloudQuery's ``--log-level trace``.
TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Attributes every LogRecord has; anything else on a record is a structured field.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


def level_number(level: str | int) -> int:
    """The :mod:`logging` level of a CloudQuery level name (``trace`` ... ``error``).

    Raises:
        ValueError: An unknown level name; the message lists the known ones.
    """
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r}; use one of {', '.join(sorted(_LEVELS))}"
        ) from None


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a record: its attributes beyond the standard ones."""
    return {
        k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
    }


def _traceback(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    """The record's traceback, redacted (``exc_text`` holds it when it had to be redacted)."""
    if record.exc_text:
        return redact(record.exc_text)
    if record.exc_info and record.exc_info[0] is not None:
        return redact(formatter.formatException(record.exc_info))
    return None


class TextFormatter(logging.Formatter):
    """``2026-12-01T10:00:00.123Z INF message table=x client=y rows=10``."""

    def format(self, record: logging.LogRecord) -> str:
        """Format a record as one line of text with its fields as ``key=value``.

        A traceback and a stack follow on the next lines. Registered secrets are masked.
        """
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        parts = [
            when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            record.levelname[:3].upper(),
            redact(record.getMessage()),
        ]
        parts += [f"{key}={_text(value)}" for key, value in fields(record).items()]
        line = " ".join(parts)
        error = _traceback(self, record)
        if error:
            line += "\n" + error
        if record.stack_info:
            line += "\n" + redact(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``message``, ``logger`` and the fields.

    A traceback is the ``error`` field, a stack the ``stack`` field. Registered secrets are
    masked in every string, nested ones included.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Format a record as a JSON object on one line."""
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": _json_level(record.levelno),
            "message": redact(record.getMessage()),
            "logger": record.name,
        }
        for key, value in fields(record).items():
            entry.setdefault(key, _redacted(value))
        error = _traceback(self, record)
        if error:
            entry["error"] = error
        if record.stack_info:
            entry["stack"] = redact(record.stack_info)
        return json.dumps(entry, default=_redacted_text, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current ``sys.stderr``, looked up for every record."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always the current sys.stderr


def _json_level(levelno: int) -> str:
    if levelno <= TRACE:
        return "trace"
    if levelno <= logging.DEBUG:
        return "debug"
    if levelno <= logging.INFO:
        return "info"
    if levelno <= logging.WARNING:
        return "warn"
    return "error"


def _redacted_text(value: object) -> str:
    return redact(str(value))


def _redacted(value: object) -> object:
    """A field's value for JSON, with registered secrets masked in every string in it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, dict):
        return {_redacted_text(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redacted(v) for v in value]
    return _redacted_text(value)


def _text(value: object) -> str:
    text = redact(str(value))
    return json.dumps(text) if (not text or any(c.isspace() or c == '"' for c in text)) else text


def configure_logging(
    level: str | int = "info",
    format: Literal["text", "json"] = "text",
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send headwater's logs to ``stream`` (stderr by default) as text or JSON lines.

    Replaces the handler an earlier call installed; other handlers are left alone.

    Args:
        level: ``trace``, ``debug``, ``info``, ``warn`` or ``error`` (or a logging level).
        format: ``text`` for ``key=value`` lines, ``json`` for one JSON object per line.
        stream: Where to write; by default whatever ``sys.stderr`` is when a record is
            written (so a live display that swaps it, such as rich's, keeps working).

    Returns:
        The installed handler.

    Raises:
        ValueError: An unknown level or format.
    """
    if format not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {format!r}")
    logger = logging.getLogger("headwater")
    for previous in list(logger.handlers):
        if getattr(previous, "_headwater", False):
            logger.removeHandler(previous)
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    handler._headwater = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level_number(level))
    return handler
