"""Object key layout: stable, readable, deterministic from a segment's identity, safe for any id.

::

    recordings/<product>/<yyyy>/<mm>/<dd>/<instance id>/<rtms_stream_id>/<track>/<index:06d>.<ext>

``yyyy/mm/dd`` is the UTC day the segment was opened. Every id component is percent-encoded
outside ``[A-Za-z0-9._-]`` (``recorder.store.keycodec``), so a meeting UUID such as
``4444AAAiAAAAAiAiAiiAii==`` or one holding ``/`` never adds a level and ``..`` never appears.
The same segment always maps to the same key, which is what makes uploads idempotent and keeps
one segment from ever living under two keys. ``parse_object_key`` inverts ``object_key``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final

from recorder.errors import StorageError
from recorder.sink import SegmentIdentity
from recorder.store.keycodec import decode_component, encode_component

KEY_ROOT: Final = "recordings"
#: Default extension of a sealed (encrypted) segment file.
SEALED_EXTENSION: Final = "seg"


@dataclass(frozen=True, slots=True)
class SegmentKey:
    #: ``meeting``, ``webinar``, ``session`` (Video SDK) or ``zcc``.
    product: str
    #: UTC day the segment was opened.
    day: date
    #: meeting_uuid / webinar_uuid / session_id / engagement_id, exactly as Zoom sent it.
    instance_id: str
    rtms_stream_id: str
    track: str
    segment_index: int
    extension: str = SEALED_EXTENSION


def segment_key(
    identity: SegmentIdentity,
    *,
    product: str,
    instance_id: str,
    rtms_stream_id: str,
    extension: str = SEALED_EXTENSION,
) -> SegmentKey:
    day = datetime.fromtimestamp(identity.created_ms / 1000, tz=UTC).date()
    return SegmentKey(
        product=product,
        day=day,
        instance_id=instance_id,
        rtms_stream_id=rtms_stream_id,
        track=identity.track,
        segment_index=identity.segment_index,
        extension=extension,
    )


def object_key(key: SegmentKey) -> str:
    if key.segment_index < 0:
        raise StorageError(f"segment index must not be negative, got {key.segment_index}")
    leaf = f"{key.segment_index:06d}.{encode_component(key.extension)}"
    return "/".join(
        [
            KEY_ROOT,
            encode_component(key.product),
            f"{key.day.year:04d}",
            f"{key.day.month:02d}",
            f"{key.day.day:02d}",
            encode_component(key.instance_id),
            encode_component(key.rtms_stream_id),
            encode_component(key.track),
            leaf,
        ]
    )


def parse_object_key(text: str) -> SegmentKey:
    parts = text.split("/")
    if len(parts) != 9 or parts[0] != KEY_ROOT:
        raise StorageError(f"not a segment object key: {text!r}")
    _root, product, year, month, day, instance_id, stream_id, track, leaf = parts
    index, dot, extension = leaf.partition(".")
    if not dot or not index.isdigit() or len(index) < 6 or not index.isascii():
        raise StorageError(f"bad segment leaf in object key: {text!r}")
    try:
        when = date(int(year), int(month), int(day))
    except ValueError as exc:
        raise StorageError(f"bad date in object key: {text!r}") from exc
    parsed = SegmentKey(
        product=decode_component(product),
        day=when,
        instance_id=decode_component(instance_id),
        rtms_stream_id=decode_component(stream_id),
        track=decode_component(track),
        segment_index=int(index),
        extension=decode_component(extension),
    )
    if object_key(parsed) != text:
        raise StorageError(f"object key is not in canonical form: {text!r}")
    return parsed
