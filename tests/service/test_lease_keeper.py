"""The lease keeper on trio's MockClock: renews, self-fences, acts only on a real failover.

The catalog is an in-memory ``LeaseCatalog`` (the seam) whose clock is the MockClock, so a
partition and the time it lasts are exact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import trio
import trio.testing

from recorder.catalog.base import Lease, StreamRow, StreamState
from recorder.errors import CatalogError, LeaseExpired, LeaseLost
from recorder.service.lease_keeper import LeaseKeeper, LeaseTimers

TTL_S = 45.0


class MemoryLeases:
    """One stream's row and lease, on the MockClock; ``reachable`` False is a partition."""

    def __init__(self) -> None:
        self.reachable = True
        self.epoch = 1
        self.renewals = 0
        self.row = StreamRow(
            rtms_stream_id="s-1",
            product=None,
            instance_id=None,
            state=StreamState.STARTED,
            server_urls=("wss://a",),
            lease_owner="me",
            lease_expires_ms=None,
            lease_epoch=1,
            first_seen_ms=0,
            last_event_ts_ms=1000,
            server_urls_ts_ms=1000,
        )

    def now_ms(self) -> int:
        return int(trio.current_time() * 1000)

    async def renew(
        self, lease: Lease, now_ms: int | None = None, *, checkpoint_ms: int | None = None
    ) -> Lease:
        await trio.lowlevel.checkpoint()
        if not self.reachable:
            raise CatalogError("renew: connection refused")
        if lease.epoch != self.epoch:
            raise LeaseLost("taken over")
        self.renewals += 1
        if checkpoint_ms is not None:
            self.row = dataclasses.replace(self.row, lease_checkpoint_ms=checkpoint_ms)
        return dataclasses.replace(lease, expires_ms=self.now_ms() + lease.ttl_ms)

    async def get_stream(self, rtms_stream_id: str) -> StreamRow | None:
        await trio.lowlevel.checkpoint()
        if not self.reachable:
            raise CatalogError("get_stream: connection refused")
        return self.row


def keeper_for(
    catalog: MemoryLeases,
    seen: list[StreamRow],
    checkpoint_ms: Callable[[], int | None] = lambda: None,
) -> LeaseKeeper:
    async def on_row(row: StreamRow) -> None:
        seen.append(row)

    lease = Lease("s-1", "me", 1, int(TTL_S * 1000), int(TTL_S * 1000))
    return LeaseKeeper(
        catalog, lease, LeaseTimers.for_ttl(TTL_S), on_row=on_row, checkpoint_ms=checkpoint_ms
    )


def test_default_timers_are_zooms_45_s_renewed_every_5_s() -> None:
    timers = LeaseTimers.for_ttl(TTL_S)
    assert (timers.ttl_s, timers.renew_s, timers.retry_s) == (45.0, 5.0, 1.0)
    assert timers.fence_after_s < timers.ttl_s
    # The worst case (an outage that starts just before a renew) still rides out 30 s.
    assert timers.fence_after_s - timers.renew_s > 30.0
    # A short lease (tests, small fleets) renews every third of it.
    assert LeaseTimers.for_ttl(3.0).renew_s == 1.0


async def test_a_partitioned_keeper_fences_itself_before_its_lease_can_expire(
    autojump_clock: trio.testing.MockClock,
) -> None:
    catalog = MemoryLeases()
    keeper = keeper_for(catalog, [])
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_partition_at, catalog, 100.0)
            with pytest.raises(LeaseExpired):
                await _unwrap(keeper.run)
            fenced_at = trio.current_time()
            nursery.cancel_scope.cancel()
    last_renew = keeper.renewed_at
    assert last_renew <= 100.0
    # Fenced before the lease (last successful renew + ttl) could have run out.
    assert fenced_at - last_renew < TTL_S
    assert fenced_at - last_renew == pytest.approx(LeaseTimers.for_ttl(TTL_S).fence_after_s)


async def test_a_brief_partition_does_not_fence(autojump_clock: trio.testing.MockClock) -> None:
    catalog = MemoryLeases()
    keeper = keeper_for(catalog, [])
    with trio.fail_after(600), trio.move_on_after(300):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_partition_at, catalog, 50.0, 20.0)
            await keeper.run()
    assert catalog.renewals >= 15


@pytest.mark.parametrize("outage_starts_at", [100.0, 104.99])
async def test_a_30_s_catalog_outage_never_fences_at_the_default_lease(
    autojump_clock: trio.testing.MockClock, outage_starts_at: float
) -> None:
    """Issue 9: a 30 s database restart mid-call must not stop any recording (renews every 5 s
    from 100 s on; 104.99 s is the worst case, just before a renew)."""
    catalog = MemoryLeases()
    keeper = keeper_for(catalog, [])
    with trio.fail_after(600), trio.move_on_after(200):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_partition_at, catalog, outage_starts_at, 30.0)
            await keeper.run()
    assert keeper.renewed_at > outage_starts_at + 30.0


async def test_takeover_raises_lease_lost(autojump_clock: trio.testing.MockClock) -> None:
    catalog = MemoryLeases()
    catalog.epoch = 2
    keeper = keeper_for(catalog, [])
    with trio.fail_after(600), pytest.raises(LeaseLost):
        await _unwrap(keeper.run)


async def test_each_renew_keeps_the_latest_checkpoint_in_the_row(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No checkpoint yet: the row keeps none; then each renew stores the newest one."""
    catalog = MemoryLeases()
    seen: list[StreamRow] = []
    durable: list[int] = []
    keeper = keeper_for(catalog, seen, checkpoint_ms=lambda: durable[-1] if durable else None)
    with trio.fail_after(600), trio.move_on_after(16):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keeper.run)
            await trio.sleep(6)
            durable.append(7_000)
            await trio.sleep(5)
            durable.append(9_000)
    # Renews at 5, 10 and 15 s.
    assert [row.lease_checkpoint_ms for row in seen] == [None, 7_000, 9_000]


async def test_each_renew_shows_the_row(autojump_clock: trio.testing.MockClock) -> None:
    catalog = MemoryLeases()
    seen: list[StreamRow] = []
    keeper = keeper_for(catalog, seen)
    with trio.fail_after(600), trio.move_on_after(31):
        await keeper.run()
    assert len(seen) == 6  # every 5 s


async def _partition_at(catalog: MemoryLeases, at_s: float, for_s: float | None = None) -> None:
    await trio.sleep_until(at_s)
    catalog.reachable = False
    if for_s is not None:
        await trio.sleep(for_s)
        catalog.reachable = True


async def _unwrap(fn: object) -> None:
    """Run ``fn`` and raise its one exception plainly (nurseries wrap it in a group)."""
    assert callable(fn)
    try:
        await fn()
    except BaseExceptionGroup as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        raise error from None
