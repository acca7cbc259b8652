"""Workers of one host wake each other (rule 6 of ``recorder.service.workers``): a stream whose
webhook reached the worker that leaves it to a sibling is claimed at once, not at the sibling's
next poll. The real ``recorder serve --workers 2`` tree on SQLite, the simulator over real
WebSockets, signed webhooks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import trio

from recorder.catalog.aio import open_configured_async_catalog
from recorder.config import load_config
from recorder.service.workers import WAKE_SOCKET, worker_state_dir
from recorder.simulator.simulator import SimulatorConfig, open_simulator

from .helpers_fleet import (
    FleetSecrets,
    free_port,
    meeting,
    poll,
    serve_config_text,
    subprocess_env,
    wall_ms,
)
from .test_workers import LABEL, WorkersProcess, worker_identity

pytestmark = [pytest.mark.slow]

#: Which worker a webhook reaches is the kernel's choice: without wake-ups all six would have
#: to reach the worker the split names (1 in 64) for the test to pass.
STREAMS = 6
#: The poll is the fallback only: far longer than the test may take, so only a wake-up can
#: hand a stream to the worker the fair share gives it.
CLAIM_INTERVAL_S = 60.0


@pytest.mark.timeout(150)
async def test_a_stream_left_to_a_sibling_is_claimed_at_once(tmp_path: Path) -> None:
    secrets_ = FleetSecrets()
    state_dir = tmp_path / "state"
    port = free_port()
    config_path = tmp_path / "serve.toml"
    config_path.write_text(
        serve_config_text(
            state_dir=state_dir,
            port=port,
            key_dir=tmp_path / "keys",
            store_dir=tmp_path / "store",
            # Worker rows live as long as the lease: both stay in the split for the whole test
            # though neither polls.
            lease_ttl_s=40.0,
        )
        + f"[workers]\nmax_engagements = 20\nclaim_interval_s = {CLAIM_INTERVAL_S}\n"
        "claim_grace_s = 600.0\n"
    )
    config = load_config(config_path, {})
    parent = WorkersProcess(
        "workers", config_path, port, subprocess_env(secrets_, owner=LABEL), tmp_path / "w.log"
    )
    sim_config = SimulatorConfig(webhook_url=parent.webhook_url, secret_token=secrets_.secret_token)
    # Generous: a loaded host takes 20 s to start two workers, and the drain is bounded too.
    with trio.fail_after(120):
        async with parent.serving():
            catalog = await open_configured_async_catalog(config.catalog, now_ms=wall_ms())
            try:

                async def both_workers_live() -> list[str] | None:
                    live = [w.owner for w in await catalog.live_workers()]
                    return live if len(live) == 2 else None

                await poll(both_workers_live)

                async def listening() -> bool | None:
                    paths = [worker_state_dir(state_dir, i) / WAKE_SOCKET for i in (0, 1)]
                    return all(p.is_socket() for p in paths) or None

                await poll(listening)
                owners = {worker_identity(state_dir, i)[0] for i in (0, 1)}
                spread: Counter[str] = Counter()
                async with open_simulator(sim_config) as sim:
                    # One at a time: each webhook reaches one worker, and the even split gives
                    # every other stream to the worker it did not reach (half the time).
                    for n in range(STREAMS):
                        call = await sim.start(meeting(secrets_, name=f"call-{n}", seconds=30))
                        with trio.fail_after(CLAIM_INTERVAL_S / 4):
                            await call.connected.wait()
                        row = await catalog.get_stream(call.scenario.rtms_stream_id)
                        assert row is not None
                        assert row.lease_owner is not None
                        spread[row.lease_owner] += 1
                    assert set(spread) == owners, spread
                    assert sorted(spread.values()) == [STREAMS // 2, STREAMS // 2], spread
            finally:
                await catalog.aclose()
