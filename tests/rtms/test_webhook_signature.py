"""Webhook signatures (§16): raw bytes first, then the compact re-serialisation; headers in
any case. What is acted on is what was signed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.errors import WebhookSignatureError
from recorder.rtms.webhook import (
    SignatureRejection,
    parse_webhook,
    pick_headers,
    signed_headers,
    verify_webhook,
    verify_webhook_request,
)

# --- §16: raw bytes first, then the compact re-serialisation; headers in any case -------------

_FALLBACK_SECRET = "fallback_secret_token"


def _spaced_body() -> bytes:
    body = {
        "event": "meeting.rtms_interrupted",
        "event_ts": 1732000000000,
        "payload": {
            "meeting_uuid": "4444AAAiAAAAAiAiAiiAii==",
            "rtms_stream_id": "609340fb2a7946909659956c8aa9250c",
            "server_urls": "wss://rtms-sjc1.zoom.us/b",
            "operator": "Zoë",
        },
    }
    return json.dumps(body, indent=1, ensure_ascii=True).encode()


def test_raw_bytes_verify_first_and_are_what_is_acted_on() -> None:
    raw = _spaced_body()
    headers = signed_headers(_FALLBACK_SECRET, 1_732_000_000, raw)
    verified = verify_webhook_request(_FALLBACK_SECRET, headers, raw, now_s=1_732_000_000)
    assert verified == (1_732_000_000, raw, False)


def test_the_compact_reserialisation_verifies_when_the_raw_bytes_do_not() -> None:
    raw = _spaced_body()
    compact = json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False).encode()
    assert compact != raw
    # Zoom's own worker signs the compact form of the parsed body (§16).
    headers = signed_headers(_FALLBACK_SECRET, 1_732_000_000, compact)
    verified = verify_webhook_request(_FALLBACK_SECRET, headers, raw, now_s=1_732_000_000)
    assert verified.reserialised
    assert verified.body == compact  # what was signed is what is acted on
    event = parse_webhook(verified.body)
    assert event.server_urls == ("wss://rtms-sjc1.zoom.us/b",)
    assert event.payload["operator"] == "Zoë"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda raw: raw.replace(b"/b", b"/evil"),  # a changed value fails both forms
        lambda raw: b"[" + raw + b"]",  # not an object: no fallback
        lambda raw: raw[:-2],  # not JSON: no fallback
    ],
)
def test_a_body_that_matches_neither_form_is_refused(tamper: Any) -> None:
    raw = _spaced_body()
    compact = json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False).encode()
    headers = signed_headers(_FALLBACK_SECRET, 1_732_000_000, compact)
    with pytest.raises(WebhookSignatureError) as caught:
        verify_webhook_request(_FALLBACK_SECRET, headers, tamper(raw), now_s=1_732_000_000)
    assert caught.value.reason == SignatureRejection.BAD_SIGNATURE


def test_header_names_are_case_insensitive_in_maps_and_asgi_pairs() -> None:
    raw = _spaced_body()
    headers = signed_headers(_FALLBACK_SECRET, 1_732_000_000, raw)
    shouted = {name.upper(): value for name, value in headers.items()}
    assert verify_webhook(_FALLBACK_SECRET, shouted, raw, now_s=1_732_000_000) == 1_732_000_000
    asgi = [
        (b"X-Zm-Signature", headers["x-zm-signature"].encode()),
        (b"X-ZM-REQUEST-TIMESTAMP", headers["x-zm-request-timestamp"].encode()),
    ]
    picked = pick_headers(asgi)
    assert picked.signature == headers["x-zm-signature"]
    assert picked.timestamp == headers["x-zm-request-timestamp"]


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=80)
    | st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=6), children, max_size=3)
        ),
        max_leaves=8,
    ).map(lambda value: json.dumps({"event": "x", "v": value}, indent=2).encode()),
    st.booleans(),
)
def test_any_body_verifies_or_is_refused_by_name(body: bytes, sign_compact: bool) -> None:
    signed = body
    if sign_compact:
        try:
            signed = json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode(
                "utf-8", errors="surrogatepass"
            )
        except (ValueError, RecursionError):
            signed = b"unrelated"
    headers = signed_headers(_FALLBACK_SECRET, 1_732_000_000, signed)
    if signed != body and not (sign_compact and _is_object(body)):
        with pytest.raises(WebhookSignatureError, match="does not match"):
            verify_webhook_request(_FALLBACK_SECRET, headers, body, now_s=1_732_000_000)
        return
    verified = verify_webhook_request(_FALLBACK_SECRET, headers, body, now_s=1_732_000_000)
    # Whatever verified is exactly what was signed.
    assert verified.body == signed


def _is_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body.decode("utf-8")), dict)
    except (ValueError, RecursionError):
        return False
