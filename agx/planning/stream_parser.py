"""Incremental plan parser: yields each task the moment its JSON object closes.

Fed arbitrary chunks of the model's output (token pieces split anywhere: inside strings,
escapes, keys), it runs a small state machine over each new character once — no re-parsing
of the buffer — and tracks just enough JSON structure to know when it is inside the
top-level object's "tasks" array. Only the text of the task being streamed is kept; when its
closing brace arrives that slice is parsed with `json.loads` and returned.

The root key that holds the tasks is "tasks"; "goal" is exposed once its string closes.
Strings are parsed with strict=False because llama.cpp's JSON grammar allows raw control
characters (e.g. a newline) inside strings, which strict JSON forbids.
"""

from __future__ import annotations

import json
from typing import Any

_DECODER = json.JSONDecoder(strict=False)


class PlanStreamParser:
    """Feed text with `feed(chunk)`; it returns the task dicts completed by that chunk."""

    def __init__(self) -> None:
        self.goal: str | None = None
        self.tasks: list[dict[str, Any]] = []
        self.errors: list[str] = []  # task objects that closed but did not parse (should not happen)
        self._stack: list[str] = []  # open containers: "{" or "["
        self._in_string = False
        self._escape = False
        self._root_expect_key = False  # next string at depth 1 is a key
        self._root_key: str | None = None  # key whose value is being read at depth 1
        self._root_string: list[str] | None = None  # a depth-1 string being read
        self._in_tasks = False
        self._task_chars: list[str] | None = None  # text of the task being streamed
        self.chars_seen = 0

    def feed(self, chunk: str) -> list[dict[str, Any]]:
        done: list[dict[str, Any]] = []
        for ch in chunk:
            self._step(ch, done)
        self.chars_seen += len(chunk)
        return done

    # -- the state machine ----------------------------------------------------------------
    def _step(self, ch: str, done: list[dict[str, Any]]) -> None:
        if self._task_chars is not None:
            self._task_chars.append(ch)
        if self._in_string:
            if self._root_string is not None:
                self._root_string.append(ch)
            if self._escape:
                self._escape = False
            elif ch == "\\":
                self._escape = True
            elif ch == '"':
                self._in_string = False
                if self._root_string is not None:
                    self._close_root_string("".join(self._root_string))
                    self._root_string = None
            return

        depth = len(self._stack)
        if ch == '"':
            self._in_string = True
            if depth == 1:
                self._root_string = ['"']
        elif ch == "{":
            if depth == 0:
                self._root_expect_key = True
            elif depth == 2 and self._in_tasks and self._task_chars is None:
                self._task_chars = ["{"]
            self._stack.append("{")
        elif ch == "[":
            if depth == 1 and self._root_key == "tasks":
                self._in_tasks = True
            self._stack.append("[")
        elif ch in "}]":
            if not self._stack:
                return  # stray closer outside any container: ignore
            self._stack.pop()
            depth = len(self._stack)
            if ch == "}" and depth == 2 and self._task_chars is not None:
                self._finish_task("".join(self._task_chars), done)
                self._task_chars = None
            elif ch == "]" and depth == 1 and self._in_tasks:
                self._in_tasks = False
        elif depth == 1:
            if ch == ":":
                self._root_expect_key = False
            elif ch == ",":
                self._root_expect_key = True
                self._root_key = None

    def _close_root_string(self, raw: str) -> None:
        try:
            value = _DECODER.decode(raw)
        except json.JSONDecodeError:
            return
        if self._root_expect_key:
            self._root_key = value
        elif self._root_key == "goal" and isinstance(value, str):
            self.goal = value

    def _finish_task(self, raw: str, done: list[dict[str, Any]]) -> None:
        try:
            task = _DECODER.decode(raw)
        except json.JSONDecodeError as exc:
            self.errors.append(f"task #{len(self.tasks) + 1} did not parse: {exc}")
            return
        self.tasks.append(task)
        done.append(task)


def parse_plan_text(text: str) -> tuple[Any, str | None]:
    """Parse a whole generated plan: (value, None) or (None, a one-line reason)."""
    stripped = text.strip()
    if not stripped:
        return None, "the output is empty"
    try:
        return _DECODER.decode(stripped), None
    except json.JSONDecodeError as exc:
        return None, f"the output is not valid JSON ({exc.msg} at character {exc.pos})"
