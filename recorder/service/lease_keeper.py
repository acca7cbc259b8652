"""The lease keeper of one engagement: renew, self-fence, and watch the stream row.

Rules (invariant 3):

1. Lease times are the catalog's clock (``renew`` with no ``now_ms``), never this host's wall
   clock, so hosts whose clocks disagree still agree on when a lease ran out.
2. The keeper fences ITSELF: when the monotonic time since its last successful renew passes
   ``ttl - margin``, it cancels the engagement (``LeaseExpired``), before any other process can
   claim the stream (which needs the full ttl to pass on the catalog's clock). A recorder cut off
   from the catalog therefore never records past its lease, so two connections to one stream
   cannot overlap. ``margin`` covers the renew round trip and the cancel-to-close time.
3. Each renew stores the capture's last durable checkpoint in the lease row; the next owner's
   claim reads it, so its takeover gap starts where this owner's recording provably reached.
4. The row is watched for what other processes of the fleet learned from Zoom: a stopped stream
   ends the capture; a NEWER ``rtms_started`` with URLs (its own ``server_urls_ts_ms``, not the
   newest event of any kind: an ``rtms_interrupted`` is newer too) is a failover.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol

import trio

from recorder.catalog.base import Lease, StreamRow
from recorder.errors import LeaseExpired, LeaseLost, RecorderError

logger = logging.getLogger(__name__)

#: Zoom's own figure (rtms-protocol §16): a 45 s lease (Zoom renews it every 15 s; see below).
DEFAULT_LEASE_TTL_S: Final = 45.0
#: Self-fence this long before the lease could run out on the catalog's clock.
DEFAULT_FENCE_MARGIN_FRACTION: Final = 0.2
#: Renew at least this often. A catalog outage is ridden out when it ends before the fence:
#: ``fence_after - renew`` in the worst case (an outage starting just before a renew), so a
#: 45 s lease renewed every 5 s survives a 30 s database restart (31 s; every 15 s: 21 s).
MAX_RENEW_INTERVAL_S: Final = 5.0
#: After a failed renew, try again this soon: the fence counts from the last success, so a
#: catalog that is back must be used at once, not a whole renew interval later.
MAX_RETRY_INTERVAL_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class LeaseTimers:
    ttl_s: float
    renew_s: float
    #: Cancel when this long has passed since the last successful renew.
    fence_after_s: float
    #: Wait this long after a failed renew before the next attempt.
    retry_s: float

    @classmethod
    def for_ttl(cls, ttl_s: float) -> LeaseTimers:
        renew_s = min(ttl_s / 3, MAX_RENEW_INTERVAL_S)
        return cls(
            ttl_s=ttl_s,
            renew_s=renew_s,
            fence_after_s=ttl_s * (1 - DEFAULT_FENCE_MARGIN_FRACTION),
            retry_s=min(renew_s, MAX_RETRY_INTERVAL_S),
        )


OnRow = Callable[[StreamRow], Awaitable[None]]


class LeaseCatalog(Protocol):
    """What the keeper needs of the catalog (``AsyncCatalog`` is one)."""

    async def renew(
        self, lease: Lease, now_ms: int | None = None, *, checkpoint_ms: int | None = None
    ) -> Lease: ...

    async def get_stream(self, rtms_stream_id: str) -> StreamRow | None: ...


class LeaseKeeper:
    """Runs beside the capture; raises ``LeaseLost`` or ``LeaseExpired`` to end it."""

    def __init__(
        self,
        catalog: LeaseCatalog,
        lease: Lease,
        timers: LeaseTimers,
        *,
        on_row: OnRow,
        log: logging.LoggerAdapter[logging.Logger] | None = None,
        checkpoint_ms: Callable[[], int | None] = lambda: None,
    ) -> None:
        self._catalog = catalog
        self.lease = lease
        self._timers = timers
        self._on_row = on_row
        #: The capture's last durable checkpoint (RTMS ms), kept in the lease row with each
        #: renew: where a takeover's ``recorder_restart`` gap starts if this process dies.
        self._checkpoint_ms = checkpoint_ms
        self._log = log or logging.LoggerAdapter(logger, {})
        #: trio.current_time() of the claim or the last successful renew.
        self.renewed_at = trio.current_time()

    async def run(self) -> None:
        """Renew until cancelled; raise when the lease is lost or could not be kept."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._fence)
            await self._renew_loop()

    async def _fence(self) -> None:
        while True:
            deadline = self.renewed_at + self._timers.fence_after_s
            if trio.current_time() >= deadline:
                gap_s = trio.current_time() - self.renewed_at
                self._log.error(
                    "lease not renewed for %.1f s: fencing (ending this engagement) before "
                    "another recorder may take the stream",
                    gap_s,
                )
                raise LeaseExpired(
                    f"stream {self.lease.rtms_stream_id}: no successful lease renew for "
                    f"{gap_s:.1f} s (ttl {self._timers.ttl_s} s)"
                )
            await trio.sleep_until(deadline)

    async def _renew_loop(self) -> None:
        wait_s = self._timers.renew_s
        while True:
            await trio.sleep(wait_s)
            wait_s = self._timers.retry_s
            attempt_at = trio.current_time()
            try:
                self.lease = await self._catalog.renew(
                    self.lease, checkpoint_ms=self._checkpoint_ms()
                )
            except LeaseLost:
                self._log.error("lease lost: another recorder owns the stream now")
                raise
            except RecorderError as exc:
                # The catalog is unreachable: keep recording on the lease we hold until the
                # fence says stop; the renewal is retried next round.
                self._log.warning("lease renewal failed: %s", exc)
                continue
            # The lease now runs from when the database ran the renew, which was after we sent
            # it: timing the fence from the send is on the safe side.
            self.renewed_at = attempt_at
            wait_s = self._timers.renew_s
            try:
                row = await self._catalog.get_stream(self.lease.rtms_stream_id)
            except RecorderError as exc:
                self._log.warning("stream row not read: %s", exc)
                continue
            if row is not None:
                await self._on_row(row)
