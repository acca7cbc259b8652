"""``verification_runs``: every ``recorder verify`` result is appended, the newest is read back."""

from __future__ import annotations

import pytest
import trio

from recorder.catalog import AsyncCatalog, Product, RecordingStart
from recorder.catalog.base import VerificationRun
from recorder.errors import CatalogError
from tests.catalog.support import T0


async def test_runs_are_appended_and_the_newest_is_read(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        rec = await catalog.upsert_recording(
            RecordingStart("s-1", Product.MEETING, "m-1", started_ms=T0), T0
        )
        rid = rec.recording_id
        assert await catalog.last_verification(rid) is None
        failed = VerificationRun(rid, T0 + 1, False, ("hold_drift", "tampered"), '[{"x": 1}]')
        passed = VerificationRun(rid, T0 + 2, True, (), "[]")
        await catalog.record_verification(failed)
        assert await catalog.last_verification(rid) == failed
        await catalog.record_verification(passed)
        assert await catalog.last_verification(rid) == passed
        # A run for a recording the catalog does not know is refused (foreign key).
        with pytest.raises(CatalogError):
            await catalog.record_verification(VerificationRun("rec_nope", T0, True, (), "[]"))
