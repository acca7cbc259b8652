"""Auto-start's retry rules (``recorder.completeness.autostart``) on a mock clock, and the
completeness metrics' fixed label sets."""

from __future__ import annotations

import trio
import trio.testing

from recorder.completeness.autostart import START_TIMEOUT_S, request_start
from recorder.completeness.model import ExpectationRow, ExpectationSource, StartState
from recorder.errors import ZoomApiError
from recorder.products import Product
from recorder.service.metrics import RecorderMetrics
from recorder.testing.zoom_fakes import MemoryController

X = ExpectationRow(
    7,
    Product.PHONE,
    "call-1",
    "call-1",
    ExpectationSource.WEBHOOK,
    "phone.callee_answered",
    None,
    None,
    None,
    0,
    None,
    0,
    StartState.REQUESTING,
    0,
    None,
    None,
    None,
)


async def test_429_5xx_and_network_errors_are_retried_with_backoff_until_the_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    controller = MemoryController()
    controller.fail_next.extend(
        [
            ZoomApiError("Too many requests", status=429, code=429),
            ZoomApiError("Bad gateway", status=502),
            ZoomApiError("connection reset"),
        ]
    )
    start = trio.current_time()
    outcome = await request_start(controller, X, attempts=3, backoff_s=1.0)
    assert not outcome.ok
    assert outcome.attempts == 3
    assert outcome.error is not None
    assert str(outcome.error) == "connection reset"
    assert trio.current_time() - start == 3.0  # 1 s, then 2 s between the three attempts
    assert controller.changed == []
    controller.fail_next.append(ZoomApiError("Bad gateway", status=502))
    assert (await request_start(controller, X, attempts=3, backoff_s=1.0)).attempts == 2
    assert controller.changed[-1][1] == "call-1"


async def test_a_refusal_is_final_and_a_hung_or_broken_controller_is_a_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    controller = MemoryController()
    controller.fail_next.append(ZoomApiError("Not allowed", status=400, code=2308))
    refused = await request_start(controller, X, attempts=5, backoff_s=1.0)
    assert (refused.ok, refused.attempts) == (False, 1)
    assert refused.error is not None
    assert refused.error.code == 2308

    class Hung:
        async def change(self, *_: object) -> None:
            await trio.sleep_forever()

    hung = await request_start(Hung(), X, attempts=2, backoff_s=0.5)
    assert (hung.ok, hung.attempts) == (False, 2)
    assert hung.error is not None
    assert f"{START_TIMEOUT_S:g} s" in str(hung.error)

    class Broken:
        async def change(self, *_: object) -> None:
            raise KeyError("client bug")

    broken = await request_start(Broken(), X, attempts=3, backoff_s=0.5)
    assert (broken.ok, broken.attempts) == (False, 1)
    assert "KeyError" in str(broken.error)


def test_findings_gauge_has_fixed_labels_and_reads_zero_once_resolved() -> None:
    metrics = RecorderMetrics()
    metrics.set_findings([("missing", "never_started", 2), ("weird", "<script>", 5)])
    text = metrics.render().decode()
    assert 'rtmsrec_completeness_findings{cause="never_started",kind="missing"} 2.0' in text
    assert 'rtmsrec_completeness_findings{cause="other",kind="other"} 5.0' in text
    assert "<script>" not in text
    metrics.set_findings([])
    text = metrics.render().decode()
    assert 'rtmsrec_completeness_findings{cause="never_started",kind="missing"} 0.0' in text
    assert 'rtmsrec_completeness_findings{cause="other",kind="other"} 0.0' in text
    metrics.rtms_autostart("requested")
    metrics.enrichment("anything else")
    text = metrics.render().decode()
    assert 'rtmsrec_rtms_autostarts_total{result="requested"} 1.0' in text
    assert 'rtmsrec_enrichments_total{result="other"} 1.0' in text
