"""``recorder web user add|list|disable`` in process (the CLI's own parser and dispatch), and
the ``[web]`` configuration section's checks."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest

from recorder.cli import main
from recorder.config import load_config
from recorder.errors import ConfigError


def config_file(tmp_path: Path, web: str = "") -> Path:
    path = tmp_path / "recorder.toml"
    path.write_text(f'[storage]\nstate_dir = "{tmp_path / "state"}"\n{web}')
    return path


def run(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    stdin: str = "",
) -> tuple[int, str]:  # fmt: skip
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(args)
    out = capsys.readouterr()
    return code, out.out + out.err


def test_user_add_list_disable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = str(config_file(tmp_path))
    password = "a long enough password\n"
    code, out = run(
        ["web", "user", "add", "bob", "--role", "auditor", "--config", cfg], capsys, monkeypatch,
        stdin=password,
    )  # fmt: skip
    assert (code, out.strip()) == (0, "added bob (auditor)")
    code, out = run(
        ["web", "user", "add", "bob", "--role", "officer", "--config", cfg], capsys, monkeypatch,
        stdin=password,
    )  # fmt: skip
    assert code != 0
    assert "exists already" in out
    code, out = run(
        ["web", "user", "add", "eve", "--role", "officer", "--config", cfg], capsys, monkeypatch,
        stdin="short\n",
    )  # fmt: skip
    assert code == 3
    assert "at least 12 characters" in out
    assert "short" not in out.replace("at least", "")
    code, out = run(
        ["web", "user", "add", "carol", "--role", "supervisor", "--oidc-subject", "sub-9",
         "--config", cfg], capsys, monkeypatch,
    )  # fmt: skip
    assert code == 0
    code, out = run(["web", "user", "list", "--config", cfg], capsys, monkeypatch)
    lines = [line.split() for line in out.strip().splitlines()]
    assert lines == [
        ["bob", "auditor", "local", "active"],
        ["carol", "supervisor", "oidc", "active"],
    ]
    code, out = run(
        ["web", "user", "disable", "bob", "--reason", "left", "--config", cfg], capsys, monkeypatch
    )
    assert code == 0
    code, out = run(["web", "user", "list", "--config", cfg], capsys, monkeypatch)
    assert out.splitlines()[0].split() == ["bob", "auditor", "local", "disabled"]
    code, out = run(["web", "user", "disable", "nobody", "--config", cfg], capsys, monkeypatch)
    assert code != 0
    assert "no web account 'nobody'" in out
    # The password is nowhere in the catalog, only its argon2id hash.
    db = tmp_path / "state" / "catalog.sqlite3"
    raw = db.read_bytes() + (
        db.with_name(db.name + "-wal").read_bytes()
        if db.with_name(db.name + "-wal").exists()
        else b""
    )
    assert b"a long enough password" not in raw
    with sqlite3.connect(db) as conn:
        [(hashed,)] = conn.execute("SELECT password_hash FROM web_accounts WHERE username='bob'")
        actions = [row[0] for row in conn.execute("SELECT action FROM audit_log")]
    assert hashed.startswith("$argon2id$")
    assert actions.count("web.account.add") == 2
    assert actions.count("web.account.disable") == 1


@pytest.mark.parametrize(
    ("web", "message"),
    [
        ('bind = "nonsense"', "is not host:port"),
        ('bind = "127.0.0.1:99999"', "is not host:port"),
        ("session_minutes = 2", "out of range"),
        ('oidc_issuer = "http://idp.example.com"', "must be https://"),
        ('oidc_issuer = "https://idp.example.com"', "go together"),
        ('tls_cert = "a.pem"', "go together"),
        ('public_url = "ftp://x"', "not an http(s) URL"),
        ('bindd = "127.0.0.1:1"', "did you mean 'bind'"),
    ],
)
def test_web_section_errors_name_the_key(tmp_path: Path, web: str, message: str) -> None:
    with pytest.raises(ConfigError, match="web") as caught:
        load_config(config_file(tmp_path, f"[web]\n{web}\n"), {})
    assert message in str(caught.value)


def test_web_section_defaults_and_values(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path), {})
    assert config.web.bind == "127.0.0.1:8090"
    assert config.web.host_port == ("127.0.0.1", 8090)
    config = load_config(
        config_file(
            tmp_path,
            '[web]\nbind = "[::1]:9000"\noidc_issuer = "http://127.0.0.1:5556"\n'
            'oidc_client_id = "c"\npublic_url = "https://x.example/"\n',
        ),
        {"RECORDER_WEB_OIDC_CLIENT_SECRET": "s3cret"},
    )
    assert config.web.host_port == ("::1", 9000)
    assert config.web.public_url == "https://x.example"
    assert config.secrets.web_oidc_client_secret is not None
    assert "s3cret" not in repr(config)


def test_web_refuses_plain_http_off_loopback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = str(config_file(tmp_path, '[web]\nbind = "0.0.0.0:8090"\n'))
    code, out = run(["web", "--config", cfg], capsys, monkeypatch)
    assert code == 3
    assert "plain HTTP is only allowed on a loopback address" in out


def test_recorder_web_logs_mask_every_configured_secret() -> None:
    from recorder.config import Secret, load_config
    from recorder.web.commands import secret_values

    config = load_config(
        None, {"RECORDER_WEB_OIDC_CLIENT_SECRET": "oidc-s3cret", "ZOOM_SECRET_TOKEN": "tok-1"}
    )
    assert {s.reveal() for s in secret_values(config.secrets)} == {"oidc-s3cret", "tok-1"}
    assert all(isinstance(s, Secret) for s in secret_values(config.secrets))
