"""What officers do from the console: give a reason, play, read the transcript, verify, export,
place and release holds. Every one is audited with the signed-in identity and the reason.

The reason gate: playing, reading the transcript or downloading a recording first asks why,
once per recording and session (``web_session_reasons``, audited as ``web.access``); a request
without one is refused (403), never served and audited afterwards.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.types import Receive, Scope, Send

from recorder.catalog.base import AuditEvent, RecordingDetail
from recorder.durable import create_synced, writing_bundle_file
from recorder.errors import RecorderError, StorageError
from recorder.officer import verify_run
from recorder.officer.bundle.export import export_bundle, with_object
from recorder.officer.bundle.signing import load_signing_key
from recorder.officer.bundle.transcript import Cue, RecordsSplitter
from recorder.officer.httprange import ByteRange, multipart_byteranges
from recorder.retention import holds as hold_ops
from recorder.retention.audit_heads import load_signing_key as load_audit_key
from recorder.retention.audit_heads import write_head
from recorder.web.auth import Principal, require, require_post
from recorder.web.console import Console, console_of
from recorder.web.errors import NotFound, ReasonRequired, WebError
from recorder.web.roles import Permission
from recorder.web.timeline import timeline

logger = logging.getLogger(__name__)

MAX_REASON: Final = 500
MAX_MATTER: Final = 200
#: How long removing an export's temporary directory may take (shielded).
CLEANUP_TIMEOUT_S: Final = 60.0
#: The temporary directory of one web export (0700; removed when the download ends).
EXPORT_PREFIX: Final = "rtmsrec-web-export-"
#: In an export's temporary directory: the console process's pid (stale ones are removed).
OWNER_FILE: Final = ".owner-pid"
#: Play events remembered per process (oldest forgotten first: a new one is then written).
MAX_PLAYED: Final = 10_000


def _text(form_value: object, name: str, limit: int) -> str:
    if not isinstance(form_value, str) or not form_value.strip():
        raise WebError(f"{name} is required")
    value = " ".join(form_value.split())
    if len(value) > limit:
        raise WebError(f"{name}: at most {limit} characters")
    return value


async def _detail(console: Console, recording_id: str) -> RecordingDetail:
    detail = await console.components.catalog.show(recording_id)
    if detail is None:
        raise NotFound(f"no recording {recording_id[:80]!r}")
    return detail


async def _reason(console: Console, principal: Principal, recording_id: str) -> str:
    reason = await console.accounts.reason(principal.session_hash, recording_id)
    if reason is None:
        raise ReasonRequired(
            f"give a reason first: POST /recordings/{recording_id}/access (once per session)"
        )
    return reason


# --- the reason gate ------------------------------------------------------------------------


async def give_reason(request: Request) -> Response:
    principal, form = await require_post(request, Permission.PLAY)
    console = console_of(request)
    recording_id = request.path_params["recording_id"]
    await _detail(console, recording_id)
    reason = _text(form.get("reason"), "reason", MAX_REASON)
    await console.accounts.give_reason(
        principal.session_hash,
        recording_id,
        actor=principal.actor,
        reason=reason,
        now_ms=console.now_ms(),
    )
    return RedirectResponse(f"/recordings/{recording_id}#player", status_code=303)


# --- play -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Records:
    cues: list[Cue]
    events: list[object]
    chat: list[object]


async def _records(console: Console, detail: RecordingDetail) -> _Records:
    """Transcript, events and chat, decrypted in memory (never written anywhere)."""
    chat_out, events_out = io.BytesIO(), io.BytesIO()
    splitter = RecordsSplitter(chat_out, events_out)
    for row in sorted(detail.records, key=lambda r: r.record_index):

        def feed(chunks: Iterator[bytes], expected: str | None) -> None:
            pending = b""
            for chunk in chunks:
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    splitter.feed(line)
            splitter.feed(pending)

        await with_object(console.components, row, feed)
    splitter.finish()
    events = json.loads(events_out.getvalue())
    chat = json.loads(chat_out.getvalue())
    return _Records(splitter.cues, events, chat)


async def timeline_json(request: Request) -> Response:
    principal = await require(request, Permission.PLAY)
    console = console_of(request)
    recording_id = request.path_params["recording_id"]
    detail = await _detail(console, recording_id)
    reason = await _reason(console, principal, recording_id)
    await console.components.catalog.append_audit(
        actor=principal.actor,
        action="web.transcript",
        target=recording_id,
        reason=reason,
        now_ms=console.now_ms(),
        details={"decrypted": "records (transcript, events, chat) for the player"},
    )
    problem = None
    try:
        records = await _records(console, detail)
    except (RecorderError, ValueError) as exc:
        logger.warning("records of %s unreadable: %s", recording_id, exc)
        problem = f"the transcript and events could not be read: {exc}"
        records = _Records([], [], [])
    urls = {
        track: (
            f"/recordings/{recording_id}/tracks/{track}/audio",
            f"/recordings/{recording_id}/tracks/{track}/peaks.json",
        )
        for track in {s.track for s in detail.segments}
    }
    body = timeline(detail, records.cues, urls, records.events, records.chat)
    body["records_problem"] = problem
    body["media_available"] = console.media is not None
    body["waveforms_available"] = console.vendor_available
    return JSONResponse(body)


async def _media_call(request: Request) -> tuple[Console, Principal, str, str, str]:
    principal = await require(request, Permission.PLAY)
    console = console_of(request)
    recording_id = request.path_params["recording_id"]
    track = request.path_params["track"]
    detail = await _detail(console, recording_id)
    if track not in {s.track for s in detail.segments}:
        raise NotFound(f"recording {recording_id} has no track {track[:80]!r}")
    reason = await _reason(console, principal, recording_id)
    if console.media is None:
        raise WebError("audio playback is not configured in this console", status=501)
    return console, principal, recording_id, track, reason


async def _audit_play(
    console: Console, principal: Principal, recording_id: str, track: str, reason: str
) -> AuditEvent:
    """One ``play`` event per session, recording and track (a player makes many range reads);
    written before anything is decrypted, and handed to the media provider."""
    key = (principal.session_hash, recording_id, track)
    found = console.played.get(key)
    if found is not None:
        return found
    event = await console.components.catalog.append_audit(
        actor=principal.actor,
        action="play",
        target=recording_id,
        reason=reason,
        now_ms=console.now_ms(),
        details={"track": track},
    )
    if len(console.played) >= MAX_PLAYED:
        console.played.pop(next(iter(console.played)))
    console.played[key] = event
    return event


async def audio(request: Request) -> Response:
    console, principal, recording_id, track, reason = await _media_call(request)
    assert console.media is not None
    event = await _audit_play(console, principal, recording_id, track, reason)
    source = await console.media.open_track(console.components, recording_id, track, event)
    try:
        ranges = console.media.parse_range(request.headers.get("range"), source.length)
    except RecorderError as exc:
        return Response(
            str(exc), status_code=416, headers={"content-range": f"bytes */{source.length}"}
        )
    headers = {"accept-ranges": "bytes", "cache-control": "no-store"}
    if not ranges:
        headers["content-length"] = str(source.length)
        return StreamingResponse(
            source.iter_range(0, source.length), media_type=source.content_type, headers=headers
        )
    if len(ranges) > 1:
        parts = multipart_byteranges(
            [ByteRange(start, stop) for start, stop in ranges], source.length, source.content_type
        )
        headers["content-length"] = str(parts.content_length)
        return StreamingResponse(
            parts.body(source.iter_range),
            status_code=206,
            media_type=parts.content_type,
            headers=headers,
        )
    start, stop = ranges[0]
    headers["content-range"] = f"bytes {start}-{stop - 1}/{source.length}"
    headers["content-length"] = str(stop - start)
    return StreamingResponse(
        source.iter_range(start, stop),
        status_code=206,
        media_type=source.content_type,
        headers=headers,
    )


async def peaks(request: Request) -> Response:
    console, principal, recording_id, track, reason = await _media_call(request)
    assert console.media is not None
    event = await _audit_play(console, principal, recording_id, track, reason)
    return JSONResponse(await console.media.peaks(console.components, recording_id, track, event))


# --- verify ---------------------------------------------------------------------------------


async def verify_now(request: Request) -> Response:
    principal, form = await require_post(request, Permission.VERIFY)
    console = console_of(request)
    recording_id = request.path_params["recording_id"]
    await _detail(console, recording_id)
    given = form.get("reason")
    reason = (
        _text(given, "reason", MAX_REASON)
        if isinstance(given, str) and given.strip()
        else "verify now (web console)"
    )
    check = await verify_run.check_recording(console.components, recording_id)
    await verify_run.record(console.components, check, actor=principal.actor, reason=reason)
    verdict = "ok" if check.ok else "failed"
    return RedirectResponse(
        f"/recordings/{recording_id}?verified={verdict}#verification", status_code=303
    )


# --- export ---------------------------------------------------------------------------------


def _zip_dir(root: Path, target: Path) -> None:
    with (
        writing_bundle_file(target),
        zipfile.ZipFile(target, "x", compression=zipfile.ZIP_STORED) as archive,
    ):
        for path in sorted(root.rglob("*")):
            if path.is_file():
                archive.write(path, Path(root.name) / path.relative_to(root))


def _make_work_dir() -> Path:
    """The export's private directory in the temporary directory, its owner pid written."""
    try:
        work = Path(tempfile.mkdtemp(prefix=EXPORT_PREFIX))
    except OSError as exc:
        raise StorageError(
            f"cannot create an export directory in {tempfile.gettempdir()}: {exc.strerror}"
        ) from exc
    try:
        os.chmod(work, 0o700)
        create_synced(work / OWNER_FILE, str(os.getpid()).encode())
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise StorageError(f"cannot write in {work}: {exc.strerror}") from exc
    return work


async def _remove(directory: Path) -> None:
    with trio.move_on_after(CLEANUP_TIMEOUT_S) as scope:
        scope.shield = True
        await trio.to_thread.run_sync(shutil.rmtree, directory, True)


async def export(request: Request) -> Response:
    """The signed bundle of ``recorder export``, as a zip download.

    Like ``recorder export`` (the bundle *is* the decrypted export an officer asked for), the
    bundle is built in a 0700 temporary directory, zipped beside it and streamed; the
    directory is removed when the download ends or fails. The export is audited (``export``,
    by the bundle code) with the signed-in identity and the reason.
    """
    principal, form = await require_post(request, Permission.EXPORT)
    console = console_of(request)
    c = console.components
    recording_id = request.path_params["recording_id"]
    await _detail(console, recording_id)
    given = form.get("reason")
    earlier = await console.accounts.reason(principal.session_hash, recording_id)
    if isinstance(given, str) and given.strip():
        reason = _text(given, "reason", MAX_REASON)
        if reason != earlier:  # a new access decision only when the reason changed
            await console.accounts.give_reason(
                principal.session_hash, recording_id, actor=principal.actor, reason=reason,
                now_ms=console.now_ms(),
            )  # fmt: skip
    else:
        reason = await _reason(console, principal, recording_id)
    from recorder.officer.bundle.commands import default_signing_key

    signing_key = load_signing_key(default_signing_key(c.config))
    work = await trio.to_thread.run_sync(_make_work_dir)
    try:
        bundle = work / f"bundle-{recording_id}"
        await export_bundle(
            c, [recording_id], bundle, actor=principal.actor, reason=reason, signing_key=signing_key
        )
        archive = work / f"{bundle.name}.zip"
        await trio.to_thread.run_sync(_zip_dir, bundle, archive)
        await trio.to_thread.run_sync(shutil.rmtree, bundle)
    except BaseException:
        await _remove(work)
        raise

    return _RemovingFileResponse(
        archive,
        work,
        media_type="application/zip",
        filename=archive.name,
        headers={"cache-control": "no-store"},
    )


def remove_stale_exports(tmp: Path | None = None) -> list[Path]:
    """Remove the export directories a console that died (kill -9, power loss) left behind:
    those whose owner process is gone. Called when the console starts."""
    removed = []
    for directory in Path(tmp or tempfile.gettempdir()).glob(EXPORT_PREFIX + "*"):
        try:
            pid = int((directory / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not (yet) ours to judge: an export writes its pid first thing
        if pid == os.getpid() or _alive(pid):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _RemovingFileResponse(FileResponse):
    """Streams the zip, then removes its directory however the download ends (complete,
    disconnected, failed or cancelled): a background task would be skipped when sending fails.
    """

    def __init__(self, path: Path, directory: Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._directory = directory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await _remove(self._directory)


# --- holds ----------------------------------------------------------------------------------


async def _seal(console: Console) -> None:
    """Sign the new audit events into the store at once, as ``recorder hold`` does."""
    c = console.components
    key_path = c.config.retention.audit_signing_key
    if key_path is not None:
        key = await trio.to_thread.run_sync(load_audit_key, key_path)
        await write_head(c.catalog, c.store, key, now_ms=console.now_ms())


async def hold_place(request: Request) -> Response:
    """A hold on one recording (``recording_id``), or on every recording of a meeting, webinar,
    session or engagement, present and future (``instance_id``), like ``recorder hold place``."""
    principal, form = await require_post(request, Permission.HOLD)
    console = console_of(request)
    c = console.components
    matter = _text(form.get("matter"), "matter", MAX_MATTER)
    reason = _text(form.get("reason"), "reason", MAX_REASON)
    instance = form.get("instance_id")
    if isinstance(instance, str) and instance.strip() and not form.get("recording_id"):
        await hold_ops.place_instance_hold(
            c.catalog, c.store, matter=matter, reason=reason, actor=principal.actor,
            instance_id=_text(instance, "instance_id", 200), now_ms=console.now_ms(),
        )  # fmt: skip
        await _seal(console)
        return RedirectResponse("/holds", status_code=303)
    recording_id = _text(form.get("recording_id"), "recording_id", 200)
    await _detail(console, recording_id)
    await hold_ops.place_holds(
        c.catalog, c.store, matter=matter, reason=reason, actor=principal.actor,
        recording_ids=[recording_id], now_ms=console.now_ms(),
    )  # fmt: skip
    await _seal(console)
    back = form.get("back")
    target = f"/recordings/{recording_id}#holds" if back == "recording" else "/holds"
    return RedirectResponse(target, status_code=303)


async def hold_release(request: Request) -> Response:
    principal, form = await require_post(request, Permission.HOLD)
    console = console_of(request)
    c = console.components
    try:
        hold_id = int(request.path_params["hold_id"])
    except ValueError as exc:
        raise NotFound("no such hold") from exc
    reason = _text(form.get("reason"), "reason", MAX_REASON)
    try:
        await hold_ops.release_hold(
            c.catalog, c.store, hold_id, actor=principal.actor, reason=reason,
            now_ms=console.now_ms(),
        )  # fmt: skip
    except RecorderError as exc:
        raise WebError(str(exc), status=409) from exc
    await _seal(console)
    return RedirectResponse("/holds", status_code=303)
