"""Publishing a bundle: the finished directory is renamed into place, never over anything, even
a directory that appeared at ``--out`` while the export ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.bench.export import seal_call
from recorder.errors import StorageError
from recorder.officer.bundle.export import export_bundle
from recorder.officer.bundle.publish import publish
from recorder.officer.bundle.signing import generate_signing_key, load_signing_key
from recorder.service.components import open_components
from recorder.service.demo import demo_config


def test_publish_never_replaces_an_existing_directory_even_an_empty_one(tmp_path: Path) -> None:
    staging = tmp_path / ".case.partial-1"
    staging.mkdir()
    (staging / "a.wav").write_bytes(b"plaintext")
    target = tmp_path / "case"
    target.mkdir()  # plain rename(2) would silently replace this empty directory
    with pytest.raises(StorageError, match="never overwrites"):
        publish(staging, target)
    assert list(target.iterdir()) == []
    assert (staging / "a.wav").exists()


def test_publish_moves_the_complete_export_into_place(tmp_path: Path) -> None:
    staging = tmp_path / ".case.partial-2"
    staging.mkdir()
    (staging / "manifest.json").write_text("{}")
    publish(staging, tmp_path / "case")
    assert (tmp_path / "case" / "manifest.json").read_text() == "{}"
    assert not staging.exists()


async def test_a_directory_made_at_out_during_the_export_is_kept_and_nothing_left(
    tmp_path: Path,
) -> None:
    key = tmp_path / "signing.ed25519"
    generate_signing_key(key)
    out = tmp_path / "case"
    exports = tmp_path

    def appear(done: int, total: int, label: str) -> None:
        del total, label
        if done and not out.exists():
            out.mkdir()  # another officer's export, or a mistyped --out, mid-way

    async with open_components(demo_config(tmp_path / "state")) as c:
        recording_id = await seal_call(c, 4, segment_s=2)
        with pytest.raises(StorageError, match="appeared while exporting"):
            await export_bundle(
                c,
                [recording_id],
                out,
                actor="officer-1",
                reason="review",
                signing_key=load_signing_key(key),
                progress=appear,
            )
    assert list(out.iterdir()) == []
    assert [p.name for p in exports.iterdir() if ".partial-" in p.name] == []
