"""``recorder.service.instance``: one process per state directory, and a state directory that
cannot be written at the first start named as such."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.errors import ConfigError, StorageError
from recorder.service.instance import INSTANCE_ID_FILE, lock_instance
from tests.conftest import fill_filesystem


def test_one_process_holds_a_state_directory_and_keeps_its_id(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = lock_instance(state)
    with pytest.raises(ConfigError, match="in use by another recorder process"):
        lock_instance(state)
    first.release()
    again = lock_instance(state)
    assert again.instance_id == first.instance_id
    assert (state / INSTANCE_ID_FILE).read_text().strip() == first.instance_id
    again.release()


def test_a_full_disk_at_the_first_start_is_named_and_holds_nothing(tiny_filesystem: Path) -> None:
    state = tiny_filesystem / "state"
    filler = fill_filesystem(tiny_filesystem)
    with pytest.raises(
        StorageError, match=f"^state directory {state} unusable: No space left on device$"
    ):
        lock_instance(state)
    filler.unlink()
    lock = lock_instance(state)  # the failed attempt let go of the directory
    assert (state / INSTANCE_ID_FILE).read_text().strip() == lock.instance_id
    lock.release()
