"""Helpers shared by the shell's tests (not a test module)."""

from __future__ import annotations

import json
import time
from pathlib import Path

DEMO_PLAN = {
    "goal": "add a greeting file",
    "tasks": [
        {"id": "t1", "title": "Read the README", "tool": "read_files", "args": {"paths": ["README.md"]}, "deps": []},
        {"id": "t2", "title": "Write the greeting", "tool": "write_file",
         "args": {"path": "hello.txt", "content": "hi\n"}, "deps": ["t1"]},
        {"id": "t3", "title": "List the files", "tool": "shell", "args": {"command": "ls"}, "deps": ["t2"]},
    ],
}


def write_plan(folder: Path, plan: dict | None = None, name: str = "plan.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(plan or DEMO_PLAN, indent=1))
    return path


async def wait_for(pilot, predicate, timeout: float = 60.0, step: float = 0.05, what: str = "condition"):
    """Let the app run until `predicate()` is true (fails the test after `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
