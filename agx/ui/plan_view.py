"""What the shell shows about one plan, folded from the typed event stream.

`PlanView.apply(event)` is the only way state changes while a plan is planned or run, so a live
plan and one restored from the session log (`agx --resume`) are built the same way. Nothing
here decides anything: statuses come from the planner's and executor's events, levels and the
critical path from planning/validate.py's report.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from agx import events as ev

# Display statuses. "awaiting" = waiting for the user's approval; "approved"/"denied" are the
# user's decisions before the run; the rest come from the executor.
AWAITING, APPROVED, DENIED = "awaiting", "approved", "denied"
PENDING, RUNNING, DONE, FAILED, SKIPPED, CANCELLED = "pending", "running", "done", "failed", "skipped", "cancelled"
TERMINAL = {DONE, FAILED, SKIPPED, CANCELLED}

SESSION_TASK_RE = re.compile(r"r\d+-tests")  # agx/agent/session.py's test runs (before, and after each round)


def is_session_task(task_id: str) -> bool:
    return SESSION_TASK_RE.fullmatch(task_id) is not None


# Plan phases.
PLANNING, REVIEW, RUNNING_PHASE, FINISHED = "planning", "review", "running", "finished"
APPLIED, DISCARDED, REJECTED, UNDONE = "applied", "discarded", "rejected", "undone"


@dataclass
class TaskView:
    task: dict[str, Any]
    status: str = AWAITING
    started_mono: float | None = None
    seconds: float | None = None
    commit: str | None = None
    error: str | None = None
    output_chars: int = 0

    @property
    def id(self) -> str:
        return str(self.task.get("id", "?"))

    def elapsed(self, now: float | None = None) -> float | None:
        if self.seconds is not None:
            return self.seconds
        if self.started_mono is not None:
            return (now or time.monotonic()) - self.started_mono
        return None


@dataclass
class PlanView:
    plan_id: str
    request: str = ""
    goal: str = ""
    phase: str = PLANNING
    tasks: dict[str, TaskView] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    levels: list[list[str]] = field(default_factory=list)
    critical: list[str] = field(default_factory=list)
    ok: bool | None = None  # the run's outcome once finished
    wall_s: float | None = None
    paused: bool = False
    applied_commit: str | None = None

    # -- building ---------------------------------------------------------------------------
    def set_plan(self, plan: dict[str, Any], errors: list[str] | None = None,
                 levels: list[list[str]] | None = None) -> None:
        """Replace the task list with a complete plan, keeping known statuses by id."""
        self.goal = str(plan.get("goal", self.goal) or "")
        old = self.tasks
        self.tasks = {}
        for raw in plan.get("tasks", []) or []:
            if not isinstance(raw, dict):
                continue
            tid = str(raw.get("id", f"#{len(self.tasks) + 1}"))
            view = old.get(tid) or TaskView(task=raw)
            view.task = raw
            self.tasks[tid] = view
        self.errors = list(errors or [])
        self.levels = levels if levels is not None else self._levels_from_deps()
        self.critical = self._critical_path()

    def plan_dict(self) -> dict[str, Any]:
        """The plan as Delta (or the file) wrote it: the session's own test runs are shown, not planned."""
        return {"goal": self.goal, "tasks": [dict(t.task) for tid, t in self.tasks.items() if not is_session_task(tid)]}

    def _levels_from_deps(self) -> list[list[str]]:
        """Topological levels; tasks in a cycle or with unknown deps go in a last level."""
        remaining = dict(self.tasks)
        placed: set[str] = set()
        levels: list[list[str]] = []
        while remaining:
            level = [tid for tid, tv in remaining.items()
                     if all(d in placed or d not in self.tasks for d in tv.task.get("deps", []) or [])]
            if not level:
                levels.append(list(remaining))
                break
            levels.append(level)
            placed.update(level)
            for tid in level:
                remaining.pop(tid)
        return levels

    def _critical_path(self) -> list[str]:
        """Ids on the longest dependency chain (by task count), in run order."""
        best: dict[str, tuple[int, str | None]] = {}
        for level in self.levels:
            for tid in level:
                deps = [d for d in self.tasks[tid].task.get("deps", []) or [] if d in best]
                if deps:
                    prev = max(deps, key=lambda d: best[d][0])
                    best[tid] = (best[prev][0] + 1, prev)
                else:
                    best[tid] = (1, None)
        if not best:
            return []
        tid: str | None = max(best, key=lambda k: best[k][0])
        chain = []
        while tid is not None:
            chain.append(tid)
            tid = best[tid][1]
        return list(reversed(chain))

    # -- events -----------------------------------------------------------------------------
    def apply(self, event: ev.PlanEvent) -> set[str] | None:
        """Fold one event in. Returns the task ids whose display changed, or None when the
        structure changed (tasks added/replaced) and the whole view must be rebuilt."""
        if isinstance(event, ev.PlanningStarted):
            self.request = event.request
            self.phase = PLANNING
            return None
        if isinstance(event, ev.TaskAdded):
            tid = str(event.task.get("id", f"#{len(self.tasks) + 1}"))
            if tid not in self.tasks:
                self.tasks[tid] = TaskView(task=dict(event.task))
                self.levels = self._levels_from_deps()
                self.critical = self._critical_path()
            return None
        if isinstance(event, ev.Planned):
            self.set_plan(event.plan, event.errors)
            self.phase = REVIEW
            return None
        if isinstance(event, ev.Approved):
            for tid in event.task_ids:
                if tid in self.tasks:
                    self.tasks[tid].status = PENDING
            self.phase = RUNNING_PHASE
            return set(event.task_ids)
        tid = getattr(event, "task_id", None)
        tv = self.tasks.get(tid) if tid is not None else None
        if isinstance(event, ev.TaskStarted) and tv:
            tv.status, tv.started_mono, tv.seconds = RUNNING, time.monotonic(), None
        elif isinstance(event, ev.TaskOutput) and tv:
            tv.output_chars += len(event.text)
        elif isinstance(event, ev.TaskFinished) and tv:
            tv.status, tv.seconds, tv.commit = DONE, event.seconds, event.commit
        elif isinstance(event, ev.TaskFailed) and tv:
            tv.status, tv.seconds, tv.error = FAILED, event.seconds, event.error
        elif isinstance(event, ev.TaskSkipped) and tv:
            tv.status, tv.error = SKIPPED, event.reason
        elif isinstance(event, ev.TaskCancelled) and tv:
            tv.status, tv.seconds = CANCELLED, event.seconds
        elif isinstance(event, ev.RunFinished):
            self.phase, self.ok, self.wall_s = FINISHED, event.ok, event.wall_s
            # Anything the executor never reached (e.g. denied before the run) stays as decided.
            return set(self.tasks)
        else:
            return set()
        return {tid} if tid else set()

    # -- queries ----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for tv in self.tasks.values():
            out[tv.status] = out.get(tv.status, 0) + 1
        return out

    def approved_ids(self) -> list[str]:
        return [tid for tid, tv in self.tasks.items() if tv.status in (AWAITING, APPROVED) and not is_session_task(tid)]

    def denied_ids(self) -> list[str]:
        return [tid for tid, tv in self.tasks.items() if tv.status == DENIED]

    def dependents_of(self, task_id: str) -> list[str]:
        return [tid for tid, tv in self.tasks.items() if task_id in (tv.task.get("deps") or [])]


def view_from_record(rec) -> PlanView:
    """A PlanView for a plan record from .agx/plans (for --resume)."""
    view = PlanView(rec.plan_id, request=rec.request)
    view.set_plan(rec.plan or {}, rec.errors)
    mapping = {"succeeded": DONE, "failed": FAILED, "skipped": SKIPPED, "cancelled": CANCELLED,
               "interrupted": CANCELLED, "running": CANCELLED, "pending": PENDING}
    for tid, t in (rec.tasks or {}).items():
        tv = view.tasks.get(tid)
        if tv is None:
            continue
        tv.status = mapping.get(t.get("status", ""), tv.status)
        tv.seconds, tv.commit, tv.error = t.get("seconds"), t.get("commit"), t.get("error")
    view.phase = {"planned": REVIEW, "running": FINISHED, "done": FINISHED, "failed": FINISHED,
                  "cancelled": FINISHED, "interrupted": FINISHED, "applied": APPLIED,
                  "discarded": DISCARDED, "undone": UNDONE}.get(rec.state, FINISHED)
    if view.phase == FINISHED:
        view.ok = rec.state == "done"
        view.wall_s = rec.wall_s
    return view
