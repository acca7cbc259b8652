"""Structured logs: one JSON object per line on stderr, with secrets and payloads redacted.

Every line has ``ts`` (UTC, ISO 8601, milliseconds), ``level``, ``logger`` and ``msg``, plus the
``extra=`` keys of the call, such as ``engagement_id``, ``rtms_stream_id`` or ``segment``::

    logger.info("segment sealed", extra={"rtms_stream_id": sid, "segment": 3})

Rule: whatever a caller passes by mistake, the redaction filter (installed on the handler, so it
sees records of every logger) makes sure that

* extra keys named like credentials (``*secret*``, ``*token*``, ``*signature*``, ``*passw*``,
  ``authorization``, ``cookie``, ``*private*``, ``key`` / ``*_key`` / ``dek`` / ``kek``) are masked;
* ``bytes`` values (media payloads, key material) never print, only their length;
* the values of the registered secrets (``configure_logging(secrets=...)``) are masked wherever
  they appear in the rendered message, the extras or a traceback.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, Final, TextIO

from recorder.config import LogFormat, Secret

MASK: Final = "********"

#: Secrets shorter than this are not scrubbed from text: masking "1" everywhere helps nobody.
_MIN_SCRUB_LENGTH: Final = 6

_SENSITIVE_NAME: Final = re.compile(
    r"secret|token|signature|passw|authorization|cookie|credential|private"
    r"|(?:^|_)(?:key|keys|dek|kek|key_material)$",
    re.IGNORECASE,
)
#: Names that match the pattern but only ever hold identifiers.
_NOT_SENSITIVE: Final = frozenset({"dedup_key", "object_key", "session_key_id"})

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)

_MAX_DEPTH: Final = 6


def is_sensitive_name(name: str) -> bool:
    return name not in _NOT_SENSITIVE and _SENSITIVE_NAME.search(name) is not None


class RedactionFilter(logging.Filter):
    """Masks credentials, bytes and registered secret values in every record it sees."""

    def __init__(self, secrets: Iterable[Secret | str] = ()) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()
        self.add_secrets(secrets)

    def add_secrets(self, secrets: Iterable[Secret | str]) -> None:
        values = {s.reveal() if isinstance(s, Secret) else s for s in secrets}
        values |= set(self._secrets)
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = tuple(
            sorted((v for v in values if len(v) >= _MIN_SCRUB_LENGTH), key=len, reverse=True)
        )

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def _clean(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):
            return f"<{len(value)} bytes>"
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, bool | int | float) or value is None:
            return value
        if isinstance(value, Secret):
            return MASK
        if depth >= _MAX_DEPTH:
            return "<nested>"
        if isinstance(value, Mapping):
            return {
                str(k): MASK if is_sensitive_name(str(k)) else self._clean(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self._clean(v, depth + 1) for v in value]
        return self.scrub(str(value))

    def filter(self, record: logging.LogRecord) -> bool:
        # Render the message once, with cleaned arguments, so neither bytes nor a secret passed as
        # a %-argument can reach the output.
        if record.args:
            args = record.args
            if isinstance(args, Mapping):
                cleaned: Any = {k: self._clean(v) for k, v in args.items()}
            else:
                cleaned = tuple(self._clean(v) for v in args)
            try:
                record.msg = str(record.msg) % cleaned
            except (TypeError, ValueError, KeyError):
                record.msg = f"{record.msg} {cleaned!r}"
            record.args = None
        record.msg = self.scrub(str(record.msg))
        for name in list(vars(record)):
            if name in _RECORD_ATTRIBUTES:
                continue
            value = record.__dict__[name]
            record.__dict__[name] = MASK if is_sensitive_name(name) else self._clean(value)
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the extras."""

    def __init__(self, redaction: RedactionFilter) -> None:
        super().__init__()
        self._redaction = redaction

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = self._redaction.scrub(self.formatException(record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``ts level logger: msg key=value ...`` for a terminal."""

    def __init__(self, redaction: RedactionFilter) -> None:
        super().__init__()
        self._redaction = redaction

    def format(self, record: logging.LogRecord) -> str:
        pairs = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        text = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if pairs:
            text = f"{text} {pairs}"
        if record.exc_info:
            text = f"{text}\n{self._redaction.scrub(self.formatException(record.exc_info))}"
        return text


class _RecorderHandler(logging.StreamHandler[TextIO]):
    """Marks the handler ``configure_logging`` installed, so a second call replaces it."""


def configure_logging(
    level: str = "INFO",
    log_format: LogFormat = LogFormat.JSON,
    *,
    stream: TextIO | None = None,
    secrets: Iterable[Secret | str] = (),
) -> RedactionFilter:
    """Send every logger's records through one redacting handler on the root logger.

    Args:
        level: the root logger's level name.
        log_format: JSON lines (production, journald) or text (a terminal).
        stream: where lines go; stderr by default.
        secrets: values to mask wherever they appear (pass ``config.secrets`` values).

    Returns:
        The installed filter: call ``add_secrets`` on it when more secrets become known.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _RecorderHandler):
            root.removeHandler(handler)
            handler.close()
    redaction = RedactionFilter(secrets)
    handler = _RecorderHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(redaction)
    formatter = JsonFormatter if log_format is LogFormat.JSON else TextFormatter
    handler.setFormatter(formatter(redaction))
    root.addHandler(handler)
    root.setLevel(level.upper())
    return redaction
