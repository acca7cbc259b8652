"""``start_recording``: an engagement's recording row and its rule holds in one transaction."""

from __future__ import annotations

import trio

from recorder.catalog import AsyncCatalog, Product, RecordingStart
from tests.catalog.support import T0


def _start(stream_id: str, account: str, started_ms: int = T0) -> RecordingStart:
    return RecordingStart(
        rtms_stream_id=stream_id,
        product=Product.MEETING,
        instance_id=f"inst-{stream_id}",
        started_ms=started_ms,
        account_id=account,
    )


async def test_start_recording_places_the_holds_of_matching_rules(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        rule = await catalog.add_hold_rule(
            matter="probe",
            rule={"account": "acct-held"},
            placed_by="os:counsel",
            reason="investigation",
            now_ms=T0,
        )
        held, placed = await catalog.start_recording(_start("s-held", "acct-held"), T0 + 1)
        free, none = await catalog.start_recording(_start("s-free", "acct-other"), T0 + 1)

        assert [(h.matter, h.scope_value, h.placed_by) for h in placed] == [
            ("probe", held.recording_id, f"hold-rule:{rule.rule_id}")
        ]
        assert none == []
        assert await catalog.is_on_hold(held.recording_id)
        assert not await catalog.is_on_hold(free.recording_id)
        assert await catalog.recording_for_stream("s-held") == held


async def test_a_rejoin_keeps_the_recording_and_joins_no_rule_twice(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        await catalog.add_hold_rule(
            matter="probe",
            rule={"product": "meeting"},
            placed_by="os:counsel",
            reason="investigation",
            now_ms=T0,
        )
        first, placed = await catalog.start_recording(_start("s-1", "a", T0 + 5), T0 + 10)
        # The takeover after a crash: same stream, an earlier started_ms from a late webhook.
        again, placed_again = await catalog.start_recording(_start("s-1", "a", T0), T0 + 20)

        assert again.recording_id == first.recording_id
        assert again.started_ms == T0
        assert len(placed) == 1
        assert placed_again == []
        holds = [h for h in await catalog.holds() if h.scope_value == first.recording_id]
        assert len(holds) == 1
