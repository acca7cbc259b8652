"""The recovery rules as tables: (losses at times) -> what the engine does next."""

from __future__ import annotations

from typing import Any

import pytest

from recorder.rtms._recovery import Next, Recovery, Step

GIVE_UP_S = 60.0


def recovery(*, essential: bool = True) -> Recovery:
    return Recovery(initial_s=3.0, max_s=30.0, give_up_after_s=GIVE_UP_S, essential=essential)


def reconnect(delay_s: float) -> Next:
    return Next(Step.RECONNECT, delay_s)


GAVE_UP = Next(Step.END, name="RECONNECT_GAVE_UP")


@pytest.mark.parametrize(
    ("losses", "expected"),
    [
        # Rule 5: 3 s doubling, capped at 30 s.
        ([0, 3, 9, 21, 45], [reconnect(d) for d in (3, 6, 12, 24, 30)]),
        # Rule 4: the clock runs from the first loss (rule 1), not the last.
        ([0, 30, 59.9, 60], [reconnect(3), reconnect(6), reconnect(12), GAVE_UP]),
        # Rule 2: a failover reconnects at once, even past the grace.
        ([0, ("failover", 100)], [reconnect(3), Next(Step.RECONNECT)]),
        # Rule 3: a loss while we close the stream ends it, normally.
        (
            [0, ("closing", 1)],
            [reconnect(3), Next(Step.END, reason=20, name="RECEIVER_REQUEST_CLOSE", normal=True)],
        ),
        # Rule 1: a socket lost inside a full interruption runs no clock of its own.
        ([("no_clock", 0), ("no_clock", 100)], [reconnect(3), reconnect(6)]),
    ],
)
def test_recovery_table(losses: list[Any], expected: list[Next]) -> None:
    book = recovery()
    got = []
    for loss in losses:
        kind, now = loss if isinstance(loss, tuple) else ("lost", loss)
        got.append(
            book.lost(
                now,
                failover=kind == "failover",
                closing=kind == "closing",
                clock=kind != "no_clock",
            )
        )
    assert got == expected


def test_an_optional_socket_is_dropped_past_the_grace() -> None:
    book = recovery(essential=False)
    assert book.lost(0).step is Step.RECONNECT
    assert book.lost(GIVE_UP_S).step is Step.DROP


def test_recovered_reports_attempts_and_restarts_clock_and_backoff() -> None:
    book = recovery()
    for now in (0, 3, 9):
        book.lost(now)
    assert book.recovered() == 3
    assert book.since is None
    # A new interruption long after the first starts from scratch.
    assert book.lost(1000) == reconnect(3)
    assert book.recovered() == 1


def test_a_handshake_restarts_the_backoff_but_not_the_clock() -> None:
    book = recovery()
    book.lost(0)
    book.lost(3)
    book.handshake_ok()
    assert book.lost(10) == reconnect(3)
    assert book.lost(GIVE_UP_S) == GAVE_UP
