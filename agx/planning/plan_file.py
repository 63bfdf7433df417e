"""Reading a hand-written plan file (`agx run --plan`, the shell's /run-plan): one reader, so
both front ends refuse the same files with the same words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class PlanFileError(Exception):
    """The file cannot be read as a plan; the message names the file and the problem."""


def read_plan_json(path: Path | str) -> Any:
    """The file's JSON (validation is the caller's: the CLI refuses, the shell shows errors)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanFileError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise PlanFileError(f"{path}: invalid JSON: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanFileError(f"{path}: cannot read: {exc}") from None
