"""The client's pure rules (``recorder.zoom.policy``) and the tolerant readers of Zoom's answers:
table tests, and hypothesis for what a hostile or broken peer could send."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.errors import ZoomApiError
from recorder.simulator.rest import _path_id
from recorder.zoom.client import encode_path_id
from recorder.zoom.directory_http import parse_engagement, parse_meeting, parse_phone_call
from recorder.zoom.policy import Outcome, RetryPolicy, Token, classify, parse_retry_after

POLICY = RetryPolicy(max_retries=3, backoff_initial_s=0.5, backoff_max_s=1.5, retry_after_max_s=30)


@pytest.mark.parametrize(
    ("expires_in", "margin", "now", "usable"),
    [
        (3600, 60, 100 + 3539, True),
        (3600, 60, 100 + 3540, False),  # inside the margin: refreshed before Zoom says expired
        (2, 60, 100 + 0.9, True),  # a short token keeps half its life
        (2, 60, 100 + 1.0, False),
        (10, 0, 100 + 9.99, True),
    ],
)
def test_token_refresh_point(expires_in: float, margin: float, now: float, usable: bool) -> None:
    token = Token("t", obtained_at=100, expires_in=expires_in)
    assert token.usable(now, margin) is usable
    assert "t'" not in repr(token)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SUCCESS),
        (204, Outcome.SUCCESS),
        (401, Outcome.UNAUTHORIZED),
        (429, Outcome.RATE_LIMITED),
        (500, Outcome.SERVER_ERROR),
        (503, Outcome.SERVER_ERROR),
        (400, Outcome.REFUSED),
        (404, Outcome.REFUSED),
        (302, Outcome.REFUSED),  # redirects are never followed
        (None, Outcome.NETWORK_ERROR),
    ],
)
def test_classify(status: int | None, outcome: Outcome) -> None:
    assert classify(status) is outcome


@pytest.mark.parametrize(
    ("outcome", "done", "retry_after", "delay"),
    [
        (Outcome.SERVER_ERROR, 0, None, 0.5),
        (Outcome.SERVER_ERROR, 1, None, 1.0),
        (Outcome.NETWORK_ERROR, 2, None, 1.5),  # capped
        (Outcome.SERVER_ERROR, 3, None, None),  # retries used up
        (Outcome.RATE_LIMITED, 0, 7.0, 7.0),
        (Outcome.RATE_LIMITED, 0, None, 0.5),  # no Retry-After: backoff
        (Outcome.RATE_LIMITED, 0, 31.0, None),  # longer than the cap: Zoom's answer now
        (Outcome.RATE_LIMITED, 3, 1.0, None),
        (Outcome.REFUSED, 0, None, None),
        (Outcome.UNAUTHORIZED, 0, None, None),
    ],
)
def test_retry_delay(
    outcome: Outcome, done: int, retry_after: float | None, delay: float | None
) -> None:
    assert POLICY.delay(outcome, done, retry_after) == delay


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), (" 1.5 ", 1.5), ("0", 0.0), (None, None), ("", None), ("-1", None),
     ("nan", None), ("Wed, 21 Oct 2015 07:28:00 GMT", None), ("9" * 20, None)],
)  # fmt: skip
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


@given(st.text(max_size=40))
def test_retry_after_never_raises(header: str) -> None:
    value = parse_retry_after(header)
    assert value is None or value >= 0


@settings(max_examples=200)
@given(st.text(min_size=1, max_size=40).filter(lambda s: "%" not in s))
def test_ids_survive_the_path_both_ways(identifier: str) -> None:
    # What the client encodes, the simulator (as Zoom) decodes back to the same id. Ids with a
    # literal "%" are left out: Zoom's double-encoding rule makes "%2F..." ambiguous for it too.
    segment = encode_path_id(identifier)
    assert "/" not in segment
    assert _path_id(segment) == identifier


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    ["id", "topic", "host_email", "queues", "agents", "consumers", "direction", "call_history",
     "call_logs", "call_id", "caller_did_number", "queue_name", "display_name"]
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(FIELDS, JSON, max_size=6) | JSON)
def test_directory_answers_of_any_shape_give_info_or_a_clear_error(body: Any) -> None:
    for parse in (parse_meeting, parse_engagement, parse_phone_call):
        try:
            info = parse("id-1", body)
        except ZoomApiError as exc:
            problem = str(exc)
        else:
            problem = ""
            values = [getattr(info, name) for name in info.__slots__]
            assert all(v is None or (isinstance(v, str) and len(v) <= 512) for v in values)
        assert problem == "" or problem.startswith("Zoom API")


def test_an_empty_id_names_nothing() -> None:
    with pytest.raises(ZoomApiError, match="empty id"):
        encode_path_id("")
