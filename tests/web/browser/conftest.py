"""Browser tests: Debian's Chromium driven by Playwright (no browser download).

Chromium comes from ``ops/dev``'s ``system_deps`` (root installs it when missing, as CI does),
wavesurfer.js from ``ops/dev setup`` (``npm ci``). On a developer machine without either the
browser tests skip and say why; with ``RECORDER_REQUIRE_BROWSER=1`` (``.ci/run``) they fail.
Screenshots go to ``test-artifacts/browser/`` at the repository root (git-ignored); the path is
printed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from recorder.errors import ConfigError
from recorder.frontend import node_modules_dir

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "test-artifacts" / "browser"


def _missing() -> str | None:
    if shutil.which("chromium") is None:
        return "Debian's chromium is not installed (ops/dev test installs it as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (dev group: ops/dev setup)"
    try:
        node_modules_dir()
    except ConfigError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def chromium() -> Path:
    problem = _missing()
    if problem is not None:
        if os.environ.get("RECORDER_REQUIRE_BROWSER") == "1":
            pytest.fail(problem + " (RECORDER_REQUIRE_BROWSER=1: browser tests are mandatory)")
        pytest.skip(problem)
    found = shutil.which("chromium")
    assert found is not None
    return Path(found)


@pytest.fixture(scope="session")
def artifacts(request: pytest.FixtureRequest) -> Iterator[Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield ARTIFACTS
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nbrowser test screenshots: {ARTIFACTS}")
