"""/metrics of a ``serve --workers N`` tree: every worker's series, labelled ``worker="I"``.

Why: the workers share one listening socket, so a scrape lands on whichever worker accepts it.
With each worker serving only its own registry, a counter jumped between the workers' values
from one scrape to the next (and looked like a reset to Prometheus). Labelling each worker's
series is what Prometheus users expect from a multi-process service (``sum(rate(...))``
across ``worker``), and keeps every series a single process's monotonic counter.

Rules:

1. Each worker publishes its own exposition to ``<state_dir>/workers/<I>/metrics.prom`` every
   ``PUBLISH_INTERVAL_S`` and again at stop (atomic replace, 0600). No secret, id or payload
   is in it (``recorder.service.metrics`` rule).
2. A worker answering a scrape publishes its own figures *first*, then merges every worker's
   file. Whatever a scrape has shown for worker I was in I's file before it was shown, and
   that file only moves forward, so a later scrape on any worker never shows I's counters
   lower (until I restarts: a counter reset, which ``rate()`` handles).
3. A worker whose file is older than ``stale_after_s`` is not running (killed, wedged, being
   restarted, or an index no longer run): ``rtmsrec_worker_up{worker="I"}`` is 0, its
   counters stay at their last figures (what it counted is not dropped from ``sum``), its
   gauges are left out (they describe a process that is gone). Its spool is not lost: the
   restart of the same index (same state directory) uploads it, and ``recorder spool list``
   shows it meanwhile.
4. Files that cannot be read or parsed are skipped with a warning; a scrape never fails
   because of a sibling.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from recorder.service.metrics import RecorderMetrics
from recorder.service.workers import worker_indexes

logger = logging.getLogger(__name__)

#: Rule 1: each worker's published exposition, in its own state directory.
METRICS_FILE: Final = "metrics.prom"
WORKER_LABEL: Final = "worker"
#: Rule 1: how often an idle worker's figures reach its siblings' scrapes.
PUBLISH_INTERVAL_S: Final = 1.0
UP_METRIC: Final = "rtmsrec_worker_up"
AGE_METRIC: Final = "rtmsrec_worker_metrics_age_seconds"


@dataclass(slots=True)
class _Family:
    name: str
    documentation: str
    type: str
    unit: str
    samples: list[Sample] = field(default_factory=list)


class _Merged(Collector):
    def __init__(self, families: Iterable[_Family]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            metric = Metric(family.name, family.documentation, family.type, family.unit)
            metric.samples = family.samples
            yield metric


class TreeMetrics:
    """Rules 1-4 for worker ``index`` whose siblings live under ``workers_dir``."""

    def __init__(
        self,
        metrics: RecorderMetrics,
        workers_dir: Path,
        index: int,
        *,
        stale_after_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._metrics = metrics
        self._workers_dir = workers_dir
        self._index = index
        self._stale_after_s = stale_after_s
        self._clock = clock

    def publish(self) -> bytes:
        """Rule 1; returns what it wrote. Synchronous on purpose: a few kB to the local disk,
        and publications must land in the order they were rendered (rule 2), which threads
        would not promise."""
        text = self._metrics.render()
        own = self._workers_dir / str(self._index)
        tmp = own / f".{METRICS_FILE}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text)
        finally:
            os.close(fd)
        os.replace(tmp, own / METRICS_FILE)
        return text

    def render(self) -> bytes:
        """The tree's exposition (rule 2)."""
        try:
            own = self.publish()
        except OSError as exc:
            # Still serve, from memory: one scrape's monotonicity is worth less than the page.
            logger.warning("metrics: own figures not published: %s", exc.strerror)
            own = self._metrics.render()
        families: dict[str, _Family] = {}
        up = _Family(UP_METRIC, "1 while the worker publishes its figures, else 0.", "gauge", "")
        age = _Family(AGE_METRIC, "Age of the worker's last published figures.", "gauge", "")
        now = self._clock()
        for index, text, mtime in self._read_all(own.decode()):
            label = str(index)
            age_s = max(0.0, now - mtime)
            live = index == self._index or age_s <= self._stale_after_s
            up.samples.append(Sample(UP_METRIC, {WORKER_LABEL: label}, 1.0 if live else 0.0))
            age.samples.append(Sample(AGE_METRIC, {WORKER_LABEL: label}, round(age_s, 3)))
            try:
                parsed = list(text_string_to_metric_families(text))
            except ValueError as exc:
                logger.warning("metrics: worker %d figures not readable: %s", index, exc)
                continue
            for metric in parsed:
                if not live and metric.type != "counter":
                    continue  # rule 3
                family = families.get(metric.name)
                if family is None:
                    family = families[metric.name] = _Family(
                        metric.name, metric.documentation, metric.type, metric.unit
                    )
                family.samples.extend(
                    s._replace(labels={**s.labels, WORKER_LABEL: label}) for s in metric.samples
                )
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Merged([up, age, *families.values()]))
        return generate_latest(registry)

    def _read_all(self, own: str) -> list[tuple[int, str, float]]:
        """(index, exposition, mtime) of every worker; this one's is ``own``, just published."""
        found = [(self._index, own, self._clock())]
        for index in worker_indexes(self._workers_dir.parent):
            path = self._workers_dir / str(index) / METRICS_FILE
            if index == self._index:
                continue
            try:
                mtime = path.stat().st_mtime
                text = path.read_text()
            except FileNotFoundError:
                continue  # never published: a worker still starting
            except OSError as exc:
                logger.warning("metrics: worker %d figures not read: %s", index, exc.strerror)
                continue
            found.append((index, text, mtime))
        return sorted(found)

    async def run(self) -> None:
        """Rule 1, until cancelled; the last publication is the caller's ``publish()`` at stop."""
        while True:
            try:
                self.publish()
            except OSError as exc:
                logger.warning("metrics: own figures not published: %s", exc.strerror)
            await trio.sleep(PUBLISH_INTERVAL_S)
