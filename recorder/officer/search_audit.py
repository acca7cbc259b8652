"""What the audit log keeps of an officer's search: ids as typed, people only as keyed MACs.

Rule: the audit log is append-only and hash-chained, so it is never scrubbed when a recording is
destroyed; whatever a ``search`` event holds, it holds forever. So a filter that names a person
is written as ``{"field": ..., "mac": <hex>}``: the blind-index key's ``filter_mac`` of the
value normalised for that field (``normalised``), never the value. Someone with the catalog but
not the key learns only that two searches looked for the same value; an officer with the key
finds the searches for a value with ``recorder audit searches --for VALUE``.

Personal (MAC'd): ``participant`` (user id or name), ``agent``, ``caller``, ``host`` (id or
email), ``number`` (a phone number), ``topic`` (meeting topics name clients and deals) and
``queue`` (a queue name can name a person's line; one rule for every typed name is simpler to
review than a judgement per queue). Kept as typed: the product, ``any_id`` (recording, meeting,
stream, call ids: the destruction record keeps these too, and "who looked at recording X" needs
them), the time range, statuses, flags, gap cause, policy and the paging cursor. Transcript
words were MACs already (``text_macs``, under the transcript label: they never equal these).

A hold rule naming a person (``participant``, ``queue``: ``HOLD_RULE_PERSONAL_FIELDS``) is
audited the same way (``rule_macs``): the same key, label and normalisation as the search filter
of that name, so ``recorder audit hold-rules --for VALUE`` finds it and a search and a hold rule
for the same person carry the same MAC (the catalog already shows which recordings a matter
holds; the MAC adds no link the key holder could not make).

Normalisation folds at least what the search folds (case: names match ignoring case) and also
width and white space (NFKC, case fold, runs of spaces as one, ends trimmed), so a review finds
a value however an officer typed it; phone numbers are reduced as the search reduces them
(``normalise_number``: a leading ``+`` and the digits). Two ids that differ only in case are
reported as the same value (a review may list one search too many, never one too few).
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Final

from recorder.catalog.base import JsonValue
from recorder.catalog.retention_types import HOLD_RULE_PERSONAL_FIELDS, PersonalMacs
from recorder.catalog.search import RecordingQuery
from recorder.completeness.model import normalise_number
from recorder.crypto.blind_index import SearchKey
from recorder.errors import ConfigError

#: ``RecordingQuery`` fields (and ``recorder search`` flags, by their ``argparse`` destination)
#: whose values name a person: audited as MACs only.
PERSONAL_FIELDS: Final = ("participant", "agent", "caller", "queue", "topic", "host", "number")


def normalised(field: str, value: str) -> str:
    """``value`` as its MAC sees it: NFKC, case-folded, white space collapsed; numbers reduced."""
    folded = unicodedata.normalize("NFKC", value).casefold()
    # Case folding can produce decomposed forms (e.g. "İ"), so normalise once more.
    folded = " ".join(unicodedata.normalize("NFKC", folded).split())
    if field == "number":
        # A number without digits is refused by the search before it is audited; the fallback
        # only keeps this total.
        return normalise_number(folded) or folded
    return folded


def filter_mac(key: SearchKey, field: str, value: str) -> str:
    if field not in PERSONAL_FIELDS:
        raise ConfigError(f"not a personal search filter: {field[:40]!r}")
    return key.filter_mac(normalised(field, value))


def rule_macs(key: SearchKey | None, rule: Mapping[str, str]) -> PersonalMacs | None:
    """The keyed MACs ``add_hold_rule`` audits in place of the rule's personal values, or
    ``None`` when it names nobody. Fails closed (``ConfigError``) without a key."""
    personal = {name: rule[name] for name in HOLD_RULE_PERSONAL_FIELDS if rule.get(name)}
    if not personal:
        return None
    if key is None:
        raise ConfigError(
            "a hold rule naming a person is audited as a keyed MAC and no search-index key "
            "was loaded"
        )
    return PersonalMacs(
        key.key_id, {name: filter_mac(key, name, value) for name, value in personal.items()}
    )


def personal_filters(query: RecordingQuery) -> dict[str, str]:
    """The query's personal filters that are set, by field."""
    found = {field: getattr(query, field) for field in PERSONAL_FIELDS}
    return {field: value for field, value in found.items() if value is not None}


def search_details(
    query: RecordingQuery, key: SearchKey | None, results: Sequence[str]
) -> dict[str, JsonValue]:
    """The ``details`` of the ``search`` audit event for ``query`` and the ids it found.

    Fails closed (``ConfigError``) when the query names a person and no key was loaded: the
    cleartext is never the fallback.
    """
    personal = personal_filters(query)
    if personal and key is None:
        raise ConfigError(
            "a search for a person is audited as a keyed MAC and no search-index key was loaded"
        )
    filters: dict[str, JsonValue] = {
        name: str(value)
        for name, value in dataclasses.asdict(query).items()
        if value not in (None, (), False) and name != "limit" and name not in PERSONAL_FIELDS
    }
    details: dict[str, JsonValue] = {"filters": filters, "results": list(results)}
    if personal:
        assert key is not None
        details["personal"] = [
            {"field": field, "mac": filter_mac(key, field, value)}
            for field, value in personal.items()
        ]
        details["mac_key"] = key.key_id
    return details
