"""Where config files live. Standard library only: the shell's start reads these paths before
it may import pydantic (see agx/ui/instant_frame.py)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")


def xdg_agx_dir(variable: str, fallback: str, environ=None) -> Path:
    """agx's folder under an XDG base directory: $variable/agx, or ~/fallback/agx when the
    variable is unset or empty (XDG_CONFIG_HOME/.config, XDG_DATA_HOME/.local/share,
    XDG_CACHE_HOME/.cache)."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(variable) or os.path.join(os.path.expanduser("~"), fallback)) / "agx"


def user_config_path() -> Path:
    if os.environ.get("AGX_CONFIG"):
        return Path(os.environ["AGX_CONFIG"]).expanduser()
    return xdg_agx_dir("XDG_CONFIG_HOME", ".config") / "agx.toml"
