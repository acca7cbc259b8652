"""Shared by the audio tests: a decoder fed a bad packet in the middle of a stream."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from recorder.audio.decoder import AudioDecoder
from recorder.errors import DecodeError


def decoded_around_a_bad_packet(
    decoder: AudioDecoder, packets: Sequence[bytes], bad: bytes, at: int
) -> list[bytes]:
    """Every packet decoded, the flush last, with ``bad`` offered (and refused with
    ``DecodeError``) just before packet ``at``."""
    ours = [decoder.decode(p) for p in packets[:at]]
    with pytest.raises(DecodeError):
        decoder.decode(bad)
    return ours + [decoder.decode(p) for p in packets[at:]] + [decoder.flush()]
