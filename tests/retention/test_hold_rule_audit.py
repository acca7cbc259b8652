"""``hold.rule.place``: the rule keeps its values (matching needs them); its audit event keeps
the values that name a person only as keyed MACs, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import secrets

import pytest
import trio

from recorder.catalog import AsyncCatalog
from recorder.catalog.retention_types import HOLD_RULE_PERSONAL_FIELDS, PersonalMacs
from recorder.crypto.blind_index import SearchKey
from recorder.errors import CatalogError, ConfigError
from recorder.officer.search_audit import PERSONAL_FIELDS, filter_mac, normalised, rule_macs
from recorder.officer.search_review import HOLD_RULES, Match, Wanted, match
from tests.retention.helpers import T0

pytestmark = pytest.mark.timeout(120)


def audit_text(events: list[tuple[str, str, str, str, str]]) -> str:
    return "\n".join("\t".join(row) for row in events).lower()


async def all_audit_rows(catalog: AsyncCatalog) -> list[tuple[str, str, str, str, str]]:
    return [
        (e.actor, e.action, e.target, e.reason, e.details_json)
        for e in await catalog.audit_events(limit=10_000)
    ]


def test_a_rule_field_naming_a_person_is_a_personal_search_field() -> None:
    # One normalisation and one MAC per field name, shared with the search filter of that name.
    assert set(HOLD_RULE_PERSONAL_FIELDS) <= set(PERSONAL_FIELDS)
    assert rule_macs(None, {"product": "phone", "account": "acct-1"}) is None
    with pytest.raises(ConfigError, match="no search-index key was loaded"):
        rule_macs(None, {"participant": "Jane"})


async def test_a_hold_rule_is_audited_with_people_as_keyed_macs_only(
    catalog: AsyncCatalog,
) -> None:
    key = SearchKey(os.urandom(32))
    s = secrets.token_hex(4)
    name, line = f"Zelda Qx{s}", f"Zelda's Line Qx{s}"
    with trio.fail_after(60):
        # An event written before hold rules were MAC'd: the log is append-only, it stays.
        legacy = await catalog.append_audit(
            actor="os:counsel",
            action="hold.rule.place",
            target="matter:old",
            reason="subpoena",
            now_ms=T0,
            details={"rule_id": 0, "rule": {"participant": "Old Name"}},
        )
        before = await all_audit_rows(catalog)

        rule = {"participant": f"  {name} ", "queue": line, "product": "phone"}
        # No MAC, or a MAC for one field of two: refused, nothing written (fails closed).
        for partial in (None, PersonalMacs(key.key_id, {"participant": "0" * 32})):
            with pytest.raises(CatalogError, match="names a person") as refused:
                await catalog.add_hold_rule(
                    matter="M-1",
                    rule=rule,
                    placed_by="os:counsel",
                    reason="subpoena",
                    now_ms=T0 + 1,
                    personal_macs=partial,
                )
            assert name.lower() not in str(refused.value).lower()
        assert await catalog.hold_rules(active_only=False) == []
        assert await all_audit_rows(catalog) == before

        placed = await catalog.add_hold_rule(
            matter="M-1",
            rule=rule,
            placed_by="os:counsel",
            reason="subpoena",
            now_ms=T0 + 2,
            personal_macs=rule_macs(key, rule),
        )
        # Nobody named: no key needed, the rule audited as typed.
        await catalog.add_hold_rule(
            matter="M-2",
            rule={"product": "meeting", "account": "acct-9"},
            placed_by="os:counsel",
            reason="audit",
            now_ms=T0 + 3,
        )
        await catalog.release_hold_rule(
            placed.rule_id, released_by="os:counsel", reason="closed", now_ms=T0 + 4
        )
        # The rule itself keeps the values it matches on.
        assert dict(placed.rule) == {"participant": name, "queue": line, "product": "phone"}
        events = await catalog.audit_events(action="hold.rule.place", limit=100)
        released = await catalog.audit_events(action="hold.rule.release", limit=100)
        rows = await all_audit_rows(catalog)
        check = await catalog.verify_audit_chain()

    assert check.first_broken_id is None  # the chain still verifies
    assert rows[: len(before)] == before  # old rows as written
    assert events[0].audit_id == legacy.audit_id
    assert json.loads(events[0].details_json) == {"rule_id": 0, "rule": {"participant": "Old Name"}}
    macs = {f: filter_mac(key, f, v) for f, v in (("participant", name), ("queue", line))}
    assert json.loads(events[1].details_json) == {
        "rule_id": placed.rule_id,
        "rule": {"product": "phone"},
        "personal": [{"field": f, "mac": mac} for f, mac in macs.items()],
        "mac_key": key.key_id,
    }
    assert (events[1].target, events[1].reason, events[1].actor) == (
        "matter:M-1",
        "subpoena",
        "os:counsel",
    )
    assert json.loads(events[2].details_json) == {
        "rule_id": placed.rule_id + 1,
        "rule": {"account": "acct-9", "product": "meeting"},
    }
    assert json.loads(released[0].details_json) == {"rule_id": placed.rule_id}
    # Under the filter label: never equal to a transcript word's MAC of the same text.
    assert macs["participant"] != key.mac(normalised("participant", name))
    text = audit_text(rows)
    for planted in (name, line, f"qx{s}"):
        assert planted.lower() not in text
    # A review with the key finds the new event by MAC and the old one as typed (legacy).
    wanted = Wanted.of(key, name.upper(), HOLD_RULES.fields)
    found = match(events[1], wanted, HOLD_RULES.legacy_key)
    assert isinstance(found, Match)
    assert (found.fields, found.legacy, found.rule_id) == (("participant",), False, placed.rule_id)
    old = match(events[0], Wanted.of(key, "old name", HOLD_RULES.fields), HOLD_RULES.legacy_key)
    assert isinstance(old, Match)
    assert (old.fields, old.legacy, old.rule_id) == (("participant",), True, 0)
