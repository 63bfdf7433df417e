"""Typed messages that carry work results from threads to the UI, and the frame coalescer.

Threads never touch widgets. Low-rate results (a model finished loading, a plan event, a
classification) are posted as the messages below; `Message.post_message` is thread-safe.

High-rate text (tokens from Echo, a task's output lines) goes through a `FrameCoalescer`:
the producing thread appends to a per-key buffer and posts one `TextPending` message only when
the buffer goes from empty to non-empty. `TextPending.can_replace` lets a burst of them collapse
into one, and the app drains every buffer at most `ui.max_fps` times a second, so the event
loop does O(frames) work however fast a model or a subprocess produces text.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Hashable

from textual.message import Message


class FrameCoalescer:
    """Thread-safe buffers of text keyed by stream (e.g. ("chat", 3) or ("task", "t2"))."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[Hashable, list[str]] = {}

    def push(self, key: Hashable, text: str) -> bool:
        """Buffer `text`; True when the caller should wake the UI (nothing was pending)."""
        if not text:
            return False
        with self._lock:
            was_empty = not self._pending
            self._pending.setdefault(key, []).append(text)
        return was_empty

    def drain(self) -> dict[Hashable, str]:
        """Everything buffered since the last drain, joined per key, in arrival order of keys."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return {key: "".join(parts) for key, parts in pending.items()}

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._pending)


@dataclass
class TextPending(Message):
    """Some coalescer has text to show. Any number of these collapse into one."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TextPending)


@dataclass
class EngineLoaded(Message):
    role: str
    ok: bool
    seconds: float = 0.0
    error: str | None = None
    fatal: bool = False  # the llama.cpp build cannot run here: the shell exits 1 with the error


@dataclass
class ChatFinished(Message):
    """An Echo (or Delta) answer ended: stats for the status bar, or an error for the chat."""

    stream_id: int
    role: str
    tokens_per_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    error: str | None = None


@dataclass
class RouteDecided(Message):
    """Echo's constrained yes/no: does this message ask to change the repository?"""

    text: str
    change_repo: bool
    raw: str = ""
    error: str | None = None


@dataclass
class PlanEventArrived(Message):
    """One event of agx.events (planner or executor), except coalesced output."""

    event: Any


@dataclass
class PlanOpDone(Message):
    """A plan's apply / undo / discard (run in a thread) finished; each outcome has its own type."""

    plan_id: str
    detail: str  # the line for the user


class PlanApplied(PlanOpDone):
    pass


class PlanUndone(PlanOpDone):
    pass


class PlanDiscarded(PlanOpDone):
    pass


class PlanOpFailed(PlanOpDone):
    pass


@dataclass
class GitChanged(Message):
    """Files changed under the repository; refresh the git pane. Bursts collapse."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GitChanged)
