"""The transcript blind index in the catalog: token MACs per recording, never a word.

Rule: only ``recorder.crypto.blind_index`` MACs come in (32 lowercase hex characters, checked
here too, so a caller's slip cannot put a word into the catalog). Adding is idempotent
(``ON CONFLICT DO NOTHING``): a retried or journaled batch adds nothing twice. Destroying a
recording's keys removes its index in the same transaction (``forget_transcript``), and a
batch arriving after that is dropped.
"""

# ruff: noqa: S608
# S608 (SQL built from strings) is waived here: only the placeholder list is interpolated.
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from recorder.catalog._rows import TransactionSource, Tx
from recorder.errors import CatalogError

_MAC: Final = re.compile(r"[0-9a-f]{32}")
_ROWS_PER_INSERT: Final = 400
#: The statistics row counting recordings with an index (not a MAC: never matches one).
ALL_RECORDINGS: Final = ""


def check_macs(macs: Sequence[str]) -> None:
    for mac in macs:
        if not isinstance(mac, str) or not _MAC.fullmatch(mac):
            raise CatalogError(
                "add_transcript_tokens: a token MAC must be 32 lowercase hex characters "
                "(never a word)"
            )


class TextIndexQueries(TransactionSource):
    def add_transcript_tokens(
        self, recording_id: str, key_id: str, macs: Sequence[str], now_ms: int
    ) -> None:
        check_macs(macs)
        if not key_id:
            raise CatalogError("add_transcript_tokens: key_id required")
        unique = sorted(set(macs))
        with self._transaction("add_transcript_tokens", write=True) as tx:
            # Locked (PostgreSQL): a start moved earlier by a concurrent re-upsert waits for
            # these postings and its trigger then moves them too, or they are written with the
            # new start. A search matches the postings of a recording on their copies of it.
            recording = tx.fetchone(
                "SELECT started_ms FROM recordings WHERE recording_id = ?" + self._fence_lock_sql,
                (recording_id,),
            )
            if recording is None:
                raise CatalogError(f"add_transcript_tokens: no recording {recording_id!r}")
            if tx.fetchone(
                "SELECT 1 FROM recording_key_tombstones WHERE recording_id = ?", (recording_id,)
            ):
                return  # destroyed: a late (journaled) batch indexes nothing any more
            new: list[str] = []
            for start in range(0, len(unique), _ROWS_PER_INSERT):
                part = unique[start : start + _ROWS_PER_INSERT]
                values = ", ".join("(?, ?, ?)" for _ in part)
                params: list[object] = []
                for mac in part:
                    params += [mac, recording_id, recording[0]]
                rows = tx.fetchall(
                    "INSERT INTO transcript_tokens (token_mac, recording_id, started_ms)"
                    f" VALUES {values}"
                    " ON CONFLICT DO NOTHING RETURNING token_mac",
                    params,
                )
                new += sorted(str(row[0]) for row in rows)
            first = tx.fetchone(
                "SELECT 1 FROM transcript_index WHERE recording_id = ?", (recording_id,)
            )
            if first is None:
                new.insert(0, ALL_RECORDINGS)
            # Sorted: concurrent writers lock the shared counter rows in one order.
            for start in range(0, len(new), _ROWS_PER_INSERT):
                part = new[start : start + _ROWS_PER_INSERT]
                tx.execute(
                    "INSERT INTO transcript_token_stats (token_mac, recordings) VALUES "
                    + ", ".join("(?, 1)" for _ in part)
                    + " ON CONFLICT (token_mac) DO UPDATE"
                    " SET recordings = transcript_token_stats.recordings + 1",
                    part,
                )
            tx.execute(
                """INSERT INTO transcript_index (recording_id, key_id, segments, indexed_ms)
                    VALUES (?, ?, 1, ?)
                    ON CONFLICT (recording_id, key_id) DO UPDATE
                    SET segments = transcript_index.segments + 1,
                        indexed_ms = excluded.indexed_ms""",
                (recording_id, key_id, now_ms),
            )

    def text_index_keys(self) -> dict[str, int]:
        with self._transaction("text_index_keys", write=False) as tx:
            rows = tx.fetchall(
                "SELECT key_id, COUNT(*) FROM transcript_index GROUP BY key_id ORDER BY key_id"
            )
        return {str(row[0]): int(row[1]) for row in rows}


def token_stats(tx: Tx, macs: Sequence[str]) -> tuple[dict[str, int], int]:
    """(recordings per MAC, 0 for an unknown one; recordings indexed at all)."""
    wanted = sorted(set(macs))
    rows = tx.fetchall(
        "SELECT token_mac, recordings FROM transcript_token_stats WHERE token_mac IN ("
        + ", ".join("?" for _ in range(len(wanted) + 1))
        + ")",
        [*wanted, ALL_RECORDINGS],
    )
    found = {str(row[0]): int(row[1]) for row in rows}
    return {mac: found.get(mac, 0) for mac in wanted}, found.get(ALL_RECORDINGS, 0)


def forget_transcript(tx: Tx, recording_id: str) -> None:
    """Remove a recording's index (its keys are being destroyed: what it said goes too),
    keeping the planner's counts true."""
    tx.execute(
        """UPDATE transcript_token_stats SET recordings = recordings - 1
            WHERE token_mac IN (SELECT token_mac FROM transcript_tokens WHERE recording_id = ?)""",
        (recording_id,),
    )
    # A word no recording holds any more leaves no trace (its MAC) behind either.
    tx.execute(
        """DELETE FROM transcript_token_stats WHERE recordings <= 0 AND token_mac <> ?
            AND token_mac IN (SELECT token_mac FROM transcript_tokens WHERE recording_id = ?)""",
        (ALL_RECORDINGS, recording_id),
    )
    if tx.fetchone("SELECT 1 FROM transcript_index WHERE recording_id = ?", (recording_id,)):
        tx.execute(
            "UPDATE transcript_token_stats SET recordings = recordings - 1 WHERE token_mac = ?",
            (ALL_RECORDINGS,),
        )
    tx.execute("DELETE FROM transcript_tokens WHERE recording_id = ?", (recording_id,))
    tx.execute("DELETE FROM transcript_index WHERE recording_id = ?", (recording_id,))
