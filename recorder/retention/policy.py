"""Retention policies: ``policies/*.toml`` parsed, checked and matched against recordings.

One file is one policy. Its SHA-256 (of the file's bytes) is the policy's identity: it is stored
with every recording and in its export manifest, so which rule applied can be proved later.

Rules:

1. Every problem names the file and line (``PolicyProblem``); ``check_policies`` collects all of
   them, ``load_policies`` refuses a directory with any.
2. Exactly one policy is the ``default = true`` one, with no ``[match]``: a recording that
   matches nothing else gets it, never nothing. A directory that does not exist gives the
   built-in default (``BUILTIN_DEFAULT``: the store's configured ``retention_days``, seven years
   unless set, then delete), never an empty set.
3. When several policies match, the longest period wins (ties: the name first in sort order):
   keeping too long is a fixable mistake, deleting too early is not.
4. A period is ``<n>d``, ``<n>w`` or ``<n>y``; a year is 365.25 days rounded up over the whole
   period (``6y`` = 2192 days), so leap days never make a lock end early.
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from recorder.catalog.base import Product, RecordingRow
from recorder.errors import PolicyParseError

MS_PER_DAY: Final = 86_400_000


class CountsFrom(enum.StrEnum):
    RECORDING_END = "recording_end"
    RECORDING_START = "recording_start"
    #: ``event:<name>``: from an account event (``recorder retention event``), e.g. closure.
    EVENT = "event"


class ExpiryAction(enum.StrEnum):
    #: Delete every object version from the store.
    DELETE = "delete"
    #: Destroy the recording's keys (for stores where deletion is impossible or not trusted).
    CRYPTO_SHRED = "crypto_shred"


class PolicyLockMode(enum.StrEnum):
    COMPLIANCE = "compliance"
    GOVERNANCE = "governance"


@dataclass(frozen=True, slots=True)
class PolicyMatch:
    """Every non-empty field must match (any of its values); an empty match matches nothing."""

    products: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    cc_queues: tuple[str, ...] = ()
    meeting_numbers: tuple[str, ...] = ()
    instances: tuple[str, ...] = ()
    participant_domains: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not any(
            (
                self.products,
                self.accounts,
                self.cc_queues,
                self.meeting_numbers,
                self.instances,
                self.participant_domains,
            )
        )


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    description: str
    authority: str
    retain_days: int
    counts_from: CountsFrom
    #: The account event for ``CountsFrom.EVENT`` (``account_closed``).
    counts_from_event: str | None
    lock_mode: PolicyLockMode
    action: ExpiryAction
    match: PolicyMatch
    default: bool
    #: MiFID II: 5 years, extended to 7 when the account event ``extend_on`` has happened.
    extended_days: int | None
    extend_on: str | None
    source: str
    sha256: str

    @property
    def ref(self) -> str:
        """How destruction records and audit events cite this policy."""
        return f"policy:{self.name}@{self.sha256[:12]}"


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


#: What a recording gets when no policies directory exists: conservative, never "nothing".
BUILTIN_DEFAULT: Final = Policy(
    name="builtin-default",
    description="No policies directory: keep seven years, then delete.",
    authority="none (built-in conservative default; see policies/README.md)",
    retain_days=2557,
    counts_from=CountsFrom.RECORDING_END,
    counts_from_event=None,
    lock_mode=PolicyLockMode.COMPLIANCE,
    action=ExpiryAction.DELETE,
    match=PolicyMatch(),
    default=True,
    extended_days=None,
    extend_on=None,
    source="<built-in>",
    sha256=hashlib.sha256(b"rtms-recorder builtin-default 2557d delete").hexdigest(),
)


@dataclass(frozen=True, slots=True)
class PolicySet:
    policies: tuple[Policy, ...]
    default: Policy

    def by_name(self, name: str) -> Policy | None:
        return next((p for p in self.policies if p.name == name), None)

    @property
    def longest_days(self) -> int:
        return max(max(p.retain_days, p.extended_days or 0) for p in self.policies)


BUILTIN_POLICIES: Final = PolicySet((BUILTIN_DEFAULT,), BUILTIN_DEFAULT)


def builtin_policies(days: int) -> PolicySet:
    """The built-in default keeping ``days`` (a store's configured ``retention_days``)."""
    if days == BUILTIN_DEFAULT.retain_days:
        return BUILTIN_POLICIES
    default = replace(
        BUILTIN_DEFAULT,
        description=f"No policies directory: keep {days} days, then delete.",
        retain_days=days,
        sha256=hashlib.sha256(f"rtms-recorder builtin-default {days}d delete".encode()).hexdigest(),
    )
    return PolicySet((default,), default)


# --- matching --------------------------------------------------------------------------------


def email_domain(value: str | None) -> str | None:
    if value and "@" in value:
        return value.rsplit("@", 1)[1].strip().casefold() or None
    return None


def policy_matches(
    match: PolicyMatch,
    recording: RecordingRow,
    participants: Iterable[tuple[str, str | None]] = (),
) -> bool:
    if match.empty:
        return False

    def folded(values: Iterable[str | None]) -> set[str]:
        return {v.casefold() for v in values if v}

    checks: list[bool] = []
    if match.products:
        checks.append(recording.product.value in match.products)
    if match.accounts:
        checks.append(recording.account_id in match.accounts)
    if match.cc_queues:
        queues = folded((recording.cc_queue_id, recording.cc_queue_name))
        checks.append(bool(queues & folded(match.cc_queues)))
    if match.meeting_numbers:
        checks.append(recording.meeting_number in match.meeting_numbers)
    if match.instances:
        checks.append(recording.instance_id in match.instances)
    if match.participant_domains:
        people = [v for pair in participants for v in pair]
        people += [recording.operator_id, recording.cc_agent_id, recording.cc_agent_name]
        domains = {d for d in (email_domain(p) for p in people) if d}
        checks.append(bool(domains & folded(match.participant_domains)))
    return all(checks)


def select_policy(
    policies: PolicySet,
    recording: RecordingRow,
    participants: Iterable[tuple[str, str | None]] = (),
) -> Policy:
    """The policy in force for ``recording``: the longest matching, else the default."""
    people = tuple(participants)
    matching = [p for p in policies.policies if policy_matches(p.match, recording, people)]
    if not matching:
        return policies.default
    return min(matching, key=lambda p: (-max(p.retain_days, p.extended_days or 0), p.name))


# --- parsing ---------------------------------------------------------------------------------

_PERIOD: Final = re.compile(r"^\s*(\d{1,5})\s*([dwy])\s*$")
_TOP_KEYS: Final = {"name", "description", "authority", "default", "match", "retention"}
_MATCH_KEYS: Final = {
    "products",
    "accounts",
    "cc_queues",
    "meeting_numbers",
    "instances",
    "participant_domains",
}
_RETENTION_KEYS: Final = {
    "period",
    "counts_from",
    "lock_mode",
    "action",
    "extendable_to",
    "extend_on",
}
_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_TOML_POSITION: Final = re.compile(r"\(at line (\d+), column \d+\)")


#: 100 years of 365.25 days: the longest retention a policy may name.
MAX_PERIOD_DAYS: Final = 36_525


def parse_period(text: str) -> int:
    """Days in ``text`` (``90d``, ``4w``, ``6y``); raises ``ValueError`` naming the format."""
    found = _PERIOD.match(text)
    if not found:
        raise ValueError(f"period {text!r} is not <number>d, <number>w or <number>y")
    count, unit = int(found.group(1)), found.group(2)
    days = {"d": count, "w": 7 * count, "y": math.ceil(count * 365.25)}[unit]
    if days < 1:
        raise ValueError(f"period {text!r} must be at least one day")
    if days > MAX_PERIOD_DAYS:
        # Past it a retain-until date leaves the calendar (and S3's Object Lock maximum).
        raise ValueError(f"period {text!r} is longer than 100 years ({MAX_PERIOD_DAYS} days)")
    return days


def key_lines(text: str) -> dict[str, int]:
    """``table.key`` (and ``table``) -> 1-based line, from the source text.

    tomllib keeps no positions, so lines are found again in the text: a ``[table]`` header
    starts a table, ``key =`` inside it names ``table.key``. Good enough for the flat policy
    format (no inline tables or dotted keys are allowed in it).
    """
    lines: dict[str, int] = {}
    table = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = re.match(r"^\[\s*([A-Za-z0-9_.-]+)\s*\]", line)
        if header:
            table = header.group(1)
            lines.setdefault(table, number)
            continue
        assignment = re.match(r"^([A-Za-z0-9_-]+|\"[^\"]*\")\s*=", line)
        if assignment:
            key = assignment.group(1).strip('"')
            lines.setdefault(f"{table}.{key}" if table else key, number)
    return lines


class _Reader:
    """Typed reads of one policy file that remember every problem with its line."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = key_lines(text)
        self.problems: list[PolicyProblem] = []

    def problem(self, where: str, message: str) -> None:
        line = self.lines.get(where) or self.lines.get(where.rsplit(".", 1)[0]) or 1
        self.problems.append(PolicyProblem(self.path, line, message))

    def text(self, table: Mapping[str, Any], where: str, key: str, *, required: bool) -> str:
        value = table.get(key)
        full = f"{where}.{key}" if where else key
        if value is None:
            if required:
                self.problem(where or key, f"{full}: required")
            return ""
        if not isinstance(value, str) or not value.strip():
            self.problem(full, f"{full}: expected a non-empty string")
            return ""
        return value.strip()

    def strings(self, table: Mapping[str, Any], where: str, key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        full = f"{where}.{key}"
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.problem(full, f"{full}: expected a list of non-empty strings")
            return ()
        return tuple(value)

    def unknown(self, table: Mapping[str, Any], where: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                full = f"{where}.{key}" if where else key
                self.problem(full, f"{full}: unknown key (allowed: {', '.join(sorted(allowed))})")


def parse_policy(path: str, raw: bytes) -> tuple[Policy | None, list[PolicyProblem]]:
    """Parse one policy file; returns the policy (None if unusable) and every problem found."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [PolicyProblem(path, 1, f"not UTF-8 text ({exc.reason})")]
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_POSITION.search(str(exc))
        line = int(found.group(1)) if found else 1
        message = _TOML_POSITION.sub("", str(exc)).strip()
        return None, [PolicyProblem(path, line, f"not valid TOML: {message}")]
    r = _Reader(path, text)
    r.unknown(doc, "", _TOP_KEYS)
    stem = Path(path).stem
    name = r.text(doc, "", "name", required=False) or stem
    if not _NAME.match(name):
        r.problem("name", f"name {name!r}: use lowercase letters, digits, '.', '_' or '-'")
    description = r.text(doc, "", "description", required=True)
    authority = r.text(doc, "", "authority", required=True)
    default = doc.get("default", False)
    if not isinstance(default, bool):
        r.problem("default", "default: expected true or false")
        default = False

    match_table = doc.get("match", {})
    if not isinstance(match_table, dict):
        r.problem("match", "match: expected a [match] table")
        match_table = {}
    r.unknown(match_table, "match", _MATCH_KEYS)
    match = PolicyMatch(**{key: r.strings(match_table, "match", key) for key in _MATCH_KEYS})
    products = {p.value for p in Product}
    for product in match.products:
        if product not in products:
            r.problem(
                "match.products",
                f"match.products: unknown product {product!r} "
                f"(known: {', '.join(sorted(products))})",
            )
    if default and not match.empty:
        r.problem("match", "a default policy matches everything: remove its [match]")
    if not default and match.empty:
        r.problem(
            "match" if "match" in doc else "name",
            "no [match] rule: the policy would match nothing (or set default = true)",
        )

    retention = doc.get("retention")
    if not isinstance(retention, dict):
        r.problem("retention" if "retention" in doc else "name", "a [retention] table is required")
        retention = {}
    r.unknown(retention, "retention", _RETENTION_KEYS)
    retain_days = 0
    period = r.text(retention, "retention", "period", required=True)
    if period:
        try:
            retain_days = parse_period(period)
        except ValueError as exc:
            r.problem("retention.period", f"retention.period: {exc}")

    counts_text = r.text(retention, "retention", "counts_from", required=False) or "recording_end"
    counts_from, counts_event = CountsFrom.RECORDING_END, None
    if counts_text.startswith("event:") and len(counts_text) > len("event:"):
        counts_from, counts_event = CountsFrom.EVENT, counts_text.removeprefix("event:")
    elif counts_text in (CountsFrom.RECORDING_END.value, CountsFrom.RECORDING_START.value):
        counts_from = CountsFrom(counts_text)
    else:
        r.problem(
            "retention.counts_from",
            f"retention.counts_from {counts_text!r}: recording_end, recording_start or "
            "event:<name>",
        )

    lock_text = r.text(retention, "retention", "lock_mode", required=False) or "compliance"
    if lock_text not in {m.value for m in PolicyLockMode}:
        r.problem(
            "retention.lock_mode", f"retention.lock_mode {lock_text!r}: compliance or governance"
        )
        lock_text = "compliance"
    action_text = r.text(retention, "retention", "action", required=True)
    if action_text and action_text not in {a.value for a in ExpiryAction}:
        r.problem("retention.action", f"retention.action {action_text!r}: delete or crypto_shred")
    action = ExpiryAction(action_text) if action_text in set(ExpiryAction) else ExpiryAction.DELETE

    extended_days = None
    extendable = r.text(retention, "retention", "extendable_to", required=False)
    extend_on = r.text(retention, "retention", "extend_on", required=False) or None
    if extendable:
        try:
            extended_days = parse_period(extendable)
        except ValueError as exc:
            r.problem("retention.extendable_to", f"retention.extendable_to: {exc}")
        if extended_days is not None and extended_days <= retain_days:
            r.problem(
                "retention.extendable_to",
                "retention.extendable_to must be longer than retention.period",
            )
        if extend_on is None:
            r.problem(
                "retention.extendable_to",
                'retention.extendable_to needs extend_on = "<account event>" (what extends it)',
            )
    elif extend_on is not None:
        r.problem("retention.extend_on", "retention.extend_on without retention.extendable_to")

    if r.problems:
        return None, r.problems
    return (
        Policy(
            name=name,
            description=description,
            authority=authority,
            retain_days=retain_days,
            counts_from=counts_from,
            counts_from_event=counts_event,
            lock_mode=PolicyLockMode(lock_text),
            action=action,
            match=match,
            default=default,
            extended_days=extended_days,
            extend_on=extend_on,
            source=path,
            sha256=hashlib.sha256(raw).hexdigest(),
        ),
        [],
    )


def check_policies(
    directory: Path, *, builtin_days: int = BUILTIN_DEFAULT.retain_days
) -> tuple[PolicySet | None, list[PolicyProblem]]:
    """Parse every ``*.toml`` in ``directory``; the set is ``None`` when anything is wrong.

    No directory (or no files in it): the built-in default, keeping ``builtin_days``.
    """
    if not directory.is_dir():
        return builtin_policies(builtin_days), []
    problems: list[PolicyProblem] = []
    policies: list[Policy] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            raw = path.read_bytes()
        except OSError as exc:
            problems.append(PolicyProblem(str(path), 1, f"cannot read: {exc.strerror}"))
            continue
        policy, found = parse_policy(str(path), raw)
        problems.extend(found)
        if policy is not None:
            policies.append(policy)
    problems.extend(_cross_file_problems(policies))
    if problems:
        return None, problems
    if not policies:
        return builtin_policies(builtin_days), []
    default = next(p for p in policies if p.default)
    return PolicySet(tuple(policies), default), []


def _cross_file_problems(policies: Sequence[Policy]) -> list[PolicyProblem]:
    problems: list[PolicyProblem] = []
    seen: dict[str, Policy] = {}
    for policy in policies:
        if policy.name in seen:
            problems.append(
                PolicyProblem(
                    policy.source,
                    key_lines(Path(policy.source).read_text()).get("name", 1),
                    f"policy name {policy.name!r} is also used by {seen[policy.name].source}",
                )
            )
        seen.setdefault(policy.name, policy)
    defaults = [p for p in policies if p.default]
    if policies and not defaults:
        problems.append(
            PolicyProblem(
                policies[0].source,
                1,
                "no policy has default = true: recordings matching nothing would have no policy",
            )
        )
    for extra in defaults[1:]:
        problems.append(
            PolicyProblem(
                extra.source,
                key_lines(Path(extra.source).read_text()).get("default", 1),
                f"a second default policy (the first is {defaults[0].source})",
            )
        )
    return problems


def load_policies(directory: Path, *, builtin_days: int = BUILTIN_DEFAULT.retain_days) -> PolicySet:
    """The policies in ``directory``; ``PolicyParseError`` lists every problem with file:line."""
    policies, problems = check_policies(directory, builtin_days=builtin_days)
    if policies is None:
        raise PolicyParseError("; ".join(str(p) for p in problems))
    return policies
