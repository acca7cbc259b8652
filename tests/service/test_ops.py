"""ops/: the systemd units verify, the hardening holds for our stack, the IAM policies parse."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

OPS = Path(__file__).resolve().parents[2] / "ops"
UNITS = {
    "recorder.service": "rtms-recorder.service",
    "recorder-retention.service": "rtms-recorder-retention.service",
    "recorder-retention.timer": "rtms-recorder-retention.timer",
    "recorder-audit-seal.service": "rtms-recorder-audit-seal.service",
    "recorder-audit-seal.timer": "rtms-recorder-audit-seal.timer",
    "recorder-verify.service": "rtms-recorder-verify.service",
    "recorder-verify.timer": "rtms-recorder-verify.timer",
    "recorder-web.service": "rtms-recorder-web.service",
}
EXEC_PATH = "/opt/rtms-recorder/bin/recorder"


def unit_settings(name: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for raw in (OPS / name).read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def install_copies(tmp_path: Path, *, extra_line: str | None = None) -> list[Path]:
    """Copy the units under their installed names, ExecStart pointing at a real executable."""
    fake = tmp_path / "bin" / "recorder"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    paths = []
    for source, installed in UNITS.items():
        text = (OPS / source).read_text().replace(EXEC_PATH, str(fake))
        if extra_line and installed == "rtms-recorder.service":
            text = text.replace("[Service]\n", f"[Service]\n{extra_line}\n")
        path = tmp_path / installed
        path.write_text(text)
        paths.append(path)
    return paths


def systemd_analyze_verify(paths: list[Path]) -> tuple[int, list[str]]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd) - units unchecked")
    result = subprocess.run(
        [tool, "verify", "--man=no", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Only complaints about our files count; the host's own units may have their own warnings.
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if any(path.name in line for path in paths)
    ]
    return result.returncode, ours


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    returncode, complaints = systemd_analyze_verify(install_copies(tmp_path))
    assert complaints == []
    assert returncode == 0


def test_systemd_analyze_verify_would_catch_a_typo(tmp_path: Path) -> None:
    # The check above is only worth something if a bad line makes it fail.
    _returncode, complaints = systemd_analyze_verify(
        install_copies(tmp_path, extra_line="ProtectSytem=strict")
    )
    assert any("ProtectSytem" in line for line in complaints)


def test_recorder_unit_has_the_hardening_compliance_asks_for() -> None:
    unit = unit_settings("recorder.service")
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "DynamicUser": "yes",
        "StateDirectory": "rtms-recorder",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallFilter": "@system-service",
        # Plaintext audio and data keys must reach neither a core dump nor swap.
        "LimitCORE": "0",
        "MemorySwapMax": "0",
        "ExecStart": f"{EXEC_PATH} serve --config /etc/rtms-recorder/recorder.toml",
    }
    for key, value in expected.items():
        assert unit.get(key) == [value], key
    assert float(unit["WatchdogSec"][0]) > 0
    # Bounded malloc arenas (as serve --workers gives its workers): memory per engagement.
    assert "MALLOC_ARENA_MAX=2" in unit["Environment"]
    # One BLAS thread (as serve --workers gives its workers): numpy's OpenBLAS would start one
    # per core for the resamplers' small matrix products.
    assert {"OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1"} <= set(unit["Environment"])
    credentials = {line.split(":")[0] for line in unit["LoadCredential"]}
    assert credentials == {"ZOOM_CLIENT_ID", "ZOOM_CLIENT_SECRET", "ZOOM_SECRET_TOKEN"}


def test_retention_units() -> None:
    service = unit_settings("recorder-retention.service")
    assert service["ExecStart"] == [
        f"{EXEC_PATH} retention run --config /etc/rtms-recorder/recorder.toml"
    ]
    assert service["Type"] == ["oneshot"]
    # Same dynamic user as the recorder, so the shared state directory keeps one owner.
    assert service["User"] == unit_settings("recorder.service")["User"]
    timer = unit_settings("recorder-retention.timer")
    assert timer["Persistent"] == ["true"]
    assert timer["OnCalendar"]
    seal = unit_settings("recorder-audit-seal.service")
    assert seal["ExecStart"] == [
        f"{EXEC_PATH} hold sync --config /etc/rtms-recorder/recorder.toml",
        f"{EXEC_PATH} audit seal --config /etc/rtms-recorder/recorder.toml",
    ]
    assert seal["User"] == service["User"]
    assert unit_settings("recorder-audit-seal.timer")["Persistent"] == ["true"]


def test_scheduled_commands_are_real_recorder_commands() -> None:
    """Every ExecStart and cron line parses as a recorder command (no stale names)."""
    from recorder.cli import build_parser

    commands = [
        command
        for name in ("recorder-retention.service", "recorder-audit-seal.service")
        for command in unit_settings(name)["ExecStart"]
    ]
    for line in (OPS / "recorder-retention.cron").read_text().splitlines():
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]:
            fields = line.split()
            assert fields[5] == "rtms-recorder"  # the same user as the units
            commands.extend(part.strip() for part in " ".join(fields[6:]).split("&&"))
    assert len(commands) == 6
    for command in commands:
        argv = command.split()
        assert argv[0] == EXEC_PATH
        args = build_parser().parse_args(argv[1:])
        assert args.command in ("retention", "audit", "hold")


def test_verify_units_schedule_a_json_verify_of_recent_recordings() -> None:
    from recorder.cli import build_parser

    service = unit_settings("recorder-verify.service")
    [command] = service["ExecStart"]
    args = build_parser().parse_args(command.split()[1:])
    assert (args.command, args.since, args.json) == ("verify", "2d", True)
    assert service["Type"] == ["oneshot"]
    assert service["User"] == unit_settings("recorder.service")["User"]
    timer = unit_settings("recorder-verify.timer")
    assert timer["Persistent"] == ["true"]
    assert timer["OnCalendar"] == ["daily"]


_MDWE_PROBE = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit(77)
import numpy as np, av, trio, ssl, sqlite3, boto3, psycopg, hypercorn.trio, prometheus_client
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
AESGCM(AESGCM.generate_key(256)).encrypt(b"\\0" * 12, b"x" * 4096, None)
enc = av.CodecContext.create("libopus", "w")
enc.sample_rate, enc.layout, enc.format = 48000, "mono", "s16"
enc.open()
dec = av.CodecContext.create("libopus", "r")
dec.sample_rate, dec.layout = 48000, "mono"
frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), dtype=np.int16), format="s16", layout="mono")
frame.sample_rate, frame.pts = 48000, 0
decoded = [f for p in enc.encode(frame) + enc.encode(None) for f in dec.decode(p)]
assert decoded, "no audio decoded"
ssl.create_default_context()
sqlite3.connect(":memory:").execute("select 1")
trio.run(trio.sleep, 0)
print("ok")
"""


def test_python_stack_runs_with_memory_deny_write_execute() -> None:
    """MemoryDenyWriteExecute=yes stays in the unit only because this passes.

    The kernel's PR_SET_MDWE (Linux 6.3+) refuses writable+executable memory the way systemd's
    MemoryDenyWriteExecute does; the probe then imports and exercises the whole stack.
    """
    result = subprocess.run(
        [sys.executable, "-c", _MDWE_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode == 77:
        pytest.skip("kernel has no PR_SET_MDWE (Linux < 6.3): cannot emulate the unit's setting")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize(
    "name", ["iam-policy.json", "iam-officer-policy.json", "iam-retention-policy.json"]
)
def test_iam_policies_are_valid_documents_scoped_to_one_bucket(name: str) -> None:
    policy = json.loads((OPS / name).read_text())
    assert policy["Version"] == "2012-10-17"
    for statement in policy["Statement"]:
        assert statement["Effect"] in ("Allow", "Deny")
        resources = statement["Resource"]
        for resource in [resources] if isinstance(resources, str) else resources:
            assert "*" not in resource.split(":::")[-1].split("/")[0], resource
            assert resource != "*"


def allowed_actions(name: str) -> set[str]:
    policy = json.loads((OPS / name).read_text())
    actions: set[str] = set()
    for statement in policy["Statement"]:
        if statement["Effect"] == "Allow":
            value = statement["Action"]
            actions |= {value} if isinstance(value, str) else set(value)
    return actions


def denied_actions(name: str) -> set[str]:
    policy = json.loads((OPS / name).read_text())
    return {
        action
        for statement in policy["Statement"]
        if statement["Effect"] == "Deny"
        for action in statement["Action"]
    }


def test_recorder_role_cannot_delete_and_kms_use_is_bound_to_our_context() -> None:
    allowed = allowed_actions("iam-policy.json")
    assert {
        "s3:PutObject",
        "s3:GetObject",
        "s3:GetObjectRetention",
        "s3:GetObjectLegalHold",
        "s3:PutObjectLegalHold",
        "s3:PutObjectRetention",
        "s3:ListBucket",
        "s3:AbortMultipartUpload",
        "s3:GetBucketObjectLockConfiguration",
        "s3:GetBucketVersioning",
        "kms:GenerateDataKey",
    } <= allowed
    assert not any("Delete" in action or "*" in action for action in allowed)
    # Encrypt-only: the recorder role can never unwrap a recording key (issue 10).
    assert "kms:Decrypt" not in allowed
    assert {
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:BypassGovernanceRetention",
        "kms:Decrypt",
    } <= denied_actions("iam-policy.json")
    policy = json.loads((OPS / "iam-policy.json").read_text())
    [lift] = [
        s
        for s in policy["Statement"]
        if s["Effect"] == "Deny" and s["Action"] == ["s3:PutObjectLegalHold"]
    ]
    assert lift["Condition"] == {"StringEquals": {"s3:object-lock-legal-hold": "OFF"}}
    for statement in policy["Statement"]:
        if statement["Action"] == "s3:PutObjectLegalHold":
            assert statement["Condition"]["StringEquals"]["s3:object-lock-legal-hold"] == "ON"
        if statement["Action"] in ("kms:GenerateDataKey", "kms:Decrypt"):
            condition = statement["Condition"]
            assert condition["Null"]["kms:EncryptionContext:rtms-recorder:recording-id"] == "false"


def test_officer_role_decrypts_and_manages_holds_but_never_deletes() -> None:
    allowed = allowed_actions("iam-officer-policy.json")
    assert {"kms:Decrypt", "kms:Encrypt", "s3:GetObject", "s3:PutObjectLegalHold"} <= allowed
    assert "kms:GenerateDataKey" not in allowed
    assert not any("Delete" in action or "*" in action for action in allowed)
    assert {"s3:DeleteObject", "s3:BypassGovernanceRetention", "kms:ScheduleKeyDeletion"} <= (
        denied_actions("iam-officer-policy.json")
    )


def test_retention_role_deletes_but_cannot_touch_locks_or_holds() -> None:
    allowed = allowed_actions("iam-retention-policy.json")
    assert "s3:DeleteObject" in allowed
    assert not any(action.startswith("kms:") for action in allowed)
    assert {"s3:BypassGovernanceRetention", "s3:PutObjectLegalHold", "s3:PutObjectRetention"} <= (
        denied_actions("iam-retention-policy.json")
    )
