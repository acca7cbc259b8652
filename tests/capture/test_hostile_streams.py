"""Hostile streams beside a healthy one, over real sockets: the simulator breaks timestamps and
drops media before a failover; the client and capture pipelines of all of them share one trio
loop. Each must end, the healthy one bit-exact, each hostile one losing only its bad frames,
and every gap named with its true cause (DESIGN.md invariants 4, 5, 10)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import trio

from recorder.audio.manifest import ManifestEntry, SegmentManifestEntry
from recorder.capture.core import CaptureConfig
from recorder.capture.pipeline import run_capture
from recorder.rtms.client import (
    ClientConfig,
    RtmsStream,
    StreamTarget,
    audio_params,
    open_rtms_stream,
)
from recorder.rtms.events import AudioCodec, GapCause
from recorder.rtms.urls import split_server_urls
from recorder.rtms.webhook import Product as RtmsProduct
from recorder.rtms.webhook import WebhookKind, parse_webhook
from recorder.simulator import Action, Engagement, SimulatorConfig, Step, open_simulator
from recorder.simulator.scenario import Scenario
from recorder.sink import SealedSegment
from recorder.testing.memory_sink import MemorySinkFactory

from .test_end_to_end import CLIENT, SPEED, Recording, meeting

RATE = 16_000
CALL_S = 6.0
FRAME = RATE // 50


class Router:
    """The simulator's webhooks to the live streams' controls, as the ingress routes them: a new
    ``rtms_started`` for a live stream is a failover, ``rtms_interrupted`` redoes signaling."""

    def __init__(self) -> None:
        self.streams: dict[str, RtmsStream] = {}
        self.started_ts: dict[str, set[int | None]] = {}

    async def __call__(self, headers: Mapping[str, str], body: bytes) -> int:
        event = parse_webhook(body)
        stream = self.streams.get(event.rtms_stream_id or "")
        if event.kind is WebhookKind.STARTED:
            seen = self.started_ts.setdefault(event.rtms_stream_id or "", set())
            new, first = event.event_ts not in seen, not seen
            seen.add(event.event_ts)
            if stream is not None and new and not first:
                await stream.failover(event.server_urls)
        elif stream is not None and event.kind is WebhookKind.INTERRUPTED:
            stream.signaling_interrupted()
        elif stream is not None and event.kind is WebhookKind.STOPPED:
            stream.stopped(event.stop_reason)
        return 200


async def record_side_by_side(
    scenarios: dict[str, Scenario], slow_reconnect: frozenset[str] = frozenset()
) -> dict[str, Recording]:
    """Every scenario at once on one simulator, each through its own client and pipeline.

    ``slow_reconnect`` streams wait 2 s before reconnecting a dropped media socket, so that a
    failover finds it still down."""
    params = audio_params(AudioCodec.L16, RATE, 1)
    client_config = ClientConfig(audio_params=params, transcript=True, **CLIENT)  # type: ignore[arg-type]
    slow_config = replace(client_config, backoff_initial_s=2.0, backoff_max_s=2.0)
    results: dict[str, Recording] = {}
    router = Router()
    with trio.fail_after(40):
        async with open_simulator(SimulatorConfig(speed=SPEED, webhook_handler=router)) as sim:
            await sim.warm_audio(next(iter(scenarios.values())), [params])
            engagements = {name: await sim.start(s) for name, s in scenarios.items()}

            async def capture(name: str, engagement: Engagement) -> None:
                sinks = MemorySinkFactory()
                sealed: list[tuple[SealedSegment, ManifestEntry]] = []

                async def on_sealed(segment: SealedSegment, entry: ManifestEntry) -> None:
                    sealed.append((segment, entry))

                sim_target = engagement.target
                target = StreamTarget(
                    product=RtmsProduct(sim_target.product.value),
                    instance_id=sim_target.instance_id,
                    rtms_stream_id=sim_target.rtms_stream_id,
                    server_urls=split_server_urls(sim_target.server_urls),
                    client_id=sim_target.client_id,
                    client_secret=sim_target.client_secret,
                )
                config = slow_config if name in slow_reconnect else client_config
                async with open_rtms_stream(target, config) as stream:
                    router.streams[sim_target.rtms_stream_id] = stream
                    manifest = await run_capture(
                        stream.events,
                        sinks,
                        recording_id=sim_target.rtms_stream_id,
                        config=CaptureConfig(),
                        on_sealed=on_sealed,
                    )
                results[name] = Recording(manifest, sinks, sealed, engagement)

            async with trio.open_nursery() as nursery:
                for name, engagement in engagements.items():
                    nursery.start_soon(capture, name, engagement)
    return results


def gaps(rec: Recording) -> list[tuple[str | None, int, int]]:
    entries = [e for _, e in rec.sealed if isinstance(e, SegmentManifestEntry)]
    return [(g.cause, g.start_sample, g.end_sample) for e in entries for g in e.gaps]


def records(rec: Recording) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for sink in rec.sinks.sinks
        if sink.identity.track == "records"
        for line in sink.plaintext.splitlines()
    ]


async def test_hostile_timestamps_and_a_drop_before_a_failover_beside_a_healthy_stream() -> None:
    scenarios = {
        "healthy": meeting(CALL_S),
        "first_in_seconds": meeting(
            CALL_S, steps=(Step(0.0, Action.TIMESTAMP_FAULT, {"kind": "seconds"}),)
        ),
        "first_far_future": meeting(
            CALL_S, steps=(Step(0.0, Action.TIMESTAMP_FAULT, {"kind": "far_future"}),)
        ),
        "microsecond_outlier": meeting(
            CALL_S, steps=(Step(3.0, Action.TIMESTAMP_FAULT, {"kind": "microseconds"}),)
        ),
        "drop_then_failover": meeting(
            CALL_S,
            steps=(
                Step(2.0, Action.DROP_MEDIA, {"lose_s": 1.0}),
                Step(2.3, Action.FAILOVER),
            ),
        ),
    }
    recs = await record_side_by_side(scenarios, slow_reconnect=frozenset({"drop_then_failover"}))
    for name, rec in recs.items():
        assert rec.manifest.outcome == "ended", name
        assert rec.engagement.stats.handler_errors == 0, name

    healthy = recs["healthy"]
    source = healthy.source("mixed", CALL_S)
    assert np.array_equal(healthy.audio("mixed")[:, 0], source)
    assert gaps(healthy) == []

    # A first frame in seconds or an hour ahead: that frame alone is refused or dropped, the
    # track starts at the next one, and nothing else is lost or moved.
    for name in ("first_in_seconds", "first_far_future"):
        rec = recs[name]
        assert rec.engagement.stats.timestamp_faults_sent == 1, name
        recorded = rec.audio("mixed")[:, 0]
        assert np.array_equal(recorded, source[FRAME:]), name
        assert gaps(rec) == [], name
        [first] = [e for _, e in rec.sealed if isinstance(e, SegmentManifestEntry)][:1]
        assert first.start_ms == rec.engagement.scenario.t0_ms + 20, name
    counters = recs["first_in_seconds"].manifest.counters["mixed"]
    assert counters["bad_timestamp_packets"] == 1
    assert recs["first_far_future"].manifest.counters["mixed"]["outlier_samples"] == FRAME

    # A µs timestamp mid-stream: its 20 ms are silent and named after it, the rest is exact.
    outlier = recs["microsecond_outlier"]
    recorded = outlier.audio("mixed")[:, 0]
    assert len(recorded) == len(source)
    at = 3 * RATE
    assert gaps(outlier) == [(GapCause.BAD_TIMESTAMP.value, at, at + FRAME)]
    assert np.array_equal(recorded[:at], source[:at])
    assert np.array_equal(recorded[at + FRAME :], source[at + FRAME :])

    # A media drop that lost a second, then a failover: one gap, named after the drop that
    # began it; every Interrupted paired with its own Recovered; nothing later mislabelled.
    failover = recs["drop_then_failover"]
    assert failover.engagement.stats.failovers == 1
    recorded = failover.audio("mixed")[:, 0]
    assert len(recorded) == len(source)
    [(cause, start, end)] = gaps(failover)
    assert cause == GapCause.MEDIA_INTERRUPTED.value
    assert abs(start - 2 * RATE) <= FRAME
    assert abs(end - 3 * RATE) <= FRAME
    assert np.array_equal(recorded[:start], source[:start])
    assert np.array_equal(recorded[end:], source[end:])
    lines = records(failover)
    interrupted = [r for r in lines if r["type"] == "interrupted"]
    recovered = [r for r in lines if r["type"] == "recovered"]
    assert len(interrupted) == len(recovered)
    audio_cuts = [r["cause"] for r in interrupted if r["media"] != ["transcript"]]
    # The full interruption is called what the client knew when it began (the old server's
    # sockets may close before the rtms_started webhook arrives); its recovery, the true cause.
    assert audio_cuts[0] == "media_interrupted"
    assert audio_cuts[1:] in (["failover"], ["signaling_interrupted"])
    assert [r["cause"] for r in recovered][-1] == "failover"
    # Paired by id: each interruption recovers exactly once.
    assert sorted(r["interruption_id"] for r in interrupted) == sorted(
        r["interruption_id"] for r in recovered
    )
    assert len({r["interruption_id"] for r in interrupted}) == len(interrupted)
