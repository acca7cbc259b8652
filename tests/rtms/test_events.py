"""``recorder.rtms.events``: the hot-path ``audio_packet`` builds the very same frozen value."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.rtms.events import AudioCodec, AudioFormat, AudioPacket, audio_packet

formats = st.builds(
    AudioFormat,
    codec=st.sampled_from(list(AudioCodec)),
    sample_rate=st.sampled_from([8_000, 16_000, 48_000]),
    channels=st.integers(1, 2),
)
maybe_text = st.none() | st.text(max_size=20)


@given(
    track=st.text(max_size=30),
    timestamp_ms=st.integers(-(2**63), 2**63 - 1),
    payload=st.binary(max_size=64),
    fmt=formats,
    user_id=maybe_text,
    user_name=maybe_text,
    channel_id=maybe_text,
)
def test_audio_packet_equals_the_dataclass_built_the_ordinary_way(
    track: str,
    timestamp_ms: int,
    payload: bytes,
    fmt: AudioFormat,
    user_id: str | None,
    user_name: str | None,
    channel_id: str | None,
) -> None:
    fast = audio_packet(track, timestamp_ms, payload, fmt, user_id, user_name, channel_id)
    plain = AudioPacket(track, timestamp_ms, payload, fmt, user_id, user_name, channel_id)
    assert type(fast) is AudioPacket
    assert fast == plain
    assert hash(fast) == hash(plain)
    assert repr(fast) == repr(plain)
    assert dataclasses.astuple(fast) == dataclasses.astuple(plain)
    assert pickle.loads(pickle.dumps(fast)) == plain
    assert copy.copy(fast) == plain


def test_audio_packet_sets_every_field_and_stays_frozen() -> None:
    fmt = AudioFormat(AudioCodec.L16, 16_000, 1)
    packet = audio_packet("user-7", 1, b"\x00\x01", fmt, "7", "Alice", None)
    values = {f.name: getattr(packet, f.name) for f in dataclasses.fields(AudioPacket)}
    assert values == {
        "track": "user-7",
        "timestamp_ms": 1,
        "payload": b"\x00\x01",
        "format": fmt,
        "user_id": "7",
        "user_name": "Alice",
        "channel_id": None,
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        packet.track = "mixed"  # type: ignore[misc]
    assert dataclasses.replace(packet, track="mixed").track == "mixed"
