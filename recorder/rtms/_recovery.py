"""The way back after a lost connection, for the whole stream or one media socket. Pure.

No trio, no I/O: the engine passes ``now`` (trio time) and acts on the returned ``Next``.
One ``Recovery`` serves the signaling generations, one more each media socket.

Rules (rtms-protocol §9.2, Appendix B):

1. The first loss after a recovery starts the interruption clock (``lost(now)``); later losses
   of the same interruption do not move it. A media socket lost while the whole connection is
   already interrupted does not start its own clock (``clock=False``): the stream's clock
   decides.
2. A failover reconnects at once, whatever the clock says.
3. A loss while we are closing the stream ourselves ends it (RECEIVER_REQUEST_CLOSE, normal).
4. An interruption older than ``give_up_after_s`` ends the stream (RTMS itself gives up after
   about 60-65 s) or, for an optional socket, drops that socket.
5. Otherwise back off: ``initial_s`` doubling to ``max_s``. ``handshake_ok()`` restarts the
   backoff; ``recovered()`` closes the interruption and says how many attempts it took.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from recorder.rtms._backoff import Backoff


class Step(enum.Enum):
    RECONNECT = "reconnect"
    END = "end"
    #: Give up on an optional socket; the stream goes on.
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Next:
    step: Step
    delay_s: float = 0.0
    #: For ``END``: the stop reason and name of the ``StreamEnded``, and whether it was normal.
    reason: int | None = None
    name: str = ""
    normal: bool = False


class Recovery:
    def __init__(
        self,
        *,
        initial_s: float,
        max_s: float,
        give_up_after_s: float,
        essential: bool = True,
    ) -> None:
        self._backoff = Backoff(initial_s, max_s)
        self.give_up_after_s = give_up_after_s
        self.essential = essential
        #: ``now`` when the current interruption began (rule 1); None when connected.
        self.since: float | None = None
        #: Reconnect attempts in the current interruption.
        self.attempts = 0

    def lost(
        self, now: float, *, failover: bool = False, closing: bool = False, clock: bool = True
    ) -> Next:
        if self.since is None and clock:
            self.since = now
        if failover:
            return Next(Step.RECONNECT)
        if closing:
            return Next(Step.END, reason=20, name="RECEIVER_REQUEST_CLOSE", normal=True)
        if self.since is not None and now - self.since >= self.give_up_after_s:
            if not self.essential:
                return Next(Step.DROP, name="not back within the grace")
            return Next(Step.END, name="RECONNECT_GAVE_UP")
        self.attempts += 1
        return Next(Step.RECONNECT, self._backoff.next())

    def handshake_ok(self) -> None:
        self._backoff.reset()

    def recovered(self) -> int:
        """Close the interruption; the attempts it took (at least 1 once anything was lost)."""
        attempts = self.attempts
        self.since = None
        self.attempts = 0
        self._backoff.reset()
        return attempts


__all__ = ["Next", "Recovery", "Step"]
