"""The sans-IO connections, driven synchronously (no event loop) by a scripted fake peer."""

from __future__ import annotations

# ruff: noqa: E501  (wire fixtures are kept verbatim from rtms-protocol.md §12.4)
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.errors import LocalProtocolError, RemoteProtocolError
from recorder.rtms import messages as m
from recorder.rtms.events import (
    AudioCodec,
    AudioPacket,
    ChatMessage,
    ContactCenterEvent,
    FirstPacketTimestamp,
    ParticipantEvent,
    StreamStateChanged,
    TranscriptMessage,
)
from recorder.rtms.protocol import (
    ConnectionEnded,
    ConnState,
    HandshakeRefused,
    IgnoredMessage,
    KeepAliveAnswered,
    MediaConnection,
    MediaInterruption,
    MediaReady,
    PauseChanged,
    ProtocolViolation,
    SignalingConnection,
    SignalingInterruptionNotice,
    SignalingReady,
    StateReport,
    StreamTerminated,
    VideoFrame,
    VideoSubscriptionResult,
)
from recorder.rtms.signature import handshake_signature

STREAM = "609340fb2a7946909659956c8aa9250c"
MEETING = "4444AAAiAAAAAiAiAiiAii=="
SIG = handshake_signature("cid", "secret", MEETING, STREAM)
URLS = {"audio": "wss://a.zoom.us/audio", "all": "wss://a.zoom.us/all"}


@dataclass
class ConnectionPair:
    """Wires a connection to a fake peer: what the client sends is decoded and recorded."""

    conn: SignalingConnection | MediaConnection
    sent: list[dict[str, Any]] = field(default_factory=list)

    def pump(self) -> list[dict[str, Any]]:
        out = [json.loads(frame) for frame in self.conn.data_to_send()]
        for frame in out:
            m.decode(json.dumps(frame))  # the peer can read everything we send
        self.sent.extend(out)
        return out

    def peer_sends(self, frame: str | bytes | dict[str, Any] | None) -> list[Any]:
        if isinstance(frame, dict):
            frame = json.dumps(frame)
        self.conn.receive_message(frame)
        return self.conn.events()


def signaling(**kwargs: Any) -> ConnectionPair:
    options: dict[str, Any] = {
        "rtms_stream_id": STREAM,
        "instance_id": MEETING,
        "instance_key": "meeting_uuid",
        "signature": SIG,
        "subscribe_events": (1, 2, 3, 4, 7),
    }
    options.update(kwargs)
    return ConnectionPair(SignalingConnection(**options))


def open_signaling(**kwargs: Any) -> ConnectionPair:
    pair = signaling(**kwargs)
    pair.conn.initiate(0.0)
    pair.pump()
    events = pair.peer_sends(
        {"msg_type": 2, "status_code": 0, "reason": "", "media_server": {"server_urls": URLS}}
    )
    assert events == [SignalingReady(URLS)]
    return pair


def media(media_type: int = 1, params: m.MediaParams | None = None) -> ConnectionPair:
    return ConnectionPair(
        MediaConnection(
            rtms_stream_id=STREAM,
            instance_id=MEETING,
            instance_key="meeting_uuid",
            signature=SIG,
            media_type=media_type,
            media_params=params or m.MediaParams(audio=m.AudioParams()),
        )
    )


def open_media(
    params: m.MediaParams | None = None, confirmed: dict[str, Any] | None = None
) -> ConnectionPair:
    pair = media(params=params)
    pair.conn.initiate(0.0)
    pair.pump()
    answer: dict[str, Any] = {"msg_type": 4, "status_code": 0, "reason": ""}
    if confirmed is not None:
        answer["media_params"] = confirmed
    events = pair.peer_sends(answer)
    assert isinstance(events[0], MediaReady)
    return pair


def test_signaling_handshake_request_and_subscription() -> None:
    pair = signaling()
    assert pair.conn.state is ConnState.IDLE
    pair.conn.initiate(0.0)
    assert "HANDSHAKING" in repr(pair.conn)
    [hello] = pair.pump()
    assert hello == {
        "msg_type": 1,
        "protocol_version": 1,
        "sequence": 1,
        "meeting_uuid": MEETING,
        "rtms_stream_id": STREAM,
        "signature": SIG,
        "buffer_data": True,
    }
    pair.peer_sends({"msg_type": 2, "status_code": 0, "media_server": {"server_urls": URLS}})
    assert pair.conn.state is ConnState.OPEN
    assert pair.conn.server_urls == URLS
    [subscription] = pair.pump()
    assert subscription == {
        "msg_type": 5,
        "events": [
            {"event_type": 2, "subscribe": True},
            {"event_type": 3, "subscribe": True},
            {"event_type": 4, "subscribe": True},
        ],
    }
    pair.conn.client_ready()
    assert pair.pump() == [{"msg_type": 7, "rtms_stream_id": STREAM}]


@pytest.mark.parametrize(
    ("answer", "rejection", "retryable"),
    [
        (
            {"msg_type": 2, "status_code": 8, "reason": "duplicate signal request"},
            m.Rejection.DUPLICATE_SIGNAL,
            True,
        ),
        (
            {"msg_type": 2, "status_code": 17, "reason": "DUPLICATE_SIGNAL_REQUEST"},
            m.Rejection.DUPLICATE_SIGNAL,
            True,
        ),
        (
            {"msg_type": 2, "status_code": 3, "reason": "invalid signature"},
            m.Rejection.SIGNATURE,
            False,
        ),
        (
            {"msg_type": 2, "protocol_version": 1, "reason": "Invalid signature"},
            m.Rejection.SIGNATURE,
            False,
        ),
    ],
)
def test_signaling_rejection_fails_closed(
    answer: dict[str, Any], rejection: m.Rejection, retryable: bool
) -> None:
    pair = signaling()
    pair.conn.initiate(0.0)
    pair.pump()
    [event] = pair.peer_sends(answer)
    assert isinstance(event, HandshakeRefused)
    assert event.rejection is rejection
    assert event.rejection.final is not retryable
    assert event.error.status_code == answer.get("status_code")
    assert pair.conn.state is ConnState.ERROR
    # Fail closed: peer data is ignored, local calls refuse.
    assert pair.peer_sends({"msg_type": 12, "timestamp": 1}) == []
    assert pair.conn.data_to_send() == []
    with pytest.raises(LocalProtocolError):
        pair.conn.client_ready()


def test_unreadable_handshake_answer_is_fatal_but_garbage_is_not() -> None:
    pair = signaling()
    pair.conn.initiate(0.0)
    [event] = pair.peer_sends("garbage")
    assert isinstance(event, ProtocolViolation)
    assert not event.fatal
    assert pair.conn.state is ConnState.HANDSHAKING
    [event] = pair.peer_sends({"msg_type": 2, "status_code": "zero"})
    assert isinstance(event, ProtocolViolation)
    assert event.fatal
    assert pair.conn.state is ConnState.ERROR


def test_local_misuse_raises() -> None:
    pair = signaling()
    with pytest.raises(LocalProtocolError):
        pair.conn.client_ready()
    pair.conn.initiate(0.0)
    with pytest.raises(LocalProtocolError):
        pair.conn.initiate(0.0)
    with pytest.raises(LocalProtocolError):
        pair.conn.request_close()


@pytest.mark.parametrize("make", [signaling, media])
def test_keep_alive_is_echoed_as_received(make: Any) -> None:
    pair = make()
    pair.conn.initiate(0.0)
    pair.pump()
    assert pair.peer_sends({"msg_type": 12, "timestamp": 1727384349123}) == [KeepAliveAnswered()]
    assert pair.pump() == [{"msg_type": 13, "timestamp": 1727384349123}]
    pair.peer_sends({"msg_type": 12, "sequence": 99, "timestamp": 5})
    assert pair.pump() == [{"msg_type": 13, "sequence": 99, "timestamp": 5}]
    pair.peer_sends('{"msg_type":12,"protocol_version":1,"status_code":0}')
    assert pair.pump() == [{"msg_type": 13}]


def test_signaling_events_meeting_namespace() -> None:
    pair = open_signaling()
    assert pair.peer_sends({"msg_type": 6, "event": {"event_type": 1, "timestamp": 10}}) == [
        FirstPacketTimestamp(10)
    ]
    [join] = pair.peer_sends(
        '{"msg_type":6,"event":{"event_type":3,"timestamp":1727384349123,"participants":[{"user_id":16778240,"user_name":"John Smith"},{"user_id":"33556610","user_name":"Alice"}]}}'
    )
    assert isinstance(join, ParticipantEvent)
    assert join.name == "PARTICIPANT_JOIN"
    assert [p.user_id for p in join.participants] == ["16778240", "33556610"]
    [speaker] = pair.peer_sends(
        {"msg_type": 6, "event": {"event_type": 2, "timestamp": 11, "user_id": 7, "user_name": "B"}}
    )
    assert isinstance(speaker, ParticipantEvent)
    assert speaker.participants[0].user_id == "7"
    [video_on] = pair.peer_sends(
        {"msg_type": 6, "event": {"event_type": 8, "participants": [{"user_id": 5}]}}
    )
    assert isinstance(video_on, ParticipantEvent)
    assert video_on.name == "PARTICIPANT_VIDEO_ON"
    assert video_on.timestamp_ms == 11  # no timestamp: the latest one seen
    [interrupted] = pair.peer_sends({"msg_type": 6, "event": {"event_type": 7, "timestamp": 12}})
    assert isinstance(interrupted, MediaInterruption)


def test_signaling_events_contact_center_namespace() -> None:
    pair = open_signaling(contact_center=True, instance_key="engagement_id")
    [event] = pair.peer_sends(
        '{"msg_type":6,"event":{"event_type":10,"event_ts":1727384349123,"paticipant_info":{"channel_id":"456edf","participant_mode":"callee","queue_id":"ddJE_cgERLyAJCYYL5L4ce","queue_name":"ABC Queue","user_id":"u2hfFEIO3gQ2i-WjoGEA72dh","display_name":"TOM AA"}}}'
    )
    assert isinstance(event, ContactCenterEvent)
    assert (event.name, event.channel_id, event.participant_mode) == (
        "USER_ANSWERED",
        "456edf",
        "callee",
    )
    assert event.timestamp_ms == 1727384349123
    [answered] = pair.peer_sends(
        {
            "msg_type": 6,
            "event": {
                "event_type": 8,
                "event_ts": 5,
                "participant_info": {"channel_id": "c1", "phone_number": "+1800"},
            },
        }
    )
    assert isinstance(answered, ContactCenterEvent)
    assert answered.name == "CONSUMER_ANSWERED"
    assert answered.extra == {"phone_number": "+1800"}


@pytest.mark.parametrize(
    ("frame", "control"),
    [
        ({"msg_type": 8, "state": 2, "reason": 14, "timestamp": 1}, MediaInterruption),
        ({"msg_type": 8, "state": 2, "reason": 13, "timestamp": 1}, SignalingInterruptionNotice),
        ({"msg_type": 8, "state": 4, "reason": 6, "timestamp": 1}, StreamTerminated),
        (
            {"msg_type": 8, "state": 4, "reason": "STOP_BC_STREAM_REVOKED", "timestamp": 1},
            StreamTerminated,
        ),
        ({"msg_type": 8, "state": 5, "timestamp": 1}, PauseChanged),
        ({"msg_type": 8, "state": 6, "timestamp": 1}, PauseChanged),
        ({"msg_type": 9, "state": 3, "timestamp": 1, "rtms_session_id": "s1"}, PauseChanged),
        ({"msg_type": 9, "state": 4, "timestamp": 1, "rtms_session_id": "s1"}, PauseChanged),
        (
            {"msg_type": 9, "state": 5, "stop_reason": 2, "timestamp": 1, "rtms_session_id": "s1"},
            StreamTerminated,
        ),
        ({"msg_type": 9, "session_id": "sess1", "state": 5, "stop_reason": 6}, StreamTerminated),
    ],
)
def test_state_updates(frame: dict[str, Any], control: type) -> None:
    pair = open_signaling()
    changed, action = pair.peer_sends(frame)
    assert isinstance(changed, StreamStateChanged)
    assert changed.state == frame["state"]
    assert isinstance(action, control)
    if isinstance(action, StreamTerminated) and frame.get("reason") == "STOP_BC_STREAM_REVOKED":
        assert action.reason == 8
        assert changed.reason_name == "STREAM_REVOKED"


def test_graceful_close_and_requests() -> None:
    pair = open_signaling()
    pair.pump()
    pair.conn.request_stream_state()
    pair.conn.request_session_state("s1")
    pair.conn.subscribe_video("16778240", True, 1738392033699)
    assert [f["msg_type"] for f in pair.pump()] == [19, 10, 28]
    assert pair.peer_sends(
        {"msg_type": 20, "state": 1, "rtms_stream_id": STREAM, "timestamp": 3}
    ) == [StateReport("stream", 1, 3)]
    assert pair.peer_sends({"msg_type": 11, "rtms_session_id": "s1", "state": 2}) == [
        StateReport("session", 2, None)
    ]
    assert pair.peer_sends(
        '{"msg_type":29,"user_id":16778240,"status_code":0,"reason":"OK","timestamp":1}'
    ) == [VideoSubscriptionResult("16778240", 0, "OK")]
    pair.conn.request_close()
    assert pair.pump() == [{"msg_type": 21, "rtms_stream_id": STREAM}]
    assert pair.conn.state is ConnState.CLOSING
    [ended] = pair.peer_sends(
        '{"msg_type":22,"rtms_stream_id":"x","status_code":0,"reason":"OK","timestamp":1727384349123}'
    )
    assert ended == StreamTerminated(20, 1727384349123, "close")
    assert pair.conn.state is ConnState.CLOSED


def test_media_handshake_and_confirmed_params() -> None:
    params = m.MediaParams(
        audio=m.AudioParams(codec=m.PayloadType.OPUS, sample_rate=m.SampleRate.SR_48K, channel=2),
        transcript=m.TranscriptParams(src_language=9, enable_lid=True),
    )
    pair = media(media_type=m.MediaType.AUDIO | m.MediaType.TRANSCRIPT, params=params)
    pair.conn.initiate(0.0)
    [hello] = pair.pump()
    assert hello["msg_type"] == 3
    assert hello["media_type"] == 9
    assert hello["signature"] == SIG
    assert hello["media_params"]["audio"] == {
        "content_type": 2,
        "sample_rate": 3,
        "channel": 2,
        "codec": 4,
        "data_opt": 1,
        "send_rate": 20,
    }
    assert hello["media_params"]["transcript"] == {
        "content_type": 5,
        "src_language": 9,
        "enable_lid": True,
    }
    [ready] = pair.peer_sends(
        {
            "msg_type": 4,
            "status_code": 0,
            "payload_encrypted": True,
            "media_params": {
                "audio": {
                    "content_type": 2,
                    "sample_rate": 0,
                    "channel": 1,
                    "codec": 2,
                    "data_opt": 2,
                    "send_rate": 40,
                }
            },
        }
    )
    assert isinstance(ready, MediaReady)
    assert ready.payload_encrypted
    assert ready.audio_format is not None
    assert (
        ready.audio_format.codec,
        ready.audio_format.sample_rate,
        ready.audio_format.packet_ms,
    ) == (AudioCodec.G711, 8000, 40)


def test_media_rejection() -> None:
    pair = media()
    pair.conn.initiate(0.0)
    [event] = pair.peer_sends(
        {"msg_type": 4, "status_code": 16, "reason": "duplicate media data connection"}
    )
    assert isinstance(event, HandshakeRefused)
    assert event.rejection is m.Rejection.DUPLICATE_MEDIA
    assert pair.conn.state is ConnState.ERROR


def test_audio_tracks() -> None:
    pair = open_media(
        confirmed={
            "audio": {"codec": 1, "sample_rate": 1, "channel": 1, "data_opt": 2, "send_rate": 20}
        }
    )
    [mixed] = pair.peer_sends(
        '{"msg_type":14,"content":{"user_id":0,"data":"AAAAAA==","length":4,"timestamp":1738392033699}}'
    )
    assert isinstance(mixed, AudioPacket)
    assert (mixed.track, mixed.payload, mixed.timestamp_ms) == ("mixed", b"\0\0\0\0", 1738392033699)
    assert mixed.format.sample_rate == 16000
    [channel] = pair.peer_sends(
        '{"msg_type":14,"content":{"channel_id":"123abc","data":"AAAAAA==","timestamp":1738392033699}}'
    )
    assert isinstance(channel, AudioPacket)
    assert channel.track == "channel-123abc"
    [speaker] = pair.peer_sends(
        {
            "msg_type": 14,
            "content": {"user_id": 16778240, "user_name": "John", "data": "AQI=", "timestamp": 5},
        }
    )
    assert isinstance(speaker, AudioPacket)
    assert (speaker.track, speaker.user_id, speaker.user_name) == (
        "user-16778240",
        "16778240",
        "John",
    )


def test_mixed_data_opt_names_every_packet_mixed() -> None:
    pair = open_media()
    [packet] = pair.peer_sends(
        {"msg_type": 14, "content": {"user_id": 3, "data": "AQI=", "timestamp": 5}}
    )
    assert isinstance(packet, AudioPacket)
    assert packet.track == "mixed"


def test_media_text_video_and_ignored() -> None:
    pair = open_media()
    [transcript] = pair.peer_sends(
        '{"msg_type":17,"content":{"user_id":19778240,"user_name":"John Smith","start_time":1727384100000,"end_time":1727384310000,"timestamp":1727384349000,"language":9,"data":"Hi, hello world!"}}'
    )
    assert transcript == TranscriptMessage(
        1727384349000,
        "Hi, hello world!",
        "19778240",
        "John Smith",
        None,
        1727384100000,
        1727384310000,
        9,
    )
    [chat] = pair.peer_sends(
        '{"msg_type":18,"content":{"timestamp":1727384349000,"data":"Chat message"}}'
    )
    assert chat == ChatMessage(1727384349000, "Chat message")
    [share] = pair.peer_sends(
        '{"msg_type":16,"content":{"user_id":16778240,"user_name":"John Smith","data":"/9j/4AAQ","length":6,"timestamp":1738392033699}}'
    )
    assert isinstance(share, VideoFrame)
    assert share.kind == "deskshare"
    assert pair.peer_sends('{"msg_type":23,"content":{}}') == [IgnoredMessage(23)]
    assert pair.peer_sends('{"msg_type":99,"foo":"bar"}') == [IgnoredMessage(99)]
    assert pair.conn.state is ConnState.OPEN


@pytest.mark.parametrize(
    "frame",
    [
        '{"msg_type":14,"content":{"data":"!!!","timestamp":1}}',
        '{"msg_type":14,"content":{"data":"AAAA","length":9,"timestamp":1}}',
        '{"msg_type":14}',
        '{"msg_type":17,"content":{"timestamp":"x","data":"hi"}}',
        "{not json",
        b"\x00\x01binary",
        "[]",
    ],
)
def test_media_garbage_is_reported_not_fatal(frame: str | bytes) -> None:
    pair = open_media()
    [event] = pair.peer_sends(frame)
    assert isinstance(event, ProtocolViolation)
    assert isinstance(event.error, RemoteProtocolError)
    assert not event.fatal
    assert pair.conn.state is ConnState.OPEN
    [packet] = pair.peer_sends(
        {"msg_type": 14, "content": {"user_id": 0, "data": "AQI=", "timestamp": 5}}
    )
    assert isinstance(packet, AudioPacket)


def test_audio_before_handshake_is_ignored() -> None:
    pair = media()
    pair.conn.initiate(0.0)
    assert pair.peer_sends(
        {"msg_type": 14, "content": {"user_id": 0, "data": "AQI=", "timestamp": 5}}
    ) == [IgnoredMessage(14)]


@pytest.mark.parametrize("make", [signaling, media])
def test_watchdog_counts_any_inbound_frame(make: Any) -> None:
    pair = make(watchdog_s=65.0) if make is signaling else make()
    conn = pair.conn
    conn.initiate(100.0)
    conn.tick(150.0)
    assert conn.events() == []
    conn.receive_message('{"msg_type":99}', now=160.0)
    conn.events()
    conn.tick(224.0)
    assert conn.events() == []
    assert conn.deadline() == 225.0
    conn.tick(225.0)
    [ended] = conn.events()
    assert isinstance(ended, ConnectionEnded)
    assert ended.cause == "watchdog"
    assert ended.during_handshake
    assert conn.state is ConnState.CLOSED
    conn.tick(400.0)
    assert conn.events() == []


def test_watchdog_without_now_uses_ticks() -> None:
    pair = open_signaling()
    conn = pair.conn
    conn.tick(10.0)
    conn.receive_message('{"msg_type":12}')
    conn.events()
    conn.tick(70.0)  # the frame counts as seen at 70
    conn.tick(134.0)
    assert conn.events() == []
    conn.tick(135.0)
    assert isinstance(conn.events()[0], ConnectionEnded)


@pytest.mark.parametrize("make", [open_signaling, open_media])
def test_transport_loss(make: Any) -> None:
    pair = make()
    assert pair.peer_sends(None) == [ConnectionEnded("transport")]
    assert pair.conn.state is ConnState.CLOSED
    assert pair.peer_sends({"msg_type": 12}) == []


frames = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40),
    st.builds(
        lambda t, fields: json.dumps({**fields, "msg_type": t}),
        st.integers(min_value=0, max_value=30),
        st.dictionaries(
            st.sampled_from(
                [
                    "content",
                    "event",
                    "state",
                    "reason",
                    "status_code",
                    "media_params",
                    "timestamp",
                    "media_server",
                    "stop_reason",
                ]
            ),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                lambda c: (
                    st.lists(c, max_size=3)
                    | st.dictionaries(
                        st.sampled_from(
                            [
                                "data",
                                "timestamp",
                                "user_id",
                                "event_type",
                                "audio",
                                "server_urls",
                                "length",
                                "participants",
                            ]
                        ),
                        c,
                        max_size=3,
                    )
                ),
                max_leaves=8,
            ),
            max_size=4,
        ),
    ),
)


@settings(max_examples=150, deadline=None)
@given(st.booleans(), st.lists(frames, max_size=12))
def test_machines_survive_arbitrary_frames(
    handshake_first: bool, inputs: list[str | bytes]
) -> None:
    for pair in (signaling(), media()):
        pair.conn.initiate(0.0)
        pair.conn.data_to_send()
        if handshake_first:
            answer = (
                '{"msg_type":2,"status_code":0}'
                if isinstance(pair.conn, SignalingConnection)
                else '{"msg_type":4,"status_code":0}'
            )
            pair.conn.receive_message(answer)
        for frame in inputs:
            pair.conn.receive_message(frame)
            for event in pair.conn.events():
                if isinstance(event, ProtocolViolation):
                    assert isinstance(event.error, RemoteProtocolError)
            for out in pair.conn.data_to_send():
                m.decode(out)
        assert pair.conn.state in ConnState
