"""One process asks Zoom (catalog rule 2): two catalogs on one database claiming pending starts
and due enrichments at the same moment never both get the same one; a stale claim is taken
again (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

from recorder.catalog import SqlCatalog
from recorder.completeness.model import ExpectationSource, NewExpectation, StartState
from recorder.products import Product
from tests.catalog.support import T0, CatalogTarget

N = 24


def _race(catalogs: list[SqlCatalog], claim: object) -> list[list[str]]:
    barrier = threading.Barrier(len(catalogs))
    results: list[list[str]] = [[] for _ in catalogs]

    def run(i: int) -> None:
        barrier.wait()
        results[i] = claim(catalogs[i])  # type: ignore[operator]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(catalogs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_concurrent_claims_are_disjoint_and_stale_ones_come_back(target: CatalogTarget) -> None:
    first, second = target.open(), target.open()
    try:
        for n in range(N):
            first.add_expectation(
                NewExpectation(
                    Product.PHONE,
                    f"call-{n}",
                    f"call-{n}",
                    ExpectationSource.WEBHOOK,
                    "phone.callee_answered",
                    expected_start_ms=T0,
                    created_ms=T0,
                    start_state=StartState.PENDING,
                )
            )
        a, b = _race(
            [first, second],
            lambda c: [
                x.instance_id for x in c.claim_expectation_starts(T0, stale_ms=1000, limit=N)
            ],
        )
        assert len(a) + len(b) == N
        assert not set(a) & set(b)
        # Nothing left now; a claim older than stale_ms is taken again.
        assert first.claim_expectation_starts(T0 + 999, stale_ms=1000, limit=N) == []
        again = second.claim_expectation_starts(T0 + 1001, stale_ms=1000, limit=N)
        assert len(again) == N
        first.set_start_result(again[0].expectation_id, T0 + 1002, ok=True, attempts=1)
        assert len(first.claim_expectation_starts(T0 + 5000, stale_ms=1000, limit=N)) == N - 1

        c, d = _race(
            [first, second],
            lambda cat: [
                t.instance_id for t in cat.claim_due_enrichments(T0, lease_ms=1000, limit=N)
            ],
        )
        assert len(c) + len(d) == N
        assert not set(c) & set(d)
        assert first.claim_due_enrichments(T0 + 999, lease_ms=1000, limit=N) == []
        assert len(second.claim_due_enrichments(T0 + 1000, lease_ms=1000, limit=N)) == N
    finally:
        first.close()
        second.close()
