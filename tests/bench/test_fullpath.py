"""The full-path benchmark runs end to end in its smallest configuration (no timing asserted)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from recorder.bench import fullpath
from recorder.testing.tls import SelfSignedCertificate


def test_smallest_configuration_prints_every_row_side_by_side_with_ratios(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = fullpath.main(
        [
            "--codecs",
            "l16",
            "--modes",
            "floor,bare,full",
            "--engagements",
            "2",
            "--seconds",
            "3",
            "--ramp",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [line for line in out.splitlines() if line.startswith("L16 16k mono")]
    assert [row.split("K=")[0].strip() for row in rows] == [
        "L16 16k mono floor: trio receive_some",
        "L16 16k mono bare trio-websocket recv",
        "L16 16k mono full path, one task",
    ], out
    for row in rows:
        assert "ERROR" not in row, row
        assert "µs/msg" in row, row
    # The full path recorded every frame the simulator sent.
    assert "lost +0 " in rows[2], rows[2]
    # The comparison: every row as µs/msg and as ratios to bare and to the floor.
    table = out.split("== L16 16k mono, K=2, this run:", 1)[1].splitlines()[1:4]
    assert len(table) == 3, out
    bare = next(line for line in table if "bare trio-websocket" in line)
    assert re.search(r"\s1\.00x\s", bare), bare
    assert all(re.search(r"\d+\.\d+\s+\d+\.\d\dx\s+\d+\.\d\dx", line) for line in table), table
    assert "scaling: not measured" in out


@pytest.mark.parametrize(("output", "rate"), [("service", 8000), ("voice", 16000)])
def test_g711_is_written_at_the_rate_the_chosen_output_records(
    output: str, rate: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """``service`` measures what `recorder serve` records with the shipped ``[capture]``
    ("source": G.711 stays at 8 kHz); ``voice`` doubles it to 16 kHz."""
    code = fullpath.main(
        [
            *("--codecs", "g711", "--modes", "full", "--engagements", "1"),
            *("--seconds", "3", "--ramp", "0", "--output", output),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"output ({output}): " in out, out
    row = next(line for line in out.splitlines() if line.startswith("G.711 8k"))
    assert "lost +0 " in row, row
    assert f" written at {rate} Hz " in row, row


def test_tls_mode_runs_every_row_over_wss_and_loses_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = fullpath.main(
        [
            "--tls",
            "--codecs",
            "l16",
            "--modes",
            "floor,bare,before,full,full-trio-tls",
            "--engagements",
            "2",
            "--seconds",
            "2",
            "--ramp",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "loopback TLS WebSockets, wss://" in out, out
    rows = [line for line in out.splitlines() if line.startswith("L16 16k mono")]
    assert [row.split("K=")[0].strip() for row in rows] == [
        "L16 16k mono floor: trio receive_some",
        "L16 16k mono bare trio-websocket recv",
        "L16 16k mono full path, reader task",
        "L16 16k mono full path, one task",
        "L16 16k mono one task, trio default TLS",
    ], out
    for row in rows:
        assert "ERROR" not in row, row
        # Each row names the TLS version and cipher its measured side negotiated.
        assert re.search(r"\| TLSv1\.[23] \S+$", row), row
    for row in rows[2:]:
        # The full paths recorded every frame the simulator sent.
        assert "lost +0 " in row, row
    # Receive only: bare received every message sent (the floor counts bytes, not messages).
    sent = re.search(r"sent (\d+) rec 0 msgs (\d+)", rows[1])
    assert sent is not None, rows[1]
    assert int(sent.group(1)) > 0
    assert sent.group(1) == sent.group(2), rows[1]


def test_tls_only_rows_are_refused_without_tls() -> None:
    with pytest.raises(SystemExit):
        fullpath.main(["--modes", "full-trio-tls", "--engagements", "1", "--seconds", "3"])


def test_a_measured_side_that_does_not_trust_the_certificate_fails_at_once_naming_why(
    tmp_path: Path,
) -> None:
    served = SelfSignedCertificate.create(tmp_path / "served")
    other = SelfSignedCertificate.create(tmp_path / "other")
    spec = fullpath.RunSpec(
        codec="l16",
        engagements=1,
        seconds=2,
        ramp_s=0,
        pace_batch_frames=1,
        client_cpu=0,
        server_cpu=1,
        client_only=False,
        per_speaker=False,
        tls_cert_file=str(served.cert_file),
        tls_key_file=str(served.key_file),
        tls_ca_file=str(other.cert_file),
    )
    # Well under the run's own timeout (2 s + 60 s): the failure is immediate, not a hang.
    out = fullpath.run_config(spec, timeout_s=30)
    assert "error" in out, out
    assert "TLS handshake with the simulator" in out["error"], out
    assert "certificate verify failed" in out["error"], out
