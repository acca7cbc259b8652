"""The catalog's web rows (``recorder.catalog._web``), awaited from trio.

Each call is one worker-thread hop around one catalog transaction, like ``AsyncCatalog``; the
engines' own locks make calls from this limiter and the catalog's safe together.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import trio

from recorder.catalog._web import WebAccount, WebQueries, WebSession
from recorder.catalog.aio import AsyncCatalog
from recorder.catalog.base import JsonValue
from recorder.errors import CatalogError, ConfigError
from recorder.web.passwords import hash_password
from recorder.web.roles import Role

T = TypeVar("T")


def _username(name: str) -> str:
    if not name or len(name) > 64 or not all(ch.isalnum() or ch in "._-@" for ch in name):
        raise ConfigError(
            f"{name[:64]!r} is not a user name (1-64 letters, digits, '.', '_', '-', '@')"
        )
    return name


class WebAccounts:
    """Accounts, sessions and the reason gate, over the configured catalog."""

    def __init__(self, catalog: AsyncCatalog) -> None:
        sync = catalog.sync
        if not isinstance(sync, WebQueries):
            raise CatalogError("this catalog has no web console tables")
        self._sync: WebQueries = sync
        self._limiter = trio.CapacityLimiter(4)

    async def _call(self, fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)

    async def add(
        self,
        username: str,
        role: Role,
        *,
        password: str | None,
        oidc_subject: str | None = None,
        actor: str,
        reason: str,
        now_ms: int,
    ) -> WebAccount:
        if password is None and oidc_subject is None:
            raise ConfigError("an account needs a password or an OIDC subject")
        username = _username(username)
        hashed = (
            None if password is None else await trio.to_thread.run_sync(hash_password, password)
        )
        return await self._call(
            functools.partial(
                self._sync.web_add_account,
                username=username,
                role=role.value,
                password_hash=hashed,
                oidc_subject=oidc_subject,
                actor=actor,
                reason=reason,
                now_ms=now_ms,
            )
        )

    async def get(self, username: str) -> WebAccount | None:
        return await self._call(functools.partial(self._sync.web_account, username))

    async def by_subject(self, subject: str) -> WebAccount | None:
        return await self._call(functools.partial(self._sync.web_account_by_subject, subject))

    async def list(self) -> list[WebAccount]:
        return await self._call(self._sync.web_accounts)

    async def disable(self, username: str, *, actor: str, reason: str, now_ms: int) -> WebAccount:
        return await self._call(
            functools.partial(
                self._sync.web_disable_account, username, actor=actor, reason=reason, now_ms=now_ms
            )
        )

    async def create_session(
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
        return await self._call(
            functools.partial(
                self._sync.web_create_session,
                session_hash=session_hash,
                username=username,
                csrf_token=csrf_token,
                now_ms=now_ms,
                expires_ms=expires_ms,
                pending=pending,
                replaces=replaces,
            )
        )

    async def session(self, session_hash: str, now_ms: int) -> WebSession | None:
        return await self._call(functools.partial(self._sync.web_session, session_hash, now_ms))

    async def end_session(self, session_hash: str) -> bool:
        return await self._call(functools.partial(self._sync.web_end_session, session_hash))

    async def give_reason(
        self, session_hash: str, recording_id: str, *, actor: str, reason: str, now_ms: int
    ) -> None:
        await self._call(
            functools.partial(
                self._sync.web_give_reason,
                session_hash,
                recording_id,
                actor=actor,
                reason=reason,
                now_ms=now_ms,
            )
        )

    async def reason(self, session_hash: str, recording_id: str) -> str | None:
        return await self._call(
            functools.partial(self._sync.web_reason, session_hash, recording_id)
        )
