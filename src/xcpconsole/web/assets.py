"""Where the browser side comes from: our own ``static/`` files and the vendored libraries.

noVNC and xterm.js are served from ``node_modules`` (installed by ``npm ci``), never
copied into this package.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError

VENDOR = {  # URL prefix under /static/vendor/ -> package directory in node_modules
    "novnc": "@novnc/novnc",
    "xterm": "@xterm/xterm",
    "xterm-addon-fit": "@xterm/addon-fit",
}
STATIC_DIR = Path(__file__).parent / "static"


def find_assets_dir(explicit: Path | None = None) -> Path:
    """The ``node_modules`` holding noVNC and xterm.js (ConfigError if absent)."""
    candidates = [explicit] if explicit else []
    if env := os.environ.get("XCPCONSOLE_ASSETS"):
        candidates.append(Path(env))
    here = Path(__file__).resolve()
    candidates += [p / "node_modules" for p in here.parents] + [Path.cwd() / "node_modules"]
    for cand in candidates:
        if cand is not None and all((cand / pkg / "package.json").is_file()
                                    for pkg in VENDOR.values()):
            return cand
    raise ConfigError("browser libraries not found: run `npm ci` in the xcpconsole source "
                      "tree, or point XCPCONSOLE_ASSETS at a node_modules directory")
