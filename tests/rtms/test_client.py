"""The trio client over real loopback WebSockets against a scripted RTMS server."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from recorder.errors import UrlNotAllowed
from recorder.rtms.client import (
    ClientConfig,
    RtmsStream,
    StreamTarget,
    audio_params,
    open_rtms_stream,
)
from recorder.rtms.events import (
    AudioCodec,
    AudioPacket,
    CaptureEvent,
    ChatMessage,
    ContactCenterEvent,
    FirstPacketTimestamp,
    GapCause,
    Interrupted,
    PacketsDropped,
    ParticipantEvent,
    Paused,
    Recovered,
    Resumed,
    StreamEnded,
    TranscriptMessage,
)
from recorder.rtms.signature import Product
from recorder.rtms.urls import SocketLayout

CLIENT_ID = "test_client_id"
CLIENT_SECRET = "test_client_secret"
STREAM_ID = "609340fb2a7946909659956c8aa9250c"

FAST = dict(
    allow_insecure_loopback=True,
    backoff_initial_s=0.05,
    backoff_max_s=0.2,
    connect_timeout_s=5.0,
    handshake_timeout_s=5.0,
    close_timeout_s=1.0,
    media_trigger_guard_s=0.0,
)


def target(
    server: Any, product: Product = Product.MEETING, instance: str = "4444AAAiAAAAAiAiAiiAii=="
) -> StreamTarget:
    return StreamTarget(
        product=product,
        instance_id=instance,
        rtms_stream_id=STREAM_ID,
        server_urls=(server.url(),),
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )


def config(**overrides: Any) -> ClientConfig:
    return ClientConfig(**{**FAST, **overrides})


def audio_frame(timestamp: int, data: str = "AAAAAA==", **content: Any) -> dict[str, Any]:
    return {
        "msg_type": 14,
        "content": {"user_id": 0, "data": data, "timestamp": timestamp, **content},
    }


async def next_of(stream: RtmsStream, kind: type, seen: list[CaptureEvent] | None = None) -> Any:
    async for event in stream.events:
        if seen is not None:
            seen.append(event)
        if isinstance(event, kind):
            return event
    raise AssertionError(f"stream ended before {kind.__name__}")


async def ready_media(server: Any, count: int = 1) -> list[Any]:
    await server.until(lambda: len([p for p in server.live_media() if p.ready.is_set()]) >= count)
    return [p for p in server.live_media() if p.ready.is_set()]


async def test_meeting_happy_path_and_graceful_close(rtms_server: Any) -> None:
    with trio.fail_after(10):
        cfg = config(transcript=True, chat=True)
        async with open_rtms_stream(target(rtms_server), cfg) as stream:
            first = await next_of(stream, FirstPacketTimestamp)
            assert first.timestamp_ms == 1000
            media = await ready_media(rtms_server, 3)
            kinds = sorted(p.kind for p in media)
            assert kinds == ["audio", "chat", "transcript"]
            hello = rtms_server.signaling[0].received[0]
            assert hello["msg_type"] == 1
            assert hello["meeting_uuid"] == "4444AAAiAAAAAiAiAiiAii=="
            assert hello["buffer_data"] is True
            subscription = rtms_server.signaling[0].received[1]
            assert subscription["msg_type"] == 5
            assert {e["event_type"] for e in subscription["events"]}.isdisjoint({1, 7})
            assert [m["msg_type"] for m in rtms_server.signaling[0].received].count(7) == 3
            audio = next(p for p in media if p.kind == "audio")
            assert audio.received[0]["media_type"] == 1
            assert audio.received[0]["media_params"] == {
                "audio": {
                    "content_type": 2,
                    "sample_rate": 1,
                    "channel": 1,
                    "codec": 1,
                    "data_opt": 1,
                    "send_rate": 20,
                }
            }
            await audio.send({"msg_type": 12, "timestamp": 77, "sequence": 3})
            await audio.send(audio_frame(2000, length=4))
            packet = await next_of(stream, AudioPacket)
            assert (packet.track, packet.timestamp_ms, packet.payload) == (
                "mixed",
                2000,
                b"\0\0\0\0",
            )
            assert packet.format.sample_rate == 16000
            await rtms_server.until(
                lambda: {"msg_type": 13, "timestamp": 77, "sequence": 3} in audio.received
            )
            transcript_peer = next(p for p in media if p.kind == "transcript")
            await transcript_peer.send(
                {
                    "msg_type": 17,
                    "content": {
                        "user_id": 5,
                        "user_name": "Ann",
                        "timestamp": 2100,
                        "data": "hello",
                    },
                }
            )
            text = await next_of(stream, TranscriptMessage)
            assert (text.text, text.user_id) == ("hello", "5")
            chat_peer = next(p for p in media if p.kind == "chat")
            await chat_peer.send(
                {"msg_type": 18, "content": {"timestamp": 2200, "data": "Chat message"}}
            )
            assert (await next_of(stream, ChatMessage)).text == "Chat message"
            await rtms_server.signaling[0].send(
                {
                    "msg_type": 6,
                    "event": {
                        "event_type": 3,
                        "timestamp": 2300,
                        "participants": [{"user_id": 16778240, "user_name": "John"}],
                    },
                }
            )
            joined = await next_of(stream, ParticipantEvent)
            assert joined.participants[0].user_id == "16778240"
            await stream.close(graceful=True)
            ended = await next_of(stream, StreamEnded)
            assert ended.normal
            assert ended.reason == 20
            assert not ended.revoked
            assert any(m["msg_type"] == 21 for m in rtms_server.signaling[0].received)
            assert stream.stats.frames["audio"] == 1
            assert stream.stats.keepalives_answered == 1
        assert rtms_server.max_open_signaling == 1


CODECS = [
    (AudioCodec.L16, 8000, 1),
    (AudioCodec.L16, 16000, 1),
    (AudioCodec.L16, 32000, 2),
    (AudioCodec.L16, 48000, 2),
    (AudioCodec.G711, 8000, 1),
    (AudioCodec.G722, 16000, 1),
    (AudioCodec.OPUS, 48000, 1),
    (AudioCodec.OPUS, 48000, 2),
]


@pytest.mark.parametrize(("codec", "rate", "channels"), CODECS)
@pytest.mark.parametrize("layout", [SocketLayout.PER_TYPE, SocketLayout.ALL])
async def test_every_codec_and_layout(
    rtms_server: Any, codec: AudioCodec, rate: int, channels: int, layout: SocketLayout
) -> None:
    params = audio_params(codec, rate, channels, per_speaker=True)
    with trio.fail_after(10):
        async with open_rtms_stream(
            target(rtms_server), config(audio_params=params, layout=layout)
        ) as stream:
            [peer] = await ready_media(rtms_server)
            assert peer.kind == ("all" if layout is SocketLayout.ALL else "audio")
            assert peer.received[0]["media_type"] == (32 if layout is SocketLayout.ALL else 1)
            wire = peer.received[0]["media_params"]["audio"]
            assert wire["codec"] == int(codec)
            assert wire["channel"] == channels
            assert wire["data_opt"] == 2
            await peer.send(audio_frame(5000, data="AQID", user_id=16778240, user_name="John"))
            packet = await next_of(stream, AudioPacket)
            assert packet.track == "user-16778240"
            assert (packet.format.codec, packet.format.sample_rate, packet.format.channels) == (
                codec,
                rate,
                channels,
            )
            await stream.close(graceful=False)


@pytest.mark.parametrize(
    ("product", "key"),
    [
        (Product.MEETING, "meeting_uuid"),
        (Product.WEBINAR, "webinar_uuid"),
        (Product.SESSION, "session_id"),
        (Product.CONTACT_CENTER, "engagement_id"),
    ],
)
async def test_each_product_handshake(rtms_server: Any, product: Product, key: str) -> None:
    with trio.fail_after(10):
        cfg = config(transcript=True, layout=SocketLayout.ALL)
        async with open_rtms_stream(target(rtms_server, product, "Inst/+id=="), cfg) as stream:
            [peer] = await ready_media(rtms_server)
            assert rtms_server.signaling[0].received[0][key] == "Inst/+id=="
            assert peer.received[0][key] == "Inst/+id=="
            assert peer.received[0]["media_params"].keys() == {"audio", "transcript"}
            if product is Product.CONTACT_CENTER:
                await peer.send(audio_frame(1, channel_id="123abc"))
                assert (await next_of(stream, AudioPacket)).track == "channel-123abc"
                await rtms_server.signaling[0].send(
                    '{"msg_type":6,"event":{"event_type":8,"event_ts":5,"paticipant_info":{"channel_id":"123abc","participant_mode":"caller"}}}'
                )
                event = await next_of(stream, ContactCenterEvent)
                assert (event.name, event.channel_id) == ("CONSUMER_ANSWERED", "123abc")
            await stream.close(graceful=False)


async def test_contact_center_prefers_audio_url(rtms_server: Any) -> None:
    with trio.fail_after(10):
        async with open_rtms_stream(
            target(rtms_server, Product.CONTACT_CENTER), config(layout=SocketLayout.ALL)
        ) as stream:
            [peer] = await ready_media(rtms_server)
            assert peer.kind == "audio"
            await stream.close(graceful=False)


async def test_failover_to_new_urls(rtms_server: Any, rtms_server_b: Any) -> None:
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config()) as stream:
            await ready_media(rtms_server)
            await stream.failover((rtms_server_b.url(),))
            interrupted = await next_of(stream, Interrupted)
            assert interrupted.cause is GapCause.FAILOVER
            recovered = await next_of(stream, Recovered)
            assert recovered.cause is GapCause.FAILOVER
            assert recovered.interrupted_wall_ms == interrupted.wall_ms
            [peer] = await ready_media(rtms_server_b)
            assert not rtms_server.live_signaling()
            await peer.send(audio_frame(7))
            assert (await next_of(stream, AudioPacket)).timestamp_ms == 7
            await stream.close(graceful=False)
        assert rtms_server.max_open_signaling == 1
        assert rtms_server_b.max_open_signaling == 1
        assert stream.stats.max_open_signaling == 1


async def test_signaling_loss_and_rtms_interrupted_reconnect_once(rtms_server: Any) -> None:
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config()) as stream:
            await ready_media(rtms_server)
            # The server interrupts both sockets, then the webhook arrives (a double trigger).
            await rtms_server.signaling[0].drop()
            for peer in rtms_server.live_media():
                await peer.drop()
            interrupted = await next_of(stream, Interrupted)
            assert interrupted.cause is GapCause.SIGNALING_INTERRUPTED
            assert interrupted.media == ()
            stream.signaling_interrupted()
            recovered = await next_of(stream, Recovered)
            assert recovered.cause is GapCause.SIGNALING_INTERRUPTED
            assert recovered.interrupted_wall_ms == interrupted.wall_ms
            assert len(rtms_server.signaling) == 2
            # A webhook-only interruption on a healthy stream redoes both sockets.
            stream.signaling_interrupted()
            again = await next_of(stream, Recovered)
            assert again.cause is GapCause.SIGNALING_INTERRUPTED
            assert len(rtms_server.signaling) == 3
            await stream.close(graceful=False)
        assert rtms_server.max_open_signaling == 1


async def test_media_interruption_reconnects_only_media(rtms_server: Any) -> None:
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config()) as stream:
            [audio] = await ready_media(rtms_server)
            await rtms_server.signaling[0].send(
                {"msg_type": 6, "event": {"event_type": 7, "timestamp": 3}}
            )
            await rtms_server.signaling[0].send(
                {"msg_type": 8, "state": 2, "reason": 14, "timestamp": 3}
            )
            interrupted = await next_of(stream, Interrupted)
            assert interrupted.cause is GapCause.MEDIA_INTERRUPTED
            assert interrupted.media == ("audio",)
            recovered = await next_of(stream, Recovered)
            assert recovered.cause is GapCause.MEDIA_INTERRUPTED
            await rtms_server.until(lambda: audio.closed)
            [fresh] = await ready_media(rtms_server)
            assert fresh is not audio
            assert len(rtms_server.signaling) == 1
            assert len(rtms_server.media) == 2  # the double trigger did not reconnect twice
            await fresh.send(audio_frame(11))
            assert (await next_of(stream, AudioPacket)).timestamp_ms == 11
            await stream.close(graceful=False)


async def test_media_socket_loss_reconnects_media(rtms_server: Any) -> None:
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config()) as stream:
            [audio] = await ready_media(rtms_server)
            await audio.drop()
            assert (await next_of(stream, Interrupted)).media == ("audio",)
            assert (await next_of(stream, Recovered)).attempts == 1
            assert len(rtms_server.signaling) == 1
            await stream.close(graceful=False)


async def test_duplicate_signal_rejections_are_retried(rtms_server: Any) -> None:
    rtms_server.signaling_rejections = [
        (8, "duplicate signal request"),
        (17, "DUPLICATE_SIGNAL_REQUEST"),
    ]
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config()) as stream:
            recovered = await next_of(stream, Recovered)
            assert recovered.attempts == 2
            await ready_media(rtms_server)
            assert len(rtms_server.signaling) == 3
            await stream.close(graceful=False)
        assert rtms_server.max_open_signaling == 1


async def test_duplicate_signal_retry_limit(rtms_server: Any) -> None:
    rtms_server.signaling_rejections = [(8, "duplicate signal request")] * 10
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config(duplicate_retry_limit=3)) as stream:
            ended = await next_of(stream, StreamEnded)
            assert not ended.normal
            assert ended.reason_name == "DUPLICATE_SIGNAL_REQUEST"
        assert len(rtms_server.signaling) == 4


async def test_signature_error_never_reconnects(rtms_server: Any) -> None:
    bad = StreamTarget(Product.MEETING, "u", STREAM_ID, (rtms_server.url(),), CLIENT_ID, "wrong")
    with trio.fail_after(10):
        async with open_rtms_stream(bad, config()) as stream:
            ended = await next_of(stream, StreamEnded)
            assert not ended.normal
            assert "SIGNATURE" in ended.reason_name
            with pytest.raises(trio.EndOfChannel):
                await stream.events.receive()
        assert len(rtms_server.signaling) == 1


@pytest.mark.parametrize(
    ("reason", "normal", "revoked"),
    [(6, True, False), ("STOP_BC_STREAM_REVOKED", True, True), (12, False, False)],
)
async def test_stream_terminated_ends_without_reconnect(
    rtms_server: Any, reason: Any, normal: bool, revoked: bool
) -> None:
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config()) as stream:
            await ready_media(rtms_server)
            await rtms_server.signaling[0].send(
                {"msg_type": 8, "state": 4, "reason": reason, "timestamp": 9}
            )
            await rtms_server.signaling[0].drop()
            ended = await next_of(stream, StreamEnded)
            assert (ended.normal, ended.revoked) == (normal, revoked)
        assert len(rtms_server.signaling) == 1


async def test_stopped_webhook_and_pause_resume(rtms_server: Any) -> None:
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config()) as stream:
            await ready_media(rtms_server)
            sig = rtms_server.signaling[0]
            await sig.send({"msg_type": 9, "state": 3, "timestamp": 5, "rtms_session_id": "s1"})
            await sig.send({"msg_type": 8, "state": 5, "timestamp": 5})
            await sig.send({"msg_type": 9, "state": 4, "timestamp": 6, "rtms_session_id": "s1"})
            seen: list[CaptureEvent] = []
            assert (await next_of(stream, Paused, seen)).timestamp_ms == 5
            assert (await next_of(stream, Resumed, seen)).timestamp_ms == 6
            assert sum(isinstance(e, Paused) for e in seen) == 1
            stream.stopped(8)
            ended = await next_of(stream, StreamEnded)
            assert ended.revoked
            assert ended.reason == 8
        assert len(rtms_server.signaling) == 1


async def test_malformed_truncated_unknown_and_binary_frames(rtms_server: Any) -> None:
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config()) as stream:
            [audio] = await ready_media(rtms_server)
            for frame in [
                "garbage",
                '{"msg_type":14,"content":{"data":"AAA',
                '{"msg_type":99}',
                '{"msg_type":23,"content":{}}',
                b"\x00\xff",
                '{"msg_type":14,"content":{"data":"!!","timestamp":1}}',
                "[]",
            ]:
                await audio.send(frame)
                await rtms_server.signaling[0].send(frame)
            pretty = json.dumps(audio_frame(42), indent="\t", sort_keys=True).encode()
            await audio.send(pretty)
            packet = await next_of(stream, AudioPacket)
            assert packet.timestamp_ms == 42
            assert stream.stats.dropped["malformed"] >= 8
            assert stream.stats.dropped["ignored"] >= 4
            assert len(rtms_server.signaling) == 1
            assert len(rtms_server.media) == 1
            await stream.close(graceful=False)


async def test_oversized_frame_reconnects_media(rtms_server: Any) -> None:
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config(max_message_size=4096)) as stream:
            [audio] = await ready_media(rtms_server)
            await audio.send(audio_frame(1, data="A" * 8000))
            assert (await next_of(stream, Interrupted)).media == ("audio",)
            await next_of(stream, Recovered)
            assert len(rtms_server.signaling) == 1
            await stream.close(graceful=False)


async def test_watchdog_reconnects_a_silent_media_socket(rtms_server: Any) -> None:
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config(watchdog_s=0.3)) as stream:
            # Signaling stays alive through keep-alives; the media socket goes silent.
            async def keep_signaling_alive() -> None:
                while True:
                    await rtms_server.signaling[-1].send({"msg_type": 12, "timestamp": 1})
                    await trio.sleep(0.05)

            async with trio.open_nursery() as nursery:
                await ready_media(rtms_server)
                nursery.start_soon(keep_signaling_alive)
                interrupted = await next_of(stream, Interrupted)
                assert "watchdog" in interrupted.detail
                await next_of(stream, Recovered)
                nursery.cancel_scope.cancel()
            assert len(rtms_server.signaling) == 1
            await stream.close(graceful=False)


async def test_watchdog_survives_many_periods_of_flowing_audio(rtms_server: Any) -> None:
    """Audio alone (no replies) keeps a media socket alive across many watchdog periods; the
    watchdog still fires once it goes silent (the pump re-arms its timer lazily)."""
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config(watchdog_s=0.3)) as stream:

            async def keep_signaling_alive() -> None:
                while True:
                    await rtms_server.signaling[-1].send({"msg_type": 12, "timestamp": 1})
                    await trio.sleep(0.05)

            async with trio.open_nursery() as nursery:
                [audio] = await ready_media(rtms_server)
                nursery.start_soon(keep_signaling_alive)
                seen: list[CaptureEvent] = []
                for i in range(25):  # 1.25 s: more than four watchdog periods
                    await audio.send(audio_frame(1000 + i))
                    packet = await next_of(stream, AudioPacket, seen)
                    assert packet.timestamp_ms == 1000 + i
                    await trio.sleep(0.05)
                assert not [e for e in seen if isinstance(e, Interrupted)]
                interrupted = await next_of(stream, Interrupted)
                assert "watchdog" in interrupted.detail
                await next_of(stream, Recovered)
                nursery.cancel_scope.cancel()
            assert len(rtms_server.signaling) == 1
            await stream.close(graceful=False)


async def test_slow_consumer_never_blocks_keepalives_and_drops_are_reported(
    rtms_server: Any,
) -> None:
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config(), event_buffer=5) as stream:
            await next_of(stream, FirstPacketTimestamp)
            [audio] = await ready_media(rtms_server)
            for ts in range(100, 120):
                await audio.send(audio_frame(ts))
            await audio.send({"msg_type": 12, "timestamp": 4242})
            # Nobody reads events, yet the keep-alive is answered.
            await rtms_server.until(
                lambda: any(
                    m.get("timestamp") == 4242 and m["msg_type"] == 13 for m in audio.received
                )
            )
            seen: list[CaptureEvent] = []
            while sum(e.count for e in seen if isinstance(e, PacketsDropped)) < 15:
                seen.append(await stream.events.receive())
            await audio.send(audio_frame(200))
            assert (await next_of(stream, AudioPacket, seen)).timestamp_ms == 200
            delivered = [e.timestamp_ms for e in seen if isinstance(e, AudioPacket)]
            assert delivered[:5] == [100, 101, 102, 103, 104]
            drops = [e for e in seen if isinstance(e, PacketsDropped)]
            # Every packet is either delivered or inside a reported, contiguous drop range.
            assert {e.track for e in drops} == {"mixed"}
            covered = sorted(
                ts
                for e in drops
                for ts in range(e.first_timestamp_ms or 0, (e.last_timestamp_ms or -1) + 1)
            )
            assert sum(e.count for e in drops) == len(covered)
            assert sorted(covered + [t for t in delivered if t < 200]) == list(range(100, 120))
            # Drops are reported before anything received after them.
            assert seen.index(drops[0]) < seen.index(
                next(e for e in seen if getattr(e, "timestamp_ms", 0) == 200)
            )
            assert stream.stats.dropped["backpressure"] == 15
            await stream.close(graceful=False)


async def test_url_policy_is_enforced_before_connecting(rtms_server: Any) -> None:
    with pytest.raises(UrlNotAllowed, match="loopback"):
        async with open_rtms_stream(target(rtms_server), ClientConfig()):
            pass
    evil = StreamTarget(
        Product.MEETING,
        "u",
        STREAM_ID,
        ("wss://evil.example.com/x?token=secret",),
        CLIENT_ID,
        CLIENT_SECRET,
    )
    with pytest.raises(UrlNotAllowed) as info:
        async with open_rtms_stream(evil, ClientConfig()):
            pass
    assert "evil.example.com" in str(info.value)
    assert "secret" not in str(info.value)
    assert rtms_server.signaling == []


@pytest.mark.timeout(30)  # frozen clock: trio.fail_after cannot guard this one
async def test_backoff_schedule_on_a_mock_clock(rtms_server: Any, mock_clock: Any) -> None:
    """Default timers (3 s doubling): nothing reconnects early, one attempt at a time."""
    cfg = ClientConfig(allow_insecure_loopback=True, media_trigger_guard_s=0.0)
    async with open_rtms_stream(target(rtms_server), cfg) as stream:
        await ready_media(rtms_server)
        rtms_server.signaling_rejections = [(8, "duplicate signal request")]
        await rtms_server.signaling[0].drop()
        interrupted = await next_of(stream, Interrupted)
        assert interrupted.cause is GapCause.SIGNALING_INTERRUPTED
        mock_clock.jump(2.9)
        await trio.testing.wait_all_tasks_blocked()
        assert len(rtms_server.signaling) == 1
        mock_clock.jump(0.2)
        await rtms_server.until(lambda: len(rtms_server.signaling) == 2)
        await rtms_server.until(lambda: not rtms_server.live_signaling())
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(5.9)  # the duplicate rejection doubles the delay to 6 s
        await trio.testing.wait_all_tasks_blocked()
        assert len(rtms_server.signaling) == 2
        mock_clock.jump(0.2)
        recovered = await next_of(stream, Recovered)
        assert recovered.attempts == 2
        assert recovered.interrupted_wall_ms == interrupted.wall_ms
        await stream.close(graceful=False)
    assert rtms_server.max_open_signaling == 1


async def test_gives_up_when_nothing_answers(autojump_clock: Any) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = StreamTarget(
        Product.MEETING, "u", STREAM_ID, (f"ws://127.0.0.1:{port}/s",), CLIENT_ID, CLIENT_SECRET
    )
    cfg = ClientConfig(allow_insecure_loopback=True, give_up_after_s=100.0)
    with trio.fail_after(1000):  # virtual seconds on the autojump clock
        async with open_rtms_stream(dead, cfg) as stream:
            events = [e async for e in stream.events]
    assert isinstance(events[0], Interrupted)
    end = events[-1]
    assert isinstance(end, StreamEnded)
    assert end.reason_name == "RECONNECT_GAVE_UP"
    assert not end.normal
    assert stream.stats.signaling_connects == 0


def test_stream_target_repr_hides_the_secret() -> None:
    secret_target = StreamTarget(
        Product.MEETING, "u", STREAM_ID, ("wss://a.zoom.us",), CLIENT_ID, "s3cr3t"
    )
    assert "s3cr3t" not in repr(secret_target)


@pytest.mark.timeout(30)  # frozen clock: trio.fail_after cannot guard this one
async def test_media_then_signaling_loss_is_one_window(rtms_server: Any, mock_clock: Any) -> None:
    """The full recovery's window starts when the media socket went, not when signaling did."""
    ticks = iter(range(1_000, 1_000_000, 7))
    cfg = ClientConfig(
        allow_insecure_loopback=True,
        media_trigger_guard_s=0.0,
        wall_clock=lambda: next(ticks) / 1000,
    )
    async with open_rtms_stream(target(rtms_server), cfg) as stream:
        [audio] = await ready_media(rtms_server)
        await audio.drop()
        media_cut = await next_of(stream, Interrupted)
        assert media_cut.media == ("audio",)
        await rtms_server.signaling[0].drop()
        full_cut = await next_of(stream, Interrupted)
        assert full_cut.media == ()
        assert full_cut.wall_ms > media_cut.wall_ms
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(3.1)
        # Every Interrupted gets its own Recovered: the media one, swallowed by the full one,
        # recovers with it (an unpaired window would name every later gap).
        media_back = await next_of(stream, Recovered)
        assert media_back.interruption_id == media_cut.interruption_id
        assert media_back.cause is GapCause.MEDIA_INTERRUPTED
        recovered = await next_of(stream, Recovered)
        assert recovered.interruption_id == full_cut.interruption_id != media_cut.interruption_id
        assert recovered.cause is GapCause.SIGNALING_INTERRUPTED
        assert recovered.interrupted_wall_ms == media_cut.wall_ms
        await stream.close(graceful=False)


@pytest.mark.timeout(30)  # frozen clock: trio.fail_after cannot guard this one
async def test_a_failover_while_signaling_is_down_is_named_failover(
    rtms_server: Any, rtms_server_b: Any, mock_clock: Any
) -> None:
    """The old server's sockets die first, then its rtms_started arrives: the gap is a
    failover's, said by the Recovered of the same interruption."""
    cfg = ClientConfig(allow_insecure_loopback=True, media_trigger_guard_s=0.0)
    async with open_rtms_stream(target(rtms_server), cfg) as stream:
        await ready_media(rtms_server)
        await rtms_server.signaling[0].drop()
        cut = await next_of(stream, Interrupted)
        assert cut.cause is GapCause.SIGNALING_INTERRUPTED
        await stream.failover((rtms_server_b.url(),))
        await ready_media(rtms_server_b)
        recovered = await next_of(stream, Recovered)
        assert recovered.interruption_id == cut.interruption_id
        assert recovered.cause is GapCause.FAILOVER
        await stream.close(graceful=False)


@pytest.mark.timeout(30)  # frozen clock: trio.fail_after cannot guard this one
async def test_close_without_signaling_is_a_local_close(rtms_server: Any, mock_clock: Any) -> None:
    cfg = ClientConfig(allow_insecure_loopback=True)
    async with open_rtms_stream(target(rtms_server), cfg) as stream:
        await ready_media(rtms_server)
        await rtms_server.signaling[0].drop()
        await next_of(stream, Interrupted)
        await stream.close(graceful=True)
        end = await next_of(stream, StreamEnded)
        assert end.reason_name == "LOCAL_CLOSE"
        assert end.reason is None
    assert not any(m["msg_type"] == 21 for m in rtms_server.signaling[0].received)


async def test_video_subscription_request(rtms_server: Any) -> None:
    with trio.fail_after(10):
        async with open_rtms_stream(target(rtms_server), config()) as stream:
            await ready_media(rtms_server)
            assert await stream.subscribe_video("16778240")
            await rtms_server.until(
                lambda: any(m["msg_type"] == 28 for m in rtms_server.signaling[0].received)
            )
            request = next(m for m in rtms_server.signaling[0].received if m["msg_type"] == 28)
            assert (request["user_id"], request["subscribe"]) == (16778240, True)
            await stream.close(graceful=False)
            assert not await stream.subscribe_video("16778240")


async def test_audio_behind_the_stream_end_is_all_delivered(rtms_server: Any) -> None:
    """Signaling says the stream ended while audio is still coming on the media socket (another
    server, further behind): the client reads the media socket to its end before it ends the
    stream, instead of cancelling that audio away uncounted."""
    frames = 300
    with trio.fail_after(20):
        async with open_rtms_stream(target(rtms_server), config(event_buffer=10_000)) as stream:
            [audio] = await ready_media(rtms_server)
            await rtms_server.signaling[0].send(
                {"msg_type": 8, "state": 4, "reason": 6, "timestamp": 9}
            )
            for n in range(frames):
                await audio.send(audio_frame(1_000 + 20 * n, data="A" * 856))
            await audio.drop()
            seen: list[CaptureEvent] = []
            ended = await next_of(stream, StreamEnded, seen)
    delivered = [e.timestamp_ms for e in seen if isinstance(e, AudioPacket)]
    assert delivered == [1_000 + 20 * n for n in range(frames)]
    assert ended.normal
