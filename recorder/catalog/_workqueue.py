"""The fleet work queue: live streams nobody records are claimed by the workers with spare room.

Rules (invariant 3 still rests on the lease: a claim here IS a lease claim, epoch and all):

1. A worker registers in ``workers`` with its capacity (max engagements) and a heartbeat that
   expires like a lease (the catalog's clock). Only workers whose heartbeat is fresh count.
2. ``claim_work`` is one write transaction: heartbeat, read every live worker's load (streams
   it holds a fresh lease on), compute this worker's fair share of the waiting streams
   (``fair_share``: each waiting stream to the least-filled worker in turn), then take that
   many rows ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (two workers claiming at once get
   disjoint rows and never wait on each other) or under SQLite's ``BEGIN IMMEDIATE`` (claims
   are serialised; the same outcome). Every row is re-checked by the conditional ``UPDATE``
   that takes its lease, so a row another process took meanwhile is simply not ours.
3. Only workers that looked lately count: a heartbeat older than ``grace_ms`` (a worker that
   died, or is too busy to poll) drops the worker out of the split at once, so its share goes
   to the others instead of waiting for it; its row lapses with the lease ttl. Workers with
   room therefore heartbeat at least every ``grace_ms / 2`` (``recorder.service.workers``).
4. A worker never claims more than ``capacity - active``; the share is a preference for
   spreading the load, never a reason to go over capacity.
"""

# ruff: noqa: S608
# S608 is waived for this module only: every interpolated piece is a module constant or a fixed
# clause chosen in code (the engine's lock suffix, its "now" expression); values are parameters.
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from recorder.catalog._rows import _LIVE_STATES_SQL, _STREAM_COLS, TransactionSource, Tx, _stream
from recorder.catalog.base import Lease, StreamRow
from recorder.catalog.schema import Engine
from recorder.errors import CatalogError


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    """One live worker as the work queue sees it."""

    owner: str
    capacity: int
    #: Streams it holds a fresh lease on.
    active: int
    #: Its last heartbeat, and the catalog's clock when this was read (Unix ms).
    looked_ms: int = 0
    now_ms: int = 0


@dataclass(frozen=True, slots=True)
class ClaimedStream:
    lease: Lease
    row: StreamRow


@dataclass(frozen=True, slots=True)
class WorkClaim:
    """What one ``claim_work`` did."""

    claimed: tuple[ClaimedStream, ...]
    #: Streams waiting (claimable, not excluded) when the claim looked, before it took any.
    waiting: int
    #: Every live worker's load when the claim looked (this worker's included).
    workers: tuple[WorkerLoad, ...]


def fair_share(me: str, workers: Sequence[WorkerLoad], waiting: int) -> int:
    """How many of ``waiting`` streams ``me`` should take so that the fleet fills evenly.

    Water-filling: each waiting stream goes to the worker with the lowest fill
    (``active / capacity``; ties to the lower owner id), among those with room. Pure and
    deterministic, so every worker computes the same split from the same loads.
    """
    if waiting <= 0:
        return 0
    loads = {w.owner: [w.active, w.capacity] for w in workers if w.capacity > 0}
    if me not in loads:
        return 0
    given = 0
    for _ in range(waiting):
        room = [(a / c, owner) for owner, (a, c) in loads.items() if a < c]
        if not room:
            break
        _, winner = min(room)
        loads[winner][0] += 1
        if winner == me:
            given += 1
    return given


#: Candidates: live, with URLs to connect to, and no fresh lease. ``{now}`` is the "now" SQL.
_WAITING_SQL: Final = f"""state IN ({_LIVE_STATES_SQL})
    AND server_urls <> '[]'
    AND (lease_owner IS NULL OR lease_expires_ms IS NULL OR lease_expires_ms <= {{now}})"""

#: Default bound on one claim (a burst is taken in several rounds, each one short).
MAX_CLAIM_BATCH: Final = 64


class WorkQueueQueries(TransactionSource):
    """Worker heartbeats and capacity-bounded, fair, skip-locked stream claims."""

    _now_sql: str
    engine: Engine

    @property
    def _skip_locked_sql(self) -> str:
        """Appended to the candidate ``SELECT``: PostgreSQL's row locks; SQLite writers already
        hold the database lock (``BEGIN IMMEDIATE``)."""
        return " FOR UPDATE SKIP LOCKED" if self.engine is Engine.POSTGRES else ""

    def claim_work(
        self,
        owner: str,
        capacity: int,
        active: int,
        ttl_ms: int,
        *,
        grace_ms: int,
        exclude: Sequence[str] = (),
        max_batch: int = MAX_CLAIM_BATCH,
        now_ms: int | None = None,
    ) -> WorkClaim:
        """Heartbeat ``owner`` and claim its share of the waiting streams (module rules).

        ``active`` is how many engagements ``owner`` runs (it may hold leases it has not yet
        started, or be finishing some): the claim never takes more than ``capacity - active``.
        ``exclude`` names streams this worker is backing off from; they are left to others.
        """
        if not owner:
            raise CatalogError("claim_work: owner must not be empty")
        if capacity < 1 or ttl_ms <= 0 or grace_ms < 0 or active < 0:
            raise CatalogError(
                f"claim_work: capacity {capacity}, ttl_ms {ttl_ms}, grace_ms {grace_ms} and "
                f"active {active} must be positive (capacity, ttl) or zero or more"
            )
        now = f"COALESCE(?, {self._now_sql})"
        excluded = tuple(dict.fromkeys(exclude))
        not_excluded = (
            f" AND rtms_stream_id NOT IN ({', '.join('?' * len(excluded))})" if excluded else ""
        )
        waiting_sql = _WAITING_SQL.format(now=now) + not_excluded
        with self._transaction("claim_work", write=True) as tx:
            _heartbeat(tx, now, owner, capacity, ttl_ms, now_ms)
            workers = _live_workers(tx, now, now_ms)
            counts = tx.fetchone(
                f"SELECT COUNT(*) FROM streams WHERE {waiting_sql}", (now_ms, *excluded)
            )
            assert counts is not None
            waiting = int(counts[0])
            lately = [w for w in workers if w.owner == owner or w.looked_ms >= w.now_ms - grace_ms]
            room = max(0, capacity - active)
            take = min(room, max_batch, fair_share(owner, lately, waiting))
            claimed: list[ClaimedStream] = []
            if take > 0:
                # The longest waiting first.
                ids = tx.fetchall(
                    f"""SELECT rtms_stream_id FROM streams WHERE {waiting_sql}
                        ORDER BY first_seen_ms, rtms_stream_id LIMIT ?{self._skip_locked_sql}""",
                    (now_ms, *excluded, take),
                )
                for (stream_id,) in ids:
                    row = tx.fetchone(
                        f"""UPDATE streams SET lease_owner = ?, lease_expires_ms = {now} + ?,
                                lease_epoch = lease_epoch + 1
                            WHERE rtms_stream_id = ? AND {_WAITING_SQL.format(now=now)}
                            RETURNING {_STREAM_COLS}""",
                        (owner, now_ms, ttl_ms, stream_id, now_ms),
                    )
                    if row is None:
                        continue
                    stream = _stream(row)
                    assert stream.lease_expires_ms is not None
                    lease = Lease(
                        stream.rtms_stream_id,
                        owner,
                        stream.lease_epoch,
                        ttl_ms,
                        stream.lease_expires_ms,
                        stream.lease_checkpoint_ms,
                    )
                    claimed.append(ClaimedStream(lease, stream))
        return WorkClaim(tuple(claimed), waiting, tuple(lately))

    def waiting_work(self, exclude: Sequence[str] = (), now_ms: int | None = None) -> int:
        """How many streams are waiting for a worker (read only: the cheap poll)."""
        excluded = tuple(dict.fromkeys(exclude))
        not_excluded = (
            f" AND rtms_stream_id NOT IN ({', '.join('?' * len(excluded))})" if excluded else ""
        )
        now = f"COALESCE(?, {self._now_sql})"
        with self._transaction("waiting_work", write=False) as tx:
            row = tx.fetchone(
                f"SELECT COUNT(*) FROM streams WHERE {_WAITING_SQL.format(now=now)}{not_excluded}",
                (now_ms, *excluded),
            )
        assert row is not None
        return int(row[0])

    def owned_streams_changed(self, owner: str, since_event_ts_ms: int) -> list[StreamRow]:
        """Streams ``owner`` holds a lease on whose newest webhook is newer than
        ``since_event_ts_ms`` (Zoom's ``event_ts``): what another worker's ingress learned."""
        with self._transaction("owned_streams_changed", write=False) as tx:
            rows = tx.fetchall(
                f"""SELECT {_STREAM_COLS} FROM streams
                    WHERE lease_owner = ? AND last_event_ts_ms > ?
                    ORDER BY last_event_ts_ms, rtms_stream_id""",
                (owner, since_event_ts_ms),
            )
        return [_stream(row) for row in rows]

    def heartbeat_worker(
        self, owner: str, capacity: int, ttl_ms: int, now_ms: int | None = None
    ) -> None:
        """Register ``owner`` (or keep it registered) as a live worker for ``ttl_ms``."""
        if not owner or capacity < 1 or ttl_ms <= 0:
            raise CatalogError("heartbeat_worker: owner, capacity >= 1 and ttl_ms > 0 required")
        with self._transaction("heartbeat_worker", write=True) as tx:
            _heartbeat(tx, f"COALESCE(?, {self._now_sql})", owner, capacity, ttl_ms, now_ms)

    def retire_worker(self, owner: str) -> bool:
        """Remove ``owner`` from the live workers (a clean shutdown); False if it was not there."""
        with self._transaction("retire_worker", write=True) as tx:
            return tx.execute("DELETE FROM workers WHERE owner = ?", (owner,)) == 1

    def live_workers(self, now_ms: int | None = None) -> list[WorkerLoad]:
        """Every worker whose heartbeat is fresh, with its load (for status and tests)."""
        with self._transaction("live_workers", write=False) as tx:
            return _live_workers(tx, f"COALESCE(?, {self._now_sql})", now_ms)


#: A worker row whose heartbeat lapsed this long ago is forgotten (its owner id is gone).
_FORGET_WORKER_MS: Final = 24 * 3600 * 1000


def _heartbeat(
    tx: Tx, now: str, owner: str, capacity: int, ttl_ms: int, now_ms: int | None
) -> None:
    tx.execute(
        f"""INSERT INTO workers (owner, capacity, heartbeat_ms, expires_ms)
            VALUES (?, ?, {now}, {now} + ?)
            ON CONFLICT (owner) DO UPDATE SET capacity = excluded.capacity,
                heartbeat_ms = excluded.heartbeat_ms, expires_ms = excluded.expires_ms""",
        (owner, capacity, now_ms, now_ms, ttl_ms),
    )
    tx.execute(f"DELETE FROM workers WHERE expires_ms < {now} - ?", (now_ms, _FORGET_WORKER_MS))


def _live_workers(tx: Tx, now: str, now_ms: int | None) -> list[WorkerLoad]:
    rows = tx.fetchall(
        f"""SELECT w.owner, w.capacity,
                (SELECT COUNT(*) FROM streams s WHERE s.lease_owner = w.owner
                    AND s.lease_expires_ms > {now} AND s.state IN ({_LIVE_STATES_SQL})),
                w.heartbeat_ms, {now}
            FROM workers w WHERE w.expires_ms > {now} ORDER BY w.owner""",
        (now_ms, now_ms, now_ms),
    )
    return [WorkerLoad(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]
