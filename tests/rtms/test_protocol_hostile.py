"""The sans-IO core against hostile and future peers: V2 answers, RTP, new fields, stop reasons.

Property: whatever frames arrive, in any state, the core raises nothing (peer garbage becomes a
``ProtocolViolation`` carrying an error of the one tree) and answers every keep-alive.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.errors import RecorderError, RemoteProtocolError, UnsupportedProtocolVersion
from recorder.rtms import messages as m
from recorder.rtms.events import AudioPacket
from recorder.rtms.protocol import (
    ConnState,
    KeepAliveAnswered,
    MediaConnection,
    MediaInterruption,
    ProtocolViolation,
    SignalingInterruptionNotice,
)
from recorder.rtms.rtp import l16_to_little_endian, rtp_payload
from tests.rtms.test_protocol import ConnectionPair, media, open_media, open_signaling, signaling

AUDIO = '{"msg_type":14,"content":{"user_id":0,"data":"QUJD","length":3,"timestamp":5}}'


def _audio_frame(payload: bytes, **extra: Any) -> str:
    content = {"user_id": 0, "data": base64.b64encode(payload).decode(), "timestamp": 5}
    return json.dumps({"msg_type": 14, "content": {**content, **extra}})


# --- V2 answers are refused by name -----------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        {"msg_type": 2, "status_code": 0, "protocol_version": 2, "reason": ""},
        {"msg_type": 2, "status_code": 0, "srt_passphrase": "x", "reason": ""},
    ],
)
def test_a_v2_signaling_answer_fails_closed_by_name(answer: dict[str, Any]) -> None:
    pair = signaling()
    pair.conn.initiate(0.0)
    pair.pump()
    [event] = pair.peer_sends(answer)
    assert isinstance(event, ProtocolViolation)
    assert event.fatal
    assert isinstance(event.error, UnsupportedProtocolVersion)
    assert pair.conn.state is ConnState.ERROR


def test_a_protobuf_answer_to_the_media_handshake_fails_closed_by_name() -> None:
    pair = media()
    pair.conn.initiate(0.0)
    pair.pump()
    [event] = pair.peer_sends(b"\x08\x04\x12\x00\x1a\x02ok")  # a Protobuf-looking msg 4
    assert isinstance(event, ProtocolViolation)
    assert event.fatal
    assert isinstance(event.error, UnsupportedProtocolVersion)
    assert pair.conn.state is ConnState.ERROR


def test_srt_fields_in_the_media_answer_are_refused() -> None:
    pair = media()
    pair.conn.initiate(0.0)
    pair.pump()
    [event] = pair.peer_sends({"msg_type": 4, "status_code": 0, "srt_pbkey_length": 16})
    assert isinstance(event, ProtocolViolation)
    assert event.fatal
    assert "srt_pbkey_length" in str(event.error)


def test_a_binary_frame_mid_stream_is_dropped_alone() -> None:
    pair = open_media()
    [event] = pair.peer_sends(b"\x0a\x05hello")
    assert isinstance(event, ProtocolViolation)
    assert not event.fatal
    assert isinstance(event.error, UnsupportedProtocolVersion)
    assert pair.conn.state is ConnState.OPEN
    assert isinstance(pair.peer_sends(AUDIO)[0], AudioPacket)


def test_event_code_without_event_type_is_named_v2() -> None:
    pair = open_signaling()
    [event] = pair.peer_sends({"msg_type": 6, "event": {"event_code": 3, "timestamp": 1}})
    assert isinstance(event, ProtocolViolation)
    assert not event.fatal
    assert isinstance(event.error, UnsupportedProtocolVersion)
    assert pair.conn.state is ConnState.OPEN


# --- stream state 2: which socket the reason names -----------------------------------------------


@pytest.mark.parametrize(
    ("reason", "media"),
    [(14, True), (16, True), (13, False), (12, False), (15, False), (24, False), (None, False)],
)
def test_interruption_reasons_map_to_the_socket_they_name(reason: int | None, media: bool) -> None:
    pair = open_signaling()
    events = pair.peer_sends({"msg_type": 8, "state": 2, "reason": reason, "timestamp": 3})
    kinds = [type(e) for e in events]
    assert (MediaInterruption in kinds) is media
    assert (SignalingInterruptionNotice in kinds) is not media


# --- new fields take the fast path; odd frames are counted ---------------------------------------


def test_unknown_fields_stay_on_the_fast_path() -> None:
    frame = (
        '{"msg_type":14,"zoom_new":{"a":[1,2]},"content":{"user_id":0,"data":"QUJD",'
        '"length":3,"timestamp":5,"audio_level":-30}}'
    )
    assert m.fast_audio_content(frame) == (5, b"ABC", "0", None, None)
    pair = open_media()
    [packet] = pair.peer_sends(frame)
    assert isinstance(packet, AudioPacket)
    assert packet.payload == b"ABC"
    assert isinstance(pair.conn, MediaConnection)
    assert pair.conn.take_slow_path_count() == 0


def test_frames_the_fast_path_cannot_take_are_counted() -> None:
    pair = open_media()
    pair.peer_sends('{"msg_type":14,"content":{"user_id":0,"data":"QUJD","timestamp":5.0}}')
    pair.peer_sends(AUDIO.replace('"user_id":0', '"user_id":true'))
    pair.peer_sends(AUDIO)
    assert isinstance(pair.conn, MediaConnection)
    # What the media handler looks at before it takes the count (no call per message).
    assert pair.conn.slow_path_frames == 2
    assert pair.conn.take_slow_path_count() == 2
    assert pair.conn.slow_path_frames == 0
    assert pair.conn.take_slow_path_count() == 0


# --- RTP ---------------------------------------------------------------------------------------


def _rtp(
    payload: bytes, *, csrc: int = 0, extension: bytes | None = None, padding: int = 0
) -> bytes:
    first = 0x80 | csrc | (0x10 if extension is not None else 0) | (0x20 if padding else 0)
    header = struct.pack("!BBHII", first, 8, 1, 160, 0xDEADBEEF) + b"\x00\x00\x00\x01" * csrc
    if extension is not None:
        header += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    tail = b"\x00" * (padding - 1) + bytes([padding]) if padding else b""
    return header + payload + tail


@pytest.mark.parametrize(
    "packet",
    [
        _rtp(b"\xd5" * 160),
        _rtp(b"\xd5" * 160, csrc=3),
        _rtp(b"\xd5" * 160, extension=b"\x10\x20\x30\x40" * 2),
        _rtp(b"\xd5" * 160, padding=4),
        _rtp(b"\xd5" * 160, csrc=15, extension=b"", padding=1),
    ],
)
def test_rtp_header_csrc_extension_and_padding_are_removed(packet: bytes) -> None:
    assert rtp_payload(packet) == b"\xd5" * 160


@pytest.mark.parametrize(
    ("packet", "problem"),
    [
        (b"\x80\x08", "shorter than the 12-byte header"),
        (b"\x40" + b"\x00" * 20, "version 1"),
        (b"\x8f" + b"\x00" * 20, "longer than the packet"),
        (b"\x90" + b"\x00" * 11 + b"\x00\x00\x00\x09", "longer than the packet"),
        (b"\x90" + b"\x00" * 11 + b"\x00\x00", "inside its header extension"),
        (b"\xa0" + b"\x00" * 11 + b"ab\x09", "padding count 9"),
        (b"\xa0" + b"\x00" * 11 + b"ab\x00", "padding count 0"),
    ],
)
def test_a_malformed_rtp_packet_is_named(packet: bytes, problem: str) -> None:
    with pytest.raises(RemoteProtocolError, match=problem):
        rtp_payload(packet)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_rtp_never_raises_outside_the_tree(packet: bytes) -> None:
    try:
        payload = rtp_payload(packet)
    except RemoteProtocolError:
        return
    assert len(payload) <= len(packet)


def test_confirmed_rtp_audio_is_unwrapped_before_decoding() -> None:
    rtp_g711 = m.AudioParams(content_type=1, codec=2, sample_rate=0)
    pair = open_media(
        params=m.MediaParams(audio=rtp_g711),
        confirmed={"audio": {"content_type": 1, "codec": 2, "sample_rate": 0}},
    )
    [packet] = pair.peer_sends(_audio_frame(_rtp(b"\xd5" * 160, csrc=2, padding=3)))
    assert isinstance(packet, AudioPacket)
    assert packet.payload == b"\xd5" * 160
    [bad] = pair.peer_sends(_audio_frame(b"\x00" * 8))
    assert isinstance(bad, ProtocolViolation)
    assert "RTP" in str(bad.error)


def test_rtp_l16_is_network_byte_order() -> None:
    assert l16_to_little_endian(b"\x01\x02\xff\xfe") == b"\x02\x01\xfe\xff"
    with pytest.raises(RemoteProtocolError, match="odd length"):
        l16_to_little_endian(b"\x01")


# --- the property: never raises, never stops answering keep-alives -------------------------------

_frames = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40),
    st.builds(
        lambda t, content: json.dumps({"msg_type": t, "content": content}),
        st.integers(min_value=-2, max_value=40),
        st.dictionaries(
            st.sampled_from(["data", "timestamp", "user_id", "length", "event_code", "x"]),
            st.none() | st.integers() | st.text(max_size=6) | st.booleans(),
            max_size=4,
        ),
    ),
    st.sampled_from(
        [
            AUDIO,
            AUDIO[:-7],
            '{"msg_type":2,"status_code":0,"protocol_version":2}',
            '{"msg_type":2,"status_code":0,"media_server":{"server_urls":{"audio":"wss://a"}}}',
            '{"msg_type":4,"status_code":0,"reason":""}',
            '{"msg_type":4,"status_code":0,"media_params":{"audio":{"content_type":1,"codec":2}}}',
            '{"msg_type":4,"status_code":45,"reason":"internal exception"}',
            '{"msg_type":8,"state":2,"reason":99}',
            '{"msg_type":6,"event":{"event_code":7}}',
            '{"msg_type":9,"state":5,"stop_reason":"bogus"}',
        ]
    ),
)


def _mutate(frame: str | bytes, cut: int) -> str | bytes:
    return frame[: max(0, len(frame) - cut)]


def _connection(media_socket: bool, handshaking: bool) -> ConnectionPair:
    if not handshaking:
        return open_media() if media_socket else open_signaling()
    pair = media() if media_socket else signaling()
    pair.conn.initiate(0.0)
    pair.conn.data_to_send()
    return pair


@settings(max_examples=300, deadline=None)
@given(
    st.booleans(),
    st.booleans(),
    st.lists(st.tuples(_frames, st.integers(min_value=0, max_value=5)), max_size=12),
    st.integers(min_value=0, max_value=2**40),
)
def test_arbitrary_frames_never_raise_and_keepalives_are_always_answered(
    media_socket: bool,
    handshaking: bool,
    frames: list[tuple[str | bytes, int]],
    stamp: int,
) -> None:
    pair = _connection(media_socket, handshaking)
    for frame, cut in frames:
        pair.conn.receive_message(_mutate(frame, cut))
        for event in pair.conn.events():
            if isinstance(event, ProtocolViolation):
                assert isinstance(event.error, RecorderError)
        pair.conn.data_to_send()
        if pair.conn.state not in (ConnState.OPEN, ConnState.HANDSHAKING):
            return  # refused, failed closed, or ended: the conversation is over, by the rules
        keep_alive = json.dumps({"msg_type": 12, "timestamp": stamp})
        pair.conn.receive_message(keep_alive if stamp % 2 else keep_alive.encode())
        assert KeepAliveAnswered() in pair.conn.events()
        assert [json.loads(f) for f in pair.conn.data_to_send()] == [
            {"msg_type": 13, "timestamp": stamp}
        ]
