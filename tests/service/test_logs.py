"""Structured JSON logs, and the redaction that keeps secrets and payloads out of them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from recorder.config import LogFormat, Secret
from recorder.service.logs import MASK, configure_logging, is_sensitive_name

TOKEN = "zoom-secret-token-value"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    configure_logging("DEBUG", LogFormat.JSON, stream=buffer, secrets=[Secret(TOKEN)])
    yield buffer
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(saved_level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_the_standard_fields(stream: io.StringIO) -> None:
    log = logging.getLogger("recorder.test")
    log.info("segment sealed", extra={"engagement_id": "e1", "rtms_stream_id": "s1", "segment": 3})
    log.warning("second line: %s", "multi\nline")
    first, second = lines(stream)
    assert first["level"] == "INFO"
    assert first["logger"] == "recorder.test"
    assert first["msg"] == "segment sealed"
    assert (first["engagement_id"], first["rtms_stream_id"], first["segment"]) == ("e1", "s1", 3)
    assert isinstance(first["ts"], str)
    assert first["ts"].endswith("Z")
    assert second["msg"] == "second line: multi\nline"


def test_a_secret_passed_by_mistake_is_masked_everywhere(stream: io.StringIO) -> None:
    log = logging.getLogger("recorder.test")
    log.info("verifying with %s", TOKEN)
    log.info("config", extra={"context": {"nested": [f"Bearer {TOKEN}"]}, "detail": TOKEN})
    log.info(f"f-string with {TOKEN} inside")
    try:
        raise ValueError(f"bad token {TOKEN}")
    except ValueError:
        log.exception("failed")
    text = stream.getvalue()
    assert TOKEN not in text
    assert text.count(MASK) >= 5


def test_sensitive_keys_are_masked_whatever_their_value(stream: io.StringIO) -> None:
    logging.getLogger("recorder.test").info(
        "handshake",
        extra={
            "client_secret": "abc",
            "signature": "ffc60552",
            "x_zm_signature": "v0=1234",
            "password": "p",
            "data_key": "k",
            "dek": "k",
            "authorization": "Basic x",
            "dedup_key": '["meeting.rtms_started","s",1]',
            "key_id": "kms-key-1",
        },
    )
    [line] = lines(stream)
    for name in ("client_secret", "signature", "x_zm_signature", "password", "data_key", "dek"):
        assert line[name] == MASK, name
    assert line["authorization"] == MASK
    assert line["dedup_key"] == '["meeting.rtms_started","s",1]'
    assert line["key_id"] == "kms-key-1"


def test_bytes_payloads_never_print(stream: io.StringIO) -> None:
    payload = b"\x01\x02RIFF-audio-bytes" * 10
    log = logging.getLogger("recorder.test")
    log.debug("got %r", payload)
    log.debug("packet", extra={"payload": payload, "frames": [bytearray(b"xyz")]})
    text = stream.getvalue()
    assert "RIFF-audio-bytes" not in text
    first, second = lines(stream)
    assert first["msg"] == "got '<180 bytes>'"
    assert second["payload"] == "<180 bytes>"
    assert second["frames"] == ["<3 bytes>"]


def test_secret_objects_print_masked(stream: io.StringIO) -> None:
    logging.getLogger("recorder.test").info(
        "s=%s", Secret("another-secret"), extra={"s": Secret("x")}
    )
    [line] = lines(stream)
    assert "another-secret" not in json.dumps(line)
    assert line["s"] == MASK


def test_text_format_and_reconfiguration() -> None:
    buffer = io.StringIO()
    root = logging.getLogger()
    saved = root.level
    try:
        configure_logging("INFO", LogFormat.TEXT, stream=buffer, secrets=["pa55word-x"])
        configure_logging("INFO", LogFormat.TEXT, stream=buffer, secrets=["pa55word-x"])
        logging.getLogger("r").info("login pa55word-x", extra={"rtms_stream_id": "s1"})
        logging.getLogger("r").debug("hidden")
        text = buffer.getvalue()
        # Configured twice, one handler: the line appears once.
        assert text.count("login") == 1
        assert "INFO r: login ******** rtms_stream_id=s1" in text
        assert "hidden" not in text
    finally:
        for handler in list(root.handlers):
            if type(handler).__name__ == "_RecorderHandler":
                root.removeHandler(handler)
        root.setLevel(saved)


@pytest.mark.parametrize(
    ("name", "sensitive"),
    [
        ("secret_token", True),
        ("ZOOM_CLIENT_SECRET", True),
        ("private_key_pem", True),
        ("key", True),
        ("wrapped_kek", True),
        ("rtms_stream_id", False),
        ("engagement_id", False),
        ("segment", False),
        ("keepalive_s", False),
        ("monkey", False),
    ],
)
def test_sensitive_name_rules(name: str, sensitive: bool) -> None:
    assert is_sensitive_name(name) is sensitive
