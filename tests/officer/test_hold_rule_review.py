"""``recorder hold place --future`` naming a person leaves the person in the audit log only as a
keyed MAC, and ``recorder audit hold-rules --for VALUE`` finds exactly those rules.

In process (``recorder.cli.main``) on the embedded default, a SQLite catalog. The rule itself
keeps its values in ``hold_rules`` (matching needs them), so the files are read twice: as they
are (the values must be found there, in the rule) and as a vacuumed copy with the rules' values
blanked (then nothing else may hold them: no audit row, index or other table).
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

from recorder.catalog import open_async_catalog
from recorder.cli import main as cli_main
from recorder.config import load_config
from recorder.crypto.blind_index import load_search_key
from recorder.officer.search_audit import filter_mac
from tests.officer.test_search_cli import MARCH_2, seed
from tests.officer.test_search_review import catalog_bytes

pytestmark = pytest.mark.timeout(120)


def without_rule_values(path: Path, copy: Path) -> bytes:
    """The catalog as a compact copy whose hold rules match on nothing: what else it holds."""
    copy.parent.mkdir()
    with sqlite3.connect(path) as conn:
        conn.execute(f"VACUUM INTO '{copy}'")
    conn.close()
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE hold_rules SET rule_json = '{}'")
    conn.execute("VACUUM")
    conn.close()
    return catalog_bytes(copy)


def test_hold_rules_for_people_are_audited_as_macs_and_a_review_finds_them(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    caplog.set_level(logging.DEBUG)
    ids = trio.run(seed, tmp_path)  # three calls with caller "Jane Client"
    config = load_config(None, {"XDG_STATE_HOME": str(tmp_path)})
    path = config.catalog.sqlite_path
    assert path is not None
    stderr: list[str] = []

    def cli(*args: str) -> tuple[int, str]:
        code = cli_main(list(args))
        out = capsys.readouterr()
        stderr.append(out.err)
        return code, out.out + out.err

    def review(*args: str) -> Any:
        code, text = cli("audit", "hold-rules", *args, "--json")
        assert code == 0, text
        return json.loads(text)

    hold = ("hold", "place", "--future", "--matter", "M-7", "--reason", "subpoena")
    s = secrets.token_hex(4)
    people = {
        "name": f"Zelda Qx{s}",
        "email": f"zelda.{s}@client.example",
        "phone": f"+1 555 01{int(s, 16) % 10**5:05d}",
    }
    line = f"Zelda's Line Qx{s}"
    planted = (*people.values(), line)

    # Without the key no rule naming a person is placed, and nothing is audited.
    code, text = cli(*hold, "--participant", people["name"])
    assert (code, "search-index.key: no search-index key" in text) == (3, True)
    key = load_search_key(config.keys.key_dir, create=True)
    for value in people.values():
        code, text = cli(*hold, "--participant", value)
        assert code == 0, text
    code, text = cli(*hold, "--queue", line, "--product", "phone")
    assert code == 0, text
    # A rule the seeded calls match: they join the matter now (hold.place: ids, not names).
    code, text = cli(*hold, "--participant", "Jane Client")
    assert code == 0, text
    assert "3 existing recording(s) held" in text
    code, text = cli("hold", "release", "--matter", "M-7", "--reason", "closed")
    assert code == 0, text

    async def events() -> list[tuple[int, str, str]]:
        async with await open_async_catalog(f"sqlite:///{path}", now_ms=MARCH_2) as catalog:
            rows = await catalog.audit_events(limit=10_000)
            check = await catalog.verify_audit_chain()
            assert check.first_broken_id is None  # the chain still verifies
            rules = await catalog.hold_rules(active_only=False)
        assert dict(rules[0].rule) == {"participant": people["name"]}  # kept, to match
        return [
            (e.audit_id, e.action, "\t".join((e.actor, e.target, e.reason, e.details_json)))
            for e in rows
        ]

    rows = trio.run(events)
    assert [a for _, a, _ in rows].count("hold.place") == len(ids)
    placed = [
        (audit_id, json.loads(text.split("\t")[-1]))
        for audit_id, action, text in rows
        if action == "hold.rule.place"
    ]
    assert len(placed) == 5
    for (_, details), (field, value) in zip(
        placed,
        [*(("participant", v) for v in people.values()), ("queue", line)],
        strict=False,
    ):
        assert details["personal"] == [{"field": field, "mac": filter_mac(key, field, value)}]
        assert details["mac_key"] == key.key_id
    assert placed[3][1]["rule"] == {"product": "phone"}  # not a person: as typed
    audit_text = "\n".join(text for _, _, text in rows).lower()
    logged = caplog.text.lower() + "".join(stderr).lower()
    for value in (*planted, f"qx{s}", "jane"):
        assert value.lower() not in audit_text
        assert value.lower() not in logged

    # The files: the rule holds the values (so reading the bytes would find them) ...
    raw = catalog_bytes(path)
    assert [v for v in planted if v.lower().encode() not in raw] == []
    # ... and nothing else does, WAL checkpointed into the copy included.
    rest = without_rule_values(path, tmp_path / "copy" / "catalog.sqlite3")
    assert [v for v in (*planted, f"qx{s}") if v.lower().encode() in rest] == []

    # The review finds exactly the rules naming the value, however it is typed now.
    for n, value in enumerate(people.values()):
        body = review("--for", f"  {value.upper()} ")
        [event] = body["events"]
        assert (event["audit_id"], event["fields"], event["legacy"]) == (
            placed[n][0],
            ["participant"],
            False,
        )
        assert event["rule_id"] == placed[n][1]["rule_id"]
        assert event["target"] == "matter:M-7"
    assert review("--for", line.lower(), "--field", "queue")["count"] == 1
    assert review("--for", line, "--field", "participant")["count"] == 0
    assert review("--for", "Nobody At All")["count"] == 0
    code, text = cli("audit", "searches", "--for", people["name"])  # rules are not searches
    assert code == 0, text
    assert "0 search(es) looked for it" in text
    code, text = cli("audit", "hold-rules", "--for", "jane client")
    assert code == 0, text
    assert "1 hold rule(s) looked for it" in text
    # Reviews are audited with the MACs they looked for, never the value.
    reviews = [text for _, a, text in trio.run(events) if a == "audit.hold_rules"]
    assert len(reviews) == 3 + 2 + 2
    assert "zelda" not in "\n".join(reviews).lower()
