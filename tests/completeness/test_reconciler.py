"""The reconciler's rules (``recorder.completeness.reconciler`` docstring), one test each, and the
announcement parser against hostile payloads."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.completeness.announcements import parse_announcement
from recorder.completeness.model import (
    ExpectationRow,
    ExpectationSource,
    FindingCause,
    FindingKind,
    ReconcileInputs,
    RecordingFacts,
    StartState,
    normalise_number,
)
from recorder.completeness.policy import must_record
from recorder.completeness.reconciler import (
    COMPLETE,
    SETTLE_MISSING_MS,
    Thresholds,
    settled,
    verdict,
)
from recorder.config import CompletenessConfig
from recorder.errors import WebhookPayloadError
from recorder.products import Product
from recorder.rtms.webhook import WebhookKind, parse_webhook

T = Thresholds(grace_ms=60_000, late_start_ms=30_000, early_end_ms=30_000, max_gap_ms=10_000)
START = 1_000_000
X = ExpectationRow(
    1,
    Product.CONTACT_CENTER,
    "eng",
    "eng",
    ExpectationSource.WEBHOOK,
    "contact_center.engagement_started",
    None,
    None,
    None,
    START,
    None,
    START,
    StartState.REQUESTED,
    1,
    None,
    None,
    None,
)


def inputs(
    *recordings: RecordingFacts, x: ExpectationRow = X, failures: tuple[str | None, ...] = ()
) -> ReconcileInputs:
    return ReconcileInputs(x, recordings, failures)


def rec(start: int, end: int | None = None, gap: int = 0, rid: str = "r1") -> RecordingFacts:
    return RecordingFacts(rid, start, end, gap)


LATER = START + 120_000


def test_rule_1_no_verdict_inside_the_grace_period() -> None:
    assert verdict(inputs(), START + 59_999, T) is None
    assert verdict(inputs(), START + 60_000, T) is not None


def test_rule_2a_start_failed_names_zoom_reason_even_when_our_start_was_refused() -> None:
    x = dataclasses.replace(X, start_state=StartState.FAILED, start_error_code=2308)
    v = verdict(inputs(x=x, failures=(None, "queue not assigned")), LATER, T)
    assert v is not None
    assert (v.kind, v.cause) == (FindingKind.MISSING, FindingCause.START_FAILED)
    assert v.detail == "Zoom: queue not assigned"


def test_rule_2b_refused_start_carries_code_and_status() -> None:
    x = dataclasses.replace(
        X,
        start_state=StartState.FAILED,
        start_error_code=2310,
        start_error_status=400,
        start_attempts=1,
        start_error="Failed to perform RTMS app operation",
    )
    v = verdict(inputs(x=x), LATER, T)
    assert v is not None
    assert v.cause is FindingCause.START_REFUSED
    assert "code=2310" in v.detail
    assert "Failed to perform RTMS app operation" in v.detail


def test_rule_2c_never_started() -> None:
    v = verdict(inputs(), LATER, T)
    assert v is not None
    assert (v.kind, v.cause) == (FindingKind.MISSING, FindingCause.NEVER_STARTED)


def test_rule_3a_started_late_counts_the_earliest_stream() -> None:
    v = verdict(inputs(rec(START + 31_000, rid="a")), LATER, T)
    assert v is not None
    assert (v.kind, v.cause, v.recording_id) == (
        FindingKind.INCOMPLETE,
        FindingCause.STARTED_LATE,
        "a",
    )
    assert verdict(inputs(rec(START + 29_000), rec(START + 90_000, rid="b")), LATER, T) is COMPLETE


def test_rule_3b_ended_early_only_when_the_end_is_known_and_every_stream_ended() -> None:
    x = dataclasses.replace(X, expected_end_ms=START + 600_000)
    early = verdict(inputs(rec(START, START + 500_000), x=x), LATER, T)
    assert early is not None
    assert early.cause is FindingCause.ENDED_EARLY
    assert verdict(inputs(rec(START, None), x=x), LATER, T) is COMPLETE
    assert verdict(inputs(rec(START, START + 500_000)), LATER, T) is COMPLETE


def test_rule_3c_one_large_gap() -> None:
    v = verdict(inputs(rec(START, gap=10_001, rid="g")), LATER, T)
    assert v is not None
    assert (v.cause, v.recording_id) == (FindingCause.LARGE_GAPS, "g")
    assert verdict(inputs(rec(START, gap=10_000)), LATER, T) is COMPLETE


def test_rule_4_final_once_every_stream_ended_or_a_day_without_any() -> None:
    assert settled(inputs(rec(START, START + 1), rec(START, START + 2, rid="b")), LATER)
    assert not settled(inputs(rec(START, START + 1), rec(START, None, rid="b")), LATER)
    assert not settled(inputs(), START + SETTLE_MISSING_MS - 1)
    assert settled(inputs(), START + SETTLE_MISSING_MS)


def test_policy_lists_must_contain_the_value_and_queues_apply_to_contact_center_only() -> None:
    body = {
        "event": "contact_center.engagement_started",
        "event_ts": 5,
        "payload": {"account_id": "A", "object": {"engagement_id": "e", "queue_id": "q1"}},
    }
    a = parse_announcement(parse_webhook(json.dumps(body).encode()), 9)
    on = CompletenessConfig(enabled=True)
    assert must_record(on, a)
    assert not must_record(CompletenessConfig(), a)  # off by default
    assert must_record(dataclasses.replace(on, queues=("q1",), accounts=("A",)), a)
    assert not must_record(dataclasses.replace(on, queues=("q2",)), a)
    assert not must_record(dataclasses.replace(on, users=("agent",)), a)  # not carried
    assert not must_record(dataclasses.replace(on, products=(Product.MEETING,)), a)


def test_announcements_of_each_product() -> None:
    def parse(event: str, payload: dict[str, object]) -> object:
        raw = json.dumps({"event": event, "event_ts": 7_000, "payload": payload}).encode()
        event_ = parse_webhook(raw)
        assert event_.kind is WebhookKind.ANNOUNCED
        return parse_announcement(event_, 1)

    m = parse(
        "meeting.started",
        {
            "account_id": "A",
            "object": {
                "uuid": "u==",
                "id": 85012345678,
                "host_id": "h",
                "start_time": "2026-01-01T00:00:00Z",
            },
        },
    )
    assert (m.instance_id, m.target_id, m.user_id, m.started_ms) == (  # type: ignore[attr-defined]
        "u==",
        "85012345678",
        "h",
        1_767_225_600_000,
    )
    p = parse(
        "phone.callee_answered",
        {"object": {"call_id": "c1", "callee": {"user_id": "agent-u"}, "caller": {"user_id": "x"}}},
    )
    assert (p.instance_id, p.user_id, p.started_ms) == ("c1", "agent-u", 7_000)  # type: ignore[attr-defined]
    o = parse("phone.caller_connected", {"object": {"call_id": "c2", "caller": {"user_id": "me"}}})
    assert o.user_id == "me"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"uuid": ["a"]},
        {"uuid": "u", "start_time": "yesterday"},
        {"uuid": {"x": 1}},
        {"uuid": True},
    ],
)
def test_bad_announcements_are_refused_by_name(obj: dict[str, object]) -> None:
    raw = json.dumps({"event": "meeting.started", "event_ts": 1, "payload": {"object": obj}})
    with pytest.raises(WebhookPayloadError) as caught:
        parse_announcement(parse_webhook(raw.encode()), 1)
    assert "payload.object." in str(caught.value)


_json = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=8)
    | st.lists(st.text(max_size=3), max_size=2)
    | st.dictionaries(st.just("user_id"), st.text(max_size=4) | st.integers(), max_size=1)
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event=st.sampled_from(
        [
            "meeting.started",
            "webinar.started",
            "contact_center.engagement_started",
            "phone.callee_answered",
            "phone.caller_connected",
        ]
    ),
    obj=st.dictionaries(
        st.sampled_from(
            [
                "uuid",
                "id",
                "engagement_id",
                "call_id",
                "host_id",
                "queue_id",
                "start_time",
                "caller",
                "callee",
                "user_id",
                "account_id",
            ]
        ),
        _json,
        max_size=6,
    ),
)
def test_any_authentic_body_parses_or_is_refused_with_a_payload_error(
    event: str, obj: dict[str, object]
) -> None:
    raw = json.dumps({"event": event, "event_ts": 1, "payload": {"object": obj}}).encode()
    try:
        a = parse_announcement(parse_webhook(raw), 1)
    except WebhookPayloadError:
        return
    assert a.instance_id
    assert a.target_id


def test_numbers_are_normalised_to_plus_and_digits() -> None:
    assert normalise_number("+1 (555) 010-0199") == "+15550100199"
    assert normalise_number("0044 20 79460018") == "00442079460018"
    assert normalise_number("ext.") is None
    assert normalise_number("٣٤٥") is None  # non-ASCII digits are not phone digits
