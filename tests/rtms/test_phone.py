"""Zoom Phone (rtms-protocol §16) and lifecycle webhooks in the sans-IO core: webhook names and
aliases, ``call_id`` as the instance id and in the handshake signature, ``event_code`` events."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.errors import RemoteProtocolError, UnsupportedProtocolVersion
from recorder.products import INSTANCE_ID_KEYS, Product
from recorder.rtms import messages as m
from recorder.rtms.client import ClientConfig
from recorder.rtms.events import ContactCenterEvent, FirstPacketTimestamp
from recorder.rtms.messages import MediaType
from recorder.rtms.protocol import ProtocolViolation, SignalingConnection
from recorder.rtms.signature import handshake_signature
from recorder.rtms.webhook import (
    LIFECYCLE_KINDS,
    WebhookKind,
    dedup_key,
    lifecycle_ids,
    normalised_event_name,
    parse_webhook,
)

CALL_ID = "IuRtRTd8QjmAkBUV+7GaXA=="
STREAM = "5fd2a7c46b0b4a0aa1d32a2c2c7fe1f2"
URLS = {"audio": "wss://a", "transcript": "wss://t", "all": "wss://x"}


def body(event: str, payload: dict[str, Any], event_ts: int = 1_795_000_000_000) -> bytes:
    return json.dumps({"event": event, "event_ts": event_ts, "payload": payload}).encode()


# --- webhooks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("phone.rtms_started", WebhookKind.STARTED),
        ("phone.call_rtms_started", WebhookKind.STARTED),
        ("phone.rtms_stopped", WebhookKind.STOPPED),
        ("phone.call_rtms_stopped", WebhookKind.STOPPED),
        ("phone.rtms_interrupted", WebhookKind.INTERRUPTED),
        ("phone.call_rtms_interrupted", WebhookKind.INTERRUPTED),
    ],
)
def test_phone_events_and_their_aliases_are_one_product(name: str, kind: WebhookKind) -> None:
    payload = {"call_id": CALL_ID, "rtms_stream_id": STREAM, "server_urls": "wss://a.zoom.us"}
    event = parse_webhook(body(name, payload))
    assert event.kind is kind
    assert event.product is Product.PHONE
    assert event.event == name.replace("phone.call_rtms_", "phone.rtms_")
    assert (event.instance_id, event.instance_id_key) == (CALL_ID, "call_id")
    assert event.rtms_stream_id == STREAM


def test_an_alias_and_its_normal_name_are_one_delivery() -> None:
    payload = {"call_id": CALL_ID, "rtms_stream_id": STREAM, "server_urls": "wss://a.zoom.us"}
    normal = parse_webhook(body("phone.rtms_started", payload))
    alias = parse_webhook(body("phone.call_rtms_started", payload))
    assert dedup_key(normal) == dedup_key(alias)
    assert normalised_event_name("meeting.rtms_started") == "meeting.rtms_started"
    assert normalised_event_name("phone.callrtms_started") == "phone.callrtms_started"


def test_a_phone_start_without_its_call_id_is_refused_by_name() -> None:
    with pytest.raises(Exception, match=r"payload\.call_id is missing"):
        parse_webhook(body("phone.rtms_started", {"rtms_stream_id": STREAM, "server_urls": "x"}))


def test_phone_is_a_voice_call_product() -> None:
    assert INSTANCE_ID_KEYS[Product.PHONE] == "call_id"
    assert Product.PHONE.webhook_prefix == "phone."
    assert Product.PHONE.is_voice_call
    assert Product.CONTACT_CENTER.is_voice_call
    assert not Product.MEETING.is_voice_call
    config = ClientConfig(audio=True, transcript=True, chat=True, video=True)
    assert config.wanted_media(Product.PHONE) == MediaType.AUDIO | MediaType.TRANSCRIPT
    assert config.events_for(Product.PHONE) == config.events_for(Product.CONTACT_CENTER)


@pytest.mark.parametrize(
    ("payload", "stream", "instance", "key", "reason"),
    [
        ({"rtms_stream_id": STREAM, "reason": "no capacity"}, STREAM, None, None, "no capacity"),
        ({"call_id": CALL_ID, "error_message": "oops"}, None, CALL_ID, "call_id", "oops"),
        ({"engagement_id": "E1", "message": "m"}, None, "E1", "engagement_id", "m"),
        ({"session_id": "S1", "reason": 42}, None, "S1", "session_id", "42"),
        (
            {"object": {"meeting_uuid": "M==", "rtms_stream_id": STREAM}},
            STREAM,
            "M==",
            "meeting_uuid",
            None,
        ),
        ({"id_field": {"webinar_uuid": "W"}}, None, "W", "webinar_uuid", None),
        # Ids of the wrong type are left out, never refused: the body is the evidence.
        ({"rtms_stream_id": ["x"], "call_id": {"a": 1}, "reason": None}, None, None, None, None),
    ],
)
def test_start_failed_takes_whichever_ids_and_reason_are_present(
    payload: dict[str, Any],
    stream: str | None,
    instance: str | None,
    key: str | None,
    reason: str | None,
) -> None:
    event = parse_webhook(body("rtms.start_failed", payload))
    assert event.kind is WebhookKind.START_FAILED
    assert event.kind in LIFECYCLE_KINDS
    assert event.product is None
    assert (event.rtms_stream_id, event.instance_id, event.instance_id_key) == (
        stream,
        instance,
        key,
    )
    assert event.failure_reason == reason


def test_lifecycle_ids_collects_every_named_id() -> None:
    payload = {"rtms_stream_id": STREAM, "call_id": CALL_ID, "object": {"meeting_uuid": "M"}}
    assert lifecycle_ids(payload) == {
        "rtms_stream_id": STREAM,
        "meeting_uuid": "M",
        "call_id": CALL_ID,
    }


def test_concurrency_events_are_lifecycle_events_too() -> None:
    limited = parse_webhook(body("rtms.concurrency_limited", {"id_field": {"call_id": CALL_ID}}))
    assert limited.kind is WebhookKind.CONCURRENCY
    assert limited.instance_id == CALL_ID
    near = parse_webhook(body("rtms.concurrency_near_limit", {"percentage": 85}))
    assert near.kind in LIFECYCLE_KINDS
    assert near.instance_id is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
id_keys = st.sampled_from(
    ["rtms_stream_id", "call_id", "meeting_uuid", "reason", "message", "object", "id_field", "x"]
)


@settings(max_examples=300, deadline=None)
@given(
    payload=st.dictionaries(id_keys, json_values, max_size=6),
    event_ts=json_values,
    name=st.sampled_from(
        ["rtms.start_failed", "rtms.concurrency_limited", "rtms.concurrency_near_limit"]
    ),
)
def test_a_lifecycle_event_is_never_refused_for_its_fields(
    payload: dict[str, Any], event_ts: Any, name: str
) -> None:
    raw = json.dumps({"event": name, "event_ts": event_ts, "payload": payload}).encode()
    event = parse_webhook(raw)
    assert event.kind in LIFECYCLE_KINDS
    for value in (event.rtms_stream_id, event.instance_id, event.failure_reason):
        assert value is None or (isinstance(value, str) and value)
    assert dedup_key(event)


# --- handshake signature -----------------------------------------------------------------


def test_the_phone_handshake_is_signed_over_the_call_id() -> None:
    expected = hmac.new(
        b"secret", f"client,{CALL_ID},{STREAM}".encode(), hashlib.sha256
    ).hexdigest()
    signature = handshake_signature("client", "secret", CALL_ID, STREAM)
    assert signature == expected
    conn = SignalingConnection(
        rtms_stream_id=STREAM,
        instance_id=CALL_ID,
        instance_key="call_id",
        signature=signature,
        contact_center=True,
        subscribe_events=(12, 13),
    )
    conn.initiate(0.0)
    [frame] = [json.loads(f) for f in conn.data_to_send()]
    assert frame["call_id"] == CALL_ID
    assert frame["signature"] == expected
    assert "meeting_uuid" not in frame


# --- event_code --------------------------------------------------------------------------


def open_phone_signaling(*, event_code: bool = True) -> SignalingConnection:
    conn = SignalingConnection(
        rtms_stream_id=STREAM,
        instance_id=CALL_ID,
        instance_key="call_id",
        signature="0" * 64,
        contact_center=True,
        event_code=event_code,
        subscribe_events=(12, 13),
    )
    conn.initiate(0.0)
    conn.data_to_send()
    conn.receive_message(
        json.dumps(
            {"msg_type": 2, "status_code": 0, "reason": "", "media_server": {"server_urls": URLS}}
        )
    )
    conn.events()
    return conn


def events_of(conn: SignalingConnection, event: dict[str, Any]) -> list[Any]:
    conn.receive_message(json.dumps({"msg_type": 6, "event": event}))
    return conn.events()


@pytest.mark.parametrize(
    ("code", "name", "event_type"),
    [
        (12, "USER_HOLD", 12),
        (13, "USER_UNHOLD", 13),
        (18, "TRANSFER_INITIATED", 18),
        ("21", "TRANSFER_COMPLETED", 21),
        ("call_hold", "CALL_HOLD", 0),
        (999, "EVENT_999", 999),
    ],
)
def test_phone_events_come_with_event_code_only(code: object, name: str, event_type: int) -> None:
    conn = open_phone_signaling()
    [event] = events_of(
        conn,
        {
            "event_code": code,
            "event_ts": 1_795_000_000_123,
            "participant_info": {"channel_id": "2", "participant_mode": "callee"},
        },
    )
    assert isinstance(event, ContactCenterEvent)
    assert (event.name, event.event_type) == (name, event_type)
    assert (event.channel_id, event.participant_mode) == ("2", "callee")
    assert event.timestamp_ms == 1_795_000_000_123
    assert event.extra["event_code"] == code


def test_automatic_events_as_event_code_still_work() -> None:
    conn = open_phone_signaling()
    assert events_of(conn, {"event_code": 1, "timestamp": 5}) == [FirstPacketTimestamp(5)]


@pytest.mark.parametrize("code", [None, "", [12], {"a": 1}, 1.5])
def test_an_unreadable_event_code_is_a_named_protocol_error(code: object) -> None:
    with pytest.raises(RemoteProtocolError, match=r"event_code|event_type"):
        m.decode(json.dumps({"msg_type": 6, "event": {"event_code": code}}))


def test_event_type_wins_when_both_are_sent() -> None:
    msg = m.decode(json.dumps({"msg_type": 6, "event": {"event_type": 2, "event_code": 12}}))
    assert isinstance(msg, m.EventUpdate)
    assert msg.event_type == 2


def test_event_code_only_is_refused_as_v2_on_contact_center() -> None:
    """The same event_code-only form is RTMS V2 on a V1 product: named, never misparsed."""
    conn = open_phone_signaling(event_code=False)
    conn.receive_message(json.dumps({"msg_type": 6, "event": {"event_code": 12, "event_ts": 5}}))
    [event] = [e for e in conn.events() if isinstance(e, ProtocolViolation)]
    assert isinstance(event.error, UnsupportedProtocolVersion)
    assert not event.fatal
