"""What destroying a recording erases from the catalog, and the record of having done it.

``PERSONAL_DATA`` is the inventory (docs/officer.md, "What the catalog keeps after
destruction", is written from it): every column that can name or reach a person of one recording
or its meeting / engagement. What is not listed is kept on purpose (ids, times, durations,
hashes, holds, the destruction record) or cannot be changed (the append-only audit log).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

#: Per recording: scrubbed in the transaction that records its destruction.
RECORDING_PERSONAL_DATA: Final[dict[str, tuple[str, ...]]] = {
    # Zoom user ids and names of the operator and the Contact Center agent; the meeting
    # number (a personal meeting id names its owner); the queue (brief: it says who was called).
    "recordings": (
        "operator_id",
        "meeting_number",
        "cc_queue_id",
        "cc_queue_name",
        "cc_agent_id",
        "cc_agent_name",
    ),
    "participants": ("user_id", "user_name"),  # rows deleted
    "segments": ("participant_id",),
    "pauses": ("actor",),
    "transcript_tokens": ("token_mac",),  # rows deleted (with transcript_index, the counts)
    "web_session_reasons": ("reason",),  # rows deleted: an officer's words about the call
    # Stream-level webhook deliveries: the signed body and the ids taken from it.
    "lifecycle_events": ("ids", "body"),
}

#: Per meeting / engagement (product, instance id): scrubbed once every recording of it is
#: destroyed, because a surviving recording of the same instance still needs them.
INSTANCE_PERSONAL_DATA: Final[dict[str, tuple[str, ...]]] = {
    "enrichments": (
        "lookup_id",
        "last_error",
        "topic",
        "host_id",
        "host_email",
        "queue_id",
        "queue_name",
        "agent_id",
        "agent_name",
        "agent_email",
        "consumer_number",
        "caller_number",
        "callee_number",
    ),
    "expectations": ("target_id", "user_id", "queue_id", "start_error"),
    "findings": ("detail",),
    "lifecycle_events": ("ids", "body"),  # deliveries naming only the instance
}


@dataclass(frozen=True, slots=True)
class PiiScrub:
    """One recording's scrub: when, by whom, and how much of what (counts, never values)."""

    recording_id: str
    scrubbed_ms: int
    actor: str
    #: ``{"recordings": ["cc_agent_name", ...], "participants": 2, ..., "instance": "..."}``
    scrubbed: dict[str, object]

    @staticmethod
    def from_row(row: tuple[object, ...]) -> PiiScrub:
        return PiiScrub(
            recording_id=str(row[0]),
            scrubbed_ms=int(str(row[1])),
            actor=str(row[2]),
            scrubbed=dict(json.loads(str(row[3]))),
        )

    def summary(self) -> str:
        """One line: what went (``participants 2, recordings: cc_agent_name, ...``)."""
        parts: list[str] = []
        for name, value in self.scrubbed.items():
            if name == "instance":
                continue
            if isinstance(value, list):
                if value:
                    parts.append(f"{name}: {', '.join(str(v) for v in value)}")
            elif value:
                parts.append(f"{name} {value}")
        return "; ".join(parts) or "nothing personal was left"
