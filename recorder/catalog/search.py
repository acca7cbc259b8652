"""What an officer searches by, and what one page of results holds (``Catalog.search_recordings``).

Every filter is optional and they combine with AND. Names (participant, agent, caller, queue)
match whole names ignoring case, through indexes on ``LOWER(...)``; ids match exactly. Pages are
keyset pages, newest first: ``after`` is the ``next_cursor`` of the page before, so paging
stays fast however deep and stable while recordings are added.

Transcript text is searched through a keyed blind index (``text_macs``: MACs of the words, the
catalog holds no word). Not searchable, and why: participant email (RTMS participant events carry
no email). Phone numbers, meeting topics and hosts are searchable once Zoom's directory enriched
the recording (``recorder.completeness.enrichment``); RTMS itself does not carry them. Adding a
filter is one field here and one clause in ``catalog/_search.py``'s ``_clauses`` (plus its CLI
flag).
"""

from __future__ import annotations

from dataclasses import dataclass

from recorder.catalog.base import RecordingRow, RecordingStatus
from recorder.products import Product

#: Roles RTMS gives the firm's side of a call, and the other side.
AGENT_ROLES: tuple[str, ...] = ("agent", "callee", "host")
CALLER_ROLES: tuple[str, ...] = ("caller", "customer", "consumer")


@dataclass(frozen=True, slots=True)
class RecordingQuery:
    #: Recordings that overlap [since_ms, until_ms) (an unfinished one extends to now).
    since_ms: int | None = None
    until_ms: int | None = None
    product: Product | None = None
    #: Any id: recording, instance (meeting/webinar uuid, session, engagement, call), stream,
    #: meeting number, account, operator, Contact Center queue or agent, participant user id.
    any_id: str | None = None
    #: A participant's user id or display name (any role).
    participant: str | None = None
    #: The agent (Contact Center agent, or a participant in an agent/callee/host role).
    agent: str | None = None
    #: The caller (a participant in a caller/customer role).
    caller: str | None = None
    #: Contact Center queue id or name.
    queue: str | None = None
    statuses: tuple[RecordingStatus, ...] = ()
    has_gaps: bool = False
    gap_cause: str | None = None
    on_hold: bool = False
    #: The retention policy in force (its name, as ``policies/*.toml`` and ``show`` give it).
    policy: str | None = None
    #: Enrichment from Zoom's directory (zoom-completeness): meeting topic (whole, any case),
    #: host (id or email), a phone number (consumer, caller or callee; ``+`` and digits).
    topic: str | None = None
    host: str | None = None
    number: str | None = None
    #: Transcript words as blind-index MACs (``recorder.crypto.blind_index``): recordings whose
    #: transcript holds every one of them.
    text_macs: tuple[str, ...] = ()
    #: ``next_cursor`` of the previous page.
    after: str | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class SearchHit:
    recording: RecordingRow
    gap_count: int
    gap_ms: int
    on_hold: bool
    participant_count: int

    @property
    def duration_ms(self) -> int | None:
        r = self.recording
        return None if r.ended_ms is None else r.ended_ms - r.started_ms


@dataclass(frozen=True, slots=True)
class SearchPage:
    hits: tuple[SearchHit, ...]
    #: Pass as ``after`` for the next page; ``None`` on the last page.
    next_cursor: str | None


def encode_cursor(started_ms: int, recording_id: str) -> str:
    return f"{started_ms}:{recording_id}"


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Raises ``ValueError`` naming the cursor when it is not one this catalog made."""
    started, sep, recording_id = cursor.partition(":")
    if not sep or not started.lstrip("-").isdigit() or not recording_id:
        raise ValueError(f"not a search cursor: {cursor!r}")
    return int(started), recording_id
