"""``recorder.officer.opaque``: a temporary directory with no room for an opaque upload's
recovered copy is this host's problem, named as such (reading through the copy is covered by the
export and media tests of opaque uploads)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

from recorder.errors import StorageError
from recorder.officer.opaque import recovered_copy
from tests.conftest import fill_filesystem
from tests.crypto.test_opaque import dead_part


def test_no_room_for_the_recovered_copy_is_named_and_leaves_nothing(
    tmp_path: Path, tiny_filesystem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    part, officer = dead_part(tmp_path)
    fill_filesystem(tiny_filesystem)
    monkeypatch.setattr(tempfile, "tempdir", str(tiny_filesystem))
    with part.open("rb") as stored, pytest.raises(StorageError) as caught:  # noqa: SIM117
        with recovered_copy(stored, officer):
            pytest.fail("no copy can be made")
    assert re.fullmatch(
        rf"the opaque object's recovered copy: cannot stage it in {tiny_filesystem}/"
        r"rtms-opaque-\w+: No space left on device",
        str(caught.value),
    ), str(caught.value)
    assert os.listdir(tiny_filesystem) == ["filler"]
