"""Streams, their leases (invariant 3) and webhook dedup: the cross-process coordination.

Rule: every operation here that two processes may race on is ONE conditional statement, so it
is atomic on PostgreSQL under READ COMMITTED (an upsert re-checks its ``WHERE`` against the
latest committed row version) and on SQLite because writers take the lock up front.
"""

# ruff: noqa: S608
# S608 (SQL built from strings) is waived for this module only: every interpolated piece is a
# module constant or a fixed clause chosen in code, and every value is a bound parameter.
from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Final

from recorder.catalog._rows import (
    _LIVE_STATES_SQL,
    _STREAM_COLS,
    TransactionSource,
    Tx,
    _require_text,
    _stream,
)
from recorder.catalog.base import (
    Lease,
    RenewResult,
    StreamEvent,
    StreamRow,
)
from recorder.errors import CatalogError, LeaseLost

#: Renewal needs the same owner AND the same epoch: any claim since then bumped the epoch.
#: ``{now}`` is the engine's "now" expression (``_now_sql``), used when no time is given.
#: A renew without a checkpoint keeps the stored one.
_RENEW_SQL: Final = """UPDATE streams SET lease_expires_ms = COALESCE(?, {now}) + ?,
        lease_checkpoint_ms = COALESCE(?, lease_checkpoint_ms)
    WHERE rtms_stream_id = ? AND lease_owner = ? AND lease_epoch = ?
    RETURNING lease_expires_ms"""


def _lease_key(lease: Lease) -> tuple[str, str, int]:
    return (lease.rtms_stream_id, lease.owner, lease.epoch)


class StreamQueries(TransactionSource):
    """Stream rows, lease claim / renew / release, rejoin queries, dedup keys.

    Lease times come from the DATABASE's clock whenever ``now_ms`` is ``None`` (what the service
    always passes): hosts whose wall clocks disagree still agree on when a lease ran out, so a
    host 31 s fast cannot take over a live lease. An explicit ``now_ms`` is for tests of the
    rules themselves.
    """

    #: SQL for the database's current Unix time in ms (each engine overrides it).
    _now_sql: str = "CAST((julianday('now') - 2440587.5) * 86400000 AS BIGINT)"

    def database_now_ms(self) -> int:
        """The database's clock, in Unix ms (what lease expiries are compared with)."""
        with self._transaction("database_now_ms", write=False) as tx:
            row = tx.fetchone(f"SELECT {self._now_sql}")
        assert row is not None
        return int(row[0])

    # --- streams and leases ----------------------------------------------------------------

    def upsert_stream(self, event: StreamEvent, now_ms: int) -> StreamRow:
        with self._transaction("upsert_stream", write=True) as tx:
            return self._upsert_stream(tx, event, now_ms)

    def accept_webhook(self, key: str, now_ms: int, ttl_ms: int, event: StreamEvent | None) -> bool:
        """The webhook outbox: record ``key`` and, when it is new, ``event``'s stream row, in ONE
        transaction, before the webhook is answered.

        Returns ``False`` for a duplicate (nothing written then). Either both the key and the
        row commit or neither does, so a failure here (answered 5xx) never leaves a key that
        would swallow Zoom's retry, and an acknowledged ``rtms_started`` always survives in the
        catalog for the rejoin loop of any process, whatever happens to this one.
        """
        _require_text("accept_webhook", key=key)
        with self._transaction("accept_webhook", write=True) as tx:
            if not self._first_seen(tx, key, now_ms, ttl_ms):
                return False
            if event is not None:
                self._upsert_stream(tx, event, now_ms)
            return True

    @staticmethod
    def _upsert_stream(tx: Tx, event: StreamEvent, now_ms: int) -> StreamRow:
        # Webhooks arrive in any order (Zoom retries for up to ~85 minutes), so the state
        # follows the newest event seen and the URLs follow the newest event that carried URLs
        # (``rtms_interrupted`` has none): the result is the same whatever the delivery order.
        urls_ts_ms = event.event_ts_ms if event.server_urls else 0
        row = tx.fetchone(
            f"""INSERT INTO streams (rtms_stream_id, product, instance_id, state, server_urls,
                    server_urls_ts_ms, first_seen_ms, last_event_ts_ms)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (rtms_stream_id) DO UPDATE SET
                    product = COALESCE(streams.product, excluded.product),
                    instance_id = COALESCE(streams.instance_id, excluded.instance_id),
                    state = CASE WHEN excluded.last_event_ts_ms >= streams.last_event_ts_ms
                        THEN excluded.state ELSE streams.state END,
                    server_urls = CASE WHEN excluded.server_urls <> '[]'
                        AND excluded.server_urls_ts_ms >= streams.server_urls_ts_ms
                        THEN excluded.server_urls ELSE streams.server_urls END,
                    server_urls_ts_ms = CASE
                        WHEN excluded.server_urls_ts_ms > streams.server_urls_ts_ms
                        THEN excluded.server_urls_ts_ms ELSE streams.server_urls_ts_ms END,
                    last_event_ts_ms = CASE
                        WHEN excluded.last_event_ts_ms > streams.last_event_ts_ms
                        THEN excluded.last_event_ts_ms ELSE streams.last_event_ts_ms END
                RETURNING {_STREAM_COLS}""",
            (
                event.rtms_stream_id,
                event.product.value,
                event.instance_id,
                event.state.value,
                json.dumps(list(event.server_urls)),
                urls_ts_ms,
                now_ms,
                event.event_ts_ms,
            ),
        )
        assert row is not None
        return _stream(row)

    def get_stream(self, rtms_stream_id: str) -> StreamRow | None:
        with self._transaction("get_stream", write=False) as tx:
            row = tx.fetchone(
                f"SELECT {_STREAM_COLS} FROM streams WHERE rtms_stream_id = ?", (rtms_stream_id,)
            )
            return None if row is None else _stream(row)

    def try_claim(
        self, rtms_stream_id: str, owner: str, ttl_ms: int, now_ms: int | None = None
    ) -> Lease | None:
        """Every successful claim starts a new epoch, even a re-claim by the same owner.

        The same owner may re-claim its unexpired lease: owner ids are unique per running
        process and persisted per state directory (``recorder.service.instance``), so "the
        same owner" is this process, or its restart, never another live process.
        """
        _require_text("try_claim", rtms_stream_id=rtms_stream_id, owner=owner)
        if ttl_ms <= 0:
            raise CatalogError(f"try_claim: ttl_ms must be positive, got {ttl_ms}")
        now = f"COALESCE(?, {self._now_sql})"
        with self._transaction("try_claim", write=True) as tx:
            row = tx.fetchone(
                f"""INSERT INTO streams (rtms_stream_id, lease_owner, lease_expires_ms, lease_epoch,
                        first_seen_ms)
                    VALUES (?, ?, {now} + ?, 1, {now})
                    ON CONFLICT (rtms_stream_id) DO UPDATE SET
                        lease_owner = excluded.lease_owner,
                        lease_expires_ms = excluded.lease_expires_ms,
                        lease_epoch = streams.lease_epoch + 1
                    WHERE streams.lease_owner IS NULL
                        OR streams.lease_expires_ms IS NULL
                        OR streams.lease_expires_ms <= {now}
                        OR streams.lease_owner = excluded.lease_owner
                    RETURNING lease_epoch, lease_expires_ms, lease_checkpoint_ms""",
                (rtms_stream_id, owner, now_ms, ttl_ms, now_ms, now_ms),
            )
        if row is None:
            return None
        # A claim leaves the checkpoint as it was: the previous owner's, read here so that
        # this owner's own renews may overwrite it.
        previous = None if row[2] is None else int(row[2])
        return Lease(rtms_stream_id, owner, int(row[0]), ttl_ms, int(row[1]), previous)

    def renew(
        self, lease: Lease, now_ms: int | None = None, *, checkpoint_ms: int | None = None
    ) -> Lease:
        """Extend the lease from now (the database's clock unless ``now_ms`` is given).

        A lease that expired but that nobody claimed since is still renewed: the epoch proves no
        one else held the stream in between. The holder must still stop acting on the stream
        once ``expires_ms`` passes without a successful renew, because from then on another
        process may claim it (the service's lease keeper fences itself before that).
        ``checkpoint_ms`` (``None``: keep the stored one) is what the next owner's claim reads
        as ``Lease.previous_checkpoint_ms``.
        """
        with self._transaction("renew", write=True) as tx:
            row = tx.fetchone(
                _RENEW_SQL.format(now=self._now_sql),
                (now_ms, lease.ttl_ms, checkpoint_ms, *_lease_key(lease)),
            )
        if row is None:
            raise LeaseLost(
                f"stream {lease.rtms_stream_id}: lease epoch {lease.epoch} of {lease.owner} "
                "was taken over or released"
            )
        return dataclasses.replace(lease, expires_ms=int(row[0]))

    def renew_many(self, leases: Sequence[Lease], now_ms: int | None = None) -> RenewResult:
        """Renew many leases in one transaction (one fsync / round trip for a whole process).

        Same rule per lease as ``renew``; a lost lease does not stop the others from renewing.
        """
        renewed: list[Lease] = []
        lost: list[Lease] = []
        sql = _RENEW_SQL.format(now=self._now_sql)
        with self._transaction("renew_many", write=True) as tx:
            for lease in leases:
                row = tx.fetchone(sql, (now_ms, lease.ttl_ms, None, *_lease_key(lease)))
                if row is not None:
                    renewed.append(dataclasses.replace(lease, expires_ms=int(row[0])))
                else:
                    lost.append(lease)
        return RenewResult(tuple(renewed), tuple(lost))

    def release(self, lease: Lease) -> bool:
        with self._transaction("release", write=True) as tx:
            changed = tx.execute(
                """UPDATE streams SET lease_owner = NULL, lease_expires_ms = NULL
                    WHERE rtms_stream_id = ? AND lease_owner = ? AND lease_epoch = ?""",
                _lease_key(lease),
            )
        return changed == 1

    def expired_streams_to_rejoin(self, now_ms: int | None = None) -> list[StreamRow]:
        """Live streams nobody holds a fresh lease on, and that a webhook gave URLs for.

        A row that only a claim created has no URLs to connect to, so it is not a candidate.
        This is also the webhook outbox's reader: an acknowledged ``rtms_started`` whose
        hand-off was lost (crash, drain, error) shows up here.
        """
        with self._transaction("expired_streams_to_rejoin", write=False) as tx:
            rows = tx.fetchall(
                f"""SELECT {_STREAM_COLS} FROM streams
                    WHERE state IN ({_LIVE_STATES_SQL})
                        AND server_urls <> '[]'
                        AND (lease_owner IS NULL OR lease_expires_ms IS NULL
                             OR lease_expires_ms <= COALESCE(?, {self._now_sql}))
                    ORDER BY first_seen_ms, rtms_stream_id""",
                (now_ms,),
            )
        return [_stream(row) for row in rows]

    def live_streams_owned_by(self, owner: str) -> list[StreamRow]:
        with self._transaction("live_streams_owned_by", write=False) as tx:
            rows = tx.fetchall(
                f"""SELECT {_STREAM_COLS} FROM streams
                    WHERE lease_owner = ? AND state IN ({_LIVE_STATES_SQL})
                    ORDER BY first_seen_ms, rtms_stream_id""",
                (owner,),
            )
        return [_stream(row) for row in rows]

    # --- webhook dedup ---------------------------------------------------------------------

    def first_seen(self, key: str, now_ms: int, ttl_ms: int) -> bool:
        """True exactly once per ``key`` within ``ttl_ms``, across every process."""
        _require_text("first_seen", key=key)
        with self._transaction("first_seen", write=True) as tx:
            return self._first_seen(tx, key, now_ms, ttl_ms)

    @staticmethod
    def _first_seen(tx: Tx, key: str, now_ms: int, ttl_ms: int) -> bool:
        # Webhooks are rare next to media, so purging on every call keeps the table small
        # without a separate sweeper; the expiry index makes it cheap.
        tx.execute("DELETE FROM webhook_dedup WHERE expires_ms <= ?", (now_ms,))
        row = tx.fetchone(
            """INSERT INTO webhook_dedup (dedup_key, first_seen_ms, expires_ms)
                VALUES (?, ?, ?)
                ON CONFLICT (dedup_key) DO NOTHING
                RETURNING dedup_key""",
            (key, now_ms, now_ms + ttl_ms),
        )
        return row is not None

    def forget(self, key: str) -> None:
        """Undo ``first_seen`` for a delivery that could not be handed on, so a retry counts."""
        with self._transaction("forget", write=True) as tx:
            tx.execute("DELETE FROM webhook_dedup WHERE dedup_key = ?", (key,))
