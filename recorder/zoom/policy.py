"""Pure decisions of the Zoom REST client: when a token is due, whether and how long to retry.

No I/O, no clock: every function takes ``now`` (seconds, any monotonic clock) and returns a value,
so the rules below are table-tested (``tests/zoom/test_policy.py``).

Rules:

1. **Token refresh.** A token obtained at ``t`` with ``expires_in`` seconds is used until
   ``t + expires_in - margin``, where the margin is the configured one but at most half the
   lifetime (a 2 s test token is still used for 1 s). A 401 from the API drops it at once.
2. **What is retried.** HTTP 429 (waiting ``Retry-After`` seconds, never longer than the
   configured cap: a longer wait fails at once with Zoom's answer), 5xx, and network errors
   (connect, read, write, timeouts). Nothing else: a 4xx is Zoom's verdict on the request.
3. **How often.** At most ``max_retries`` retries after the first attempt, with exponential
   backoff ``initial * 2**n`` capped at ``backoff_max`` (a 429's ``Retry-After`` replaces it).
4. **401 once.** The API's first 401 of a request refreshes the token and retries without
   counting as a retry; a second 401 is the answer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

#: Retry-After values Zoom sends are seconds (RFC 9110 also allows an HTTP date: not retried).
_MAX_RETRY_AFTER_TEXT: Final = 12


@dataclass(frozen=True, slots=True)
class Token:
    """One bearer token; ``value`` is never shown by ``repr``."""

    value: str
    obtained_at: float
    expires_in: float

    def __repr__(self) -> str:
        return f"Token(obtained_at={self.obtained_at}, expires_in={self.expires_in})"

    def refresh_at(self, margin_s: float) -> float:
        """Rule 1: when this token stops being used."""
        margin = min(margin_s, self.expires_in / 2)
        return self.obtained_at + self.expires_in - margin

    def usable(self, now: float, margin_s: float) -> bool:
        return now < self.refresh_at(margin_s)


class Outcome(enum.Enum):
    """What one attempt came to, as far as retrying is concerned."""

    SUCCESS = "success"
    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    NETWORK_ERROR = "network_error"
    REFUSED = "refused"


def classify(status: int | None) -> Outcome:
    """``status`` None means the request never got an HTTP answer (network error, timeout)."""
    if status is None:
        return Outcome.NETWORK_ERROR
    if 200 <= status < 300:
        return Outcome.SUCCESS
    if status == 401:
        return Outcome.UNAUTHORIZED
    if status == 429:
        return Outcome.RATE_LIMITED
    if status >= 500:
        return Outcome.SERVER_ERROR
    return Outcome.REFUSED


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header; None when absent or not a small number."""
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > _MAX_RETRY_AFTER_TEXT:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return seconds


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0
    retry_after_max_s: float = 60.0

    def delay(
        self, outcome: Outcome, retries_done: int, retry_after_s: float | None
    ) -> float | None:
        """Rules 2 and 3: seconds to wait before the next attempt, or None to give up."""
        if outcome not in (Outcome.RATE_LIMITED, Outcome.SERVER_ERROR, Outcome.NETWORK_ERROR):
            return None
        if retries_done >= self.max_retries:
            return None
        if outcome is Outcome.RATE_LIMITED and retry_after_s is not None:
            if retry_after_s > self.retry_after_max_s:
                return None
            return retry_after_s
        backoff: float = self.backoff_initial_s * (2.0**retries_done)
        return min(backoff, self.backoff_max_s)
