# ruff: noqa: S608
# S608 is waived for this module only: the interpolated pieces are module constants.
"""The web console's rows: local accounts, server-side sessions, reasons given per session.

Rules:

1. A session is found by the SHA-256 of its cookie value (``session_hash``); the cookie value
   itself is never stored, so the catalog (or a backup of it) yields no usable session.
2. Account changes are audited in the same transaction (invariant 9: who may look is evidence).
3. An expired session is as good as none: every read compares ``expires_ms`` with ``now_ms``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recorder.catalog._rows import Row, TransactionSource, Tx
from recorder.catalog.base import AuditEvent, JsonValue
from recorder.errors import CatalogError

_ACCOUNT_COLS = "username, role, password_hash, oidc_subject, disabled, created_ms, created_by"
_SESSION_COLS = "session_hash, username, csrf_token, created_ms, expires_ms, pending"


@dataclass(frozen=True, slots=True)
class WebAccount:
    username: str
    role: str
    password_hash: str | None
    oidc_subject: str | None
    disabled: bool
    created_ms: int
    created_by: str


@dataclass(frozen=True, slots=True)
class WebSession:
    session_hash: str
    #: None for a pre-login session (it carries the login form's CSRF token, or OIDC state).
    username: str | None
    csrf_token: str
    created_ms: int
    expires_ms: int
    #: What a pre-login session waits for (OIDC state, nonce, verifier, next URL).
    pending: dict[str, JsonValue] | None


def _account(row: Row) -> WebAccount:
    return WebAccount(
        str(row[0]),
        str(row[1]),
        None if row[2] is None else str(row[2]),
        None if row[3] is None else str(row[3]),
        bool(row[4]),
        int(row[5]),
        str(row[6]),
    )


def _session(row: Row) -> WebSession:
    pending = None if row[5] is None else json.loads(str(row[5]))
    return WebSession(
        str(row[0]),
        None if row[1] is None else str(row[1]),
        str(row[2]),
        int(row[3]),
        int(row[4]),
        pending if isinstance(pending, dict) else None,
    )


class WebQueries(TransactionSource):
    """Accounts and sessions of ``recorder web``."""

    # --- accounts --------------------------------------------------------------------------

    def web_add_account(
        self,
        *,
        username: str,
        role: str,
        password_hash: str | None,
        oidc_subject: str | None,
        actor: str,
        reason: str,
        now_ms: int,
    ) -> WebAccount:
        with self._transaction("web_add_account", write=True) as tx:
            if tx.fetchone("SELECT 1 FROM web_accounts WHERE username = ?", (username,)):
                raise CatalogError(f"web account {username!r} exists already")
            row = tx.fetchone(
                f"""INSERT INTO web_accounts (username, role, password_hash, oidc_subject,
                        disabled, created_ms, created_by)
                    VALUES (?, ?, ?, ?, FALSE, ?, ?) RETURNING {_ACCOUNT_COLS}""",
                (username, role, password_hash, oidc_subject, now_ms, actor),
            )
            assert row is not None
            self._web_audit(tx, actor, "web.account.add", username, reason, now_ms, {"role": role})
            return _account(row)

    def web_account(self, username: str) -> WebAccount | None:
        with self._transaction("web_account", write=False) as tx:
            row = tx.fetchone(
                f"SELECT {_ACCOUNT_COLS} FROM web_accounts WHERE username = ?", (username,)
            )
        return None if row is None else _account(row)

    def web_account_by_subject(self, oidc_subject: str) -> WebAccount | None:
        with self._transaction("web_account_by_subject", write=False) as tx:
            row = tx.fetchone(
                f"SELECT {_ACCOUNT_COLS} FROM web_accounts WHERE oidc_subject = ?",
                (oidc_subject,),
            )
        return None if row is None else _account(row)

    def web_accounts(self) -> list[WebAccount]:
        with self._transaction("web_accounts", write=False) as tx:
            rows = tx.fetchall(f"SELECT {_ACCOUNT_COLS} FROM web_accounts ORDER BY username")
        return [_account(row) for row in rows]

    def web_disable_account(
        self, username: str, *, actor: str, reason: str, now_ms: int
    ) -> WebAccount:
        """Disable an account and end every one of its sessions at once."""
        with self._transaction("web_disable_account", write=True) as tx:
            row = tx.fetchone(
                f"""UPDATE web_accounts SET disabled = TRUE WHERE username = ?
                    RETURNING {_ACCOUNT_COLS}""",
                (username,),
            )
            if row is None:
                raise CatalogError(f"no web account {username!r}")
            ended = tx.execute("DELETE FROM web_sessions WHERE username = ?", (username,))
            self._web_audit(
                tx, actor, "web.account.disable", username, reason, now_ms, {"sessions": ended}
            )
            return _account(row)

    # --- sessions --------------------------------------------------------------------------

    def web_create_session(
        self,
        *,
        session_hash: str,
        username: str | None,
        csrf_token: str,
        now_ms: int,
        expires_ms: int,
        pending: dict[str, JsonValue] | None = None,
        replaces: str | None = None,
    ) -> WebSession:
        """A new session row; ``replaces`` (a pre-login session) is removed in the same step."""
        with self._transaction("web_create_session", write=True) as tx:
            if replaces is not None:
                tx.execute("DELETE FROM web_sessions WHERE session_hash = ?", (replaces,))
            # Expired rows go whenever a new one comes: the table stays as small as its use.
            tx.execute("DELETE FROM web_sessions WHERE expires_ms <= ?", (now_ms,))
            row = tx.fetchone(
                f"""INSERT INTO web_sessions (session_hash, username, csrf_token, created_ms,
                        expires_ms, pending)
                    VALUES (?, ?, ?, ?, ?, ?) RETURNING {_SESSION_COLS}""",
                (
                    session_hash,
                    username,
                    csrf_token,
                    now_ms,
                    expires_ms,
                    None if pending is None else json.dumps(pending, sort_keys=True),
                ),
            )
            assert row is not None
            return _session(row)

    def web_session(self, session_hash: str, now_ms: int) -> WebSession | None:
        """The live session, or None (unknown, expired, or its account disabled)."""
        with self._transaction("web_session", write=False) as tx:
            row = tx.fetchone(
                f"""SELECT {", ".join("s." + c.strip() for c in _SESSION_COLS.split(","))}
                    FROM web_sessions s LEFT JOIN web_accounts a ON a.username = s.username
                    WHERE s.session_hash = ? AND s.expires_ms > ?
                      AND (s.username IS NULL OR NOT a.disabled)""",
                (session_hash, now_ms),
            )
        return None if row is None else _session(row)

    def web_end_session(self, session_hash: str) -> bool:
        with self._transaction("web_end_session", write=True) as tx:
            return (
                tx.execute("DELETE FROM web_sessions WHERE session_hash = ?", (session_hash,)) > 0
            )

    # --- the reason gate -------------------------------------------------------------------

    def web_give_reason(
        self,
        session_hash: str,
        recording_id: str,
        *,
        actor: str,
        reason: str,
        now_ms: int,
    ) -> None:
        """Remember why this session opens this recording; audited as ``web.access``."""
        if not reason.strip():
            raise CatalogError("a reason is required")
        with self._transaction("web_give_reason", write=True) as tx:
            if not tx.fetchone("SELECT 1 FROM recordings WHERE recording_id = ?", (recording_id,)):
                raise CatalogError(f"no recording {recording_id}")
            tx.execute(
                """INSERT INTO web_session_reasons (session_hash, recording_id, reason, given_ms)
                    VALUES (?, ?, ?, ?)
                    ON CONFLICT (session_hash, recording_id)
                    DO UPDATE SET reason = excluded.reason, given_ms = excluded.given_ms""",
                (session_hash, recording_id, reason, now_ms),
            )
            self._web_audit(tx, actor, "web.access", recording_id, reason, now_ms, None)

    def web_reason(self, session_hash: str, recording_id: str) -> str | None:
        with self._transaction("web_reason", write=False) as tx:
            row = tx.fetchone(
                """SELECT reason FROM web_session_reasons
                    WHERE session_hash = ? AND recording_id = ?""",
                (session_hash, recording_id),
            )
        return None if row is None else str(row[0])

    def _web_audit(
        self,
        tx: Tx,
        actor: str,
        action: str,
        target: str,
        reason: str,
        now_ms: int,
        details: dict[str, JsonValue] | None,
    ) -> None:
        # ``OfficerQueries._append_audit``: the same chained append, in this transaction.
        self._append_audit(
            tx,
            actor=actor,
            action=action,
            target=target,
            reason=reason,
            now_ms=now_ms,
            details=details,
        )

    if TYPE_CHECKING:

        def _append_audit(
            self,
            tx: Tx,
            *,
            actor: str,
            action: str,
            target: str,
            reason: str,
            now_ms: int,
            details: Mapping[str, JsonValue] | None,
        ) -> AuditEvent: ...
