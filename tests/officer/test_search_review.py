"""``recorder search`` for a person leaves no trace of the person in the catalog (only a keyed MAC
in the audit log), and ``recorder audit searches --for VALUE`` finds exactly those searches.

In process (``recorder.cli.main``) on the embedded default, a SQLite catalog: every file of the
catalog's directory is read byte for byte (database, WAL), before and after a checkpoint.
"""

from __future__ import annotations

import json
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

pytestmark = pytest.mark.timeout(120)


def catalog_bytes(path: Path) -> bytes:
    return b"".join(f.read_bytes() for f in sorted(path.parent.iterdir()) if f.is_file()).lower()


def test_searched_people_are_audited_as_macs_and_a_review_finds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    ids = trio.run(seed, tmp_path)  # three calls with caller "Jane Client"
    config = load_config(None, {"XDG_STATE_HOME": str(tmp_path)})
    path = config.catalog.sqlite_path
    assert path is not None

    def cli(*args: str) -> tuple[int, str]:
        code = cli_main(list(args))
        out = capsys.readouterr()
        return code, out.out + out.err

    def review(*args: str) -> Any:
        code, text = cli("audit", "searches", *args, "--json")
        assert code == 0, text
        return json.loads(text)

    # Without the key, neither a search for a person nor a review runs, and nothing is audited.
    for refused in (("search", "--caller", "Jane Client"), ("audit", "searches", "--for", "x")):
        code, text = cli(*refused)
        assert (code, "search-index.key: no search-index key" in text) == (3, True)
    key = load_search_key(config.keys.key_dir, create=True)

    s = secrets.token_hex(4)
    planted = {
        "participant": f"Zelda Qx{s}",
        "host": f"zelda.{s}@client.example",
        "number": f"+1 555 01{int(s, 16) % 10**5:05d}",
        "topic": f"Takeover of Qx{s} Holdings",
        "queue": f"Zelda's Line Qx{s}",
        "agent": f"Agent Qx{s}",
    }
    audited: dict[str, int] = {}
    for field, value in planted.items():
        code, text = cli("search", f"--{field}", value)
        assert code == 0, text
        assert value.lower() not in text.lower()  # nor in what the command printed or logged
    # The caller typed three ways (found), another caller, and no person at all.
    for typed in ("Jane Client", "  JANE   client ", "\uff2a\uff41\uff4e\uff45 Client"):
        code, text = cli("search", "--caller", typed, "--json")
        assert code == 0, text
    code, text = cli("search", "--caller", "John Other")
    assert code == 0, text
    code, text = cli("search", "--product", "phone", "--since", "2026-03-01")
    assert code == 0, text

    async def events() -> list[tuple[int, str, str]]:
        async with await open_async_catalog(f"sqlite:///{path}", now_ms=MARCH_2) as catalog:
            rows = await catalog.audit_events(limit=10_000)
            check = await catalog._call(catalog.sync.verify_audit_chain)
            assert check.first_broken_id is None  # the chain still verifies
        return [(e.audit_id, e.action, e.details_json) for e in rows]

    searches = [e for e in trio.run(events) if e[1] == "search"]
    assert len(searches) == 11
    for audit_id, _, details in searches[:6]:
        audited[json.loads(details)["personal"][0]["field"]] = audit_id
    logged = "\n".join(details for _, _, details in searches).lower()
    number = "+155501" + planted["number"][-5:]
    for value in (*planted.values(), number, "jane", "zelda", f"qx{s}"):
        assert value.lower() not in logged
    caller_mac = filter_mac(key, "caller", "Jane Client")
    assert logged.count(caller_mac) == 3
    # The recordings found are recorded by id, as before.
    found = json.loads(searches[6][2])
    assert sorted(found["results"]) == sorted(ids.values())
    assert found["filters"] == {}

    # Nothing of any planted value anywhere in the catalog's files (WAL included), before and
    # after a checkpoint moves the WAL into the database file.
    for step in ("before", "after"):
        raw = catalog_bytes(path)
        left = [v for v in (*planted.values(), number, f"qx{s}") if v.lower().encode() in raw]
        assert left == [], step
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # The review finds exactly the searches for the value, however it is typed now.
    body = review("--for", "jane CLIENT", "--field", "caller")
    assert [e["audit_id"] for e in body["events"]] == [e[0] for e in searches[6:9]]
    assert body["other_keys"] == {}
    for field, value in planted.items():
        body = review("--for", f" {value.upper()} ")  # any field
        [event] = body["events"]
        assert (event["audit_id"], event["fields"], event["legacy"]) == (
            audited[field],
            [field],
            False,
        )
        assert event["actor"].startswith("os:")
    assert review("--for", "Zelda Qx" + s, "--field", "agent")["count"] == 0  # another field
    assert review("--for", "Nobody At All")["count"] == 0
    code, text = cli("audit", "searches", "--for", "Jane Client", "--since", "2026-03-01")
    assert code == 0, text
    assert "3 search(es) looked for it" in text  # the fullwidth one too (the search missed it)
    # The reviews are audited with the MACs they looked for, never the value.
    reviews = [e for e in trio.run(events) if e[1] == "audit.searches"]
    assert len(reviews) == 4 + len(planted)
    first = json.loads(reviews[0][2])
    assert first["personal"] == [{"field": "caller", "mac": caller_mac}]
    assert first["matched"] == [e[0] for e in searches[6:9]]
    text = "\n".join(details for _, _, details in reviews).lower()
    assert "jane" not in text
    assert "zelda" not in text
