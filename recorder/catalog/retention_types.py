"""Rows the retention, legal-hold and audit commands read from the catalog."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from recorder.catalog.base import RecordingRow, UploadState

#: The fields a hold rule may name; every named field must match (``hold_rule_matches``).
HOLD_RULE_FIELDS = ("participant", "queue", "product", "account")
#: The fields whose values name a person, as the search's ``participant`` and ``queue`` filters
#: do: the ``hold.rule.place`` audit event keeps them only as keyed MACs (``PersonalMacs``).
#: ``product`` and ``account`` (an account id, as ids are in search events) stay as typed.
HOLD_RULE_PERSONAL_FIELDS = ("participant", "queue")


@dataclass(frozen=True, slots=True)
class PersonalMacs:
    """A hold rule's personal values as the audit log keeps them: ``field -> MAC`` under the
    search key ``key_id`` (``recorder.officer.search_audit.rule_macs``)."""

    key_id: str
    macs: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class StoredObjectRow:
    """One segment or record file as retention sees it."""

    object_key: str
    version_id: str | None
    stored_sha256: str | None
    retain_until_ms: int | None
    upload_state: UploadState
    key_id: str


@dataclass(frozen=True, slots=True)
class RetentionFacts:
    """Everything the pure retention engine needs about one not-yet-destroyed recording."""

    recording: RecordingRow
    #: The policy stored at recording time (``None`` before the first sealed object).
    policy_name: str | None
    policy_sha256: str | None
    policy_retain_days: int | None
    #: ``(user_id, user_name)`` of every participant.
    participants: tuple[tuple[str, str | None], ...] = ()
    objects: tuple[StoredObjectRow, ...] = ()
    #: Account events (``account_closed`` ...) and when they happened, Unix ms.
    account_events: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HoldRuleRow:
    """A matter that future recordings matching ``rule`` join automatically."""

    rule_id: int
    matter: str
    rule: Mapping[str, str]
    placed_by: str
    reason: str
    placed_ms: int
    released_by: str | None
    released_ms: int | None

    @property
    def active(self) -> bool:
        return self.released_ms is None


@dataclass(frozen=True, slots=True)
class RetentionLockRow:
    holder: str
    host: str
    pid: int
    acquired_ms: int
    expires_ms: int


def hold_rule_matches(
    rule: Mapping[str, str],
    recording: RecordingRow,
    participants: tuple[tuple[str, str | None], ...],
) -> bool:
    """Every field the rule names matches (names ignore case; ids are exact)."""

    def same(a: str | None, b: str) -> bool:
        return a is not None and (a == b or a.casefold() == b.casefold())

    for name, wanted in rule.items():
        if name == "participant":
            people = [recording.cc_agent_id, recording.cc_agent_name, recording.operator_id]
            people += [p for pair in participants for p in pair]
            ok = any(same(p, wanted) for p in people)
        elif name == "queue":
            ok = same(recording.cc_queue_id, wanted) or same(recording.cc_queue_name, wanted)
        elif name == "product":
            ok = recording.product.value == wanted
        elif name == "account":
            ok = recording.account_id == wanted
        else:
            ok = False  # an unknown field never matches silently-broadly
        if not ok:
            return False
    return bool(rule)
