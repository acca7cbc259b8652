"""``recorder verify-export DIR``: re-check a bundle offline with only the public key.

Three kinds of check, each with its own exit code (``recorder.errors``): the signature over
``manifest.json`` as stored (84), every listed file's presence (86) and its size and SHA-256
(85), and the manifest's internal consistency (87): canonical form, no files beyond those listed,
each WAV header agreeing with its entry, each track's segments and filled spans adding up to its
length, gaps inside the file, the export's audit event naming its recording. Every problem is
reported; the exit code is that of the gravest (signature, missing, tampered, inconsistent).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from recorder.errors import (
    BundleError,
    BundleFileMissing,
    BundleFileTampered,
    BundleInconsistent,
    BundleSignatureInvalid,
)
from recorder.officer.bundle.manifest import BUNDLE_FORMAT, MANIFEST_NAME, SIGNATURE_NAME, canonical
from recorder.officer.bundle.signing import DetachedSignature, signature_valid
from recorder.officer.bundle.wavio import PLAIN_HEADER_SIZE

_GRAVITY: tuple[type[BundleError], ...] = (
    BundleSignatureInvalid,
    BundleFileMissing,
    BundleFileTampered,
    BundleInconsistent,
)


@dataclass(slots=True)
class BundleReport:
    files_checked: int = 0
    recordings: int = 0
    problems: list[BundleError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def gravest(self) -> BundleError | None:
        for kind in _GRAVITY:
            for problem in self.problems:
                if isinstance(problem, kind):
                    return problem
        return None


def _hash(path: Path) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            hasher.update(block)
            size += len(block)
    return hasher.hexdigest(), size


def _mapping(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise BundleInconsistent(f"{where} is not an object")
    return value


def _list(value: object, where: str) -> Sequence[object]:
    if not isinstance(value, list):
        raise BundleInconsistent(f"{where} is not a list")
    return value


def _int(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BundleInconsistent(f"{where} is not an integer")
    return value


def verify_bundle(root: Path, public: Ed25519PublicKey) -> BundleReport:
    report = BundleReport()
    manifest_path, signature_path = root / MANIFEST_NAME, root / SIGNATURE_NAME
    for path in (manifest_path, signature_path):
        if not path.is_file():
            report.problems.append(BundleFileMissing(f"{path.name} is missing from {root}"))
    if report.problems:
        return report
    body = manifest_path.read_bytes()
    try:
        signature = DetachedSignature.from_json(signature_path.read_bytes())
    except ValueError as exc:
        report.problems.append(BundleSignatureInvalid(f"{SIGNATURE_NAME}: {exc}"))
        return report
    if not signature_valid(public, body, signature):
        report.problems.append(
            BundleSignatureInvalid(
                f"{MANIFEST_NAME}: the signature does not verify under this public key "
                f"(signed by {signature.key_id})"
            )
        )
    try:
        manifest = _mapping(json.loads(body), MANIFEST_NAME)
    except ValueError as exc:
        report.problems.append(BundleInconsistent(f"{MANIFEST_NAME} is not JSON: {exc}"))
        return report
    except BundleError as exc:
        report.problems.append(exc)
        return report
    if canonical(manifest) != body:
        report.problems.append(BundleInconsistent(f"{MANIFEST_NAME} is not in canonical form"))
    if manifest.get("format") != BUNDLE_FORMAT:
        report.problems.append(
            BundleInconsistent(f"unknown bundle format {manifest.get('format')!r}")
        )
    listed: set[str] = set()
    try:
        for index, item in enumerate(_list(manifest.get("recordings"), "recordings")):
            recording = _mapping(item, f"recordings[{index}]")
            report.recordings += 1
            _check_recording(root, recording, manifest, listed, report)
    except BundleError as exc:
        report.problems.append(exc)
    except (ValueError, OSError, struct.error) as exc:
        # A hostile or broken manifest (a NUL in a path, a WAV shorter than its header...).
        report.problems.append(BundleInconsistent(f"{MANIFEST_NAME}: {exc}"))
    present = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name not in (MANIFEST_NAME, SIGNATURE_NAME)
    }
    for extra in sorted(present - listed):
        report.problems.append(BundleInconsistent(f"{extra} is in the bundle but not listed"))
    return report


def _check_recording(
    root: Path,
    recording: Mapping[str, object],
    manifest: Mapping[str, object],
    listed: set[str],
    report: BundleReport,
) -> None:
    recording_id = recording.get("recording_id")
    if not isinstance(recording_id, str) or "/" in recording_id or recording_id in ("", ".", ".."):
        raise BundleInconsistent(f"bad recording_id {recording_id!r}")
    entries: dict[str, Mapping[str, object]] = {}
    for index, item in enumerate(_list(recording.get("files"), f"{recording_id} files")):
        entry = _mapping(item, f"{recording_id} files[{index}]")
        path = entry.get("path")
        if not isinstance(path, str) or not path.startswith(recording_id + "/") or ".." in path:
            raise BundleInconsistent(f"{recording_id}: file path {path!r} is outside its folder")
        if path in listed:
            raise BundleInconsistent(f"{path} is listed twice")
        listed.add(path)
        entries[path] = entry
        report.files_checked += 1
        _check_file(root, path, entry, report)
    audit = _mapping(recording.get("export_audit_event"), f"{recording_id} export_audit_event")
    if (audit.get("target"), audit.get("action")) != (recording_id, "export") or (
        audit.get("actor"),
        audit.get("reason"),
    ) != (manifest.get("actor"), manifest.get("reason")):
        report.problems.append(
            BundleInconsistent(f"{recording_id}: the export audit event is not this export's")
        )
    for index, item in enumerate(_list(recording.get("tracks"), f"{recording_id} tracks")):
        _check_track(root, _mapping(item, f"{recording_id} tracks[{index}]"), entries, report)


def _check_file(root: Path, path: str, entry: Mapping[str, object], report: BundleReport) -> None:
    target = root / path
    if not target.is_file():
        report.problems.append(BundleFileMissing(f"{path} is listed in the manifest but missing"))
        return
    digest, size = _hash(target)
    expected = entry.get("sha256")
    if size != entry.get("size") or not isinstance(expected, str):
        report.problems.append(
            BundleFileTampered(f"{path}: {size} bytes, the manifest says {entry.get('size')}")
        )
        return
    # As bytes: a hostile manifest may carry any text, and str comparison refuses non-ASCII.
    if not hmac.compare_digest(digest.encode(), expected.encode()):
        report.problems.append(BundleFileTampered(f"{path}: SHA-256 differs from the manifest"))
        return
    if entry.get("kind") in ("track", "listening"):
        with target.open("rb") as handle:
            header = handle.read(PLAIN_HEADER_SIZE)
        channels, rate = struct.unpack_from("<HI", header, 22)
        (data_length,) = struct.unpack_from("<I", header, 40)
        frames = _int(entry.get("frames"), f"{path} frames")
        if (channels, rate, data_length) != (
            entry.get("channels"),
            entry.get("sample_rate"),
            frames * 2 * channels,
        ):
            report.problems.append(
                BundleInconsistent(f"{path}: the WAV header disagrees with the manifest")
            )


def _check_filled_silent(
    path: Path, track: Mapping[str, object], frames: int, report: BundleReport
) -> None:
    """Silence the manifest says was filled in must be silence in the file."""
    channels = _int(track.get("channels"), f"track {track.get('track')} channels")
    if channels < 1:
        raise BundleInconsistent(f"track {track.get('track')}: {channels} channels")
    frame = 2 * channels
    with path.open("rb") as handle:
        for item in _list(track.get("filled"), f"track {track.get('track')} filled"):
            fill = _mapping(item, "filled span")
            start = _int(fill.get("wav_start_frame"), "filled start")
            count = _int(fill.get("frames"), "filled frames")
            if not 0 <= start <= start + count <= frames:
                raise BundleInconsistent(f"{path.name}: a filled span lies outside the file")
            remaining = count * frame
            handle.seek(PLAIN_HEADER_SIZE + start * frame)
            while remaining > 0:
                block = handle.read(min(remaining, 1 << 20))
                if not block or block.count(0) != len(block):
                    report.problems.append(
                        BundleInconsistent(
                            f"{path.name}: a span listed as filled silence holds audio"
                        )
                    )
                    return
                remaining -= len(block)


def _check_track(
    root: Path,
    track: Mapping[str, object],
    entries: Mapping[str, Mapping[str, object]],
    report: BundleReport,
) -> None:
    name = track.get("track")
    frames = _int(track.get("frames"), f"track {name} frames")
    entry = entries.get(str(track.get("file")))
    if entry is None or entry.get("frames") != frames or entry.get("kind") != "track":
        # Only files listed (inside the bundle, hashed) are ever read for the checks below.
        report.problems.append(BundleInconsistent(f"track {name}: no file entry of its length"))
        return
    spans: list[tuple[int, int]] = []
    for item in _list(track.get("segments"), f"track {name} segments"):
        seg = _mapping(item, f"track {name} segment")
        start = _int(seg.get("wav_start_frame"), f"track {name} segment start")
        spans.append((start, start + _int(seg.get("frames"), f"track {name} segment frames")))
    for item in _list(track.get("filled"), f"track {name} filled"):
        fill = _mapping(item, f"track {name} filled span")
        start = _int(fill.get("wav_start_frame"), f"track {name} filled start")
        spans.append((start, start + _int(fill.get("frames"), f"track {name} filled frames")))
    position = 0
    for start, end in sorted(spans):
        if start != position:
            report.problems.append(
                BundleInconsistent(
                    f"track {name}: segments and filled spans leave a hole or overlap"
                )
            )
            return
        position = end
    if position != frames:
        report.problems.append(
            BundleInconsistent(
                f"track {name}: segments and filled spans do not add up to its length"
            )
        )
    path = root / str(track.get("file"))
    if path.is_file() and entry.get("channels") == track.get("channels"):
        _check_filled_silent(path, track, frames, report)
    for item in _list(track.get("gaps"), f"track {name} gaps"):
        gap = _mapping(item, f"track {name} gap")
        start = _int(gap.get("wav_start_frame"), f"track {name} gap start")
        end = _int(gap.get("wav_end_frame"), f"track {name} gap end")
        if not 0 <= start <= end <= frames:
            report.problems.append(BundleInconsistent(f"track {name}: a gap lies outside the file"))
