"""Where the web console's browser libraries are: installed from the npm registry by
``ops/dev setup`` (``npm ci`` against ``package-lock.json`` at the repository root), served to
the browser straight from ``node_modules``; nothing is copied into the repository.

The web app mounts ``node_modules_dir()`` at ``VENDOR_URL``; pages load ``WAVESURFER_URL`` and
``REGIONS_URL`` (both self-contained ES modules: no inline script, no eval, fine under a strict
CSP).
``RECORDER_FRONTEND_DIR`` overrides the directory (an installed package has no repository).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Final

from recorder.errors import ConfigError

#: URL path the web app serves ``node_modules`` under.
VENDOR_URL: Final = "/vendor"
#: Files the console's pages load, relative to ``node_modules_dir()``.
WAVESURFER: Final = "wavesurfer.js/dist/wavesurfer.esm.js"
REGIONS: Final = "wavesurfer.js/dist/plugins/regions.esm.js"
WAVESURFER_URL: Final = f"{VENDOR_URL}/{WAVESURFER}"
REGIONS_URL: Final = f"{VENDOR_URL}/{REGIONS}"
#: The major version the pages are written against.
WAVESURFER_MAJOR: Final = 8
ENV_DIR: Final = "RECORDER_FRONTEND_DIR"

_REPO_ROOT: Final = Path(__file__).resolve().parent.parent


def node_modules_dir(root: Path | None = None) -> Path:
    """``node_modules`` with wavesurfer.js installed in it, checked to be usable.

    Raises:
        ConfigError: not installed (run ``ops/dev setup``), or another major version.
    """
    if root is None:
        override = os.environ.get(ENV_DIR)
        root = Path(override) if override else _REPO_ROOT / "node_modules"
    package = root / "wavesurfer.js"
    try:
        meta = json.loads((package / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"the web console's waveform library is not installed under {root} "
            "(run `ops/dev setup`, which runs `npm ci`)"
        ) from exc
    version = str(meta.get("version", ""))
    if version.split(".")[0] != str(WAVESURFER_MAJOR):
        raise ConfigError(
            f"{package} is wavesurfer.js {version or '?'}, the console needs {WAVESURFER_MAJOR}.x"
        )
    for name in (WAVESURFER, REGIONS):
        if not (root / name).is_file():
            raise ConfigError(f"{root / name} is missing: reinstall with `npm ci`")
    return root
