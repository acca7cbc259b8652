"""Human dates and times for officers: parse what they type, print what they read.

Accepted: ``2026-03-01`` (a whole day), ``2026-03-01 09:30``, ``2026-03-01T09:30:15``, any of
these with ``Z`` or an offset (``+01:00``), and ``now``, ``today``, ``yesterday``, ``3d`` /
``12h`` / ``30m`` (that long ago). Times without an offset are in the zone given (``--tz``, an
IANA name such as ``Europe/London``; default UTC). A date alone as an end (``--until``) means
the end of that day.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from recorder.catalog.base import LegalHoldRow, RecordingRow
from recorder.errors import RecorderError

_AGO: Final = re.compile(r"^(\d+)\s*([dhm])$")
_UNITS: Final = {
    "d": dt.timedelta(days=1),
    "h": dt.timedelta(hours=1),
    "m": dt.timedelta(minutes=1),
}


class TimeInputError(RecorderError):
    """A date, time or zone an officer typed that cannot be read (the message says which)."""


def zone(name: str | None) -> dt.tzinfo:
    if not name or name.upper() == "UTC":
        return dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TimeInputError(
            f"unknown time zone {name!r} (use an IANA name like Europe/London)"
        ) from exc


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def parse_when(
    text: str, tz: dt.tzinfo, *, end: bool = False, now: dt.datetime | None = None
) -> int:
    """Unix ms of ``text``; with ``end``, a bare date means the end of that day (exclusive)."""
    try:
        return _parse_when(text, tz, end=end, now=now)
    except OverflowError as exc:  # 99999999d ago, the end of 9999-12-31, ...
        raise TimeInputError(f"{text!r} is outside the dates this recorder can name") from exc


def _parse_when(text: str, tz: dt.tzinfo, *, end: bool, now: dt.datetime | None) -> int:
    value = text.strip()
    current = now or dt.datetime.now(dt.UTC)
    lowered = value.lower()
    if lowered == "now":
        return _ms(current)
    if lowered in ("today", "yesterday"):
        day = current.astimezone(tz).date()
        if lowered == "yesterday":
            day -= dt.timedelta(days=1)
        return _day(day, tz, end)
    ago = _AGO.match(lowered)
    if ago:
        return _ms(current - int(ago.group(1)) * _UNITS[ago.group(2)])
    try:
        if len(value) == 10:
            return _day(dt.date.fromisoformat(value), tz, end)
        moment = dt.datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError as exc:
        raise TimeInputError(
            f"cannot read {text!r} as a date or time (try 2026-03-01, 2026-03-01 09:30, "
            "2026-03-01T09:30+01:00, today, 3d)"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return _ms(moment)


def _day(day: dt.date, tz: dt.tzinfo, end: bool) -> int:
    if end:
        day += dt.timedelta(days=1)
    return _ms(dt.datetime.combine(day, dt.time(), tzinfo=tz))


def show_time(ms: int | None, tz: dt.tzinfo) -> str:
    if ms is None:
        return "-"
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).astimezone(tz)
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def show_duration(ms: int | None) -> str:
    if ms is None:
        return "ongoing"
    seconds = ms // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def recording_fields(r: RecordingRow, tz: dt.tzinfo) -> dict[str, object]:
    """What ``search --json`` and ``show --json`` both say about a recording (one shape)."""
    return {
        "recording_id": r.recording_id,
        "product": r.product.value,
        "instance_id": r.instance_id,
        "rtms_stream_id": r.rtms_stream_id,
        "meeting_number": r.meeting_number,
        "account_id": r.account_id,
        "operator_id": r.operator_id,
        "status": r.status.value,
        "end_reason": r.end_reason,
        "started_ms": r.started_ms,
        "ended_ms": r.ended_ms,
        "started": show_time(r.started_ms, tz),
        "ended": show_time(r.ended_ms, tz) if r.ended_ms is not None else None,
    }


def hold_fields(h: LegalHoldRow) -> dict[str, object]:
    """One legal hold as ``show --json`` and the export manifest both give it."""
    return {
        "hold_id": h.hold_id,
        "matter": h.matter,
        "scope": h.scope.value,
        "placed_by": h.placed_by,
        "placed_ms": h.placed_ms,
        "reason": h.reason,
        "released_ms": h.released_ms,
        "active": h.active,
    }


def retention_fields(
    policy: tuple[str, str, int] | None, retain_until_ms: Sequence[int]
) -> dict[str, object]:
    """The retention policy in force (name, SHA-256 of its file, days) and the objects' range of
    retain-until, as ``show --json`` and the export manifest both give them."""
    return {
        "policy": (
            {"name": policy[0], "sha256": policy[1], "retain_days": policy[2]} if policy else None
        ),
        "retain_until_min_ms": min(retain_until_ms) if retain_until_ms else None,
        "retain_until_max_ms": max(retain_until_ms) if retain_until_ms else None,
    }
