"""A hostile RTMS server through the whole capture path: the simulator's faults (a refused
transcript socket, status 45 before success, an unknown field in every media frame, RTMS V2
binary frames between the audio) and still a bit-exact recording, with the refusal on record."""

from __future__ import annotations

import json

import numpy as np

from recorder.rtms.events import AudioCodec
from recorder.simulator.faults import Faults, HandshakeRefusal
from recorder.simulator.profiles import Status
from tests.capture.test_end_to_end import meeting, record


async def test_a_hostile_server_still_yields_a_bit_exact_recording() -> None:
    faults = Faults(
        refusals=(
            HandshakeRefusal("transcript", Status.TRANSCRIPT_NOT_SUPPORTED, times=0),
            HandshakeRefusal("audio", Status.INTERNAL_EXCEPTION, times=1),
        ),
        unknown_media_fields=True,
        v2_frame_every=7,
    )
    rec = await record(meeting(3.0, faults=faults), AudioCodec.L16, 16000)
    recorded = rec.audio("mixed")[:, 0]
    assert len(recorded) == 3 * 16_000
    assert np.array_equal(recorded, rec.source("mixed", 3.0))
    lines = [
        json.loads(line)
        for sink in rec.sinks.sinks
        if sink.identity.track == "records"
        for line in sink.plaintext.decode().splitlines()
        if line.strip()
    ]
    [dropped] = [r for r in lines if r.get("type") == "media_socket_dropped"]
    assert dropped["media"] == ["transcript"]
    assert dropped["status_code"] == 12
    assert rec.engagement.stats.garbage_sent > 0
    assert rec.manifest.outcome == "ended"
