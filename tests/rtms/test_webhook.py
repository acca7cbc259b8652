"""Webhook signing, verification and parsing: rtms-protocol §7.3, §7.4, §8, §12.2-§12.3."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.errors import WebhookPayloadError, WebhookSignatureError
from recorder.rtms.webhook import (
    INSTANCE_ID_KEYS,
    PayloadRejection,
    Product,
    SignatureRejection,
    WebhookHeaders,
    WebhookKind,
    dedup_key,
    parse_webhook,
    sign_webhook,
    signed_headers,
    url_validation_response,
    verify_webhook,
    verify_webhook_request,
)

# --- §12.2 / §12.3 vectors, verbatim ---------------------------------------------------------

URL_VALIDATION_VECTORS = [
    (
        "DyBoLm8OZoJT2Pi3-kY2px",
        "KKFDjmrVCDmK1zbVNNTqew==",
        "9b7b819b3b4c3bc4458771722f3dc63fff0df6d37fe9738d5a59495f040b98d7",
    ),
    (
        "test_secret_token",
        "qgg8vlvZRS6UYooatFL8Aw",
        "4efea922935c335d972476de138d2208a0d46ab28c79ee592d497a1b216419b8",
    ),
]

VECTOR_1_BODY = (
    b'{"event":"meeting.rtms_started","event_ts":1795276197188,"payload":{"meeting_uuid":'
    b'"WLhvT3WEBT6Srse3TgWRGz","operator_id":"P3Q8W2X9Y5","rtms_stream_id":'
    b'"rtms_WL3WEBT6SrTgWRGz_009","server_urls":"ws://0.0.0.0:9092"}}'
)
VECTOR_2_BODY = (
    b'{"event":"meeting.rtms_started","event_ts":1626230691572,"payload":{"meeting_uuid":'
    b'"4444AAAiAAAAAiAiAiiAii==","operator_id":"30R7kT7bTIKSNUFEuH_Qlg","rtms_stream_id":'
    b'"609340fb2a7946909659956c8aa9250c","server_urls":"wss://127.0.0.1:443"}}'
)

SIGNATURE_VECTORS = [
    # secret, ts, body, correct signature, signature of the re-serialised body
    (
        "DyBoLm8OZoJT2Pi3-kY2px",
        1795276197,
        VECTOR_1_BODY,
        "v0=0bbf75e1a4ec0071352de9ab8d665f7cf01cf4bbd9bcf5805bde4a810cc44237",
        "v0=8b44c59d19a0b5227572fe6bb88e8ad4ceb00c146e778415fc6edc83103b7132",
    ),
    (
        "test_secret_token",
        1626230691,
        VECTOR_2_BODY,
        "v0=5176162637ddfb0a56f4ad68028593478209a1ffcedc42e2f8eb0e6f525410b6",
        "v0=6684dccef58f789d02fc38a157dd4d664029fd778554149d9b521815d6b49e03",
    ),
]


@pytest.mark.parametrize(("secret", "plain", "encrypted"), URL_VALIDATION_VECTORS)
def test_url_validation_vectors(secret: str, plain: str, encrypted: str) -> None:
    assert url_validation_response(secret, plain) == {
        "plainToken": plain,
        "encryptedToken": encrypted,
    }


@pytest.mark.parametrize(("secret", "ts", "body", "good", "_reserialised"), SIGNATURE_VECTORS)
def test_signature_vectors_sign_and_verify(
    secret: str, ts: int, body: bytes, good: str, _reserialised: str
) -> None:
    assert sign_webhook(secret, ts, body) == good
    headers = {"X-Zm-Signature": good, "X-Zm-Request-Timestamp": str(ts)}
    assert verify_webhook(secret, headers, body, now_s=ts + 1) == ts
    assert verify_webhook(secret, WebhookHeaders(good, str(ts)), body, now_s=ts) == ts


@pytest.mark.parametrize(("secret", "ts", "body", "_good", "reserialised"), SIGNATURE_VECTORS)
def test_reserialised_body_signature_is_rejected(
    secret: str, ts: int, body: bytes, _good: str, reserialised: str
) -> None:
    # The document's re-serialised variant really is json.dumps with default separators.
    redumped = json.dumps(json.loads(body)).encode()
    assert sign_webhook(secret, ts, redumped) == reserialised
    # A signature over the spaced re-dump matches neither the raw bytes nor their compact form.
    with pytest.raises(WebhookSignatureError) as info:
        verify_webhook(secret, WebhookHeaders(reserialised, str(ts)), body, now_s=ts)
    assert info.value.reason == SignatureRejection.BAD_SIGNATURE
    assert info.value.http_status == 401
    # The compact signature with the spaced body verifies through the §16 fallback, and what is
    # acted on is the compact body that was signed, not the bytes as received.
    verified = verify_webhook_request(secret, WebhookHeaders(_good, str(ts)), redumped, now_s=ts)
    assert verified.reserialised
    assert verified.body == body


@pytest.mark.parametrize(("secret", "ts", "body", "good", "_reserialised"), SIGNATURE_VECTORS)
def test_replay_older_than_window_is_rejected_even_with_a_correct_mac(
    secret: str, ts: int, body: bytes, good: str, _reserialised: str
) -> None:
    headers = WebhookHeaders(good, str(ts))
    assert verify_webhook(secret, headers, body, now_s=ts + 300) == ts
    with pytest.raises(WebhookSignatureError) as info:
        verify_webhook(secret, headers, body, now_s=ts + 301)
    assert info.value.reason == SignatureRejection.STALE_TIMESTAMP
    with pytest.raises(WebhookSignatureError) as info:
        verify_webhook(secret, headers, body, now_s=ts - 301)
    assert info.value.reason == SignatureRejection.FUTURE_TIMESTAMP


def test_replay_window_is_configurable() -> None:
    headers = WebhookHeaders(sign_webhook("s", 1000, b"{}"), "1000")
    with pytest.raises(WebhookSignatureError):
        verify_webhook("s", headers, b"{}", now_s=1011, replay_window_s=10)
    assert verify_webhook("s", headers, b"{}", now_s=1010, replay_window_s=10) == 1000


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, SignatureRejection.MISSING_SIGNATURE),
        ({"x-zm-request-timestamp": "1000"}, SignatureRejection.MISSING_SIGNATURE),
        ({"x-zm-signature": "v0=00"}, SignatureRejection.MISSING_TIMESTAMP),
        ({"x-zm-signature": "v0=00", "x-zm-request-timestamp": "soon"}, "malformed_timestamp"),
        ({"x-zm-signature": "v0=00", "x-zm-request-timestamp": "-5"}, "malformed_timestamp"),
        ({"x-zm-signature": "v0=00", "x-zm-request-timestamp": "1_000"}, "malformed_timestamp"),
        (
            {"x-zm-signature": "v0=00", "x-zm-request-timestamp": "\u0661\u0660\u0660\u0660"},
            "malformed_timestamp",
        ),
        ({"x-zm-signature": "v1=00", "x-zm-request-timestamp": "1000"}, "malformed_signature"),
        ({"x-zm-signature": "v0=zz", "x-zm-request-timestamp": "1000"}, "bad_signature"),
        ({"x-zm-signature": "v0=é", "x-zm-request-timestamp": "1000"}, "bad_signature"),
    ],
)
def test_each_rejection_names_its_reason(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(WebhookSignatureError) as info:
        verify_webhook("secret", headers, b"{}", now_s=1000)
    assert info.value.reason == reason


def test_signature_with_the_wrong_secret_is_rejected() -> None:
    headers = signed_headers("other-secret", 1000, VECTOR_2_BODY)
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_webhook("test_secret_token", headers, VECTOR_2_BODY, now_s=1000)


def test_rejection_messages_never_contain_the_secret_or_signature() -> None:
    sig = sign_webhook("hunter2-secret", 1000, b"{}")
    for now in (1000, 5000):
        with pytest.raises(WebhookSignatureError) as info:
            verify_webhook("hunter2-secret", WebhookHeaders(sig, "1000"), b"{x}", now_s=now)
        assert "hunter2" not in str(info.value)
        assert sig[3:] not in str(info.value)


def test_signed_headers_verify() -> None:
    headers = signed_headers("k", 1234, b"body")
    assert headers["content-type"] == "application/json"
    assert verify_webhook("k", headers, b"body", now_s=1234) == 1234


# --- Parsing -----------------------------------------------------------------------------------

# §8.2, verbatim.
EXAMPLE_BODIES = [
    b'{"event":"meeting.rtms_started","event_ts":1626230691572,"payload":{"meeting_uuid":"4444AAAiAAAAAiAiAiiAii==","operator_id":"30R7kT7bTIKSNUFEuH_Qlg","rtms_stream_id":"609340fb2a7946909659956c8aa9250c","server_urls":"wss://127.0.0.1:443"}}',
    b'{"event":"meeting.rtms_stopped","event_ts":1626230691572,"payload":{"meeting_uuid":"4444AAAiAAAAAiAiAiiAii==","rtms_stream_id":"609340fb2a7946909659956c8aa9250c","stop_reason":1}}',
    b'{"event":"contact_center.voice_rtms_started","event_ts":1738392033699,"payload":{"engagement_id":"LjjdDBo5SkGneP8qY4SvuQ","rtms_stream_id":"03db704592624398931a588dd78200cb","server_urls":"wss://zoomXXX.zoom.us/x"}}',
    b'{"event":"contact_center.voice_rtms_interrupted","event_ts":1738392039999,"payload":{"engagement_id":"LjjdDBo5SkGneP8qY4SvuQ","rtms_stream_id":"03db704592624398931a588dd78200cb"}}',
    b'{"event":"session.rtms_started","event_ts":1626230691572,"payload":{"session_id":"4567UVWxYZABCdEfGhiJkl==","session_key":"ABC36jaBI145","rtms_stream_id":"609340fb2a7946909659956c8aa9250c","server_urls":"wss://127.0.0.1:443"}}',
]


def test_meeting_started_flat() -> None:
    event = parse_webhook(EXAMPLE_BODIES[0])
    assert event.kind is WebhookKind.STARTED
    assert event.product is Product.MEETING
    assert event.event == "meeting.rtms_started"
    assert event.event_ts == 1626230691572
    assert event.instance_id == "4444AAAiAAAAAiAiAiiAii=="
    assert event.instance_id_key == "meeting_uuid"
    assert event.rtms_stream_id == "609340fb2a7946909659956c8aa9250c"
    assert event.server_urls == ("wss://127.0.0.1:443",)
    assert event.operator_id == "30R7kT7bTIKSNUFEuH_Qlg"
    assert event.stop_reason is None
    assert event.payload["meeting_uuid"] == "4444AAAiAAAAAiAiAiiAii=="


def test_meeting_stopped_carries_stop_reason() -> None:
    event = parse_webhook(EXAMPLE_BODIES[1])
    assert (event.kind, event.stop_reason, event.server_urls) == (WebhookKind.STOPPED, 1, ())


def test_contact_center_started_and_interrupted() -> None:
    started = parse_webhook(EXAMPLE_BODIES[2])
    assert started.product is Product.CONTACT_CENTER
    assert started.kind is WebhookKind.STARTED
    assert started.instance_id == "LjjdDBo5SkGneP8qY4SvuQ"
    assert started.instance_id_key == "engagement_id"
    interrupted = parse_webhook(EXAMPLE_BODIES[3])
    assert interrupted.kind is WebhookKind.INTERRUPTED
    assert interrupted.server_urls == ()


def test_video_sdk_session_started() -> None:
    event = parse_webhook(EXAMPLE_BODIES[4])
    assert event.product is Product.SESSION
    assert event.instance_id == "4567UVWxYZABCdEfGhiJkl=="
    assert event.session_key == "ABC36jaBI145"


@pytest.mark.parametrize("product", list(Product))
@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("action", ["started", "stopped", "interrupted"])
def test_every_product_and_kind_flat_and_nested(
    product: Product, nested: bool, action: str
) -> None:
    prefix = "voice_rtms_" if product is Product.CONTACT_CENTER else "rtms_"
    ids = {INSTANCE_ID_KEYS[product]: "inst/+=", "rtms_stream_id": "stream-1"}
    if action == "started":
        ids["server_urls"] = "wss://a.zoom.us/x, wss://b.zoom.us/y"
    if action == "stopped":
        ids["stop_reason"] = 8
    payload: dict[str, object] = (
        {"account_id": "acc", "object": ids} if nested else {**ids, "account_id": "acc"}
    )
    body = json.dumps({"event": f"{product}.{prefix}{action}", "event_ts": 5, "payload": payload})
    event = parse_webhook(body.encode())
    assert event.product is product
    assert event.kind == action
    assert event.instance_id == "inst/+="
    assert event.rtms_stream_id == "stream-1"
    assert event.account_id == "acc"
    if action == "started":
        assert event.server_urls == ("wss://a.zoom.us/x", "wss://b.zoom.us/y")
    if action == "stopped":
        assert event.stop_reason == 8


def test_nested_object_wins_over_flat() -> None:
    body = {
        "event": "meeting.rtms_started",
        "event_ts": 1,
        "payload": {
            "rtms_stream_id": "flat",
            "server_urls": "wss://x",
            "object": {"rtms_stream_id": "nested", "meeting_uuid": "m"},
        },
    }
    event = parse_webhook(json.dumps(body).encode())
    assert event.rtms_stream_id == "nested"
    assert event.server_urls == ("wss://x",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (8, 8),
        ("8", 8),
        ("STOP_BC_STREAM_REVOKED", 8),
        ("stream_revoked", 8),
        ("APP_DISABLED_BY_HOST", 5),
        ("MEETING_CONNECTION_INTERRUPTED", 12),
        ("STOP_BC_SOMETHING_NEW", None),
        (99, 99),
    ],
)
def test_stop_reason_numbers_and_names(value: object, expected: int | None) -> None:
    body = {
        "event": "meeting.rtms_stopped",
        "event_ts": 1,
        "payload": {"meeting_uuid": "m", "rtms_stream_id": "s", "stop_reason": value},
    }
    assert parse_webhook(json.dumps(body).encode()).stop_reason == expected


def test_webinar_falls_back_to_meeting_uuid_when_webinar_uuid_is_absent() -> None:
    body = {
        "event": "webinar.rtms_started",
        "event_ts": 1,
        "payload": {"meeting_uuid": "m", "rtms_stream_id": "s", "server_urls": "wss://x"},
    }
    event = parse_webhook(json.dumps(body).encode())
    assert (event.instance_id, event.instance_id_key) == ("m", "meeting_uuid")


def test_url_validation_parses() -> None:
    body = (
        b'{"event":"endpoint.url_validation","payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},'
        b'"event_ts":1654503849680}'
    )
    event = parse_webhook(body)
    assert event.kind is WebhookKind.URL_VALIDATION
    assert event.plain_token == "qgg8vlvZRS6UYooatFL8Aw"
    assert event.product is None


@pytest.mark.parametrize(
    "body",
    [
        {"event": "rtms.concurrency_near_limit", "event_ts": 1, "payload": {"percentage": 85}},
        {
            "event": "rtms.concurrency_limited",
            "event_ts": 1,
            "payload": {"operator_id": "o", "id_field": {"meeting_uuid": "m"}},
        },
        {
            "event": "meeting.rtms_concurrency_limited",
            "event_ts": 1,
            "payload": {"meeting_uuid": "m"},
        },
    ],
)
def test_concurrency_events(body: dict[str, object]) -> None:
    event = parse_webhook(json.dumps(body).encode())
    assert event.kind is WebhookKind.CONCURRENCY
    if body["event"] != "rtms.concurrency_near_limit":
        assert event.instance_id == "m"


@pytest.mark.parametrize(
    "body",
    [
        {"event": "zoom_room.rtms_started", "event_ts": 1, "payload": {"x": 1}},
        {"event": "meeting.participant_joined", "event_ts": 1, "payload": {}},
        {"event": "something.new"},
    ],
)
def test_unknown_events_parse_as_other(body: dict[str, object]) -> None:
    event = parse_webhook(json.dumps(body).encode())
    assert event.kind is WebhookKind.OTHER


@pytest.mark.parametrize(
    ("raw", "reason", "names"),
    [
        (b"\xff\xfe", PayloadRejection.NOT_UTF8, "UTF-8"),
        (b"{not json", PayloadRejection.NOT_JSON, "JSON"),
        (b"[1,2]", PayloadRejection.NOT_AN_OBJECT, "object"),
        (b'{"payload":{}}', PayloadRejection.MISSING_FIELD, "event"),
        (b'{"event":"meeting.rtms_started","payload":[]}', "wrong_type", "payload"),
        (
            b'{"event":"meeting.rtms_started","payload":{"meeting_uuid":"m","rtms_stream_id":"s","server_urls":"wss://x"}}',
            "missing_field",
            "event_ts",
        ),
        (
            b'{"event":"meeting.rtms_started","event_ts":true,"payload":{}}',
            "wrong_type",
            "event_ts",
        ),
        (
            b'{"event":"meeting.rtms_started","event_ts":1,"payload":{"rtms_stream_id":"s","server_urls":"wss://x"}}',
            "missing_field",
            "meeting_uuid",
        ),
        (
            b'{"event":"meeting.rtms_started","event_ts":1,"payload":{"meeting_uuid":"m","server_urls":"wss://x"}}',
            "missing_field",
            "rtms_stream_id",
        ),
        (
            b'{"event":"meeting.rtms_started","event_ts":1,"payload":{"meeting_uuid":"m","rtms_stream_id":"s"}}',
            "missing_field",
            "server_urls",
        ),
        (
            b'{"event":"meeting.rtms_started","event_ts":1,"payload":{"meeting_uuid":"m",'
            b'"rtms_stream_id":"s","server_urls":" , "}}',
            "missing_field",
            "server_urls",
        ),
        (
            b'{"event":"meeting.rtms_started","event_ts":1,"payload":{"meeting_uuid":["m"],"rtms_stream_id":"s","server_urls":"wss://x"}}',
            "wrong_type",
            "meeting_uuid",
        ),
        (
            b'{"event":"meeting.rtms_stopped","event_ts":1,"payload":{"meeting_uuid":"m","rtms_stream_id":"s","stop_reason":{}}}',
            "wrong_type",
            "stop_reason",
        ),
        (b'{"event":"endpoint.url_validation","payload":{}}', "missing_field", "plainToken"),
    ],
)
def test_malformed_bodies_name_what_is_wrong(raw: bytes, reason: str, names: str) -> None:
    with pytest.raises(WebhookPayloadError) as info:
        parse_webhook(raw)
    assert info.value.reason == reason
    assert names in str(info.value)
    assert info.value.http_status == 400


def test_deeply_nested_json_is_a_payload_error() -> None:
    with pytest.raises(WebhookPayloadError):
        parse_webhook(b"[" * 100_000 + b"]" * 100_000)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_a_payload_error(raw: bytes) -> None:
    with contextlib.suppress(WebhookPayloadError):
        parse_webhook(raw)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        *("event", "event_ts", "payload", "object", "meeting_uuid"),
                        *("rtms_stream_id", "server_urls", "stop_reason", "engagement_id"),
                        *("plainToken", "id_field"),
                    ]
                ),
                children,
                max_size=5,
            )
        ),
        max_leaves=12,
    ),
    st.sampled_from(
        [
            *("meeting.rtms_started", "contact_center.voice_rtms_stopped"),
            *("endpoint.url_validation", "rtms.concurrency_limited", "x"),
        ]
    ),
)
def test_arbitrary_json_shapes_never_crash(payload: object, event: str) -> None:
    raw = json.dumps({"event": event, "event_ts": 1, "payload": payload}).encode()
    with contextlib.suppress(WebhookPayloadError):
        parse_webhook(raw)


# --- Deduplication -------------------------------------------------------------------------------


def test_dedup_key_same_for_retries_different_for_failover() -> None:
    original = parse_webhook(EXAMPLE_BODIES[0])
    retry = parse_webhook(EXAMPLE_BODIES[0])
    failover = parse_webhook(EXAMPLE_BODIES[0].replace(b"1626230691572", b"1626230699999"))
    stopped = parse_webhook(EXAMPLE_BODIES[1])
    assert dedup_key(original) == dedup_key(retry)
    assert dedup_key(original) != dedup_key(failover)
    assert dedup_key(original) != dedup_key(stopped)


def test_dedup_key_without_ids_distinguishes_payloads() -> None:
    a = parse_webhook(b'{"event":"x.y","event_ts":1,"payload":{"n":1}}')
    b = parse_webhook(b'{"event":"x.y","event_ts":1,"payload":{"n":2}}')
    assert dedup_key(a) != dedup_key(b)
    assert dedup_key(a) == dedup_key(
        parse_webhook(b'{"event":"x.y","event_ts":1,"payload":{"n":1}}')
    )


def test_event_is_frozen() -> None:
    event = parse_webhook(EXAMPLE_BODIES[0])
    with pytest.raises(AttributeError):
        event.rtms_stream_id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.payload["meeting_uuid"] = "other"  # type: ignore[index]
