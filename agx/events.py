"""The one typed event stream of a plan's life (below planning, execution and the workspace).

Planner and executor emit these; the headless printer, the session log and the shell all
consume the same objects. Every event is a frozen dataclass with `plan_id`; `to_record()`
gives the JSON-able form written to the session log.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class PlanEvent:
    plan_id: str
    ts: float = field(default_factory=time.time, kw_only=True)

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_record(self) -> dict[str, Any]:
        return {"event": self.kind, **asdict(self)}


@dataclass(frozen=True)
class PlanningStarted(PlanEvent):
    request: str


@dataclass(frozen=True)
class TaskAdded(PlanEvent):
    """A task's JSON object finished streaming (before the whole plan is done)."""

    task: dict[str, Any]


@dataclass(frozen=True)
class Planned(PlanEvent):
    """The plan is complete and validated (or invalid, with `errors`)."""

    plan: dict[str, Any]
    errors: list[str] = field(default_factory=list)
    repair_rounds: int = 0
    critical_path: int = 0
    width: int = 0


@dataclass(frozen=True)
class Approved(PlanEvent):
    task_ids: tuple[str, ...]


@dataclass(frozen=True)
class TaskStarted(PlanEvent):
    task_id: str


@dataclass(frozen=True)
class TaskOutput(PlanEvent):
    task_id: str
    text: str
    stream: str = "stdout"


@dataclass(frozen=True)
class TaskFinished(PlanEvent):
    task_id: str
    seconds: float
    output: str = ""
    commit: str | None = None


@dataclass(frozen=True)
class TaskFailed(PlanEvent):
    task_id: str
    seconds: float
    error: str


@dataclass(frozen=True)
class TaskSkipped(PlanEvent):
    task_id: str
    reason: str


@dataclass(frozen=True)
class TaskCancelled(PlanEvent):
    task_id: str
    seconds: float = 0.0


@dataclass(frozen=True)
class RunFinished(PlanEvent):
    ok: bool
    wall_s: float
    task_s: float


@dataclass(frozen=True)
class TaskProcessStarted(PlanEvent):
    """A task started a process group (recorded so a later start can kill it after a crash)."""

    task_id: str
    pgid: int
    started: float | None = None  # the leader's start time: proves a later pgid is still this group


@dataclass(frozen=True)
class TaskApprovalNeeded(PlanEvent):
    """Tasks that wait for the user's approval before they can run."""

    task_ids: tuple[str, ...]
