"""What an announcing webhook says: which instance, of which account, user and queue, since when.

Pure. Rule 1: only verified webhooks reach this (the ingress checks the signature first).
Rule 2: Zoom's announcing events carry their data in ``payload.object`` (``meeting.started``:
``uuid``, ``id``, ``host_id``, ``start_time``; ``contact_center.engagement_started``:
``engagement_id``, ``queue_id``/``cc_queue_id``, ``user_id``/``agent_id``; ``phone.callee_answered``
/ ``phone.caller_connected``: ``call_id``, ``callee``/``caller`` with ``user_id`` and numbers),
``account_id`` in ``payload``; the flat form is accepted too. Rule 3: the ending events
(``meeting.ended``, ``contact_center.engagement_ended``, ``phone.callee_ended``...) give the end
(``end_time`` / ``call_end_time``, else ``event_ts``) and, where they carry it, the start.
Rule 4: who and what the announcement names (topic, host, queue, agent, numbers) is kept as
enrichment known at once. A missing instance id, or an id or time of the wrong type, is a
``WebhookPayloadError`` naming the field.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from recorder.completeness.model import EnrichmentFields
from recorder.errors import WebhookPayloadError
from recorder.products import Product
from recorder.rtms.webhook import PayloadRejection, WebhookEvent

#: Announcing events that say an instance ended (``Announcement.ended_ms`` is set).
ENDING_EVENTS: Final = frozenset(
    {
        "meeting.ended",
        "webinar.ended",
        "contact_center.engagement_ended",
        "phone.callee_ended",
        "phone.caller_ended",
    }
)


@dataclass(frozen=True, slots=True)
class Announcement:
    event: str
    product: Product
    #: What recordings of it carry: meeting/webinar uuid, engagement id, call id.
    instance_id: str
    #: What Zoom's REST APIs take: the meeting number; otherwise the instance id.
    target_id: str
    account_id: str | None
    #: Host, agent, or the firm's side of a phone call.
    user_id: str | None
    queue_id: str | None
    started_ms: int
    #: Set by the ending events (``ENDING_EVENTS``): when the instance ended.
    ended_ms: int | None = None
    #: What the signed announcement itself says about who and what (topic, host, queue,
    #: agent, numbers): enrichment known before Zoom's directory is asked.
    known: EnrichmentFields = field(default_factory=EnrichmentFields)


def _layers(payload: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    nested = payload.get("object")
    return (nested, payload) if isinstance(nested, Mapping) else (payload,)


def _text(layers: tuple[Mapping[str, Any], ...], *keys: str) -> str | None:
    for key in keys:
        for layer in layers:
            value = layer.get(key)
            if value is None or value == "":
                continue
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise WebhookPayloadError(
                    f"payload.object.{key} must be a string, not {type(value).__name__}",
                    reason=PayloadRejection.WRONG_TYPE,
                )
            return str(value)
    return None


def _start_ms(layers: tuple[Mapping[str, Any], ...], key: str, fallback: int) -> int:
    text = _text(layers, key)
    if text is None:
        return fallback
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise WebhookPayloadError(
            f"payload.object.{key} is not an ISO 8601 time", reason=PayloadRejection.WRONG_TYPE
        ) from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def _party(layers: tuple[Mapping[str, Any], ...], side: str) -> tuple[Mapping[str, Any], ...]:
    for layer in layers:
        value = layer.get(side)
        if isinstance(value, Mapping):
            return (value,)
    return ()


def parse_announcement(event: WebhookEvent, received_ms: int) -> Announcement:
    """The announcement ``event`` (kind ``announced``) makes."""
    if event.product is None:
        raise WebhookPayloadError(f"{event.event} names no product")
    layers = _layers(event.payload)
    account_id = _text(layers, "account_id")
    fallback = event.event_ts if event.event_ts is not None else received_ms
    ending = event.event in ENDING_EVENTS
    product = event.product
    if product in (Product.MEETING, Product.WEBINAR):
        instance_id = _text(layers, "uuid", product.id_key)
        target_id = _text(layers, "id", f"{product.value}_id") or instance_id
        user_id = _text(layers, "host_id")
        queue_id = None
        known = EnrichmentFields(topic=_text(layers, "topic"), host_id=user_id)
        started = _start_ms(layers, "start_time", fallback)
        ended = _start_ms(layers, "end_time", fallback) if ending else None
        what = "uuid"
    elif product is Product.CONTACT_CENTER:
        instance_id = _text(layers, "engagement_id")
        target_id = instance_id
        user_id = _text(layers, "user_id", "agent_id")
        queue_id = _text(layers, "queue_id", "cc_queue_id")
        known = EnrichmentFields(
            queue_id=queue_id,
            queue_name=_text(layers, "queue_name"),
            agent_id=user_id,
            consumer_number=_text(layers, "consumer_number"),
            direction=_text(layers, "direction"),
        )
        started = _start_ms(layers, "start_time", fallback)
        ended = _start_ms(layers, "end_time", fallback) if ending else None
        what = "engagement_id"
    else:
        instance_id = _text(layers, "call_id")
        target_id = instance_id
        side = "callee" if event.event.startswith("phone.callee_") else "caller"
        user_id = _text(_party(layers, side), "user_id") or _text(layers, "user_id")
        queue_id = None
        known = EnrichmentFields(
            agent_id=user_id,
            caller_number=_text(_party(layers, "caller"), "phone_number"),
            callee_number=_text(_party(layers, "callee"), "phone_number"),
        )
        started = _start_ms(layers, "answer_start_time", fallback)
        ended = _start_ms(layers, "call_end_time", fallback) if ending else None
        what = "call_id"
    if instance_id is None or target_id is None:
        raise WebhookPayloadError(
            f"payload.object.{what} is missing", reason=PayloadRejection.MISSING_FIELD
        )
    return Announcement(
        event=event.event,
        product=product,
        instance_id=instance_id,
        target_id=target_id,
        account_id=account_id,
        user_id=user_id,
        queue_id=queue_id,
        started_ms=started,
        ended_ms=ended,
        known=known,
    )
