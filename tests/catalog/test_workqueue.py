"""The fleet work queue on both engines: fair, capacity-bounded, skip-locked claims that are
leases (invariant 3), and a dead worker's streams taken by the living once its lease lapses."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from recorder.catalog import AsyncCatalog, Product, SqlCatalog, StreamEvent, StreamState
from recorder.catalog._workqueue import WorkClaim, WorkerLoad, fair_share
from recorder.errors import CatalogError, LeaseLost
from tests.catalog.support import T0, CatalogTarget

TTL_MS = 10_000
#: Long enough that no stream of these tests is overdue unless the test says so.
NO_GRACE_YET_MS = 60_000


def started(stream_id: str, *, urls: tuple[str, ...] = ("wss://rtms.zoom.us/s",)) -> StreamEvent:
    return StreamEvent(
        rtms_stream_id=stream_id,
        product=Product.MEETING,
        instance_id=f"m-{stream_id}",
        state=StreamState.STARTED,
        event_ts_ms=T0,
        server_urls=urls,
    )


async def add_streams(catalog: AsyncCatalog, count: int, prefix: str = "s") -> list[str]:
    ids = [f"{prefix}-{n:03d}" for n in range(count)]
    for stream_id in ids:
        await catalog.upsert_stream(started(stream_id), now_ms=T0)
    return ids


async def claim(
    catalog: AsyncCatalog,
    owner: str,
    *,
    at: int,
    capacity: int = 100,
    active: int = 0,
    grace_ms: int = NO_GRACE_YET_MS,
    exclude: tuple[str, ...] = (),
) -> WorkClaim:
    def run() -> WorkClaim:
        return catalog.sync.claim_work(
            owner, capacity, active, TTL_MS, grace_ms=grace_ms, exclude=exclude, now_ms=at
        )

    return await trio.to_thread.run_sync(run)


def ids_of(result: WorkClaim) -> set[str]:
    return {c.lease.rtms_stream_id for c in result.claimed}


async def test_two_workers_split_the_waiting_streams_evenly_and_each_once(
    catalog: AsyncCatalog,
) -> None:
    with trio.fail_after(30):
        ids = await add_streams(catalog, 10)
        for owner in ("w-a", "w-b"):
            catalog.sync.heartbeat_worker(owner, 100, TTL_MS, now_ms=T0)
        a = await claim(catalog, "w-a", at=T0 + 1)
        b = await claim(catalog, "w-b", at=T0 + 2)
        again = await claim(catalog, "w-a", at=T0 + 3)
    assert len(a.claimed) == len(b.claimed) == 5
    assert ids_of(a) | ids_of(b) == set(ids)
    assert not ids_of(a) & ids_of(b)
    assert not again.claimed
    assert again.waiting == 0
    assert a.waiting == 10
    assert b.waiting == 5
    for result, owner, at in ((a, "w-a", T0 + 1), (b, "w-b", T0 + 2)):
        for c in result.claimed:
            assert (c.lease.owner, c.lease.epoch, c.lease.expires_ms) == (owner, 1, at + TTL_MS)
            assert c.row.lease_owner == owner
            assert c.row.server_urls
    loads = {w.owner: w.active for w in catalog.sync.live_workers(now_ms=T0 + 4)}
    assert loads == {"w-a": 5, "w-b": 5}


async def test_a_worker_never_claims_past_its_spare_capacity(catalog: AsyncCatalog) -> None:
    with trio.fail_after(30):
        await add_streams(catalog, 10)
        first = await claim(catalog, "solo", at=T0 + 1, capacity=4, active=1)
        full = await claim(catalog, "solo", at=T0 + 2, capacity=4, active=4)
        second = await claim(catalog, "solo", at=T0 + 3, capacity=6, active=3)
    assert len(first.claimed) == 3
    assert not full.claimed
    assert full.waiting == 7
    # The catalog says it holds 3; its own count (3 running) leaves room for 3 more.
    assert len(second.claimed) == 3


async def test_a_worker_silent_for_the_grace_drops_out_of_the_split(
    catalog: AsyncCatalog,
) -> None:
    with trio.fail_after(30):
        ids = await add_streams(catalog, 6)
        catalog.sync.heartbeat_worker("w-silent", 100, TTL_MS, now_ms=T0)
        early = await claim(catalog, "w-a", at=T0 + 100, grace_ms=1_000)
        late = await claim(catalog, "w-a", at=T0 + 1_001, grace_ms=1_000)
    assert len(early.claimed) == 3, "the silent worker's half waits for it first"
    assert [w.owner for w in early.workers] == ["w-a", "w-silent"]
    # Its heartbeat is older than the grace (its row still lives, for the lease ttl).
    assert [w.owner for w in late.workers] == ["w-a"]
    assert ids_of(early) | ids_of(late) == set(ids)
    live = catalog.sync.live_workers(now_ms=T0 + 1_001)
    assert {w.owner for w in live} == {"w-a", "w-silent"}


async def test_a_dead_workers_streams_go_to_the_living_when_its_lease_lapses(
    catalog: AsyncCatalog,
) -> None:
    with trio.fail_after(30):
        ids = await add_streams(catalog, 4)
        dead = await claim(catalog, "w-dead", at=T0)
        assert ids_of(dead) == set(ids)
        before = await claim(catalog, "w-live", at=T0 + TTL_MS - 1, grace_ms=0)
        after = await claim(catalog, "w-live", at=T0 + TTL_MS, grace_ms=0)
        assert not before.claimed
        assert ids_of(after) == set(ids)
        assert {c.lease.epoch for c in after.claimed} == {2}
        # The dead worker's heartbeat lapsed with its leases: it no longer counts.
        assert [w.owner for w in after.workers] == ["w-live"]
        stale = dead.claimed[0].lease
        with pytest.raises(LeaseLost):
            await catalog.renew(stale, T0 + TTL_MS + 1)


async def test_only_live_streams_with_urls_are_claimed_and_exclusions_are_left(
    catalog: AsyncCatalog,
) -> None:
    with trio.fail_after(30):
        await add_streams(catalog, 3)
        await catalog.upsert_stream(started("no-urls", urls=()), now_ms=T0)
        await catalog.upsert_stream(
            StreamEvent(
                "gone", Product.MEETING, "m", StreamState.STOPPED, T0, ("wss://x.zoom.us",)
            ),
            now_ms=T0,
        )
        owned = await catalog.try_claim("held", "someone", TTL_MS, T0)
        assert owned is not None
        await catalog.upsert_stream(started("held"), now_ms=T0)
        result = await claim(catalog, "w", at=T0 + 1, exclude=("s-001",))
        assert ids_of(result) == {"s-000", "s-002"}
        assert await trio.to_thread.run_sync(catalog.sync.waiting_work, (), T0 + 1) == 1
        assert catalog.sync.retire_worker("w")
        assert not catalog.sync.retire_worker("w")


async def test_bad_claims_are_refused_by_name(catalog: AsyncCatalog) -> None:
    with pytest.raises(CatalogError, match="capacity 0"):
        await claim(catalog, "w", at=T0, capacity=0)
    with pytest.raises(CatalogError, match="owner"):
        await claim(catalog, "", at=T0)


async def test_concurrent_claimers_on_their_own_connections_never_share_a_stream(
    target: CatalogTarget, catalog: AsyncCatalog
) -> None:
    """Two processes' worth of connections claim at once, every stream overdue: on PostgreSQL
    SKIP LOCKED hands them disjoint rows, on SQLite BEGIN IMMEDIATE serialises them."""
    streams = 60
    with trio.fail_after(60):
        ids = await add_streams(catalog, streams, prefix="race")
    results: dict[str, list[str]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def racer(name: str) -> None:
        opened: SqlCatalog = target.open()
        try:
            barrier.wait()
            for round_no in range(20):
                got = opened.claim_work(
                    name, 100, 0, TTL_MS, grace_ms=0, max_batch=3, now_ms=T0 + 1 + round_no
                )
                results[name] += [c.lease.rtms_stream_id for c in got.claimed]
        except BaseException as exc:
            errors.append(exc)
        finally:
            opened.close()

    def race() -> None:
        threads = [threading.Thread(target=racer, args=(n,)) for n in results]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    with trio.fail_after(60):
        await trio.to_thread.run_sync(race)
    assert not errors, errors
    counts = Counter(results["a"] + results["b"])
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1


workers_st = st.lists(
    st.tuples(st.integers(0, 50), st.integers(1, 50)), min_size=1, max_size=5
).map(
    lambda pairs: [
        WorkerLoad(f"w{i}", capacity, min(active, capacity))
        for i, (active, capacity) in enumerate(pairs)
    ]
)


@given(workers=workers_st, waiting=st.integers(0, 300))
def test_fair_shares_add_up_stay_in_room_and_fill_evenly(
    workers: list[WorkerLoad], waiting: int
) -> None:
    shares = {w.owner: fair_share(w.owner, workers, waiting) for w in workers}
    room = {w.owner: w.capacity - w.active for w in workers}
    assert sum(shares.values()) == min(waiting, sum(room.values()))
    assert all(0 <= shares[o] <= room[o] for o in shares)
    fills = {w.owner: (w.active + shares[w.owner]) / w.capacity for w in workers}
    # Water-filling: a worker got its last stream only while it was no fuller than every worker
    # that still has room at the end.
    for j in workers:
        if shares[j.owner]:
            before_last = (j.active + shares[j.owner] - 1) / j.capacity
            for i in workers:
                if shares[i.owner] < room[i.owner]:
                    assert before_last <= fills[i.owner] + 1e-9, (j, i)
    assert fair_share("stranger", workers, waiting) == 0


async def test_an_owner_reads_what_other_workers_committed_about_its_streams(
    catalog: AsyncCatalog,
) -> None:
    with trio.fail_after(30):
        await add_streams(catalog, 2)
        result = await claim(catalog, "w-a", at=T0 + 1)
        assert len(result.claimed) == 2
        seen = await catalog.owned_streams_changed("w-a", 0)
        assert [r.rtms_stream_id for r in seen] == ["s-000", "s-001"]
        assert await catalog.owned_streams_changed("w-a", T0) == []
        # Another worker's ingress commits a failover (new URLs, newer event_ts) for s-001.
        await catalog.upsert_stream(
            StreamEvent(
                "s-001",
                Product.MEETING,
                "m-s-001",
                StreamState.STARTED,
                T0 + 5,
                ("wss://b.zoom.us",),
            ),
            now_ms=T0 + 5,
        )
        [changed] = await catalog.owned_streams_changed("w-a", T0)
        assert changed.server_urls == ("wss://b.zoom.us",)
        assert changed.server_urls_ts_ms == T0 + 5
        assert await catalog.owned_streams_changed("w-b", 0) == []
