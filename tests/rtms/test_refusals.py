"""The refusal policy as a table: (socket, refusals in a row) -> what the engine does."""

from __future__ import annotations

import pytest

from recorder.rtms._enums import Rejection
from recorder.rtms._refusals import RefusalAction, RefusalLedger

RETRY, DROP, END = RefusalAction.RETRY, RefusalAction.DROP, RefusalAction.END


def ledger(*, essential: bool) -> RefusalLedger:
    return RefusalLedger(essential=essential, per_code_limit=2, duplicate_limit=3)


@pytest.mark.parametrize(
    ("essential", "refusals", "expected"),
    [
        # Signature and authentication failures are final at once, on any socket.
        (True, [(3, Rejection.SIGNATURE)], [END]),
        (False, [(3, Rejection.SIGNATURE)], [END]),
        (True, [(18, Rejection.AUTH)], [END]),
        # A transient status retries up to the per-code limit, then ends an essential socket...
        (True, [(45, Rejection.OTHER)] * 3, [RETRY, RETRY, END]),
        # ... and drops an optional one.
        (False, [(45, Rejection.OTHER)] * 3, [RETRY, RETRY, DROP]),
        # Each code has its own count: alternating failures are not one repeated failure.
        (True, [(45, Rejection.OTHER), (1, Rejection.OTHER)] * 2, [RETRY] * 4),
        # An optional socket whose media the stream does not offer is dropped at once.
        (False, [(12, Rejection.UNSUPPORTED)], [DROP]),
        # Audio refused as unsupported is retried like any other status, then ends.
        (True, [(9, Rejection.UNSUPPORTED)] * 3, [RETRY, RETRY, END]),
        # Duplicate signal requests have their own limit.
        (True, [(8, Rejection.DUPLICATE_SIGNAL)] * 4, [RETRY, RETRY, RETRY, END]),
        # Duplicate media on the audio socket waits for the grace timer, never the count.
        (True, [(16, Rejection.DUPLICATE_MEDIA)] * 10, [RETRY] * 10),
        (True, [(15, Rejection.ALL_CONNECTION_EXISTS)] * 10, [RETRY] * 10),
        (False, [(16, Rejection.DUPLICATE_MEDIA)] * 3, [RETRY, RETRY, DROP]),
        # An answer that was not V1 JSON at all: retried like a transient status.
        (True, [(None, Rejection.UNREADABLE)] * 3, [RETRY, RETRY, END]),
    ],
)
def test_refusal_table(
    essential: bool, refusals: list[tuple[int | None, Rejection]], expected: list[RefusalAction]
) -> None:
    book = ledger(essential=essential)
    assert [book.on_refusal(code, kind).action for code, kind in refusals] == expected


def test_success_forgets_every_count() -> None:
    book = ledger(essential=True)
    assert book.on_refusal(45, Rejection.OTHER).action is RETRY
    assert book.on_refusal(45, Rejection.OTHER).action is RETRY
    book.on_success()
    decision = book.on_refusal(45, Rejection.OTHER)
    assert decision.action is RETRY
    assert decision.attempt == 1


def test_the_final_decision_says_why() -> None:
    book = ledger(essential=True)
    for _ in range(2):
        book.on_refusal(45, Rejection.OTHER)
    decision = book.on_refusal(45, Rejection.OTHER)
    assert decision.action is END
    assert decision.attempt == 3
    assert "status 45" in decision.why
