"""The simulator's keep-alive timer after its own process was stalled.

The simulator and the client under test share one process (and one trio loop) in most tests; a
loaded host that starves the process for a few keep-alive intervals (0.5 s each at 20x speed)
used to make the timer fire its missed ticks back to back, each counting the request sent a
moment before as unanswered: the healthy client's signaling socket was cut (``test_speaker_churn``
under load). Only requests the client had time to answer may count as missed.
"""

from __future__ import annotations

import trio
import trio.testing

from recorder.simulator import Product, Scenario, SimulatorConfig, open_simulator

from .rawclient import Received, read_all, signaling


async def test_a_stall_of_the_simulator_itself_is_not_a_client_missing_keepalives(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scenario = Scenario(product=Product.MEETING, duration_s=600)
    with trio.fail_after(1000):
        async with open_simulator(SimulatorConfig(encode_in_thread=False)) as sim:
            eng = await sim.start(scenario)
            interval = eng.scaled(eng.profile.keepalive_interval_s)
            async with signaling(eng.target) as (sig, _resp):
                got = Received()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read_all, sig, got)
                    await eng.wait_for(lambda s: s.keepalives_answered >= 2)
                    sent = eng.stats.keepalives_sent
                    # The whole process stalls for 4.5 intervals: no task runs meanwhile.
                    autojump_clock.jump(4.5 * interval)
                    await trio.sleep(3 * interval)
                    assert eng.stats.keepalives_missed == 0
                    assert eng.stats.keepalive_sends_stalled == 0
                    assert eng.stats.keepalives_sent >= sent + 3
                    assert eng.stats.keepalives_answered == eng.stats.keepalives_sent
                    nursery.cancel_scope.cancel()
                await eng.stop(1)
