"""Recovery rules of the engine against the scripted server: late interruptions, webhook URLs,
refusals of optional sockets and transient statuses, V2 answers."""

from __future__ import annotations

from typing import Any

import trio

from recorder.rtms.client import open_rtms_stream
from recorder.rtms.events import (
    AudioPacket,
    CaptureEvent,
    GapCause,
    MediaSocketDropped,
    Recovered,
    StreamEnded,
)
from tests.rtms.test_client import audio_frame, config, next_of, ready_media, target

NOW_MS = 1_800_000_000_000


def fixed_clock() -> float:
    return NOW_MS / 1000


async def test_a_late_rtms_interrupted_leaves_a_recovered_generation_alone(
    rtms_server: Any,
) -> None:
    with trio.fail_after(10):
        cfg = config(wall_clock=fixed_clock)
        async with open_rtms_stream(target(rtms_server), cfg) as stream:
            await ready_media(rtms_server)
            # A retry about a break before this connection existed: ignored.
            stream.signaling_interrupted(event_ts_ms=NOW_MS - 5_000)
            await rtms_server.signaling[0].send({"msg_type": 12, "timestamp": 1})
            await rtms_server.until(lambda: any(m["msg_type"] == 13 for m in _sent(rtms_server)))
            assert len(rtms_server.signaling) == 1
            assert stream.stats.reconnects == 0
            # One stamped at or after the connection began is acted upon.
            stream.signaling_interrupted(event_ts_ms=NOW_MS)
            recovered = await next_of(stream, Recovered)
            assert recovered.cause is GapCause.SIGNALING_INTERRUPTED
            assert len(rtms_server.signaling) == 2
            await stream.close(graceful=False)


def _sent(server: Any) -> list[dict[str, Any]]:
    return [m for peer in server.signaling for m in peer.received]


async def test_rtms_interrupted_with_server_urls_reconnects_there(
    rtms_server: Any, rtms_server_b: Any
) -> None:
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config()) as stream:
            await ready_media(rtms_server)
            stream.signaling_interrupted((rtms_server_b.url(),))
            await next_of(stream, Recovered)
            assert len(rtms_server_b.signaling) == 1
            assert len(rtms_server.signaling) == 1
            await stream.close(graceful=False)


async def test_a_refused_transcript_socket_never_stops_the_audio(rtms_server: Any) -> None:
    rtms_server.media_names = ("audio", "transcript")
    refused = {"transcript": (12, "media type transcript not support")}

    def refuse(peer: Any) -> tuple[int, str] | None:
        return refused.get(peer.kind)

    rtms_server.media_refusal = refuse
    seen: list[CaptureEvent] = []
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config(transcript=True)) as stream:
            dropped = await next_of(stream, MediaSocketDropped, seen)
            assert dropped.media == ("transcript",)
            assert dropped.status_code == 12
            [audio] = await ready_media(rtms_server)
            assert audio.kind == "audio"
            for i in range(200):
                await audio.send(audio_frame(1000 + 20 * i))
            for _ in range(200):
                await next_of(stream, AudioPacket, seen)
            # A later generation does not ask for the dropped socket again.
            stream.signaling_interrupted()
            await next_of(stream, Recovered, seen)
            assert len([p for p in rtms_server.media if p.kind == "transcript"]) == 1
            await stream.close(graceful=False)
            async for event in stream.events:
                seen.append(event)
    assert sum(isinstance(e, AudioPacket) for e in seen) == 200
    assert isinstance(seen[-1], StreamEnded)
    assert stream.stats.media_sockets_dropped == 1


async def test_transient_statuses_retry_then_succeed(rtms_server: Any) -> None:
    # 45 (table A), legacy 1 and 13 on a reconnect: transient, retried with backoff.
    rtms_server.signaling_rejections = [
        (45, "internal exception"),
        (1, "connection timeout"),
        (13, "session not found"),
    ]
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config()) as stream:
            [audio] = await ready_media(rtms_server)
            await audio.send(audio_frame(1000))
            packet = await next_of(stream, AudioPacket)
            assert packet.timestamp_ms == 1000
            assert len(rtms_server.signaling) == 4
            await stream.close(graceful=False)


async def test_a_repeating_status_ends_after_its_limit(rtms_server: Any) -> None:
    rtms_server.signaling_rejections = [(45, "internal exception")] * 10
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config(refusal_retry_limit=2)) as stream:
            end = await next_of(stream, StreamEnded)
    assert not end.normal
    assert end.reason_name == "HANDSHAKE_REJECTED_OTHER"
    assert len(rtms_server.signaling) == 3


async def test_a_binary_answer_is_retried_a_few_times_then_named(rtms_server: Any) -> None:
    # One Protobuf-looking frame instead of the answer may have been garbage: retried.
    rtms_server.signaling_junk = [b"\x08\x02\x12\x00"]
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config()) as stream:
            [audio] = await ready_media(rtms_server)
            await audio.send(audio_frame(1000))
            await next_of(stream, AudioPacket)
            assert len(rtms_server.signaling) == 2
            await stream.close(graceful=False)
    # A server that only ever answers in binary is V2: the stream ends by that name.
    rtms_server.signaling_junk = [b"\x08\x02\x12\x00"] * 10
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config(refusal_retry_limit=2)) as stream:
            end = await next_of(stream, StreamEnded)
    assert end.reason_name == "UNSUPPORTED_PROTOCOL_VERSION"
    assert len(rtms_server.signaling) == 2 + 3


async def test_a_v2_handshake_answer_ends_the_stream_by_name(rtms_server: Any) -> None:
    rtms_server.signaling_answer_extra = {"protocol_version": 2, "srt_passphrase": "x"}
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config()) as stream:
            end = await next_of(stream, StreamEnded)
    assert not end.normal
    assert end.reason_name == "UNSUPPORTED_PROTOCOL_VERSION"
    assert len(rtms_server.signaling) == 1
