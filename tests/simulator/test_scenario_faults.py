"""Scenario faults as data: loaded from a ``[faults]`` table, applied per socket and attempt."""

from __future__ import annotations

import pytest

from recorder.errors import ConfigError
from recorder.simulator.faults import Faults, HandshakeRefusal, RefusalBook
from recorder.simulator.profiles import DOC_2026, LEGACY_2025, Status
from recorder.simulator.scenario import scenario_from_mapping


def test_faults_load_from_a_scenario_table() -> None:
    scenario = scenario_from_mapping(
        {
            "product": "meeting",
            "faults": {
                "unknown_media_fields": True,
                "v2_frame_every": 25,
                "stopped_webhook_lead_s": 1.5,
                "v2_answer": True,
                "refusals": [
                    {"socket": "transcript", "status": "transcript_not_supported", "times": 0},
                    {"socket": "signaling", "status": "internal_exception"},
                ],
            },
        }
    )
    assert scenario.faults == Faults(
        refusals=(
            HandshakeRefusal("transcript", Status.TRANSCRIPT_NOT_SUPPORTED, 0),
            HandshakeRefusal("signaling", Status.INTERNAL_EXCEPTION, 1),
        ),
        unknown_media_fields=True,
        v2_frame_every=25,
        stopped_webhook_lead_s=1.5,
        v2_answer=True,
    )


@pytest.mark.parametrize(
    "faults",
    [
        {"surprise": 1},
        {"refusals": [{"socket": "audio", "status": "no_such_status"}]},
    ],
)
def test_a_bad_faults_table_is_named(faults: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="faults"):
        scenario_from_mapping({"product": "meeting", "faults": faults})


def test_refusals_count_per_socket() -> None:
    book = RefusalBook(
        Faults(
            refusals=(
                HandshakeRefusal("audio", Status.INTERNAL_EXCEPTION, 2),
                HandshakeRefusal("transcript", Status.TRANSCRIPT_NOT_SUPPORTED, 0),
            )
        )
    )
    assert [book.next_refusal("audio") for _ in range(3)] == [
        Status.INTERNAL_EXCEPTION,
        Status.INTERNAL_EXCEPTION,
        None,
    ]
    assert all(book.next_refusal("transcript") for _ in range(10))
    assert book.next_refusal("signaling") is None


def test_internal_exception_has_a_code_in_both_tables() -> None:
    assert DOC_2026.code(Status.INTERNAL_EXCEPTION) == (45, "internal exception")
    assert LEGACY_2025.code(Status.INTERNAL_EXCEPTION)[0] == 1
