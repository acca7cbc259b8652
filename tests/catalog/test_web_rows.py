"""The web console's catalog rows (migration 15) on SQLite and PostgreSQL: accounts, sessions
keyed by hash, expiry, disabling, the reason gate, and that every change is audited."""

from __future__ import annotations

import pytest
import trio

from recorder.catalog import AsyncCatalog
from recorder.catalog.base import Product, RecordingStart, StreamEvent, StreamState
from recorder.errors import CatalogError
from recorder.web.accounts import WebAccounts
from recorder.web.roles import Role
from tests.catalog.support import T0

HOUR = 3_600_000


async def _recording(catalog: AsyncCatalog) -> str:
    await catalog.upsert_stream(
        StreamEvent("s-web", Product.MEETING, "m-1", StreamState.STARTED, T0, ("wss://a.zoom.us",)),
        now_ms=T0,
    )
    row = await catalog.upsert_recording(
        RecordingStart("s-web", Product.MEETING, "m-1", T0), now_ms=T0
    )
    return row.recording_id


async def test_accounts_sessions_and_reasons(catalog: AsyncCatalog) -> None:
    with trio.fail_after(30):
        accounts = WebAccounts(catalog)
        alice = await accounts.add(
            "alice", Role.OFFICER, password="correct horse battery", actor="os:root",
            reason="new officer", now_ms=T0,
        )  # fmt: skip
        assert alice.password_hash is not None
        assert alice.password_hash.startswith("$argon2id$")
        assert "correct horse" not in alice.password_hash
        with pytest.raises(CatalogError, match="exists already"):
            await accounts.add(
                "alice", Role.AUDITOR, password="another password!", actor="os:root",
                reason="again", now_ms=T0,
            )  # fmt: skip
        await accounts.add(
            "carol", Role.AUDITOR, password=None, oidc_subject="sub-123", actor="os:root",
            reason="oidc", now_ms=T0,
        )  # fmt: skip
        assert (await accounts.by_subject("sub-123")).username == "carol"  # type: ignore[union-attr]
        assert [a.username for a in await accounts.list()] == ["alice", "carol"]

        session = await accounts.create_session(
            session_hash="h1", username="alice", csrf_token="tok", now_ms=T0, expires_ms=T0 + HOUR
        )
        assert await accounts.session("h1", T0 + 1) == session
        assert await accounts.session("h1", T0 + HOUR) is None, "expired"
        assert await accounts.session("nope", T0) is None

        rid = await _recording(catalog)
        assert await accounts.reason("h1", rid) is None
        await accounts.give_reason("h1", rid, actor="web:alice", reason="case 7", now_ms=T0 + 5)
        assert await accounts.reason("h1", rid) == "case 7"
        with pytest.raises(CatalogError, match="no recording"):
            await accounts.give_reason("h1", "r-nope", actor="web:alice", reason="x", now_ms=T0)
        with pytest.raises(CatalogError, match="reason is required"):
            await accounts.give_reason("h1", rid, actor="web:alice", reason="  ", now_ms=T0)

        # A pre-login session replaced by a signed-in one: the old id is gone.
        await accounts.create_session(
            session_hash="pre", username=None, csrf_token="t2", now_ms=T0, expires_ms=T0 + HOUR
        )
        await accounts.create_session(
            session_hash="h2", username="alice", csrf_token="t3", now_ms=T0, expires_ms=T0 + HOUR,
            replaces="pre",
        )  # fmt: skip
        assert await accounts.session("pre", T0) is None

        # Disabling ends every session of the account at once (and its reasons with them).
        await accounts.disable("alice", actor="os:root", reason="left the firm", now_ms=T0 + 9)
        assert await accounts.session("h1", T0 + 10) is None
        assert await accounts.session("h2", T0 + 10) is None
        assert (await accounts.get("alice")).disabled  # type: ignore[union-attr]
        with pytest.raises(CatalogError, match="no web account"):
            await accounts.disable("nobody", actor="os:root", reason="x", now_ms=T0)

        events = await catalog.audit_events()
        got = [(e.actor, e.action, e.target, e.reason) for e in events]
        assert ("os:root", "web.account.add", "alice", "new officer") in got
        assert ("web:alice", "web.access", rid, "case 7") in got
        assert ("os:root", "web.account.disable", "alice", "left the firm") in got
        assert (await catalog.verify_audit_chain()).intact


async def test_user_names_are_checked(catalog: AsyncCatalog) -> None:
    from recorder.errors import ConfigError

    accounts = WebAccounts(catalog)
    for bad in ("", "a b", "x" * 65, "<script>", "a:b"):
        with pytest.raises(ConfigError, match="not a user name"):
            await accounts.add(
                bad, Role.OFFICER, password="long enough pass", actor="t", reason="t", now_ms=T0
            )
    with pytest.raises(ConfigError, match="at least 12"):
        await accounts.add("bob", Role.OFFICER, password="short", actor="t", reason="t", now_ms=T0)
