"""``recorder rtms``: what is refused before Zoom is asked, and what a refusal leaves behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.catalog import open_async_catalog
from recorder.cli import main as cli_main
from recorder.errors import ZoomApiError
from recorder.products import Product
from recorder.zoom.commands import request_rtms_change
from recorder.zoom.directory import RtmsAction

T0 = 1_767_225_600_000


class RefusingZoom:
    """Zoom answering every change with 2310 (a Protocol seam fake)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Product, str, RtmsAction]] = []

    async def change(self, product: Product, target_id: str, action: RtmsAction) -> None:
        self.calls.append((product, target_id, action))
        raise ZoomApiError(
            "Zoom API PATCH ...: HTTP 400, code 2310: Failed to perform RTMS app operation",
            status=400,
            code=2310,
        )


def _config(tmp_path: Path, zoom: str = "") -> Path:
    path = tmp_path / "recorder.toml"
    path.write_text(f'[storage]\nstate_dir = "{tmp_path}"\n{zoom}')
    return path


@pytest.mark.parametrize(
    ("env", "zoom", "problem"),
    [
        ({"ZOOM_CLIENT_ID": "id"}, "", "ZOOM_CLIENT_SECRET"),
        ({"ZOOM_CLIENT_ID": "id", "ZOOM_CLIENT_SECRET": "sekrit-123"}, "", "ZOOM_ACCOUNT_ID"),
        (
            {"ZOOM_CLIENT_ID": "id", "ZOOM_CLIENT_SECRET": "sekrit-123"},
            '[zoom]\naccount_id = "a"\napi_base_url = "http://api.example.com"\n',
            "https://",
        ),
    ],
)
def test_missing_or_unsafe_configuration_is_named_before_anything_is_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    zoom: str,
    problem: str,
) -> None:
    for name in (
        "ZOOM_CLIENT_ID",
        "ZOOM_CLIENT_SECRET",
        "ZOOM_ACCOUNT_ID",
        "CREDENTIALS_DIRECTORY",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = _config(tmp_path, zoom)
    code = cli_main(["rtms", "pause", "contact_center", "eng-1", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 3
    assert problem in err
    assert "sekrit-123" not in err
    assert not (tmp_path / "catalog.sqlite3").exists()  # refused before the catalog opened


def test_a_product_without_a_rest_api_is_refused_by_the_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["rtms", "start", "session", "s-1"])
    assert exited.value.code == 2
    assert "invalid choice: 'session'" in capsys.readouterr().err


async def test_a_refusal_is_recorded_and_an_impossible_action_writes_nothing(
    tmp_path: Path,
) -> None:
    async with await open_async_catalog(f"sqlite:///{tmp_path / 'c.db'}", now_ms=T0) as catalog:
        zoom = RefusingZoom()
        with pytest.raises(ZoomApiError) as caught:
            await request_rtms_change(
                catalog,
                zoom,
                product=Product.MEETING,
                target_id="m-1",
                action=RtmsAction.PAUSE,
                actor="ann",
                reason="pci",
                now_ms=lambda: T0,
            )
        assert caught.value.code == 2310
        [row] = await catalog.rtms_requests()
        assert (row.outcome, row.actor, row.error) == ("refused", "ann", str(caught.value))
        actions = [e.action for e in await catalog.audit_events()]
        assert actions == ["rtms.pause", "rtms.pause.refused"]
        # Phone has no pause: refused before anything is written or sent.
        with pytest.raises(ZoomApiError, match="no REST API to pause"):
            await request_rtms_change(
                catalog,
                zoom,
                product=Product.PHONE,
                target_id="call-1",
                action=RtmsAction.PAUSE,
                actor="ann",
                reason="pci",
            )
        assert len(await catalog.rtms_requests()) == 1
        assert len(zoom.calls) == 1
