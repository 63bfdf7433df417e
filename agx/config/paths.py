"""Where config files live. Standard library only: the shell's start reads these paths before
it may import pydantic (see agx/ui/instant_frame.py)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")


def user_config_path() -> Path:
    if os.environ.get("AGX_CONFIG"):
        return Path(os.environ["AGX_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "agx" / "agx.toml"
