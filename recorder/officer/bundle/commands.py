"""``recorder export``, ``recorder verify-export`` and the export signing key commands (thin)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Final, TextIO

from recorder.catalog._search import MAX_PAGE
from recorder.catalog.base import RecordingStatus
from recorder.config import Config
from recorder.durable import write_new_file
from recorder.errors import RecorderError
from recorder.officer.actor import os_actor
from recorder.officer.bundle.export import export_bundle
from recorder.officer.bundle.signing import (
    generate_signing_key,
    key_id,
    load_public_key,
    load_signing_key,
    public_bytes,
)
from recorder.officer.bundle.verify import verify_bundle
from recorder.officer.search import has_filters, query_from, text_key
from recorder.officer.when import zone
from recorder.service.components import Components

#: Where the export signing key lives unless ``--signing-key`` says otherwise (outside the
#: catalog, beside the KEKs).
SIGNING_KEY_NAME: Final = "export-signing.ed25519"
_BAR: Final = 30


def default_signing_key(config: Config) -> Path:
    return config.keys.key_dir / SIGNING_KEY_NAME


class ProgressBar:
    """Bytes decrypted so far, on one redrawn line on a terminal, else every tenth."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._last_tenth = -1
        self._started = time.monotonic()

    def __call__(self, done: int, total: int, label: str) -> None:
        fraction = done / total if total else 1.0
        mb = done / 1e6
        rate = mb / max(time.monotonic() - self._started, 1e-6)
        if self._tty:
            filled = round(fraction * _BAR)
            bar = "#" * filled + "-" * (_BAR - filled)
            self._out.write(f"\r[{bar}] {fraction:4.0%} {mb:9.1f} MB {rate:7.1f} MB/s")
            self._out.flush()
            return
        tenth = int(fraction * 10)
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            self._out.write(f"export: {fraction:4.0%} {mb:.1f} MB ({label})\n")

    def close(self) -> None:
        if self._tty:
            self._out.write("\n")


async def _selected(c: Components, args: argparse.Namespace, out: TextIO) -> list[str]:
    """The recordings named, then those the search flags find (every page, newest first).

    A search that finds more than ``--limit`` is refused rather than cut short (an export that
    silently left recordings out would look complete); recordings still being recorded are
    left out and named.
    """
    ids = list(args.recording_ids)
    if not has_filters(args):
        return ids
    tz = zone(args.tz)
    query = dataclasses.replace(
        query_from(args, tz, text_key(c, args)), limit=min(args.limit + 1, MAX_PAGE)
    )
    found: list[str] = []
    active: list[str] = []
    while True:
        page = await c.catalog.search_recordings(query)
        for hit in page.hits:
            if hit.recording.status is RecordingStatus.ACTIVE:
                active.append(hit.recording.recording_id)
            else:
                found.append(hit.recording.recording_id)
        if len(found) > args.limit:
            raise RecorderError(
                f"the search finds more than --limit {args.limit} recordings: narrow it, or "
                "raise --limit"
            )
        if page.next_cursor is None:
            break
        query = dataclasses.replace(query, after=page.next_cursor)
    if active:
        out.write(f"not exported, still being recorded ({len(active)}): {', '.join(active)}\n")
    out.write(f"the search found {len(found)} recording(s) to export\n")
    return ids + found


async def export(c: Components, args: argparse.Namespace) -> int:
    signing_key = load_signing_key(args.signing_key or default_signing_key(c.config))
    ids = await _selected(c, args, sys.stderr)
    bar = ProgressBar(sys.stderr)
    try:
        result = await export_bundle(
            c,
            ids,
            args.out,
            actor=args.actor or os_actor(),
            reason=args.reason,
            signing_key=signing_key,
            progress=bar,
        )
    finally:
        bar.close()
    print(
        f"exported {len(result.recordings)} recording(s), {result.files} file(s), "
        f"{result.audio_bytes / 1e6:.1f} MB of audio to {result.out_dir}"
    )
    print(f"manifest sha256 {result.manifest_sha256}, signed by {key_id(signing_key.public_key())}")
    return 0


def verify_export(args: argparse.Namespace) -> int:
    public = load_public_key(args.public_key)
    report = verify_bundle(Path(args.bundle), public)
    for problem in report.problems:
        print(f"FAILED ({problem.exit_code}): {problem}")
    gravest = report.gravest()
    if gravest is None:
        print(
            f"{args.bundle}: OK ({report.recordings} recording(s), {report.files_checked} "
            f"file(s), signature by {key_id(public)})"
        )
        return 0
    print(f"{args.bundle}: FAILED, {len(report.problems)} problem(s)")
    return gravest.exit_code


def init_signing(config: Config, args: argparse.Namespace) -> int:
    path = Path(args.private) if args.private else default_signing_key(config)
    created = generate_signing_key(path)
    print(f"created export signing key {created} in {path} (0600, keep it on the officer host)")
    print("publish its public key with `recorder keys export-signing-public --out FILE`")
    return 0


def export_signing_public(config: Config, args: argparse.Namespace) -> int:
    private = load_signing_key(Path(args.private) if args.private else default_signing_key(config))
    out = Path(args.out)
    write_new_file(out, public_bytes(private), mode=0o644)
    print(f"wrote public key {key_id(private.public_key())} to {out}")
    return 0
