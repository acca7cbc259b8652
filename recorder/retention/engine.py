"""The retention engine's pure core: ``evaluate(recordings, policies, holds, now) -> Plan``.

No I/O, no clock: the same inputs always give the same plan, so ``recorder retention plan``
prints exactly what ``recorder retention run`` will do with the same catalog at the same time.
Like borg's prune, the decision is computed first and applied separately (``apply.py``).

Rules, checked in this order; the first that applies decides (``tests/retention/test_engine.py``
runs this table):

====  ==========================================================  ========  ====================
 #    situation                                                   verdict   reason starts with
====  ==========================================================  ========  ====================
 1    still recording (no end time)                               keep      ``still recording``
 2    an active legal hold covers the recording or its instance   keep      ``legal hold``
 3    the policy counts from an account event not yet reported   keep      ``waiting for``
 4    now is before the end of the retention period               keep      ``retained until``
 5    an object's Object Lock retain-until is still in the future keep      ``object lock``
 6    an object is not uploaded yet (still in the spool)          keep      ``not uploaded``
 7    otherwise                                                   destroy   ``expired``
====  ==========================================================  ========  ====================

The period in force is the longer of the policy stored with the recording (at recording time)
and the policy the current files select: a policy edit can lengthen retention of existing
recordings, never shorten it. A MiFID-style policy uses ``extendable_to`` once its
``extend_on`` account event exists. The action at expiry (delete or crypto-shred) is that of the
winning policy.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from recorder.catalog.base import HoldScope, LegalHoldRow, UploadState
from recorder.catalog.retention_types import RetentionFacts, StoredObjectRow
from recorder.retention.policy import (
    MS_PER_DAY,
    CountsFrom,
    ExpiryAction,
    Policy,
    PolicySet,
    select_policy,
)


class Verdict(enum.StrEnum):
    KEEP = "keep"
    DESTROY = "destroy"


@dataclass(frozen=True, slots=True)
class Decision:
    recording_id: str
    verdict: Verdict
    #: Only for ``DESTROY``.
    action: ExpiryAction | None
    #: ``policy:<name>@<sha256 prefix>``: the authority the decision rests on.
    policy: str
    reason: str
    #: When the retention period ends (``None``: not known yet, e.g. waiting for an event).
    expires_ms: int | None
    objects: tuple[StoredObjectRow, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "recording_id": self.recording_id,
            "verdict": self.verdict.value,
            "action": self.action.value if self.action else None,
            "policy": self.policy,
            "reason": self.reason,
            "expires_ms": self.expires_ms,
            "objects": len(self.objects),
        }


@dataclass(frozen=True, slots=True)
class Plan:
    now_ms: int
    decisions: tuple[Decision, ...]

    @property
    def to_destroy(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.verdict is Verdict.DESTROY)

    def to_json(self) -> str:
        return json.dumps(
            {"now_ms": self.now_ms, "decisions": [d.to_json() for d in self.decisions]},
            indent=2,
            sort_keys=True,
        )


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _policy_days(policy: Policy, facts: RetentionFacts) -> int:
    if policy.extended_days and policy.extend_on in facts.account_events:
        return policy.extended_days
    return policy.retain_days


def _start_of_period(policy: Policy, facts: RetentionFacts) -> int | None:
    r = facts.recording
    if policy.counts_from is CountsFrom.RECORDING_START:
        return r.started_ms
    if policy.counts_from is CountsFrom.EVENT:
        assert policy.counts_from_event is not None
        return facts.account_events.get(policy.counts_from_event)
    return r.ended_ms


def _holding(facts: RetentionFacts, holds: Sequence[LegalHoldRow]) -> LegalHoldRow | None:
    r = facts.recording
    for hold in holds:
        if not hold.active:
            continue
        if (hold.scope is HoldScope.RECORDING and hold.scope_value == r.recording_id) or (
            hold.scope is HoldScope.INSTANCE and hold.scope_value == r.instance_id
        ):
            return hold
    return None


def decide(
    facts: RetentionFacts, policies: PolicySet, holds: Sequence[LegalHoldRow], now_ms: int
) -> Decision:
    r = facts.recording
    current = select_policy(policies, r, facts.participants)
    policy = current
    days = _policy_days(current, facts)
    ref = current.ref
    stored = policies.by_name(facts.policy_name) if facts.policy_name else None
    if facts.policy_retain_days is not None and facts.policy_retain_days > days:
        # The policy in force at recording time was longer: it still binds.
        days = facts.policy_retain_days
        policy = stored or current
        ref = f"policy:{facts.policy_name}@{(facts.policy_sha256 or '')[:12]}"

    def keep(reason: str, expires_ms: int | None = None) -> Decision:
        return Decision(r.recording_id, Verdict.KEEP, None, ref, reason, expires_ms, facts.objects)

    if r.ended_ms is None:
        return keep("still recording")
    hold = _holding(facts, holds)
    if hold is not None:
        return keep(f"legal hold #{hold.hold_id} (matter {hold.matter})")
    start = _start_of_period(policy, facts)
    if start is None:
        return keep(f"waiting for account event {policy.counts_from_event!r}")
    expires_ms = start + days * MS_PER_DAY
    if now_ms < expires_ms:
        return keep(f"retained until {iso(expires_ms)} ({days} days)", expires_ms)
    for obj in facts.objects:
        if obj.retain_until_ms is not None and obj.retain_until_ms > now_ms:
            return keep(f"object lock on {obj.object_key} until {iso(obj.retain_until_ms)}")
    for obj in facts.objects:
        if obj.upload_state is UploadState.PENDING:
            return keep(f"not uploaded yet: {obj.object_key} is still in the spool")
    return Decision(
        r.recording_id,
        Verdict.DESTROY,
        policy.action,
        ref,
        f"expired {iso(expires_ms)} after {days} days",
        expires_ms,
        facts.objects,
    )


def evaluate(
    recordings: Sequence[RetentionFacts],
    policies: PolicySet,
    holds: Sequence[LegalHoldRow],
    now_ms: int,
) -> Plan:
    """Decide every recording (see the module's rule table). Pure: no I/O, no clock."""
    return Plan(now_ms, tuple(decide(f, policies, holds, now_ms) for f in recordings))
