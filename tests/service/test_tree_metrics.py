"""``TreeMetrics``: two workers' real registries publishing into real worker state directories,
a clock the test moves (staleness). The real process tree is in test_workers_ops.py."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from recorder.rtms.webhook import WebhookKind
from recorder.service.metrics import RecorderMetrics
from recorder.service.tree_metrics import METRICS_FILE, TreeMetrics
from recorder.service.workers import worker_state_dir

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def series(page: bytes) -> Series:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(page.decode())
        for s in family.samples
    }


def value(page: Series, name: str, **labels: str) -> float | None:
    return page.get((name, tuple(sorted(labels.items()))))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def tree(tmp_path: Path, clock: Clock) -> tuple[list[RecorderMetrics], list[TreeMetrics]]:
    workers_dir = worker_state_dir(tmp_path, 0).parent
    registries = [RecorderMetrics(), RecorderMetrics()]
    trees = []
    for index, metrics in enumerate(registries):
        worker_state_dir(tmp_path, index).mkdir(parents=True)
        trees.append(TreeMetrics(metrics, workers_dir, index, stale_after_s=5.0, clock=clock))
    return registries, trees


def test_scrapes_on_either_worker_show_both_and_never_go_back(tmp_path: Path) -> None:
    clock = Clock()
    (m0, m1), (t0, t1) = tree(tmp_path, clock)
    for t in (t0, t1):
        t.publish()
    seen: Series = {}
    for round_ in range(6):
        m0.webhook_received(WebhookKind.STARTED)
        m1.webhook_duplicate()
        if round_ % 2:
            m1.webhook_received(WebhookKind.STARTED)
        # The worker that counted last is not the one scraped: its live figures are newer than
        # its file only until it publishes (rule 2), which every scrape on it does first.
        for served in (t0, t1, t1, t0):
            page = series(served.render())
            for key, was in seen.items():
                if key[0].endswith("_total"):
                    assert page[key] >= was, (key, was, page[key])
            seen.update(page)
    final = series(t1.render())
    received = "rtmsrec_webhooks_received_total"
    assert value(final, received, kind="started", worker="0") == 6
    assert value(final, received, kind="started", worker="1") == 3
    assert value(final, "rtmsrec_webhook_duplicates_total", worker="1") == 6
    assert value(final, "rtmsrec_worker_up", worker="0") == 1
    assert value(final, "rtmsrec_worker_up", worker="1") == 1
    mode = stat.S_IMODE(os.stat(worker_state_dir(tmp_path, 0) / METRICS_FILE).st_mode)
    assert mode == 0o600


def test_a_silent_worker_keeps_its_counters_loses_its_gauges_and_is_marked_down(
    tmp_path: Path,
) -> None:
    clock = Clock()
    (_, m1), (t0, t1) = tree(tmp_path, clock)
    m1.webhook_duplicate()
    m1.engagement_started()
    t1.publish()
    published = worker_state_dir(tmp_path, 1) / METRICS_FILE
    os.utime(published, (clock.now, clock.now))  # the filesystem's clock is not the test's
    clock.now += 4.0
    fresh = series(t0.render())
    assert value(fresh, "rtmsrec_active_engagements", worker="1") == 1
    assert value(fresh, "rtmsrec_worker_metrics_age_seconds", worker="1") == 4.0
    # Worker 1 stops publishing (killed): past stale_after_s it is down, its count stays.
    clock.now += 2.0
    page = series(t0.render())
    assert value(page, "rtmsrec_worker_up", worker="1") == 0
    assert value(page, "rtmsrec_webhook_duplicates_total", worker="1") == 1
    assert value(page, "rtmsrec_active_engagements", worker="1") is None
    assert value(page, "rtmsrec_active_engagements", worker="0") == 0
    assert value(page, "rtmsrec_worker_up", worker="0") == 1


def test_an_unreadable_sibling_file_is_skipped_not_fatal(tmp_path: Path) -> None:
    clock = Clock()
    (m0, _), (t0, _) = tree(tmp_path, clock)
    (worker_state_dir(tmp_path, 1) / METRICS_FILE).write_text("this is { not an exposition\n")
    m0.webhook_duplicate()
    page = series(t0.render())
    assert value(page, "rtmsrec_webhook_duplicates_total", worker="0") == 1
    own_series = {"rtmsrec_worker_up", "rtmsrec_worker_metrics_age_seconds"}
    assert not [k for k in page if ("worker", "1") in k[1] and k[0] not in own_series]
