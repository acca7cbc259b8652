"""The pure retention engine: the rule table of ``recorder.retention.engine``, row by row."""

# ruff: noqa: E501
# E501 is waived here only: the rule table reads best as one case per line.

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from recorder.catalog.base import (
    HoldScope,
    LegalHoldRow,
    Product,
    RecordingStatus,
    UploadState,
)
from recorder.catalog.retention_types import RetentionFacts, StoredObjectRow
from recorder.retention.engine import Verdict, evaluate
from recorder.retention.policy import MS_PER_DAY, ExpiryAction, PolicySet, load_policies
from tests.retention.test_policy import DEFAULT, GOOD, recording, write

END = 1_000 * MS_PER_DAY  # the recording ends on day 1000


@pytest.fixture
def policies(tmp_path: Path) -> PolicySet:
    return policies_in(tmp_path)


def policies_in(tmp_path: Path) -> PolicySet:
    shred = GOOD.replace('name = "desk"', 'name = "phi"').replace('"desk"]', '"phi"]')
    shred = shred.replace('period = "6y"', 'period = "10d"').replace('"delete"', '"crypto_shred"')
    closure = GOOD.replace('name = "desk"', 'name = "closure"').replace('"desk"]', '"acct"]')
    closure = closure.replace("cc_queues", "accounts").replace(
        'period = "6y"', 'period = "20d"\ncounts_from = "event:account_closed"'
    )
    mifid = GOOD.replace('name = "desk"', 'name = "mifid"').replace('"desk"]', '"eu"]')
    mifid = mifid.replace("cc_queues", "accounts").replace(
        'period = "6y"', 'period = "5d"\nextendable_to = "7d"\nextend_on = "nca"'
    )
    return load_policies(
        write(tmp_path / "p", desk=GOOD, phi=shred, closure=closure, mifid=mifid, default=DEFAULT)
    )


def facts(**overrides: object) -> RetentionFacts:
    row = recording(product=Product.MEETING, started_ms=END - 60_000, ended_ms=END)
    objects = (StoredObjectRow("k1", "v1", "a" * 64, END, UploadState.VERIFIED, "rk"),)
    base = RetentionFacts(row, None, None, None, (), objects, {})
    recording_overrides = {k: overrides.pop(k) for k in list(overrides) if hasattr(row, k)}
    return replace(base, recording=replace(row, **recording_overrides), **overrides)  # type: ignore[arg-type]


def hold(scope: HoldScope, value: str, *, released: bool = False) -> LegalHoldRow:
    return LegalHoldRow(
        7, "matter-x", scope, value, "os:o", "r", 0, None, None, 1 if released else None
    )


DAY = MS_PER_DAY
CASES = [
    # (name, facts overrides, holds, now, verdict, reason start)
    ("1 still recording", {"ended_ms": None, "status": RecordingStatus.ACTIVE}, [], END + 99 * DAY, Verdict.KEEP, "still recording"),
    ("2 recording hold", {}, [hold(HoldScope.RECORDING, "rec_1")], END + 99 * DAY, Verdict.KEEP, "legal hold #7"),
    ("2 instance hold", {}, [hold(HoldScope.INSTANCE, "i1")], END + 99 * DAY, Verdict.KEEP, "legal hold"),
    ("2 released hold does not keep", {}, [hold(HoldScope.RECORDING, "rec_1", released=True)], END + 99 * DAY, Verdict.DESTROY, "expired"),
    ("3 waiting for event", {"account_id": "acct"}, [], END + 99 * DAY, Verdict.KEEP, "waiting for account event"),
    ("3 event happened, counts from it", {"account_id": "acct", "account_events": {"account_closed": END + 50 * DAY}}, [], END + 69 * DAY, Verdict.KEEP, "retained until"),
    ("3 event happened, expired", {"account_id": "acct", "account_events": {"account_closed": END + 50 * DAY}}, [], END + 70 * DAY, Verdict.DESTROY, "expired"),
    ("4 default 30d not yet", {}, [], END + 30 * DAY - 1, Verdict.KEEP, "retained until"),
    ("4 default 30d reached", {}, [], END + 30 * DAY, Verdict.DESTROY, "expired"),
    ("4 stored longer policy binds", {"policy_name": "old", "policy_sha256": "f" * 64, "policy_retain_days": 60}, [], END + 40 * DAY, Verdict.KEEP, "retained until"),
    ("4 mifid 5d", {"account_id": "eu"}, [], END + 5 * DAY, Verdict.DESTROY, "expired"),
    ("4 mifid extended to 7d", {"account_id": "eu", "account_events": {"nca": 1}}, [], END + 5 * DAY, Verdict.KEEP, "retained until"),
    ("5 object lock later", {"objects": (StoredObjectRow("k1", "v1", "a", END + 90 * DAY, UploadState.VERIFIED, "rk"),)}, [], END + 60 * DAY, Verdict.KEEP, "object lock on k1"),
    ("6 not uploaded", {"objects": (StoredObjectRow("k1", None, None, END, UploadState.PENDING, "rk"),)}, [], END + 60 * DAY, Verdict.KEEP, "not uploaded yet"),
    ("7 shred policy", {"product": Product.CONTACT_CENTER, "cc_queue_name": "phi"}, [], END + 10 * DAY, Verdict.DESTROY, "expired"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "holds", "now", "verdict", "reason"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_rule_table(
    policies: PolicySet,
    overrides: dict[str, object],
    holds: list[LegalHoldRow],
    now: int,
    verdict: Verdict,
    reason: str,
) -> None:
    plan = evaluate([facts(**overrides)], policies, holds, now)
    (decision,) = plan.decisions
    assert decision.verdict is verdict, decision
    assert decision.reason.startswith(reason), decision.reason


def test_action_and_authority_come_from_the_winning_policy(policies: PolicySet) -> None:
    phi = facts(product=Product.CONTACT_CENTER, cc_queue_name="phi")
    (decision,) = evaluate([phi, facts()], policies, [], END + 40 * DAY).to_destroy[:1]
    assert decision.action is ExpiryAction.CRYPTO_SHRED
    assert decision.policy.startswith("policy:phi@")
    default = evaluate([facts()], policies, [], END + 40 * DAY).decisions[0]
    assert (default.action, default.policy.split("@")[0]) == (ExpiryAction.DELETE, "policy:default")


def test_evaluate_is_pure(policies: PolicySet) -> None:
    inputs = [facts(), facts(recording_id="rec_2", ended_ms=END + DAY)]
    first = evaluate(inputs, policies, [], END + 30 * DAY + 1)
    assert first == evaluate(inputs, policies, [], END + 30 * DAY + 1)
    assert [d.verdict for d in first.decisions] == [Verdict.DESTROY, Verdict.KEEP]


objects_strategy = st.lists(
    st.builds(
        StoredObjectRow,
        object_key=st.sampled_from(["k1", "k2", "k3"]),
        version_id=st.none(),
        stored_sha256=st.none(),
        retain_until_ms=st.one_of(st.none(), st.integers(0, END + 200 * DAY)),
        upload_state=st.sampled_from(list(UploadState)),
        key_id=st.just("rk"),
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(
    ended=st.one_of(st.none(), st.integers(0, END + 100 * DAY)),
    objects=objects_strategy,
    held=st.sampled_from(["none", "recording", "instance", "released"]),
    stored_days=st.one_of(st.none(), st.integers(1, 400)),
    queue=st.sampled_from([None, "phi", "desk"]),
    now=st.integers(0, END + 400 * DAY),
)
def test_never_destroys_what_a_rule_keeps(
    tmp_path_factory: pytest.TempPathFactory,
    ended: int | None,
    objects: list[StoredObjectRow],
    held: str,
    stored_days: int | None,
    queue: str | None,
    now: int,
) -> None:
    policies = _POLICIES.get("set") or _POLICIES.setdefault(
        "set", policies_in(tmp_path_factory.mktemp("p"))
    )
    holds = {
        "none": [],
        "recording": [hold(HoldScope.RECORDING, "rec_1")],
        "instance": [hold(HoldScope.INSTANCE, "i1")],
        "released": [hold(HoldScope.RECORDING, "rec_1", released=True)],
    }[held]
    subject = facts(
        ended_ms=ended,
        product=Product.CONTACT_CENTER,
        cc_queue_name=queue,
        objects=tuple(objects),
        policy_name="old" if stored_days else None,
        policy_sha256="f" * 64 if stored_days else None,
        policy_retain_days=stored_days,
    )
    (decision,) = evaluate([subject], policies, holds, now).decisions
    event(decision.verdict.value)
    if decision.verdict is Verdict.DESTROY:
        assert ended is not None
        assert held in ("none", "released")
        assert all(o.retain_until_ms is None or o.retain_until_ms <= now for o in objects)
        assert all(o.upload_state is not UploadState.PENDING for o in objects)
        assert decision.expires_ms is not None
        assert decision.expires_ms <= now
        assert decision.expires_ms >= ended + (stored_days or 0) * DAY


_POLICIES: dict[str, PolicySet] = {}
