"""The wire codec: §12.4 fixtures verbatim, mock quirks, malformed input, hypothesis."""

from __future__ import annotations

# ruff: noqa: E501  (wire fixtures are kept verbatim from rtms-protocol.md §12.4)
import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.errors import RemoteProtocolError
from recorder.rtms import messages as m

CANONICAL = [
    (
        '{"msg_type":2,"protocol_version":1,"sequence":0,"status_code":8,"reason":"duplicate signal request"}',
        m.SignalingHandshakeResponse,
    ),
    (
        '{"msg_type":2,"protocol_version":1,"status_code":3,"reason":"invalid signature"}',
        m.SignalingHandshakeResponse,
    ),
    (
        '{"msg_type":4,"protocol_version":1,"status_code":0,"reason":"","sequence":0,"payload_encrypted":false,"media_params":{"transcript":{"content_type":5,"src_language":9,"enable_lid":true}}}',
        m.DataHandshakeResponse,
    ),
    ('{"msg_type":6,"event":{"event_type":1,"timestamp":1727384349123}}', m.EventUpdate),
    (
        '{"msg_type":6,"event":{"event_type":3,"timestamp":1727384349123,"participants":[{"user_id":16778240,"user_name":"John Smith"},{"user_id":"33556610","user_name":"Alice"}]}}',
        m.EventUpdate,
    ),
    ('{"msg_type":6,"event":{"event_type":7,"timestamp":1727384349123}}', m.EventUpdate),
    (
        '{"msg_type":6,"event":{"event_type":10,"event_ts":1727384349123,"paticipant_info":{"channel_id":"456edf","participant_mode":"callee","queue_id":"ddJE_cgERLyAJCYYL5L4ce","queue_name":"ABC Queue","user_id":"u2hfFEIO3gQ2i-WjoGEA72dh","display_name":"TOM AA"}}}',
        m.EventUpdate,
    ),
    ('{"msg_type":8,"state":2,"reason":14,"timestamp":1727384349123}', m.StreamStateUpdate),
    ('{"msg_type":8,"state":4,"reason":6,"timestamp":1727384349123}', m.StreamStateUpdate),
    (
        '{"msg_type":9,"state":3,"timestamp":1727384349123,"rtms_session_id":"s1"}',
        m.SessionStateUpdate,
    ),
    (
        '{"msg_type":9,"state":5,"stop_reason":2,"timestamp":1727384349123,"rtms_session_id":"s1"}',
        m.SessionStateUpdate,
    ),
    ('{"msg_type":12,"timestamp":1727384349123}', m.KeepAliveRequest),
    (
        '{"msg_type":14,"content":{"user_id":0,"data":"AAAAAA==","length":4,"timestamp":1738392033699}}',
        m.MediaAudio,
    ),
    (
        '{"msg_type":14,"content":{"channel_id":"123abc","data":"AAAAAA==","timestamp":1738392033699}}',
        m.MediaAudio,
    ),
    (
        '{"msg_type":16,"content":{"user_id":16778240,"user_name":"John Smith","data":"/9j/4AAQ","length":6,"timestamp":1738392033699}}',
        m.MediaShare,
    ),
    (
        '{"msg_type":17,"content":{"user_id":19778240,"user_name":"John Smith","start_time":1727384100000,"end_time":1727384310000,"timestamp":1727384349000,"language":9,"data":"Hi, hello world!"}}',
        m.MediaTranscript,
    ),
    ('{"msg_type":18,"content":{"timestamp":1727384349000,"data":"Chat message"}}', m.MediaChat),
    (
        '{"msg_type":22,"rtms_stream_id":"x","status_code":0,"reason":"OK","timestamp":1727384349123}',
        m.StreamCloseResponse,
    ),
    (
        '{"msg_type":29,"user_id":16778240,"status_code":0,"reason":"OK","timestamp":1738392033699}',
        m.VideoSubscriptionResponse,
    ),
    ('{"msg_type":23,"content":{}}', m.MetadataMessage),
    ('{"msg_type":99,"foo":"bar"}', m.UnknownMessage),
]

MOCK = [
    (
        '{"msg_type":2,"protocol_version":1,"reason":"Invalid signature"}',
        m.SignalingHandshakeResponse,
    ),
    ('{"msg_type":12,"protocol_version":1,"status_code":0}', m.KeepAliveRequest),
    (
        '{"msg_type":8,"state":4,"reason":"STOP_BC_STREAM_REVOKED","timestamp":1795276263003}',
        m.StreamStateUpdate,
    ),
    (
        '{"msg_type":9,"session_id":"sess1","state":5,"stop_reason":6,"timestamp":1795276263003}',
        m.SessionStateUpdate,
    ),
]

CLIENT_SENT = [
    (
        '{"msg_type": 1, "protocol_version": 1, "sequence": 1, "meeting_uuid": "4444AAAiAAAAAiAiAiiAii==", "rtms_stream_id": "609340fb2a7946909659956c8aa9250c", "signature": "ab", "buffer_data": true}',
        m.SignalingHandshakeRequest,
    ),
    (
        '{"msg_type": 3, "protocol_version": 1, "sequence": 0, "meeting_uuid": "u", "rtms_stream_id": "s", "signature": "x", "media_type": 32, "payload_encryption": false, "media_params": {"audio": {"content_type": 2, "sample_rate": 1, "channel": 1, "codec": 1, "data_opt": 1, "send_rate": 20}, "video": {"content_type": 3, "codec": 7, "resolution": 2, "data_opt": 3, "fps": 25}, "deskshare": {"content_type": 3, "codec": 5, "resolution": 3, "fps": 1}, "transcript": {"content_type": 5, "src_language": 9, "enable_lid": true}, "chat": {"content_type": 5}}}',
        m.DataHandshakeRequest,
    ),
    (
        '{"msg_type": 5, "events": [{"event_type": 2, "subscribe": true}, {"event_type": 3, "subscribe": true}]}',
        m.EventSubscription,
    ),
    ('{"msg_type":5,"rtms_stream_id":"s","events":[1,2,3,4]}', m.EventSubscription),
    ('{"msg_type": 7, "rtms_stream_id": "s"}', m.ClientReadyAck),
    ('{"msg_type": 10, "rtms_session_id": "r"}', m.SessionStateRequest),
    ('{"msg_type": 13, "timestamp": 1727384349123}', m.KeepAliveResponse),
    ('{"msg_type": 19, "rtms_stream_id": "756FF58A"}', m.StreamStateRequest),
    ('{"msg_type": 21, "rtms_stream_id": "s"}', m.StreamCloseRequest),
    (
        '{"msg_type": 28, "user_id": 16778240, "subscribe": true, "timestamp": 1738392033699}',
        m.VideoSubscriptionRequest,
    ),
    (
        '{"msg_type": 11, "rtms_session_id": "r", "state": 2, "timestamp": 1}',
        m.SessionStateResponse,
    ),
    (
        '{"msg_type": 20, "state": 1, "rtms_stream_id": "s", "timestamp": 1694204592}',
        m.StreamStateResponse,
    ),
]


@pytest.mark.parametrize(("frame", "cls"), CANONICAL + MOCK + CLIENT_SENT)
def test_fixture_decodes_and_round_trips(frame: str, cls: type) -> None:
    msg = m.decode(frame)
    assert type(msg) is cls
    encoded = m.encode(msg)
    assert m.decode(encoded) == msg
    assert m.decode(encoded.encode()) == msg


def test_binary_pretty_printed_frames_like_the_sdk() -> None:
    pretty = json.dumps(
        {"msg_type": 12, "sequence": 7, "timestamp": 123}, indent="\t", sort_keys=True
    ).encode()
    msg = m.decode(pretty)
    assert msg == m.KeepAliveRequest(timestamp=123, sequence=7)
    assert json.loads(m.encode(msg.response())) == {"msg_type": 13, "sequence": 7, "timestamp": 123}


def test_keep_alive_without_timestamp_echoes_nothing_extra() -> None:
    msg = m.decode('{"msg_type":12,"protocol_version":1,"status_code":0}')
    assert isinstance(msg, m.KeepAliveRequest)
    assert json.loads(m.encode(msg.response())) == {"msg_type": 13}


def test_field_normalisation() -> None:
    event = m.decode(CANONICAL[4][0])
    assert isinstance(event, m.EventUpdate)
    assert [p.user_id for p in event.participants] == ["16778240", "33556610"]
    zcc = m.decode(CANONICAL[6][0])
    assert isinstance(zcc, m.EventUpdate)
    assert zcc.participant_info is not None
    assert zcc.participant_info["channel_id"] == "456edf"
    assert zcc.timestamp_key == "event_ts"
    revoked = m.decode(MOCK[2][0])
    assert isinstance(revoked, m.StreamStateUpdate)
    assert revoked.reason == m.StopReason.STREAM_REVOKED
    session = m.decode(MOCK[3][0])
    assert isinstance(session, m.SessionStateUpdate)
    assert session.rtms_session_id == "sess1"
    assert session.stop_reason == 6
    by_reason = m.decode('{"msg_type":9,"state":5,"reason":"MEETING_ENDED"}')
    assert isinstance(by_reason, m.SessionStateUpdate)
    assert by_reason.stop_reason == 6
    audio = m.decode(CANONICAL[12][0])
    assert isinstance(audio, m.MediaAudio)
    assert audio.user_id == "0"
    assert audio.data == b"\x00\x00\x00\x00"
    mock_fail = m.decode(MOCK[0][0])
    assert isinstance(mock_fail, m.SignalingHandshakeResponse)
    assert mock_fail.status_code is None
    assert not mock_fail.ok


def test_chat_json_form_names_the_sender() -> None:
    data = json.dumps({"sender": {"user_id": 42, "user_name": "Ann"}, "message_id": "m1"})
    chat = m.decode(json.dumps({"msg_type": 18, "content": {"timestamp": 5, "data": data}}))
    assert isinstance(chat, m.MediaChat)
    assert (chat.user_id, chat.user_name, chat.text) == ("42", "Ann", data)
    as_object = m.decode('{"msg_type":18,"content":{"timestamp":5,"data":{"a":1}}}')
    assert isinstance(as_object, m.MediaChat)
    assert as_object.text == '{"a":1}'


def test_encode_writes_integers_for_enums() -> None:
    request = m.DataHandshakeRequest(
        rtms_stream_id="s",
        signature="x",
        instance_id="i",
        instance_key="engagement_id",
        media_type=m.MediaType.AUDIO | m.MediaType.TRANSCRIPT,
        media_params=m.MediaParams(audio=m.AudioParams(codec=m.PayloadType.OPUS)),
    )
    wire = m.encode(request)
    assert '"media_type":9' in wire
    assert '"codec":4' in wire
    assert '"engagement_id":"i"' in wire
    assert " " not in wire


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ("not json", "JSON"),
        ("[1,2]", "object"),
        ('{"foo":1}', "msg_type"),
        ('{"msg_type":"SIGNALING_HAND_SHAKE_RESP"}', "msg_type"),
        ('{"msg_type":14,"content":{"data":"!!!!","timestamp":1}}', "content.data"),
        ('{"msg_type":14,"content":{"data":"AAAA","length":4,"timestamp":1}}', "content.length"),
        ('{"msg_type":14,"content":{"data":"AAAA"}}', "content.timestamp"),
        ('{"msg_type":14,"content":"AAAA"}', "content"),
        ('{"msg_type":2,"status_code":"0"}', "status_code"),
        ('{"msg_type":8,"reason":1}', "state"),
        ('{"msg_type":6,"event":{"timestamp":1}}', "event_type"),
        ('{"msg_type":17,"content":{"timestamp":1,"data":5}}', "data"),
        ('{"msg_type":1,"rtms_stream_id":"s","signature":"x"}', "meeting_uuid"),
        ('{"msg_type":2,"media_server":{"server_urls":{"audio":1}}}', "server_urls.audio"),
        (b"\xff\xfe", "JSON"),
    ],
)
def test_malformed_input_names_the_field(frame: str | bytes, field: str) -> None:
    with pytest.raises(RemoteProtocolError, match=field.replace(".", r"\.")):
        m.decode(frame)


def test_enum_helpers() -> None:
    assert m.MediaType.ALL == 32
    assert m.MediaType.ALL not in (m.MediaType.AUDIO | m.MediaType.VIDEO | m.MediaType.CHAT)
    assert [m.SampleRate(i).hz for i in range(4)] == [8000, 16000, 32000, 48000]
    assert m.SampleRate.from_hz(48000) is m.SampleRate.SR_48K
    assert m.sample_rate_hz(9) is None
    assert m.classify_stop_reason(8) is m.StopClass.REVOKED
    assert all(m.classify_stop_reason(r) is m.StopClass.ABNORMAL for r in (*range(10, 20), 24))
    assert all(m.classify_stop_reason(r) is m.StopClass.NORMAL for r in (1, 2, 6, 7, 9, 20, 21, 25))
    assert m.parse_stop_reason("STOP_BC_MEETING_ENDED") == 6
    assert m.parse_stop_reason("APP_DISABLED_BY_HOST") == 5
    assert m.parse_stop_reason("bogus") is None
    assert m.event_name(8, contact_center=True) == "CONSUMER_ANSWERED"
    assert m.event_name(8, contact_center=False) == "PARTICIPANT_VIDEO_ON"
    assert m.TranscriptLanguage.ENGLISH == 9


@pytest.mark.parametrize(
    ("code", "reason", "signaling", "expected"),
    [
        (8, "duplicate signal request", True, m.Rejection.DUPLICATE_SIGNAL),
        (17, "", True, m.Rejection.DUPLICATE_SIGNAL),
        (8, "", True, m.Rejection.DUPLICATE_SIGNAL),
        (3, "invalid signature", True, m.Rejection.SIGNATURE),
        (15, "", True, m.Rejection.SIGNATURE),
        (14, "", True, m.Rejection.SIGNATURE),
        (None, "Invalid signature", True, m.Rejection.SIGNATURE),
        (16, "", False, m.Rejection.DUPLICATE_MEDIA),
        (31, "DUPLICATE_MEDIA_DATA_CONNECTION", False, m.Rejection.DUPLICATE_MEDIA),
        (15, "", False, m.Rejection.ALL_CONNECTION_EXISTS),
        (2, "invalid rtms stream id", True, m.Rejection.OTHER),
        (45, "internal exception", True, m.Rejection.OTHER),
        (13, "session not found", True, m.Rejection.OTHER),
        (1, "connection timeout", False, m.Rejection.OTHER),
        (12, "media type transcript not support", False, m.Rejection.UNSUPPORTED),
        (18, "AUTHENTICATION_FAILURE", True, m.Rejection.AUTH),
    ],
)
def test_rejection_classification(
    code: int | None, reason: str, signaling: bool, expected: m.Rejection
) -> None:
    assert m.classify_rejection(code, reason, signaling=signaling) is expected
    assert expected.final == (expected in (m.Rejection.SIGNATURE, m.Rejection.AUTH))
    assert not m.is_success(code) or code == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "content",
        "data",
        "timestamp",
        "event",
        "state",
        "reason",
        "status_code",
        "media_params",
        "user_id",
        "length",
        "events",
        "media_server",
        "participants",
        "signature",
        "stop_reason",
        "rtms_stream_id",
        "meeting_uuid",
        "media_type",
        "event_type",
        "audio",
        "server_urls",
    ]
)
message_like = st.builds(
    lambda t, fields: {**fields, "msg_type": t},
    st.integers(min_value=-1, max_value=31),
    st.dictionaries(field_names, json_values, max_size=6),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, message_like))
def test_decode_arbitrary_json_raises_only_remote_protocol_error(value: object) -> None:
    with contextlib.suppress(RemoteProtocolError):
        m.decode(json.dumps(value))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64))
def test_decode_arbitrary_frames_raises_only_remote_protocol_error(frame: bytes | str) -> None:
    with contextlib.suppress(RemoteProtocolError):
        m.decode(frame)


# --- the msg 14 fast path ----------------------------------------------------------------------


def _tolerant_audio(frame: str | bytes) -> object:
    """What the tolerant decoder makes of a frame, as the fast path would have to return it."""
    try:
        obj = m.load_object(frame)
        content = obj.get("content")
        if obj["msg_type"] != 14 or type(content) is not dict:
            return "not audio"
        return m.binary_content(content, "14")
    except RemoteProtocolError as exc:
        return exc


def _assert_fast_agrees(frame: str | bytes) -> None:
    fast = m.fast_audio_content(frame)
    if fast is not None:
        assert fast == _tolerant_audio(frame)


_b64_text = st.text(alphabet="ABCDQRwxyz0189+/=-_ \\n", max_size=12)
_b64 = st.binary(max_size=9).map(lambda b: base64.b64encode(b).decode())
_odd = st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=4)
_wide_int = st.integers() | st.integers(min_value=-(2**70), max_value=2**70)


def _mostly(good: st.SearchStrategy[object], odd: st.SearchStrategy[object]) -> Any:
    """``good`` about four times in five: most generated frames should reach the fast path."""
    return st.sampled_from([True, True, True, True, False]).flatmap(lambda ok: good if ok else odd)


audio_contents = st.fixed_dictionaries(
    {
        "data": _mostly(_b64, _b64_text | _odd),
        "timestamp": _mostly(st.integers(), _wide_int | _odd),
    },
    optional={
        "length": _mostly(st.integers(min_value=0, max_value=9), _odd),
        "user_id": _mostly(st.integers(min_value=0, max_value=2**32) | st.text(max_size=4), _odd),
        "user_name": _mostly(st.text(max_size=6), _odd),
        "channel_id": _mostly(st.text(max_size=4), _wide_int | _odd),
    },
).flatmap(
    lambda content: _mostly(
        st.just(content),
        st.fixed_dictionaries({"sequence": _wide_int}).map(lambda extra: {**content, **extra}),
    )
)


@settings(max_examples=400, deadline=None)
@given(
    _mostly(st.just(14), st.sampled_from([15, 1]) | st.booleans() | st.floats(allow_nan=False)),
    _mostly(audio_contents, json_values),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["", "dup_ts", "dup_data", "escaped_key", "bom", "indent"]),
)
def test_fast_audio_path_never_disagrees_with_the_tolerant_decoder(
    msg_type: object, content: object, ascii_only: bool, as_bytes: bool, twist: str
) -> None:
    frame = json.dumps({"msg_type": msg_type, "content": content}, ensure_ascii=ascii_only)
    if twist == "indent":
        frame = json.dumps({"msg_type": msg_type, "content": content}, indent=2)
    elif twist == "dup_ts":
        frame = frame.replace('"content": {', '"content": {"timestamp": 7, ', 1)
    elif twist == "dup_data":
        frame = frame.replace('"content": {', '"content": {"data": "QQ==", ', 1)
    elif twist == "escaped_key":
        frame = frame.replace('"timestamp"', '"timest\\u0061mp"')
    elif twist == "bom":
        frame = "\ufeff" + frame
    _assert_fast_agrees(frame.encode() if as_bytes else frame)


@pytest.mark.parametrize(
    "frame",
    [
        '{"msg_type":14,"content":{"user_id":0,"data":"AAAAAA==","length":4,"timestamp":1}}',
        '{"msg_type":14,"content":{"channel_id":"123abc","data":"AAAAAA==","timestamp":1}}',
        '{"msg_type":14,"content":{"user_id":16778240,"user_name":"J","data":"QUJD","timestamp":1}}',
        '{"msg_type":14,"content":{"data":"QUJ\\u0044\\/A==","timestamp":1}}',
        '{"msg_type":14,"content":{"data":"QR==","timestamp":1}}',
        '{"msg_type":14,"content":{"data":"QQ","timestamp":1}}',
        '{"msg_type":14,"content":{"data":"====","timestamp":1}}',
        '{"msg_type":14,"content":{"data":"QUJD\\n","timestamp":1}}',
        '{"msg_type":14,"content":{"data":"","timestamp":1}}',
        '{"msg_type":14,"content":{"data":"QUJD","timestamp":1.0}}',
        '{"msg_type":14,"content":{"data":"QUJD","timestamp":true}}',
        '{"msg_type":14,"content":{"data":"QUJD","timestamp":1,"length":true}}',
        '{"msg_type":14,"content":{"data":"QUJD","timestamp":1,"length":3.0}}',
        '{"msg_type":14,"content":{"data":"QUJD","timestamp":1,"length":4}}',
        '{"msg_type":14,"content":{"data":"QUJD","timestamp":1,"user_id":true}}',
        '{"msg_type":14,"content":{"data":"QUJD","timestamp":1,"user_name":"\\ud800"}}',
        '{"msg_type":14,"content":{"data":"QUJD","timestamp":1,"user_name":5}}',
        '{"msg_type":14,"content":{"data":"QUJD","timestamp":1},"x":NaN}',
        '{"msg_type":14,"content":{"data":"QUJD","timestamp":1,"timest\\u0061mp":2}}',
        '{"msg_type":14,"content":{"data":"QUJD","timestamp":99999999999999999999999}}',
        '{"msg_type":14,"content":{"data":"QUJD","timestamp":1,"user_id":' + "9" * 5000 + "}}",
        '{"msg_type":14,"x":' + "9" * 5000 + ',"content":{"data":"QUJD","timestamp":1}}',
        '{"msg_type":14,"x":' + "[" * 990 + "]" * 990 + ',"content":{"data":"QUJD","timestamp":1}}',
        '{"msg_type":15,"msg_type":14,"content":{"data":"QUJD","timestamp":1}}',
        '{"msg_type":14,"msg_type":15,"content":{"data":"QUJD","timestamp":1}}',
        '{"msg_type":14.0,"content":{"data":"QUJD","timestamp":1}}',
        '{"msg_type":14,"content":null}',
        '{"msg_type":14,"content":{"data":"QUJD","timestamp":1}} x',
        '\ufeff{"msg_type":14,"content":{"data":"QUJD","timestamp":1}}',
        b'{"msg_type":14,"content":{"data":"QUJD","timestamp":1,"user_name":"\xed\xa0\x80"}}',
        '{"msg_type":14,"content":{"data":"QUJD","timestamp":1}}'.encode("utf-16"),
        b"\xef\xbb\xbf" + b'{"msg_type":14,"content":{"data":"QUJD","timestamp":1}}',
    ],
)
def test_fast_audio_path_on_odd_frames(frame: str | bytes) -> None:
    _assert_fast_agrees(frame)


def test_fast_audio_path_takes_the_documented_shape() -> None:
    frame = '{"msg_type":14,"content":{"user_id":7,"user_name":"J","data":"QUJD","length":3,"timestamp":5}}'
    assert m.fast_audio_content(frame) == (5, b"ABC", "7", "J", None)
    assert m.fast_audio_content(frame.replace('"length":3', '"length":4')) is None
    assert m.fast_audio_content(frame.replace("14", "15", 1)) is None
