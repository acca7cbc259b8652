"""The conformance suite against MemoryStore, LocalStore on tmp_path and S3Store on moto."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recorder.store.local import LocalStore
from recorder.store.memory import MemoryStore

from .conformance import CHECKS, Check, StoreHarness
from .s3_helpers import new_locked_bucket, s3_store


class SettableClock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, by: timedelta) -> None:
        self.offset += by


@pytest.fixture(params=["memory", "local", "s3"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> StoreHarness:
    clock = SettableClock()
    if request.param == "memory":
        return StoreHarness(MemoryStore(now=clock.now), clock.advance)
    if request.param == "local":
        return StoreHarness(LocalStore(tmp_path / "store", now=clock.now), clock.advance)
    endpoint: str = request.getfixturevalue("moto_endpoint")
    return StoreHarness(s3_store(endpoint, new_locked_bucket(endpoint)))


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
async def test_store_conformance(harness: StoreHarness, check: Check, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    await check(harness, scratch)
