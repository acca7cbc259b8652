"""Policy files: the shipped examples, file:line errors, matching and the default."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.catalog.base import Product, RecordingRow, RecordingStatus
from recorder.cli import main as cli_main
from recorder.errors import PolicyParseError
from recorder.retention.policy import (
    BUILTIN_DEFAULT,
    CountsFrom,
    ExpiryAction,
    check_policies,
    load_policies,
    parse_period,
    parse_policy,
    select_policy,
)

SHIPPED = Path(__file__).resolve().parents[2] / "policies"

GOOD = """\
name = "desk"
description = "Trading desk calls"
authority = "FINRA 4511"

[match]
cc_queues = ["desk"]

[retention]
period = "6y"
action = "delete"
"""

DEFAULT = """\
description = "everything else"
authority = "internal"
default = true

[retention]
period = "30d"
action = "delete"
"""


def recording(**overrides: object) -> RecordingRow:
    values: dict[str, object] = {
        "recording_id": "rec_1",
        "rtms_stream_id": "s1",
        "product": Product.MEETING,
        "instance_id": "i1",
        "operator_id": None,
        "account_id": None,
        "meeting_number": None,
        "cc_queue_id": None,
        "cc_queue_name": None,
        "cc_agent_id": None,
        "cc_agent_name": None,
        "started_ms": 0,
        "ended_ms": 1,
        "end_reason": None,
        "status": RecordingStatus.COMPLETE,
    }
    values.update(overrides)
    return RecordingRow(**values)  # type: ignore[arg-type]


def write(directory: Path, **files: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / f"{name}.toml").write_text(text)
    return directory


def test_shipped_examples_load_with_their_periods() -> None:
    policies = load_policies(SHIPPED)
    days = {p.name: (p.retain_days, p.extended_days, p.action) for p in policies.policies}
    assert days["finra-4511"] == (2192, None, ExpiryAction.DELETE)  # six years
    assert days["mifid2"] == (1827, 2557, ExpiryAction.DELETE)  # five, extendable to seven
    assert days["hipaa"] == (2192, None, ExpiryAction.CRYPTO_SHRED)
    assert policies.default.name == "default"
    assert policies.default.retain_days == 90
    for policy in policies.policies:
        assert policy.authority
        assert policy.description
        assert len(policy.sha256) == 64


def test_cli_check_passes_on_shipped_and_names_file_and_line_on_bad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["policies", "check", "--dir", str(SHIPPED)]) == 0
    bad = GOOD.replace('period = "6y"', 'period = "six years"')
    directory = write(tmp_path / "p", desk=bad, default=DEFAULT)
    assert cli_main(["policies", "check", "--dir", str(directory)]) == 4
    out = capsys.readouterr().out
    assert f"{directory / 'desk.toml'}:9: retention.period" in out


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (GOOD.replace('action = "delete"', 'action = "shred"'), 10, "retention.action"),
        (GOOD.replace("[match]", "[match]\nqueues = ['x']"), 6, "match.queues: unknown key"),
        (GOOD.replace('authority = "FINRA 4511"\n', ""), 1, "authority: required"),
        (GOOD.replace('cc_queues = ["desk"]', 'cc_queues = "desk"'), 6, "list of non-empty"),
        (GOOD.replace('period = "6y"', 'period = "6y"\ncounts_from = "x"'), 10, "counts_from"),
        (GOOD.replace("[retention]", "[retention]\nextendable_to = '7y'"), 9, "extend_on"),
        (GOOD + "lock_mode = 'forever'\n", 11, "lock_mode"),
        (GOOD.replace('name = "desk"', 'name = "desk"\nname = "x"'), 2, "not valid TOML"),
        (GOOD.replace("[retention]", "[retention\n"), 8, "not valid TOML"),
        (GOOD.replace('cc_queues = ["desk"]', 'products = ["phonebook"]'), 6, "phonebook"),
        (GOOD.replace('cc_queues = ["desk"]', ""), 5, "match nothing"),
    ],
)
def test_malformed_policy_names_file_and_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    path = tmp_path / "desk.toml"
    policy, problems = parse_policy(str(path), text.encode())
    assert policy is None
    assert problems, "a malformed policy must be rejected"
    assert any(p.line == line and words in p.message for p in problems), problems
    assert all(p.path == str(path) for p in problems)


def test_directory_needs_exactly_one_default_and_unique_names(tmp_path: Path) -> None:
    none = write(tmp_path / "none", desk=GOOD)
    with pytest.raises(PolicyParseError, match="no policy has default = true"):
        load_policies(none)
    two = write(tmp_path / "two", a=DEFAULT, b=DEFAULT, desk=GOOD)
    with pytest.raises(PolicyParseError, match=r"b\.toml:3: a second default"):
        load_policies(two)
    dup = write(tmp_path / "dup", desk=GOOD, other=GOOD, default=DEFAULT)
    with pytest.raises(PolicyParseError, match=r"other\.toml:1: policy name 'desk'"):
        load_policies(dup)


def test_a_missing_directory_gives_the_builtin_default_never_nothing(tmp_path: Path) -> None:
    policies = load_policies(tmp_path / "absent")
    assert policies.default is BUILTIN_DEFAULT
    assert select_policy(policies, recording()) is BUILTIN_DEFAULT
    # The store's configured retention_days is what the built-in default keeps.
    short = load_policies(tmp_path / "absent", builtin_days=1)
    assert select_policy(short, recording()).retain_days == 1
    assert short.default.sha256 != BUILTIN_DEFAULT.sha256


def test_unmatched_recording_gets_the_default_and_longest_match_wins(tmp_path: Path) -> None:
    longer = GOOD.replace('name = "desk"', 'name = "desk-long"').replace('"6y"', '"7y"')
    policies = load_policies(write(tmp_path / "p", desk=GOOD, long=longer, default=DEFAULT))
    assert select_policy(policies, recording()).name == "default"
    cc = recording(product=Product.CONTACT_CENTER, cc_queue_name="Desk")
    assert select_policy(policies, cc).name == "desk-long"


def test_participant_domains_match_email_addresses(tmp_path: Path) -> None:
    text = GOOD.replace('cc_queues = ["desk"]', 'participant_domains = ["bank.example"]')
    policies = load_policies(write(tmp_path / "p", desk=text, default=DEFAULT))
    people = [("u1", "Ann <no email>"), ("u2", "bob@Bank.Example")]
    assert select_policy(policies, recording(), people).name == "desk"
    assert select_policy(policies, recording(), [("u1", "ann@other.example")]).name == "default"


def test_periods_round_leap_days_up() -> None:
    assert parse_period("6y") == 2192
    assert parse_period("7y") == 2557
    assert parse_period("90d") == 90
    assert parse_period("2w") == 14
    assert parse_period("100y") == 36_525
    for too_long in ("101y", "9999y", "36526d", "5300w"):
        with pytest.raises(ValueError, match="longer than 100 years"):
            parse_period(too_long)
    for bad in ("0d", "6", "y", "-1d", "1.5y"):
        with pytest.raises(ValueError, match="period"):
            parse_period(bad)


def test_event_counting_policy(tmp_path: Path) -> None:
    text = GOOD.replace('period = "6y"', 'period = "6y"\ncounts_from = "event:account_closed"')
    policy = load_policies(write(tmp_path / "p", desk=text, default=DEFAULT)).by_name("desk")
    assert policy is not None
    assert (policy.counts_from, policy.counts_from_event) == (CountsFrom.EVENT, "account_closed")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_a_policy_or_problems_never_a_crash(raw: bytes) -> None:
    policy, problems = parse_policy("fuzz.toml", raw)
    assert (policy is None) == bool(problems)
    assert all(p.line >= 1 for p in problems)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='[]=" \nabcdeklmnoprtyz0123456789_.', max_size=300))
def test_toml_like_text_never_crashes_the_parser(text: str) -> None:
    policy, problems = parse_policy("fuzz.toml", (GOOD[:60] + text).encode())
    assert (policy is None) == bool(problems)


def test_check_policies_reports_every_file(tmp_path: Path) -> None:
    bad = GOOD.replace('"6y"', '"6x"')
    directory = write(tmp_path / "p", a=bad, b=bad.replace("desk", "b"), default=DEFAULT)
    policies, problems = check_policies(directory)
    assert policies is None
    assert {Path(p.path).name for p in problems} == {"a.toml", "b.toml"}
