"""The local store's direct-file path of the export (a track's thread reads the object file
itself, ``LocalObjects``) against the streamed path every other store takes: the same bundle
bytes, the same errors for an altered or truncated object, and nothing left behind (no
bundle, no temporary directory, no open object file) when the export is cancelled half way."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from io import FileIO
from pathlib import Path

import pytest
import trio

from recorder.bench.export import seal_call
from recorder.crypto.opener import SegmentOpener
from recorder.errors import DecryptionFailed, IntegrityError, RecorderError
from recorder.officer.bundle import export as bundle_export
from recorder.officer.bundle.export import export_bundle, manifest_json
from recorder.officer.bundle.pipe import Pipe, PipeAborted
from recorder.officer.bundle.signing import generate_signing_key, load_signing_key
from recorder.officer.bundle.wavio import TrackAbandoned
from recorder.service.components import Components, open_components
from recorder.service.demo import demo_config
from recorder.store.base import LocalObjects
from recorder.store.local import LocalStore
from tests.crypto.conftest import make_keyring
from tests.officer.test_export_failure import _cut_end, _flip_middle, _object_path


class Counted:
    """The local store at the ``ObjectStore`` seam without ``open_file``: the export must
    stream, as for S3. Counts the objects streamed."""

    def __init__(self, store: LocalStore) -> None:
        self._store = store
        self.streamed = 0
        self.handles: list[FileIO] = []

    def open(
        self, key: str, *, version_id: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        self.streamed += 1
        return self._store.open(key, version_id=version_id)

    def __getattr__(self, name: str) -> object:
        if name == "open_file":
            raise AttributeError(name)
        return getattr(self._store, name)


class CountedFiles(Counted):
    """The local store with ``open_file``, keeping every file it hands out (so a handle the
    export forgot to close stays open for the test to see, not closed by the collector)."""

    async def open_file(self, key: str, *, version_id: str | None = None) -> FileIO:
        handle = await self._store.open_file(key, version_id=version_id)
        self.handles.append(handle)
        return handle


def _counted(c: Components, *, direct: bool) -> tuple[Components, Counted]:
    assert isinstance(c.store, LocalStore)
    store = CountedFiles(c.store) if direct else Counted(c.store)
    return dataclasses.replace(c, store=store), store  # type: ignore[arg-type]


async def _export(c: Components, recording_id: str, out: Path, key: Path) -> None:
    if not await trio.Path(key).exists():
        generate_signing_key(key)
    await export_bundle(
        c,
        [recording_id],
        out,
        actor="officer-1",
        reason="a look",
        signing_key=load_signing_key(key),
    )


def _left_behind(tmp_path: Path) -> list[str]:
    return [p.name for p in tmp_path.iterdir() if "bundle" in p.name]


def _open_objects(c: Components) -> list[str]:
    root = str(c.config.storage.local_store_path)
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(root):
            found.append(target)
    return found


@pytest.mark.timeout(240)
async def test_the_direct_file_path_writes_the_streamed_paths_bundle_byte_for_byte(
    tmp_path: Path,
) -> None:
    async with open_components(demo_config(tmp_path / "state")) as c:
        recording_id = await seal_call(c, 60, segment_s=20)
        detail = await c.catalog.show(recording_id)
        assert detail is not None
        direct_c, direct = _counted(c, direct=True)
        streamed_c, streamed = _counted(c, direct=False)
        key = tmp_path / "signing.ed25519"
        await _export(direct_c, recording_id, tmp_path / "direct", key)
        await _export(streamed_c, recording_id, tmp_path / "streamed", key)
    assert isinstance(c.store, LocalObjects)
    assert (len(direct.handles), direct.streamed) == (len(detail.segments), 0)
    assert (len(streamed.handles), streamed.streamed) == (0, len(detail.segments))
    assert all(handle.closed for handle in direct.handles)
    names = sorted(
        p.relative_to(tmp_path / "direct")
        for p in (tmp_path / "direct").rglob("*")
        if p.is_file() and not p.name.startswith("manifest")
    )
    assert len([n for n in names if n.suffix == ".wav"]) == 3
    for name in names:
        assert (tmp_path / "direct" / name).read_bytes() == (
            tmp_path / "streamed" / name
        ).read_bytes(), name
    files = [
        manifest_json(tmp_path / side)["recordings"][0]["files"] for side in ("direct", "streamed")
    ]  # type: ignore[index]
    assert files[0] == files[1]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("direct", [True, False], ids=["direct", "streamed"])
@pytest.mark.parametrize(
    ("alter", "expected"),
    [(_flip_middle, DecryptionFailed), (_cut_end, IntegrityError)],
    ids=["flipped", "cut"],
)
async def test_an_altered_or_truncated_object_fails_alike_on_both_paths(
    tmp_path: Path, direct: bool, alter: object, expected: type[RecorderError]
) -> None:
    async with open_components(demo_config(tmp_path / "state")) as c:
        recording_id = await seal_call(c, 60, segment_s=20)
        detail = await c.catalog.show(recording_id)
        assert detail is not None
        [seg] = [s for s in detail.segments if s.track == "channel-caller" and s.segment_index == 1]
        alter(_object_path(c, seg.object_key))  # type: ignore[operator]
        counted_c, counted = _counted(c, direct=direct)
        with pytest.raises(RecorderError) as caught:
            await _export(counted_c, recording_id, tmp_path / "bundle", tmp_path / "key")
        assert _open_objects(c) == []
        assert all(handle.closed for handle in counted.handles)
    failure = caught.value
    assert type(failure) is not TrackAbandoned
    assert not isinstance(failure, PipeAborted)
    assert isinstance(failure, expected), repr(failure)
    assert str(failure).startswith(seg.object_key), str(failure)
    assert _left_behind(tmp_path) == []


@pytest.mark.timeout(240)
@pytest.mark.parametrize("direct", [True, False], ids=["direct", "streamed"])
async def test_an_export_cancelled_after_its_first_segment_leaves_nothing(
    tmp_path: Path, direct: bool
) -> None:
    """Cancelled after the first segment, with the next objects opened ahead in the tracks'
    pipes: every object file handed out is closed, the partial bundle is removed."""
    async with open_components(demo_config(tmp_path / "state")) as c:
        recording_id = await seal_call(c, 120, segment_s=10)
        counted_c, counted = _counted(c, direct=direct)
        key = tmp_path / "key"
        generate_signing_key(key)
        seen: list[int] = []
        with trio.CancelScope() as scope:

            def progress(done: int, total: int, label: str) -> None:
                del label
                seen.append(done)
                if 0 < done < total:
                    scope.cancel()

            await export_bundle(
                counted_c,
                [recording_id],
                tmp_path / "bundle",
                actor="officer-1",
                reason="a look",
                signing_key=load_signing_key(key),
                progress=progress,
            )
        assert scope.cancelled_caught
        assert _open_objects(c) == []
    assert seen
    if direct:
        assert len(counted.handles) >= 2
        assert all(handle.closed for handle in counted.handles)
    else:
        assert counted.streamed >= 2
    assert _left_behind(tmp_path) == []


def test_a_file_being_read_stops_at_the_next_read_once_the_export_is_stopped(
    tmp_path: Path,
) -> None:
    """A track's thread inside a large local object notices a stopped export between two reads
    instead of reading (and decrypting) the rest of it."""
    path = tmp_path / "object"
    path.write_bytes(bytes(5 * bundle_export.FILE_READ_BYTES))
    pipe: Pipe[object] = Pipe(1, "track.wav")
    pipe.abort()
    stored = hashlib.sha256()
    opener = SegmentOpener(Refuses(), make_keyring(tmp_path), source="object")
    with path.open("rb", buffering=0) as handle:
        with pytest.raises(PipeAborted):
            bundle_export._read_file(handle, stored, opener, pipe)  # type: ignore[arg-type]
        assert handle.tell() <= bundle_export.FILE_READ_BYTES
    assert stored.hexdigest() == hashlib.sha256().hexdigest()


class Refuses:
    """A plaintext sink that must never be reached."""

    def prologue(self, plaintext: bytes) -> None:
        raise AssertionError("fed after the export stopped")

    def reserve(self, size: int) -> memoryview:
        raise AssertionError("fed after the export stopped")

    def commit(self, size: int) -> None:
        raise AssertionError("fed after the export stopped")
