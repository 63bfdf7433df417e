"""Plan records: `.agx/plans/<plan-id>.json`, one file per plan, written atomically.

A record holds the plan, its state (planned | running | done | failed | cancelled |
interrupted | applied | discarded | undone), per-task status / times / commit, where its
worktree and branch are, and — once applied — what was applied so `agx undo` can revert it.

Writes go to a temporary file that is fsynced and renamed over the record, so a crash
(kill -9 included) leaves either the old or the new record, never half of one. A record
left in "running" by a process that no longer exists is marked "interrupted" by
`recover_stale()` on the next start; its worktree is kept for inspection.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agx.execution import events as ev
from agx.workspace.state_dir import ensure_state_dir

STATES = ("planned", "running", "done", "failed", "cancelled", "interrupted", "applied", "discarded", "undone")
FINISHED_STATES = ("done", "failed", "cancelled", "interrupted")


class PlanStoreError(Exception):
    """A plan id that does not exist, is ambiguous, or a record that cannot be read."""


def new_plan_id() -> str:
    """Sortable, short, safe as a branch and folder name (the planner's format): p250101-120000-ab12."""
    return "p" + time.strftime("%y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


@dataclass
class PlanRecord:
    plan_id: str
    goal: str = ""
    request: str = ""
    plan: dict[str, Any] = field(default_factory=dict)
    state: str = "planned"
    errors: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    pid: int | None = None
    host: str = field(default_factory=socket.gethostname)
    base_commit: str | None = None  # the snapshot of what the user saw
    head_at_start: str | None = None
    user_branch: str | None = None
    branch: str | None = None
    worktree: str | None = None
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall_s: float = 0.0
    task_s: float = 0.0
    applied: dict[str, Any] | None = None  # see git_isolation.apply_plan

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PlanRecord":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie counts as dead (the test harness may not have reaped it yet).
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().split(b")")[-1].split()[0] != b"Z"
    except OSError:
        return True


class PlanStore:
    def __init__(self, repo: Path):
        self.repo = Path(repo)
        self.dir = ensure_state_dir(self.repo) / "plans"
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, plan_id: str) -> Path:
        return self.dir / f"{plan_id}.json"

    def save(self, rec: PlanRecord) -> None:
        rec.updated_at = time.time()
        data = json.dumps(asdict(rec), indent=1, default=str).encode("utf-8")
        tmp = self.dir / f".{rec.plan_id}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path(rec.plan_id))

    def load(self, plan_id: str) -> PlanRecord:
        try:
            data = json.loads(self.path(plan_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PlanStoreError(f"no plan {plan_id!r} (see `agx plans`)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PlanStoreError(f"plan record {self.path(plan_id)} is unreadable: {exc}") from None
        return PlanRecord.from_json(data)

    def all(self) -> list[PlanRecord]:
        out = []
        for p in sorted(self.dir.glob("*.json")):
            try:
                out.append(PlanRecord.from_json(json.loads(p.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError):
                continue  # a foreign or damaged file is not a plan
        return sorted(out, key=lambda r: (r.created_at, r.plan_id))

    def resolve(self, plan_id: str | None, *, states: tuple[str, ...] = (), what: str = "plan") -> PlanRecord:
        """A plan by id or unique id prefix; without an id, the latest plan in `states`."""
        if plan_id:
            if self.path(plan_id).exists():
                return self.load(plan_id)
            matches = [r for r in self.all() if r.plan_id.startswith(plan_id)]
            if len(matches) == 1:
                return matches[0]
            if not matches:
                raise PlanStoreError(f"no plan {plan_id!r} (see `agx plans`)")
            raise PlanStoreError(f"{plan_id!r} matches {len(matches)} plans: {', '.join(r.plan_id for r in matches)}")
        candidates = [r for r in self.all() if not states or r.state in states]
        if not candidates:
            wanted = " or ".join(states) if states else "any"
            raise PlanStoreError(f"no {what}: no plan is {wanted} (see `agx plans`)")
        return candidates[-1]

    def recover_stale(self) -> list[str]:
        """Mark "running" plans whose process is gone as "interrupted"; kill their leftovers.

        Process groups that the dead run had started (recorded per task) are killed, so a
        `sleep 600` orphaned by a kill -9 does not run on. The worktree and branch stay.
        """
        recovered = []
        for rec in self.all():
            if rec.state != "running" or _pid_alive(rec.pid):
                continue
            for t in rec.tasks.values():
                pgid = t.get("pgid")
                if t.get("status") == "running" and pgid:
                    try:
                        os.killpg(int(pgid), signal.SIGKILL)
                    except (ProcessLookupError, PermissionError, ValueError):
                        pass
                if t.get("status") in ("running", "pending"):
                    t["status"] = "interrupted"
                t.pop("pgid", None)
            rec.state = "interrupted"
            rec.finished_at = rec.finished_at or time.time()
            self.save(rec)
            recovered.append(rec.plan_id)
        return recovered


class PlanRecorder:
    """An executor subscriber that keeps a plan's record current on disk."""

    def __init__(self, store: PlanStore, rec: PlanRecord):
        self.store = store
        self.rec = rec

    def _task(self, task_id: str) -> dict[str, Any]:
        return self.rec.tasks.setdefault(task_id, {"status": "pending"})

    def __call__(self, event: ev.PlanEvent) -> None:
        if isinstance(event, ev.TaskOutput):
            return  # output is kept in memory; the record stores it once the task ends
        if isinstance(event, ev.TaskAdded):
            tid = event.task.get("id")
            self._task(tid)
            tasks = self.rec.plan.setdefault("tasks", [])
            if not any(t.get("id") == tid for t in tasks):
                tasks.append(event.task)
        elif isinstance(event, ev.TaskStarted):
            self._task(event.task_id).update(status="running", started_at=event.ts)
        elif isinstance(event, ev.TaskProcessStarted):
            self._task(event.task_id)["pgid"] = event.pgid
        elif isinstance(event, ev.TaskFinished):
            t = self._task(event.task_id)
            t.update(status="succeeded", seconds=round(event.seconds, 3), commit=event.commit,
                     output_tail=event.output[-2000:])
            t.pop("pgid", None)
        elif isinstance(event, ev.TaskFailed):
            t = self._task(event.task_id)
            t.update(status="failed", seconds=round(event.seconds, 3), error=event.error)
            t.pop("pgid", None)
        elif isinstance(event, ev.TaskCancelled):
            t = self._task(event.task_id)
            t.update(status="cancelled", seconds=round(event.seconds, 3))
            t.pop("pgid", None)
        elif isinstance(event, ev.TaskSkipped):
            self._task(event.task_id).update(status="skipped", error=event.reason)
        elif isinstance(event, ev.RunFinished):
            self.rec.wall_s = round(event.wall_s, 3)
            self.rec.task_s = round(event.task_s, 3)
        else:
            return
        self.store.save(self.rec)
