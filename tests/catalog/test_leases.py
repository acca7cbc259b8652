"""Invariant 3 on both engines: one owner per rtms_stream_id, across connections and processes."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import pytest
import trio

from recorder.catalog import (
    AsyncCatalog,
    Lease,
    NewRecordFile,
    NewSegment,
    Product,
    RecordingStart,
    RecordingStatus,
    SqlCatalog,
    StreamEvent,
    StreamState,
)
from recorder.errors import LeaseLost
from tests.catalog.support import T0, CatalogTarget

TTL_MS = 15_000


async def test_claim_renew_release_and_takeover(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        first = await catalog.try_claim("s-1", "host-a:1", TTL_MS, T0)
        assert first == Lease("s-1", "host-a:1", 1, TTL_MS, T0 + TTL_MS)
        assert await catalog.try_claim("s-1", "host-b:1", TTL_MS, T0 + TTL_MS - 1) is None

        renewed = await catalog.renew(first, T0 + 10_000)
        assert (renewed.epoch, renewed.expires_ms) == (1, T0 + 10_000 + TTL_MS)
        assert await catalog.try_claim("s-1", "host-b:1", TTL_MS, T0 + TTL_MS) is None

        # host-a stops renewing; once the lease runs out, host-b takes over with a higher epoch.
        takeover_at = renewed.expires_ms
        second = await catalog.try_claim("s-1", "host-b:1", TTL_MS, takeover_at)
        assert second is not None
        assert second.epoch == 2
        with pytest.raises(LeaseLost):
            await catalog.renew(renewed, takeover_at + 1)
        assert not await catalog.release(renewed), "a stale lease cannot release the new owner"
        stream = await catalog.get_stream("s-1")
        assert stream is not None
        assert (stream.lease_owner, stream.lease_epoch) == ("host-b:1", 2)

        assert await catalog.release(second)
        assert not await catalog.release(second)
        third = await catalog.try_claim("s-1", "host-a:1", TTL_MS, takeover_at + 2)
        assert third is not None
        assert third.epoch == 3, "the epoch never goes back, even after a release"
        with pytest.raises(LeaseLost):
            await catalog.renew(second, takeover_at + 3)


async def test_an_expired_lease_nobody_took_can_still_be_renewed(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        lease = await catalog.try_claim("s-1", "a", TTL_MS, T0)
        assert lease is not None
        later = await catalog.renew(lease, T0 + 3 * TTL_MS)
        assert (later.epoch, later.expires_ms) == (1, T0 + 4 * TTL_MS)


async def test_the_lease_row_keeps_the_last_checkpoint_for_the_next_owner(
    catalog: AsyncCatalog,
) -> None:
    """Defect 9: a takeover's gap starts at the dead owner's last durable checkpoint, which
    each renew stores in the lease row and the next claim reads."""
    with trio.fail_after(20):
        first = await catalog.try_claim("s-1", "a", TTL_MS, T0)
        assert first is not None
        assert first.previous_checkpoint_ms is None, "nobody recorded before"
        first = await catalog.renew(first, T0 + 1_000, checkpoint_ms=5_000)
        first = await catalog.renew(first, T0 + 2_000, checkpoint_ms=6_000)
        # A renew without a checkpoint (none taken yet, or none new) keeps the stored one.
        first = await catalog.renew(first, T0 + 3_000)
        stream = await catalog.get_stream("s-1")
        assert stream is not None
        assert stream.lease_checkpoint_ms == 6_000
        # The owner dies; the next owner's claim hands it the dead owner's checkpoint.
        second = await catalog.try_claim("s-1", "b", TTL_MS, first.expires_ms)
        assert second is not None
        assert (second.epoch, second.previous_checkpoint_ms) == (2, 6_000)
        renewed = await catalog.renew(second, first.expires_ms + 1, checkpoint_ms=9_000)
        assert renewed.previous_checkpoint_ms == 6_000, "a renew never changes the claim's view"
        # The dead owner's late renew is refused and stores nothing.
        with pytest.raises(LeaseLost):
            await catalog.renew(first, first.expires_ms + 2, checkpoint_ms=7_000)
        stream = await catalog.get_stream("s-1")
        assert stream is not None
        assert stream.lease_checkpoint_ms == 9_000
        # Renewing many leases at once keeps each stored checkpoint.
        result = await catalog.renew_many([renewed], first.expires_ms + 3)
        assert result.renewed
        assert not result.lost
        stream = await catalog.get_stream("s-1")
        assert stream is not None
        assert stream.lease_checkpoint_ms == 9_000


async def test_one_owner_renews_all_its_leases_in_one_call(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        mine = [await catalog.try_claim(f"s-{n}", "me", TTL_MS, T0) for n in range(5)]
        leases = [lease for lease in mine if lease is not None]
        assert len(leases) == 5
        # s-3 lapses and is taken over before the batch renew comes round.
        taken = await catalog.try_claim("s-3", "them", TTL_MS, T0 + TTL_MS)
        assert taken is not None
        result = await catalog.renew_many(leases, T0 + TTL_MS + 1)
        assert result.lost == (leases[3],)
        assert [lease.rtms_stream_id for lease in result.renewed] == ["s-0", "s-1", "s-2", "s-4"]
        assert all(lease.expires_ms == T0 + 2 * TTL_MS + 1 for lease in result.renewed)
        stream = await catalog.get_stream("s-3")
        assert stream is not None
        assert stream.lease_owner == "them"
        assert (await catalog.renew_many([], T0)).renewed == ()


async def test_reclaiming_by_the_same_owner_starts_a_new_epoch(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        old = await catalog.try_claim("s-1", "a", TTL_MS, T0)
        new = await catalog.try_claim("s-1", "a", TTL_MS, T0 + 1)
        assert old is not None
        assert new is not None
        assert new.epoch == old.epoch + 1
        with pytest.raises(LeaseLost):
            await catalog.renew(old, T0 + 2)


async def test_rejoin_queries_after_a_restart(catalog: AsyncCatalog) -> None:
    def started(sid: str, state: StreamState = StreamState.STARTED) -> StreamEvent:
        return StreamEvent(sid, Product.MEETING, f"m-{sid}", state, T0, ("wss://x",))

    with trio.fail_after(20):
        for sid in ("live-mine", "live-theirs", "live-free", "stopped-mine"):
            await catalog.upsert_stream(started(sid), now_ms=T0)
        await catalog.upsert_stream(started("interrupted", StreamState.INTERRUPTED), now_ms=T0)
        await catalog.upsert_stream(
            StreamEvent("stopped-mine", Product.MEETING, "m", StreamState.STOPPED, T0 + 1),
            now_ms=T0,
        )
        # Claimed before any webhook named it: no URLs, nothing to rejoin.
        assert await catalog.try_claim("claimed-only", "ghost", 1, T0)
        assert await catalog.try_claim("live-mine", "me", TTL_MS, T0)
        assert await catalog.try_claim("stopped-mine", "me", TTL_MS, T0)
        assert await catalog.try_claim("live-theirs", "them", 3 * TTL_MS, T0)

        mine = await catalog.live_streams_owned_by("me")
        assert [s.rtms_stream_id for s in mine] == ["live-mine"]
        assert mine[0].server_urls == ("wss://x",)

        # While leases are fresh, only never-claimed live streams are up for grabs.
        free_now = await catalog.expired_streams_to_rejoin(T0 + 1)
        assert sorted(s.rtms_stream_id for s in free_now) == ["interrupted", "live-free"]
        # After "me" died (no renewals), its live stream becomes claimable too; "them" renews.
        after_ttl = await catalog.expired_streams_to_rejoin(T0 + TTL_MS)
        assert sorted(s.rtms_stream_id for s in after_ttl) == [
            "interrupted",
            "live-free",
            "live-mine",
        ]


def _race(
    target: CatalogTarget, rounds: int, body: Callable[[SqlCatalog, int, str], Lease | None]
) -> tuple[list[Lease | None], list[Lease | None]]:
    """Run ``body`` in two threads with their own connections, released together each round."""
    barrier = threading.Barrier(2, timeout=20)
    results: dict[str, list[Lease | None]] = {"a": [], "b": []}
    catalogs = {name: target.open() for name in results}

    def racer(name: str) -> None:
        for round_no in range(rounds):
            barrier.wait()
            results[name].append(body(catalogs[name], round_no, name))

    threads = [threading.Thread(target=racer, args=(name,), daemon=True) for name in results]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
            assert not thread.is_alive(), "racer stuck"
    finally:
        for opened in catalogs.values():
            opened.close()
    assert len(results["a"]) == len(results["b"]) == rounds, "a racer failed"
    return results["a"], results["b"]


async def test_two_connections_racing_for_new_streams_get_one_owner_each(
    target: CatalogTarget,
) -> None:
    rounds = 40

    def claim(catalog: SqlCatalog, round_no: int, name: str) -> Lease | None:
        return catalog.try_claim(f"race-{round_no}", name, TTL_MS, T0)

    with trio.fail_after(90):
        a, b = await trio.to_thread.run_sync(_race, target, rounds, claim)
    for round_no, (left, right) in enumerate(zip(a, b, strict=True)):
        winners = [lease for lease in (left, right) if lease is not None]
        assert len(winners) == 1, f"round {round_no}: {left=} {right=}"
        assert winners[0].epoch == 1


async def test_two_connections_racing_to_take_over_expired_leases(
    target: CatalogTarget, catalog: AsyncCatalog
) -> None:
    rounds = 40
    with trio.fail_after(90):
        dead = [await catalog.try_claim(f"dead-{n}", "crashed", TTL_MS, T0) for n in range(rounds)]
        takeover_at = T0 + TTL_MS

        def take_over(catalog: SqlCatalog, round_no: int, name: str) -> Lease | None:
            return catalog.try_claim(f"dead-{round_no}", name, TTL_MS, takeover_at)

        a, b = await trio.to_thread.run_sync(_race, target, rounds, take_over)
        for round_no, (left, right) in enumerate(zip(a, b, strict=True)):
            winners = [lease for lease in (left, right) if lease is not None]
            assert len(winners) == 1, f"round {round_no}: {left=} {right=}"
            assert winners[0].epoch == 2
            stale = dead[round_no]
            assert stale is not None
            with pytest.raises(LeaseLost):
                await catalog.renew(stale, takeover_at + 1)
            stream = await catalog.get_stream(f"dead-{round_no}")
            assert stream is not None
            assert (stream.lease_owner, stream.lease_epoch) == (winners[0].owner, 2)


async def test_renew_races_takeover_and_exactly_one_side_holds_the_stream(
    target: CatalogTarget, catalog: AsyncCatalog
) -> None:
    """The old owner renews late, just as the standby claims: never both, never neither."""
    rounds = 40
    with trio.fail_after(90):
        held = [await catalog.try_claim(f"late-{n}", "a", TTL_MS, T0) for n in range(rounds)]
        at = T0 + TTL_MS

        def late_renew_or_claim(catalog: SqlCatalog, round_no: int, name: str) -> Lease | None:
            if name == "a":
                lease = held[round_no]
                assert lease is not None
                try:
                    return catalog.renew(lease, at)
                except LeaseLost:
                    return None
            return catalog.try_claim(f"late-{round_no}", "b", TTL_MS, at)

        a, b = await trio.to_thread.run_sync(_race, target, rounds, late_renew_or_claim)
        for round_no, (renewed, claimed) in enumerate(zip(a, b, strict=True)):
            # A renew that lands first pushes the expiry out, so the claim then fails; a claim
            # that lands first bumps the epoch, so the renew then fails. Never both, never none.
            assert (renewed is None) != (claimed is None), f"{round_no}: {renewed=} {claimed=}"
            stream = await catalog.get_stream(f"late-{round_no}")
            assert stream is not None
            expected = ("b", 2) if claimed is not None else ("a", 1)
            assert (stream.lease_owner, stream.lease_epoch) == expected


async def test_fenced_writes_are_refused_once_the_stream_is_taken_over(
    catalog: AsyncCatalog,
) -> None:
    with trio.fail_after(20):
        old = await catalog.try_claim("s-f", "host-a", TTL_MS, T0)
        assert old is not None
        recording = await catalog.upsert_recording(
            RecordingStart("s-f", Product.MEETING, "m-f", T0), now_ms=T0
        )
        rid = recording.recording_id
        segment = NewSegment(
            recording_id=rid,
            track="mixed",
            segment_index=0,
            object_key="k/0",
            plaintext_sha256="a" * 64,
            plaintext_size=44,
            stored_size=100,
            start_ms=T0,
            end_ms=T0 + 20,
            start_sample=0,
            sample_count=320,
            sample_rate=16_000,
            codec="L16",
            key_id="local:k",
        )
        await catalog.add_segment(segment, T0 + 1, fence=old)
        await catalog.add_gap(
            rid, "mixed", start_ms=T0, end_ms=T0 + 5, cause="lost_packets", fence=old
        )

        new = await catalog.try_claim("s-f", "host-b", TTL_MS, T0 + TTL_MS)
        assert new is not None
        late = dataclasses.replace(segment, segment_index=1, object_key="k/1")
        with pytest.raises(LeaseLost, match="add_segment"):
            await catalog.add_segment(late, T0 + TTL_MS + 1, fence=old)
        with pytest.raises(LeaseLost, match="add_gap"):
            await catalog.add_gap(
                rid, "mixed", start_ms=T0 + 9, end_ms=T0 + 10, cause="x", fence=old
            )
        with pytest.raises(LeaseLost, match="add_pause"):
            await catalog.add_pause(rid, start_ms=T0 + 9, end_ms=None, actor=None, fence=old)
        with pytest.raises(LeaseLost, match="add_record_file"):
            await catalog.add_record_file(
                NewRecordFile(rid, "chat", 0, "k/c", "b" * 64, 1, 2, T0, T0 + 1, "local:k"),
                T0 + TTL_MS + 1,
                fence=old,
            )
        with pytest.raises(LeaseLost, match="end_recording"):
            await catalog.end_recording(
                rid,
                ended_ms=T0 + 99,
                reason="old owner",
                status=RecordingStatus.INCOMPLETE,
                fence=old,
            )

        detail = await catalog.show(rid)
        assert detail is not None
        assert [s.segment_index for s in detail.segments] == [0]
        assert [g.start_ms for g in detail.gaps] == [T0]
        assert (detail.pauses, detail.records) == ((), ())
        assert detail.recording.status is RecordingStatus.ACTIVE
        # The new owner carries on under its own lease.
        await catalog.add_segment(late, T0 + TTL_MS + 2, fence=new)
        ended = await catalog.end_recording(
            rid, ended_ms=T0 + 99, reason="done", status=RecordingStatus.COMPLETE, fence=new
        )
        assert ended.status is RecordingStatus.COMPLETE
