"""Lifecycle evidence: ``rtms.start_failed`` and the concurrency events, from ingress to catalog.

A recording that was expected and did not happen is evidence too (rtms-protocol §16). Each
verified lifecycle webhook is stored whole in the catalog (once per delivery: Zoom's retries are
recognised by their dedup key), counted in /metrics by event and product, and logged at error
level with the ids it names and its reason, never its body or headers. Which recording it belongs
to is the catalog's business (``recorder.catalog._lifecycle``); an orphan is logged as such.
"""

from __future__ import annotations

import logging
from typing import Final

from recorder.catalog.aio import AsyncCatalog
from recorder.catalog.base import NewLifecycleEvent
from recorder.errors import WebhookPayloadError
from recorder.products import INSTANCE_ID_KEYS, Product
from recorder.rtms.webhook import (
    LIFECYCLE_KINDS,
    PayloadRejection,
    WebhookEvent,
    WebhookKind,
    dedup_key,
    lifecycle_ids,
)
from recorder.service.metrics import RecorderMetrics

logger = logging.getLogger(__name__)

#: A reason longer than this is cut in the log line (the stored body keeps all of it).
MAX_LOGGED_REASON: Final = 200

_PRODUCT_OF_ID_KEY: Final = {key: product for product, key in INSTANCE_ID_KEYS.items()}


def is_failure(event: WebhookEvent) -> bool:
    """A recording did not happen: a failed start, or a start refused at the concurrency limit
    (``rtms.concurrency_near_limit`` is only a warning)."""
    return event.kind is WebhookKind.START_FAILED or event.event.endswith("concurrency_limited")


def product_of(event: WebhookEvent) -> Product | None:
    """The event's product: its name's prefix, else the kind of instance id it names."""
    if event.product is not None:
        return event.product
    if event.instance_id_key is None:
        return None
    return _PRODUCT_OF_ID_KEY.get(event.instance_id_key)


def lifecycle_record(event: WebhookEvent, raw_body: bytes, received_ms: int) -> NewLifecycleEvent:
    """The catalog row for one verified lifecycle webhook, its body kept as signed."""
    if event.kind not in LIFECYCLE_KINDS:
        raise ValueError(f"{event.event} is not a lifecycle event")
    try:
        body = raw_body.decode("utf-8")
    except UnicodeDecodeError as exc:  # parse_webhook refused these already; belt and braces
        raise WebhookPayloadError("body is not UTF-8", reason=PayloadRejection.NOT_UTF8) from exc
    return NewLifecycleEvent(
        dedup_key=dedup_key(event),
        event=event.event,
        kind=event.kind.value,
        failed=is_failure(event),
        product=product_of(event),
        event_ts_ms=event.event_ts,
        received_ms=received_ms,
        rtms_stream_id=event.rtms_stream_id,
        instance_id=event.instance_id,
        ids=lifecycle_ids(event.payload),
        reason=event.failure_reason,
        body=body,
    )


class CatalogLifecycleEvidence:
    """The ingress's ``LifecycleEvidence`` seam, on the catalog."""

    def __init__(self, catalog: AsyncCatalog, metrics: RecorderMetrics) -> None:
        self._catalog = catalog
        self._metrics = metrics

    async def record(self, event: WebhookEvent, raw_body: bytes, received_s: float) -> bool:
        """Store, count and log ``event``; False when it was a retry of one already stored.

        Raises ``RecorderError`` (``CatalogError``) when it could not be stored: the ingress
        then answers 503 so that Zoom delivers it again.
        """
        record = lifecycle_record(event, raw_body, int(received_s * 1000))
        row, created = await self._catalog.add_lifecycle_event(record)
        if not created:
            logger.info(
                "lifecycle webhook already stored event=%s event_id=%d", event.event, row.event_id
            )
            return False
        self._metrics.lifecycle_event(event.event, record.product)
        if row.recording_id is not None:
            belongs = f"recording {row.recording_id}"
        elif row.stream_known:
            belongs = "a known stream without a recording"
        elif not record.ids:
            belongs = "no stream (it names none)"
        else:
            belongs = "nothing known (orphan)"
        reason = (record.reason or "-")[:MAX_LOGGED_REASON]
        logger.error(
            "rtms lifecycle event=%s product=%s rtms_stream_id=%s instance_id=%s reason=%r "
            "belongs to %s event_id=%d",
            event.event,
            "unknown" if record.product is None else record.product.value,
            record.rtms_stream_id or "-",
            record.instance_id or "-",
            reason,
            belongs,
            row.event_id,
        )
        return True
