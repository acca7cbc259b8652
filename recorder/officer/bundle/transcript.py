"""The readable side of a bundle: transcript as plain text and WebVTT, chat and events as JSON.

Input is the recording's records (JSON lines, ``recorder.audio.records``) in file order. Cue and
line times are relative to the listening file's first sample (``zero_ms``), so a player shows the
words with the audio; the plain text also gives the UTC time. A cue ends where RTMS says
(``end_ms``), else where the same speaker's next words begin, else ``DEFAULT_CUE_MS`` later.

Transcript cues are kept until the end to be sorted by start (WebVTT requires cues in start
order): a two-hour call's words are some hundred KiB, not audio. Chat and events are streamed.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import BinaryIO, Final

DEFAULT_CUE_MS: Final = 3000
TRANSCRIPT_TYPE: Final = "transcript"
CHAT_TYPE: Final = "chat"


@dataclass(frozen=True, slots=True)
class Cue:
    start_ms: int
    end_ms: int | None
    speaker: str
    text: str
    language: str | None


def vtt_time(ms: int) -> str:
    ms = max(0, ms)
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _one_paragraph(text: str) -> str:
    # A blank line ends a cue ("-->" cannot appear once ">" is escaped).
    lines = [line.strip() for line in text.replace("\r", "\n").split("\n")]
    return "\n".join(line for line in lines if line)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def speaker_name(record: dict[str, object], channel_names: dict[str, str]) -> str:
    name = record.get("user_name")
    if isinstance(name, str) and name:
        return name
    channel = record.get("channel_id")
    if isinstance(channel, str) and channel in channel_names:
        return channel_names[channel]
    user_id = record.get("user_id")
    if isinstance(user_id, str) and user_id:
        return user_id
    if isinstance(channel, str) and channel:
        return f"channel {channel}"
    return "unknown speaker"


class RecordsSplitter:
    """Feed record lines; writes chat and events as JSON arrays, keeps transcript cues."""

    def __init__(self, chat: BinaryIO, events: BinaryIO) -> None:
        self._chat, self._events = chat, events
        self._chat_count = self._event_count = 0
        self.cues: list[Cue] = []
        self._pending: list[dict[str, object]] = []
        #: Names RTMS gave each Contact Center / phone leg (transcripts carry only channel_id).
        self.channel_names: dict[str, str] = {}
        #: Roles RTMS named per audio track (``channel-<id>`` -> ``caller``/``callee``).
        self.track_roles: dict[str, str] = {}
        chat.write(b"[")
        events.write(b"[")

    def feed(self, line: bytes) -> None:
        if not line.strip():
            return
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError("a record line is not a JSON object")
        kind = record.get("type")
        if kind == TRANSCRIPT_TYPE:
            self._cue(record)
        elif kind == CHAT_TYPE:
            self._chat_count = self._append(self._chat, self._chat_count, record)
        else:
            channel, mode = record.get("channel_id"), record.get("participant_mode")
            if isinstance(channel, str) and isinstance(mode, str) and mode:
                self.track_roles.setdefault(f"channel-{channel}", mode)
            name = record.get("user_name")
            if isinstance(channel, str) and isinstance(name, str) and name:
                self.channel_names.setdefault(channel, name)
            self._event_count = self._append(self._events, self._event_count, record)

    def finish(self) -> None:
        self._chat.write(b"\n]\n")
        self._events.write(b"\n]\n")
        # Speakers are named once every record is read: a leg's name may come after its words.
        self.cues = [cue for record in self._pending if (cue := self._to_cue(record))]
        self._pending = []
        self.cues.sort(key=lambda c: c.start_ms)

    def _append(self, out: BinaryIO, count: int, record: dict[str, object]) -> int:
        out.write(b"\n" if count == 0 else b",\n")
        out.write(json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8"))
        return count + 1

    def _cue(self, record: dict[str, object]) -> None:
        self._pending.append(record)

    def _to_cue(self, record: dict[str, object]) -> Cue | None:
        start = record.get("start_ms")
        if not isinstance(start, int) or isinstance(start, bool):
            start = record.get("ts_ms")
        end = record.get("end_ms")
        text = record.get("text")
        if not isinstance(start, int) or not isinstance(text, str):
            return None
        end_ms = end if isinstance(end, int) and not isinstance(end, bool) and end > start else None
        language = record.get("language")
        return Cue(
            start,
            end_ms,
            speaker_name(record, self.channel_names),
            text,
            language if isinstance(language, str) else None,
        )


def cue_end(cues: list[Cue], index: int) -> int:
    cue = cues[index]
    if cue.end_ms is not None:
        return cue.end_ms
    following = [c.start_ms for c in cues[index + 1 :] if c.start_ms > cue.start_ms]
    default = cue.start_ms + DEFAULT_CUE_MS
    return min(following[0], default) if following else default


def write_vtt(out: BinaryIO, cues: list[Cue], zero_ms: int) -> None:
    out.write(b"WEBVTT\n")
    for number, cue in enumerate(cues, start=1):
        start = max(0, cue.start_ms - zero_ms)
        end = max(start + 1, cue_end(cues, number - 1) - zero_ms)
        text = _escape(_one_paragraph(cue.text)) or "..."
        voice = _escape(_one_line(cue.speaker)) or "unknown speaker"
        block = f"\n{number}\n{vtt_time(start)} --> {vtt_time(end)}\n<v {voice}>{text}\n"
        out.write(block.encode("utf-8"))


def write_text(out: BinaryIO, cues: list[Cue], zero_ms: int) -> None:
    for cue in cues:
        utc = dt.datetime.fromtimestamp(cue.start_ms / 1000, tz=dt.UTC)
        stamp = utc.strftime("%Y-%m-%d %H:%M:%S") + f".{cue.start_ms % 1000:03d}Z"
        text = " ".join(_one_paragraph(cue.text).split("\n"))
        speaker = _one_line(cue.speaker) or "unknown speaker"
        line = f"[{vtt_time(cue.start_ms - zero_ms)}  {stamp}] {speaker}: {text}\n"
        out.write(line.encode("utf-8"))
