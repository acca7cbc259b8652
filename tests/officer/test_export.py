"""Publishing an export: the staging directory is renamed into place, never over anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.errors import StorageError
from recorder.officer.export import _publish


def test_publish_never_replaces_an_existing_directory_even_an_empty_one(tmp_path: Path) -> None:
    staging = tmp_path / ".case.partial-1"
    staging.mkdir()
    (staging / "a.wav").write_bytes(b"plaintext")
    target = tmp_path / "case"
    target.mkdir()  # plain rename(2) would silently replace this empty directory
    with pytest.raises(StorageError, match="never overwritten"):
        _publish(staging, target)
    assert list(target.iterdir()) == []
    assert (staging / "a.wav").exists()


def test_publish_moves_the_complete_export_into_place(tmp_path: Path) -> None:
    staging = tmp_path / ".case.partial-2"
    staging.mkdir()
    (staging / "manifest.json").write_text("{}")
    _publish(staging, tmp_path / "case")
    assert (tmp_path / "case" / "manifest.json").read_text() == "{}"
    assert not staging.exists()
