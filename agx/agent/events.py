"""Events of the agent loop, beside the plan events (agx/events.py) in the same stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agx.events import PlanEvent


@dataclass(frozen=True)
class RoundStarted(PlanEvent):
    round: int
    request: str  # what Delta is asked this round (round 1: the user's request)


@dataclass(frozen=True)
class RoundObserved(PlanEvent):
    """What a round achieved, as Delta sees it before the next round."""

    round: int
    ok: bool  # every task succeeded and the tests (if run) passed
    failed: list[dict[str, Any]] = field(default_factory=list)  # {"task", "tool", "error", "output"}
    tests: dict[str, Any] | None = None  # {"command", "ok", "exit_code", "output"}; None: not run
    commits: int = 0  # commits this round added to the plan branch


@dataclass(frozen=True)
class SessionFinished(PlanEvent):
    """The loop ended; `reason`: done | round_limit | stopped | gave_up | planning_failed | nothing_ran."""

    reason: str
    summary: dict[str, Any] = field(default_factory=dict)
