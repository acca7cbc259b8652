"""Through the real service: the policy in force sets retain-until; future matters hold at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from recorder.catalog.base import UploadState
from recorder.retention.policy import load_policies
from recorder.store.base import LockMode
from tests.retention.test_policy import DEFAULT, GOOD, write
from tests.service.test_service import record_calls, service, short_config, zcc_call

CC_400_DAYS = (
    GOOD.replace('name = "desk"', 'name = "cc"')
    .replace('cc_queues = ["desk"]', 'products = ["contact_center"]')
    .replace('period = "6y"', 'period = "400d"\nlock_mode = "compliance"')
)


@pytest.mark.timeout(120)
async def test_policy_sets_retain_until_and_a_future_matter_holds_from_the_start(
    tmp_path: Path,
) -> None:
    config = short_config(tmp_path)
    write(config.retention.policies_dir, cc=CC_400_DAYS, default=DEFAULT)
    policy = load_policies(config.retention.policies_dir).by_name("cc")
    assert policy is not None
    with trio.fail_after(90):
        async with service(config) as running:
            c = running.components
            await c.catalog.add_hold_rule(
                matter="all-cc",
                rule={"product": "contact_center"},
                placed_by="os:counsel",
                reason="preserve",
                now_ms=0,
            )
            before = datetime.now(UTC)
            [eng] = await record_calls(running, config, zcc_call(config, seconds=3.0))
            [row] = await c.catalog.search(stream_id=eng.scenario.rtms_stream_id)
            assert await c.catalog.recording_policy(row.recording_id) == ("cc", policy.sha256, 400)
            assert await c.catalog.is_on_hold(row.recording_id)
            detail = await c.catalog.show(row.recording_id)
            assert detail is not None
            assert detail.segments
            for segment in detail.segments:
                assert segment.upload_state is UploadState.VERIFIED
                info = await c.store.head(segment.object_key)
                assert info.retain_until is not None
                assert before + timedelta(days=400) <= info.retain_until
                assert info.retain_until <= datetime.now(UTC) + timedelta(days=400, seconds=5)
                assert info.lock_mode is LockMode.COMPLIANCE
                assert info.legal_hold  # joined the matter when created, so uploaded held
