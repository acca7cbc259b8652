"""``ZoomDirectory`` over Zoom's REST API: who and what a meeting, engagement or call was.

Endpoints and the fields read (Zoom's documented shapes as best known; every field is optional
and read tolerantly, a wrong type counts as absent):

* ``GET /v2/meetings/{meetingId}``: ``id``, ``uuid``, ``topic``, ``host_id``, ``host_email``,
  ``account_id`` (not in Zoom's documented answer; kept when present).
* ``GET /v2/contact_center/engagements/{engagementId}``: ``direction``, the first of
  ``queues[]`` (``queue_id`` / ``cc_queue_id``, ``queue_name``), of ``agents[]`` (``user_id``,
  ``display_name`` / ``user_name``, ``user_email``) and of ``consumers[]``
  (``consumer_number`` / ``consumer_phone_number``); flat ``queue_id`` etc. are accepted too.
* ``GET /v2/phone/call_history?call_ids={callId}`` (the ``call_ids`` filter, 2026-06): the
  entry whose ``call_id`` matches, ``caller_did_number`` / ``caller_ext_number`` /
  ``caller_number``, the same for the callee, ``direction``, ``user_id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from recorder.errors import ZoomApiError
from recorder.zoom.client import ZoomApiClient, encode_path_id
from recorder.zoom.directory import EngagementInfo, MeetingInfo, PhoneCallInfo

#: Longest text kept from one field (a hostile answer cannot grow the catalog).
_MAX_FIELD = 512


def _text(data: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:_MAX_FIELD]
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def _first(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    items = data.get(key)
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                return item
    return {}


def _object(body: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise ZoomApiError(f"Zoom API {where}: the answer is not a JSON object")
    return body


def parse_meeting(meeting_id: str, body: Any) -> MeetingInfo:
    data = _object(body, "GET meeting")
    return MeetingInfo(
        meeting_id=_text(data, "id") or meeting_id,
        topic=_text(data, "topic"),
        host_id=_text(data, "host_id"),
        host_email=_text(data, "host_email"),
        account_id=_text(data, "account_id"),
    )


def parse_engagement(engagement_id: str, body: Any) -> EngagementInfo:
    data = _object(body, "GET engagement")
    queue = _first(data, "queues") or data
    agent = _first(data, "agents") or _first(data, "users")
    consumer = _first(data, "consumers")
    return EngagementInfo(
        engagement_id=_text(data, "engagement_id") or engagement_id,
        queue_id=_text(queue, "queue_id", "cc_queue_id"),
        queue_name=_text(queue, "queue_name"),
        agent_id=_text(agent, "user_id", "agent_id"),
        agent_name=_text(agent, "display_name", "user_name", "agent_name"),
        agent_email=_text(agent, "user_email", "email"),
        consumer_number=_text(consumer, "consumer_number", "consumer_phone_number", "phone_number")
        or _text(data, "consumer_number"),
        direction=_text(data, "direction"),
    )


def parse_phone_call(call_id: str, body: Any) -> PhoneCallInfo:
    data = _object(body, "GET call history")
    entries: Sequence[Any] = []
    for key in ("call_history", "call_logs"):
        found = data.get(key)
        if isinstance(found, list):
            entries = found
            break
    entry = next(
        (e for e in entries if isinstance(e, dict) and _text(e, "call_id") == call_id), None
    )
    if entry is None:
        raise ZoomApiError(
            f"Zoom API GET call history: no call {call_id!r} in the answer", status=404
        )
    return PhoneCallInfo(
        call_id=call_id,
        caller_number=_text(entry, "caller_did_number", "caller_ext_number", "caller_number"),
        callee_number=_text(entry, "callee_did_number", "callee_ext_number", "callee_number"),
        direction=_text(entry, "direction"),
        user_id=_text(entry, "user_id"),
    )


class HttpZoomDirectory:
    """``recorder.zoom.directory.ZoomDirectory`` on a ``ZoomApiClient``."""

    def __init__(self, client: ZoomApiClient) -> None:
        self._client = client

    async def meeting(self, meeting_id: str) -> MeetingInfo:
        answer = await self._client.request("GET", f"/meetings/{encode_path_id(meeting_id)}")
        return parse_meeting(meeting_id, answer.body)

    async def engagement(self, engagement_id: str) -> EngagementInfo:
        path = f"/contact_center/engagements/{encode_path_id(engagement_id)}"
        answer = await self._client.request("GET", path)
        return parse_engagement(engagement_id, answer.body)

    async def phone_call(self, call_id: str) -> PhoneCallInfo:
        if not call_id:
            raise ZoomApiError("an empty id cannot name a Zoom object")
        answer = await self._client.request(
            "GET", "/phone/call_history", params={"call_ids": call_id}
        )
        return parse_phone_call(call_id, answer.body)
