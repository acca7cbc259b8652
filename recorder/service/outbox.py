"""The webhook outbox on the catalog: the ingress's ``WebhookOutbox`` seam (ingress rule 2).

A verified webhook's dedup key and the stream row it implies (state, URLs, ``event_ts``) are
committed in ONE catalog transaction before the webhook is answered 200. So an acknowledged
``rtms_started`` is never only in memory: if this process dies, drains or fails before it starts
the engagement, the row is there for the rejoin loop of any process; and if the transaction
fails, nothing is written and the ingress answers 503, so Zoom's retry is not taken for a
duplicate.
"""

from __future__ import annotations

from typing import Final

from recorder.catalog.aio import AsyncCatalog
from recorder.catalog.base import StreamEvent, StreamState
from recorder.rtms.webhook import WebhookEvent, WebhookKind

#: The state a webhook kind moves a stream to; other kinds write no stream row.
STATE_OF: Final = {
    WebhookKind.STARTED: StreamState.STARTED,
    WebhookKind.INTERRUPTED: StreamState.INTERRUPTED,
    WebhookKind.STOPPED: StreamState.STOPPED,
}


def stream_event_of(event: WebhookEvent, received_ms: int) -> StreamEvent | None:
    """The stream row change ``event`` stands for, or None when it names no stream."""
    state = STATE_OF.get(event.kind)
    if state is None or event.rtms_stream_id is None or event.product is None:
        return None
    return StreamEvent(
        rtms_stream_id=event.rtms_stream_id,
        product=event.product,
        instance_id=event.instance_id or "",
        state=state,
        # Zoom always sends event_ts; without it retries and failovers cannot be told apart.
        event_ts_ms=event.event_ts if event.event_ts is not None else received_ms,
        server_urls=tuple(event.server_urls),
    )


class CatalogOutbox:
    """Dedup key and stream row in one transaction; shared by every process on the catalog."""

    def __init__(self, catalog: AsyncCatalog, *, dedup_ttl_ms: int) -> None:
        self._catalog = catalog
        self._ttl_ms = dedup_ttl_ms

    async def accept(self, key: str, now_s: float, event: WebhookEvent) -> bool:
        now_ms = int(now_s * 1000)
        return await self._catalog.accept_webhook(
            key, now_ms, self._ttl_ms, stream_event_of(event, now_ms)
        )
