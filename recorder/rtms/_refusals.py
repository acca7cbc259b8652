"""What a refused handshake leads to: retry after backoff, drop an optional socket, or end.

Pure: no trio, no clock, no I/O. The engine keeps one ``RefusalLedger`` per socket (signaling,
and each media slot), feeds it every refusal and acts on the returned ``RefusalAction``.

Rules (rtms-protocol §6.14, §9.3, Appendix B):

1. Signature and authentication failures are final at once: the same credentials cannot succeed.
2. Only audio is essential. A socket that carries no audio is optional: when the server says
   its media is not supported it is dropped at once, and when any other refusal repeats past
   its limit it is dropped too. The stream and its audio go on either way.
3. Duplicates (signal, media, all-connection) mean the server has not yet noticed that our
   previous connection died. A duplicate signal request is retried at most ``duplicate_limit``
   times in a row; duplicate media connections on an essential socket are retried until the
   engine's grace period runs out (giving up would lose audio).
4. Every other status (45 INTERNAL_EXCEPTION, legacy 1 CONNECTION_TIMEOUT, 13 SESSION_NOT_FOUND
   after a reconnect, ...) may be transient: retried with backoff at most ``per_code_limit``
   times in a row for the same code; past that an essential socket ends the stream.
5. A successful handshake forgets every count.
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass

from recorder.rtms._enums import Rejection


class RefusalAction(enum.Enum):
    #: Back off and try the same socket again.
    RETRY = "retry"
    #: Give up on this optional socket; the stream goes on without it.
    DROP = "drop"
    #: End the stream.
    END = "end"


@dataclass(frozen=True, slots=True)
class RefusalDecision:
    action: RefusalAction
    #: Refusals in a row with this status code (or of this duplicate kind), this one included.
    attempt: int
    #: Why, for the log and the ``StreamEnded`` / ``MediaSocketDropped`` detail.
    why: str


_DUPLICATES = (
    Rejection.DUPLICATE_SIGNAL,
    Rejection.DUPLICATE_MEDIA,
    Rejection.ALL_CONNECTION_EXISTS,
)


class RefusalLedger:
    """Consecutive refusals of one socket, and the decision each one leads to."""

    def __init__(self, *, essential: bool, per_code_limit: int, duplicate_limit: int) -> None:
        self.essential = essential
        self.per_code_limit = max(0, per_code_limit)
        self.duplicate_limit = max(0, duplicate_limit)
        self._counts: collections.Counter[tuple[str, int | None]] = collections.Counter()

    def on_success(self) -> None:
        self._counts.clear()

    def on_refusal(self, status_code: int | None, rejection: Rejection) -> RefusalDecision:
        if rejection.final:
            return RefusalDecision(RefusalAction.END, 1, f"{rejection.value} refused")
        if rejection is Rejection.UNSUPPORTED and not self.essential:
            return RefusalDecision(RefusalAction.DROP, 1, "media not supported")
        # Duplicates are counted by kind (the code differs between the two tables); anything
        # else by its code, so a different transient failure starts its own count.
        key = (rejection.value, None if rejection in _DUPLICATES else status_code)
        self._counts[key] += 1
        attempt = self._counts[key]
        if rejection is Rejection.DUPLICATE_SIGNAL:
            limit: int | None = self.duplicate_limit
        elif rejection in _DUPLICATES and self.essential:
            limit = None  # bounded by the engine's give-up timer
        else:
            limit = self.per_code_limit
        if limit is None or attempt <= limit:
            return RefusalDecision(RefusalAction.RETRY, attempt, f"{rejection.value} refused")
        action = RefusalAction.END if self.essential else RefusalAction.DROP
        return RefusalDecision(
            action, attempt, f"{rejection.value} refused {attempt} times (status {status_code})"
        )


__all__ = ["RefusalAction", "RefusalDecision", "RefusalLedger"]
