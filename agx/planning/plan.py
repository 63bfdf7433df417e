"""The plan model: a goal and a DAG of tasks.

    {"goal": "...", "tasks": [{"id": "t1", "title": "...", "tool": "read_files",
                               "args": {...}, "deps": []}, ...]}

Placeholder: a string argument may contain `${ID}` (ID a task listed in `deps`); when the
task runs it is replaced by that dependency's output text. Validation (planning/validate.py)
checks that every placeholder names a declared dependency.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

TASK_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"
PLACEHOLDER_RE = re.compile(r"\$\{([A-Za-z][A-Za-z0-9_-]{0,31})\}")


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    deps: list[str] = Field(default_factory=list)


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    goal: str
    tasks: list[Task] = Field(default_factory=list)

    def task(self, task_id: str) -> Task:
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise KeyError(task_id)


def placeholders_in(value: Any) -> set[str]:
    """Task ids referenced by `${ID}` anywhere inside an argument value."""
    found: set[str] = set()
    if isinstance(value, str):
        found.update(PLACEHOLDER_RE.findall(value))
    elif isinstance(value, dict):
        for v in value.values():
            found |= placeholders_in(v)
    elif isinstance(value, list):
        for v in value:
            found |= placeholders_in(v)
    return found


def substitute_placeholders(value: Any, outputs: dict[str, str]) -> Any:
    """Replace `${ID}` with outputs[ID] throughout an argument value."""
    if isinstance(value, str):
        return PLACEHOLDER_RE.sub(lambda m: outputs.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: substitute_placeholders(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_placeholders(v, outputs) for v in value]
    return value
