"""Which announced meetings, engagements and calls must be recorded (``[completeness]``). Pure.

Rule 1: nothing is expected unless ``enabled``. Rule 2: the product must be listed. Rule 3:
every non-empty list (``accounts``, ``users``, and ``queues`` for Contact Center) must contain
the announcement's value; a value the announcement does not carry does not match (an
expectation, and with ``auto_start`` a started stream, needs a positive reason).
"""

from __future__ import annotations

from recorder.completeness.announcements import Announcement
from recorder.completeness.model import StartState
from recorder.config import CompletenessConfig
from recorder.products import Product


def _allowed(listed: tuple[str, ...], value: str | None) -> bool:
    return not listed or (value is not None and value in listed)


def must_record(policy: CompletenessConfig, announcement: Announcement) -> bool:
    if not policy.enabled or announcement.product not in policy.products:
        return False
    if not _allowed(policy.accounts, announcement.account_id):
        return False
    if not _allowed(policy.users, announcement.user_id):
        return False
    if announcement.product is Product.CONTACT_CENTER:
        return _allowed(policy.queues, announcement.queue_id)
    return True


def initial_start_state(policy: CompletenessConfig, *, controller_present: bool) -> StartState:
    """``pending`` when the service is to ask Zoom to start the stream, else ``off``."""
    return StartState.PENDING if policy.auto_start and controller_present else StartState.OFF
