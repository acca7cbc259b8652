"""The evidence recorder: catalog writes of one engagement, never on the capture task.

Capture hands every catalog intent (participants, segments, record files, gaps, pauses, the end
of the recording) to ``submit``, which never blocks and never raises: a slow or unreachable
catalog must not turn into audio drops, and one failed write must not end a recording.

Rules:

1. One task per engagement writes the intents in order. Each write is time-bounded.
2. An intent the catalog refuses or cannot take in time is appended to a local journal (JSON
   lines in ``<state_dir>/evidence-journal/``, fsynced; ids, times and digests only, never media
   or keys) and from then on every later intent goes behind it, so the order holds. The task
   replays the journal from the start every ``retry_s`` until the catalog takes it all, then
   deletes it. Every intent is idempotent in the catalog, so a replay after a partial success is
   harmless. Journals left by a process that died are replayed by ``reconcile_journals``, at
   startup and periodically.
3. The bounded in-memory queue overflows into the journal, not into memory or into waiting.
4. What must follow a catalog write (spooling a sealed segment, so its upload job never names a
   row the catalog lacks) runs after that write succeeded; for a journaled intent, after the
   replay. If the process dies first, the sealed file is still in the writing directory, where
   recovery (at startup and in the periodic sweep) catalogs and spools it.
5. Replays are not fenced by the lease: they are what this process really recorded while it
   held the stream (segment indexes are per-epoch, so they cannot collide with a new owner's).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio

from recorder.catalog.aio import AsyncCatalog
from recorder.catalog.base import (
    Lease,
    NewRecordFile,
    NewSegment,
    ParticipantInfo,
    RecordingStatus,
    StreamEvent,
    StreamState,
)
from recorder.errors import CatalogError, RecorderError
from recorder.rtms.events import GapCause
from recorder.rtms.webhook import Product

logger = logging.getLogger(__name__)

JOURNAL_DIR: Final = "evidence-journal"
JOURNAL_SUFFIX: Final = ".jsonl"
DEFAULT_QUEUE: Final = 256
DEFAULT_WRITE_TIMEOUT_S: Final = 5.0
DEFAULT_RETRY_S: Final = 1.0

Then = Callable[[], Awaitable[None]]
JsonArgs = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Intent:
    """One catalog write, as data (so it can be journaled and replayed)."""

    op: str
    args: JsonArgs

    def to_line(self) -> bytes:
        return (
            json.dumps({"op": self.op, "args": self.args}, separators=(",", ":")).encode() + b"\n"
        )

    @classmethod
    def from_line(cls, line: bytes) -> Intent:
        data = json.loads(line)
        if not isinstance(data, dict) or not isinstance(data.get("op"), str):
            raise CatalogError("evidence journal: a line is not an intent")
        args = data.get("args")
        return cls(data["op"], args if isinstance(args, dict) else {})


# --- intents ---------------------------------------------------------------------------------


def participants(recording_id: str, people: list[ParticipantInfo]) -> Intent:
    return Intent(
        "add_participants",
        {"recording_id": recording_id, "participants": [dataclasses.asdict(p) for p in people]},
    )


def contact_center(recording_id: str, **fields: str | None) -> Intent:
    return Intent("set_contact_center", {"recording_id": recording_id, "fields": fields})


def segment(new: NewSegment) -> Intent:
    return Intent("add_segment", {"segment": dataclasses.asdict(new)})


def record_file(new: NewRecordFile) -> Intent:
    return Intent("add_record_file", {"record": dataclasses.asdict(new)})


def gap(recording_id: str, track: str, **fields: Any) -> Intent:
    return Intent("add_gap", {"recording_id": recording_id, "track": track, **fields})


def pause(recording_id: str, **fields: Any) -> Intent:
    return Intent("add_pause", {"recording_id": recording_id, **fields})


def takeover_gap(
    recording_id: str,
    track: str,
    *,
    start_ms: int,
    first_segment_index: int,
    epoch: int,
    checkpoint_ms: int | None = None,
) -> Intent:
    """After a takeover, the time between where the previous owner's recording of ``track``
    provably reached (its last segment, or the later durable checkpoint it kept in the lease
    row: its ``.part`` holds that audio for recovery) and this owner's first segment is a
    ``recorder_restart`` gap."""
    return Intent(
        "takeover_gap",
        {
            "recording_id": recording_id,
            "track": track,
            "start_ms": start_ms,
            "first_segment_index": first_segment_index,
            "epoch": epoch,
            "checkpoint_ms": checkpoint_ms,
        },
    )


def end_recording(recording_id: str, *, ended_ms: int, reason: str, status: str) -> Intent:
    return Intent(
        "end_recording",
        {"recording_id": recording_id, "ended_ms": ended_ms, "reason": reason, "status": status},
    )


def stream_stopped(rtms_stream_id: str, product: str, instance_id: str, event_ts_ms: int) -> Intent:
    return Intent(
        "stream_stopped",
        {
            "rtms_stream_id": rtms_stream_id,
            "product": product,
            "instance_id": instance_id,
            "event_ts_ms": event_ts_ms,
        },
    )


async def apply_intent(
    catalog: AsyncCatalog, intent: Intent, *, fence: Lease | None, now_ms: int
) -> None:
    """Write one intent; raises ``RecorderError`` (``CatalogError``, ``LeaseLost``) on refusal."""
    a: Mapping[str, Any] = intent.args
    try:
        if intent.op == "add_participants":
            people = [ParticipantInfo(**p) for p in a["participants"]]
            await catalog.add_participants(a["recording_id"], people)
        elif intent.op == "set_contact_center":
            await catalog.set_contact_center(a["recording_id"], **a["fields"])
        elif intent.op == "add_segment":
            await catalog.add_segment(NewSegment(**a["segment"]), now_ms, fence=fence)
        elif intent.op == "add_record_file":
            await catalog.add_record_file(NewRecordFile(**a["record"]), now_ms, fence=fence)
        elif intent.op == "add_gap":
            await catalog.add_gap(**a, fence=fence)
        elif intent.op == "add_pause":
            await catalog.add_pause(**a, fence=fence)
        elif intent.op == "takeover_gap":
            await _write_takeover_gap(catalog, a, fence=fence)
        elif intent.op == "end_recording":
            await catalog.end_recording(
                a["recording_id"],
                ended_ms=a["ended_ms"],
                reason=a["reason"],
                status=RecordingStatus(a["status"]),
                fence=fence,
            )
        elif intent.op == "stream_stopped":
            await catalog.upsert_stream(
                StreamEvent(
                    rtms_stream_id=a["rtms_stream_id"],
                    product=Product(a["product"]),
                    instance_id=a["instance_id"],
                    state=StreamState.STOPPED,
                    event_ts_ms=a["event_ts_ms"],
                ),
                now_ms,
            )
        elif intent.op == "add_transcript_tokens":
            await catalog.add_transcript_tokens(
                a["recording_id"], a["key_id"], list(a["macs"]), now_ms
            )
        else:
            raise CatalogError(f"evidence journal: unknown intent {intent.op!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"evidence journal: malformed {intent.op!r} intent: {exc}") from exc


async def _write_takeover_gap(
    catalog: AsyncCatalog, a: Mapping[str, Any], *, fence: Lease | None
) -> None:
    detail = await catalog.show(a["recording_id"])
    if detail is None:
        return
    track, first_index = a["track"], int(a["first_segment_index"])
    earlier = [
        s.end_ms for s in detail.segments if s.track == track and s.segment_index < first_index
    ]
    # The previous owner's last durable checkpoint (an intent journaled before it was kept has
    # none): audio up to it is on its disk, so the gap starts there, not at its last segment.
    checkpoint = a.get("checkpoint_ms")
    if checkpoint is not None:
        earlier.append(int(checkpoint))
    # Without an earlier segment of the track or a checkpoint (a takeover inside its first
    # segment before any renew), the gap runs from when the recording started: that time was
    # received by nobody who kept it.
    since = max(earlier) if earlier else detail.recording.started_ms
    if since < int(a["start_ms"]):
        await catalog.add_gap(
            a["recording_id"],
            track,
            start_ms=since,
            end_ms=int(a["start_ms"]),
            cause=str(GapCause.RECORDER_RESTART),
            detail=f"ownership epoch {a['epoch']} began",
            fence=fence,
        )


# --- the journal -----------------------------------------------------------------------------


def _append(path: Path, intents: list[Intent]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, b"".join(i.to_line() for i in intents))
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path) -> list[Intent]:
    intents: list[Intent] = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            intents.append(Intent.from_line(line))
        except (ValueError, CatalogError):
            # A line torn by a crash mid-append: the intents before it still count.
            logger.warning("evidence journal: unreadable line skipped path=%s", path)
    return intents


#: Where intents the catalog refuses for good go (kept for an operator, never replayed).
REJECTED_SUFFIX: Final = ".rejected"


async def replay_journal(catalog: AsyncCatalog, path: Path, now_ms: int) -> int:
    """Write every intent of ``path`` (unfenced, rule 5); delete it once all went in.

    An intent the catalog refuses while it answers otherwise (a digest conflict, a malformed
    line) is set aside in ``<path>.rejected`` and logged, so that one bad intent never blocks
    the journal behind it; while the catalog does not answer at all, the error is raised.
    """
    intents = await trio.to_thread.run_sync(_read, path)
    rejected: list[Intent] = []
    for intent in intents:
        try:
            await apply_intent(catalog, intent, fence=None, now_ms=now_ms)
        except RecorderError as exc:
            await catalog.schema_version()  # raises while the catalog is unreachable
            logger.error(
                "evidence journal: intent refused by the catalog, set aside op=%s path=%s: %s",
                intent.op,
                path,
                exc,
            )
            rejected.append(intent)
    if rejected:
        rejected_path = path.with_name(path.name + REJECTED_SUFFIX)
        await trio.to_thread.run_sync(_append, rejected_path, rejected)
    await trio.Path(path).unlink(missing_ok=True)
    return len(intents) - len(rejected)


async def reconcile_journals(
    catalog: AsyncCatalog, state_dir: Path, now_ms: int, *, busy: frozenset[Path] = frozenset()
) -> int:
    """Replay the journals nobody live is writing (``busy``); returns intents written."""
    directory = trio.Path(state_dir / JOURNAL_DIR)
    if not await directory.exists():
        return 0
    written = 0
    for path in sorted(await directory.iterdir()):
        plain = Path(path)
        if plain in busy or not plain.name.endswith(JOURNAL_SUFFIX):
            continue
        try:
            written += await replay_journal(catalog, plain, now_ms)
        except RecorderError as exc:
            logger.warning("evidence journal not reconciled yet path=%s: %s", plain, exc)
    return written


async def _then_releasing(held: set[Path], path: Path, then: Then) -> None:
    try:
        await then()
    finally:
        held.discard(path)


# --- the recorder ----------------------------------------------------------------------------


@dataclass(slots=True)
class RecorderStats:
    written: int = 0
    journaled: int = 0
    replayed: int = 0


class EvidenceRecorder:
    """Writes one engagement's intents to the catalog, in order, off the capture task."""

    def __init__(
        self,
        catalog: AsyncCatalog,
        journal_path: Path,
        *,
        fence: Callable[[], Lease | None],
        now_ms: Callable[[], int],
        queue_size: int = DEFAULT_QUEUE,
        write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S,
        retry_s: float = DEFAULT_RETRY_S,
        log: logging.LoggerAdapter[logging.Logger] | None = None,
        on_journaled: Callable[[int], None] | None = None,
    ) -> None:
        self._catalog = catalog
        self.journal_path = journal_path
        self._fence = fence
        self._now_ms = now_ms
        self._queue_size = queue_size
        self._write_timeout_s = write_timeout_s
        self._retry_s = retry_s
        self._log = log or logging.LoggerAdapter(logger, {})
        self._on_journaled = on_journaled or (lambda count: None)
        self._pending: collections.deque[tuple[Intent, Then | None]] = collections.deque()
        #: Follow-ups of journaled intents, run once the journal has been replayed.
        self._deferred: list[Then] = []
        self._journaled = False
        self._wake = trio.Event()
        self._closing = False
        self.stats = RecorderStats()
        #: Sealed files whose hand-off to the spool is still to come (the sweep leaves them).
        self.held_paths: set[Path] = set()

    @property
    def degraded(self) -> bool:
        """True while intents wait in the journal for the catalog to come back."""
        return self._journaled

    def submit(
        self, intent: Intent, then: Then | None = None, *, holds: Path | None = None
    ) -> None:
        """Queue ``intent``; never blocks, never raises (overflow goes to the journal).

        ``holds`` names a sealed file that ``then`` hands on: the orphan sweep leaves it alone
        while this recorder may still do so.
        """
        if holds is not None and then is not None:
            self.held_paths.add(holds)
            then = functools.partial(_then_releasing, self.held_paths, holds, then)
        if len(self._pending) >= self._queue_size:
            self._log.warning("evidence queue full: intent journaled op=%s", intent.op)
            self._spill([(intent, then)])
        else:
            self._pending.append((intent, then))
        self._wake.set()

    def _spill(self, items: list[tuple[Intent, Then | None]]) -> None:
        # Rare (queue overflow); the write is small.
        try:
            _append(self.journal_path, [intent for intent, _ in items])
        except OSError as exc:
            # The journal cannot take it either (disk full?): keep it in memory, over the
            # bound, rather than lose it; the sealed files themselves are on disk regardless.
            self._log.error("evidence journal unwritable, intent kept in memory: %s", exc)
            self._pending.extend(items)
            return
        self._deferred.extend(then for _, then in items if then is not None)
        self._journaled = True
        self.stats.journaled += len(items)
        self._on_journaled(len(items))

    async def _journal(self, items: list[tuple[Intent, Then | None]]) -> None:
        intents = [intent for intent, _ in items]
        try:
            await trio.to_thread.run_sync(_append, self.journal_path, intents)
        except OSError as exc:
            self._log.error("evidence journal unwritable, intents kept in memory: %s", exc)
            self._pending.extendleft(reversed(items))
            await trio.sleep(self._retry_s)  # neither catalog nor disk: do not spin
            return
        self._deferred.extend(then for _, then in items if then is not None)
        self._journaled = True
        self.stats.journaled += len(items)
        self._on_journaled(len(items))

    async def run(self) -> None:
        """Write until ``finish`` was called and everything is written (or journaled)."""
        while True:
            # A step is shielded (and bounded): cancelling a write half-way would leave its
            # follow-up (a spool hand-off) undone or done twice; ``close`` runs the rest.
            with trio.CancelScope(shield=True) as step:
                step.deadline = trio.current_time() + 4 * self._write_timeout_s
                await self._step()
            if self._closing and not self._pending:
                return
            self._wake = trio.Event()
            if self._pending and not self._journaled:
                continue
            if self._journaled:
                with trio.move_on_after(self._retry_s):
                    await self._wake.wait()
            else:
                await self._wake.wait()

    def finish(self) -> None:
        """No more intents will come: ``run`` returns once what is queued is written or
        journaled (a journal left behind is replayed by the sweep)."""
        self._closing = True
        self._wake.set()

    async def _step(self) -> None:
        if self._journaled and not await self._replay():
            if self._pending:
                items = list(self._pending)
                self._pending.clear()
                await self._journal(items)
            return
        while self._pending and not self._journaled:
            intent, then = self._pending[0]
            try:
                with trio.fail_after(self._write_timeout_s):
                    await apply_intent(
                        self._catalog, intent, fence=self._fence(), now_ms=self._now_ms()
                    )
            except (RecorderError, trio.TooSlowError) as exc:
                self._log.warning(
                    "catalog write failed: intent journaled for later op=%s error=%s",
                    intent.op,
                    exc,
                )
                items = list(self._pending)
                self._pending.clear()
                await self._journal(items)
                return
            self._pending.popleft()
            self.stats.written += 1
            if then is not None:
                await self._run_then(then)

    async def _replay(self) -> bool:
        try:
            with trio.fail_after(self._write_timeout_s * 4):
                count = await replay_journal(self._catalog, self.journal_path, self._now_ms())
        except (RecorderError, trio.TooSlowError) as exc:
            self._log.debug("evidence journal replay failed: %s", exc)
            return False
        self._journaled = False
        self.stats.replayed += count
        self._log.warning("catalog back: %d journaled intents reconciled", count)
        deferred, self._deferred = self._deferred, []
        for then in deferred:
            await self._run_then(then)
        return True

    async def _run_then(self, then: Then) -> None:
        try:
            with trio.fail_after(self._write_timeout_s):
                await then()
        except (RecorderError, trio.TooSlowError) as exc:
            # The sealed file stays in the writing directory: the periodic sweep requeues it.
            self._log.warning("follow-up of a catalog write failed (left to the sweep): %s", exc)

    async def close(self, timeout_s: float) -> None:
        """Write what is left within ``timeout_s``; journal the rest (call shielded)."""
        self.finish()
        with trio.move_on_after(timeout_s):
            while self._pending or self._journaled:
                await self._step()
                if self._journaled:
                    break
        if self._pending:
            items = list(self._pending)
            self._pending.clear()
            await self._journal(items)
        if self._journaled:
            self._log.warning(
                "engagement ended with intents in the evidence journal path=%s", self.journal_path
            )
