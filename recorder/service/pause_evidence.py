"""Pause evidence of one engagement: who asked for a pause, pauses that last too long, and pause
requests no stream confirmed (PCI DSS: fail closed on an unknown pause state).

Rules:

1. **Attribution.** When the stream reports a pause (``Paused``: session 3 / stream 5), the
   catalog is asked for the pause request made through the recorder for this product and
   instance (``recorder rtms pause``) within ``[pause] match_window_s`` before it; a match is
   marked in the catalog and the ``Paused`` handed to the capture names its actor, so the pause
   span carries it into the timeline, the records, the manifest and the catalog's ``pauses``
   row. No match (a pause by the host, agent or consumer in Zoom itself) leaves the actor as
   RTMS gave it: none (``show`` says "by unknown").
2. **Bounded wait.** The lookup is awaited on the capture path, where a paused stream sends no
   audio; waiting for a catalog slot is bounded by ``[pause] lookup_timeout_s`` (a catalog
   statement already running finishes first). A lookup that fails or times out leaves the
   pause unattributed and its request unmatched, which rule 4 flags: never silently fine.
3. **Too long.** A pause longer than ``[pause] max_s`` (measured on this host's clock from the
   pause to the resume, or to the end of the stream if it never resumed) is flagged as the
   lifecycle event ``recorder.pause_too_long``.
4. **Unconfirmed.** When the engagement ends, every pause request for its instance made since
   the stream started that no pause matched, and that Zoom did not refuse, is flagged as
   ``recorder.pause_unconfirmed``: a pause was asked for and the recording cannot show it.

Flags are lifecycle events (``recorder show`` lists them, ``kind`` = ``pause``); they are
written when the engagement ends, never on the capture path, and logged at warning level when
they are found.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any, Final

import trio

from recorder.catalog.aio import AsyncCatalog
from recorder.catalog.base import NewLifecycleEvent
from recorder.config import PauseConfig
from recorder.errors import RecorderError
from recorder.rtms.events import CaptureEvent, Paused, Resumed, StreamEnded
from recorder.service.status import EngagementSpec, EngagementStatus

logger = logging.getLogger(__name__)

PAUSE_TOO_LONG: Final = "recorder.pause_too_long"
PAUSE_UNCONFIRMED: Final = "recorder.pause_unconfirmed"
#: ``lifecycle_events.kind`` of both flags.
PAUSE_KIND: Final = "pause"


class PauseEvidence:
    """One engagement's pause attribution and flags (see the module rules)."""

    def __init__(
        self,
        catalog: AsyncCatalog,
        spec: EngagementSpec,
        status: EngagementStatus,
        config: PauseConfig,
        *,
        now_ms: Callable[[], int],
        log: logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        self._catalog = catalog
        self._spec = spec
        self._status = status
        self._config = config
        self._now_ms = now_ms
        self._log = log or logging.LoggerAdapter(logger, {})
        self._paused_wall_ms: int | None = None
        self._paused_actor: str | None = None
        #: Flags found while recording, written by ``finish``.
        self._flags: list[NewLifecycleEvent] = []
        #: Pauses this engagement saw, and how many were attributed to a request.
        self.pauses_seen = 0
        self.pauses_attributed = 0

    async def on_event(self, event: CaptureEvent) -> CaptureEvent | None:
        """Called before the capture handles ``event``; returns a replacement ``Paused``."""
        if isinstance(event, Paused):
            return await self._paused(event)
        if isinstance(event, Resumed):
            self._ended_pause(event.wall_ms, resumed=True)
        elif isinstance(event, StreamEnded):
            self._ended_pause(event.wall_ms, resumed=False)
        return None

    async def _paused(self, event: Paused) -> Paused | None:
        self.pauses_seen += 1
        self._paused_wall_ms = event.wall_ms
        self._paused_actor = event.actor
        recording_id = self._status.recording_id
        if event.actor is not None or recording_id is None:
            return None
        row = None
        with trio.move_on_after(self._config.lookup_timeout_s):
            try:
                row = await self._catalog.match_pause_request(
                    product=self._spec.product.value,
                    instance_ids=[self._spec.instance_id],
                    recording_id=recording_id,
                    paused_ms=event.wall_ms,
                    window_ms=round(self._config.match_window_s * 1000),
                )
            except RecorderError as exc:
                self._log.warning("pause not attributed: catalog lookup failed: %s", exc)
        if row is None:
            self._log.info("pause seen with no request through the recorder")
            return None
        self.pauses_attributed += 1
        self._paused_actor = row.actor
        self._log.info("pause attributed to request %d by %s", row.request_id, row.actor)
        return dataclasses.replace(event, actor=row.actor)

    def _ended_pause(self, wall_ms: int, *, resumed: bool) -> None:
        started = self._paused_wall_ms
        if started is None:
            return
        self._paused_wall_ms = None
        seconds = (wall_ms - started) / 1000
        if seconds <= self._config.max_s:
            return
        ending = "resumed" if resumed else "the stream ended while paused"
        actor = self._paused_actor or "unknown"
        reason = f"paused for {seconds:.1f} s (limit {self._config.max_s:g} s) by {actor}; {ending}"
        self._log.warning("pause too long: %s", reason)
        self._flags.append(
            self._flag(
                PAUSE_TOO_LONG,
                key=f"{self._spec.rtms_stream_id}:{started}",
                event_ts_ms=started,
                reason=reason,
                body={
                    "paused_ms": started,
                    "until_ms": wall_ms,
                    "seconds": seconds,
                    "actor": actor,
                },
            )
        )

    async def finish(self, *, timeout_s: float = 5.0) -> None:
        """Rule 4, then write every flag; shielded and bounded (the engagement is ending)."""
        with trio.CancelScope(shield=True), trio.move_on_after(timeout_s) as scope:
            try:
                await self._find_unconfirmed()
                for flag in self._flags:
                    await self._catalog.add_lifecycle_event(flag)
            except RecorderError as exc:
                self._log.error("pause flags not written: %s", exc)
                return
            self._flags.clear()
        if scope.cancelled_caught:
            self._log.error("pause flags not written: the catalog did not answer in time")

    async def _find_unconfirmed(self) -> None:
        window_ms = round(self._config.match_window_s * 1000)
        rows = await self._catalog.unconfirmed_pause_requests(
            product=self._spec.product.value,
            instance_ids=[self._spec.instance_id],
            since_ms=self._spec.event_ts_ms - window_ms,
            before_ms=self._now_ms() + 1,
        )
        for row in rows:
            reason = (
                f"pause requested by {row.actor} ({row.reason!r}), Zoom's answer: {row.outcome};"
                " no pause of the stream matched it"
            )
            self._log.warning("pause unconfirmed: request %d: %s", row.request_id, reason)
            self._flags.append(
                self._flag(
                    PAUSE_UNCONFIRMED,
                    key=str(row.request_id),
                    event_ts_ms=row.requested_ms,
                    reason=reason,
                    body={
                        "request_id": row.request_id,
                        "actor": row.actor,
                        "reason": row.reason,
                        "requested_ms": row.requested_ms,
                        "outcome": row.outcome,
                    },
                )
            )

    def _flag(
        self, event: str, *, key: str, event_ts_ms: int, reason: str, body: dict[str, Any]
    ) -> NewLifecycleEvent:
        spec = self._spec
        ids = {spec.product.id_key: spec.instance_id, "rtms_stream_id": spec.rtms_stream_id}
        document = {"event": event, "payload": {**ids, **body}}
        return NewLifecycleEvent(
            dedup_key=f"{event}:{key}",
            event=event,
            kind=PAUSE_KIND,
            failed=False,
            product=spec.product,
            event_ts_ms=event_ts_ms,
            received_ms=self._now_ms(),
            rtms_stream_id=spec.rtms_stream_id,
            instance_id=spec.instance_id,
            ids=ids,
            reason=reason,
            body=json.dumps(document, separators=(",", ":"), sort_keys=True),
        )
