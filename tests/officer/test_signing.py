"""``recorder.officer.bundle.signing``: the export signing key is made once, private, and a
place it cannot be made is named."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from recorder.errors import ConfigError, StorageError
from recorder.officer.bundle.signing import generate_signing_key, key_id, load_signing_key


def test_the_signing_key_is_private_and_never_made_twice(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "export-signing.ed25519"
    made = generate_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert key_id(load_signing_key(path).public_key()) == made
    with pytest.raises(ConfigError, match=f"^refusing to overwrite {path}$"):
        generate_signing_key(path)
    assert key_id(load_signing_key(path).public_key()) == made


def test_a_file_where_the_key_directory_goes_is_named(tmp_path: Path) -> None:
    in_the_way = tmp_path / "keys"
    in_the_way.write_text("not a directory")
    with pytest.raises(StorageError, match=f"^cannot create the key directory {in_the_way}: "):
        generate_signing_key(in_the_way / "export-signing.ed25519")
    assert in_the_way.read_text() == "not a directory"
