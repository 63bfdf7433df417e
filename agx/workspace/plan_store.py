"""Plan records: `.agx/plans/<plan-id>.json`, one file per plan, plus a journal while it runs.

A record holds the plan, its state (planned | running | done | failed | cancelled |
interrupted | applied | discarded | undone), per-task status / times / commit, where its
worktree and ref are, and — once applied — what was applied so `agx undo` can revert it.

`save()` writes the whole record to a temporary file that is fsynced and renamed over it, so a
crash (kill -9 included) leaves either the old or the new record, never half of one. While a
plan runs, per-task changes are *appended* to `.agx/plans/<plan-id>.journal` instead (one JSON
line each, one `write` per line, no fsync): re-serialising a 10,000-task record on every task
event made a run quadratic. A later `save()` folds the journal into the record and removes
it. A reader replays the journal on top of the record, skipping a torn last line; replaying
an entry twice changes nothing, so a crash between the rename and the journal's removal is
harmless. What a kill -9 cannot lose: a `write` is in the kernel once it returns. What a
power cut can lose: the journal's last lines (the plan is then recovered as "interrupted").

A record left in "running" by a process that no longer exists is marked "interrupted" by
`recover_stale()` on the next start: the processes its tasks left are killed (only those
proven to be the run's, see workspace/processes.py), a worktree that was never finished is
removed with its ref, and worktrees or refs that no record knows are swept away.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agx import events as ev
from agx.workspace.state_dir import ensure_state_dir

STATES = ("planned", "running", "done", "failed", "cancelled", "interrupted", "applied", "discarded", "undone")
FINISHED_STATES = ("done", "failed", "cancelled", "interrupted")
JOURNAL_SUFFIX = ".journal"


class PlanStoreError(Exception):
    """A plan id that does not exist, is ambiguous, or a record that cannot be read."""


def new_plan_id() -> str:
    """Sortable, short, safe as a ref and folder name (the planner's format): p250101-120000-ab12."""
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
    pid_start: float | None = None  # the running process's start time: a reused pid is not it
    host: str = field(default_factory=socket.gethostname)
    base_commit: str | None = None  # the snapshot of what the user saw
    head_at_start: str | None = None
    user_branch: str | None = None
    branch: str | None = None  # the plan's ref: refs/agx/<id> (older records: agx/<id>, a branch)
    worktree: str | None = None
    # False from the moment the worktree is about to be created until it is complete: a record
    # found "running" and not ready after a crash has a half-made worktree to remove.
    worktree_ready: bool = True
    run_token: str | None = None  # carried by every task process (workspace/processes.py)
    excluded: list[str] = field(default_factory=list)  # untracked secrets kept out of the snapshot
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall_s: float = 0.0
    task_s: float = 0.0
    applied: dict[str, Any] | None = None  # see git_isolation.apply_plan

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PlanRecord":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def _pid_alive(pid: int | None, started: float | None = None) -> bool:
    """Is the process that wrote a record still running? With `started`, a process that merely
    reuses its id is not it."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError, TypeError):
        return False
    # A zombie counts as dead (the test harness may not have reaped it yet).
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            if fh.read().split(b")")[-1].split()[0] == b"Z":
                return False
    except OSError:
        pass
    if started is None:
        return True
    from agx.workspace.processes import is_running

    return is_running(pid, started)


# One lock and one open journal descriptor per plan for the whole process: the CLI and the
# shell make PlanStore objects freely, and a save() must not race an append in another thread.
_LOCK = threading.Lock()
_JOURNALS: dict[Path, int] = {}


def _close_journal(path: Path) -> None:
    fd = _JOURNALS.pop(path, None)
    if fd is not None:
        os.close(fd)


def _replay(rec: PlanRecord, entries: list[dict[str, Any]]) -> None:
    """Apply journal entries to a record (idempotent: an entry applied twice changes nothing)."""
    tasks = rec.plan.setdefault("tasks", []) if any("plan_task" in e for e in entries) else None
    ids = {t.get("id") for t in tasks} if tasks is not None else set()
    for entry in entries:
        tid = entry.get("task")
        if tid is not None:
            t = rec.tasks.setdefault(tid, {"status": "pending"})
            t.update(entry.get("set") or {})
            for key in entry.get("drop") or ():
                t.pop(key, None)
        added = entry.get("plan_task")
        if isinstance(added, dict) and tasks is not None and added.get("id") not in ids:
            ids.add(added.get("id"))
            tasks.append(added)
        for key, value in (entry.get("rec") or {}).items():
            if key in PlanRecord.__dataclass_fields__:
                setattr(rec, key, value)


class PlanStore:
    def __init__(self, repo: Path):
        self.repo = Path(repo)
        self.dir = ensure_state_dir(self.repo) / "plans"
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, plan_id: str) -> Path:
        return self.dir / f"{plan_id}.json"

    def journal_path(self, plan_id: str) -> Path:
        return self.dir / f"{plan_id}{JOURNAL_SUFFIX}"

    def save(self, rec: PlanRecord) -> None:
        """Write the whole record (atomically, fsynced) and fold away its journal."""
        rec.updated_at = time.time()
        # ensure_ascii: a file name that is not UTF-8 (a lone surrogate here) stays exact.
        # No indent and no dataclasses.asdict (a deep copy): both made a 10,000-task record's
        # save take seconds (json's C encoder is only used without indent).
        fields = {name: getattr(rec, name) for name in PlanRecord.__dataclass_fields__}
        data = json.dumps(fields, default=str, separators=(",", ":")).encode("utf-8")
        tmp = self.dir / f".{rec.plan_id}.{os.getpid()}.{threading.get_ident()}.tmp"
        with _LOCK:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path(rec.plan_id))
            journal = self.journal_path(rec.plan_id)
            _close_journal(journal)
            try:
                journal.unlink()
            except FileNotFoundError:
                pass

    def append(self, plan_id: str, entry: dict[str, Any]) -> None:
        """Append one change to the plan's journal: one `write` of one complete line."""
        line = (json.dumps(entry, default=str, separators=(",", ":")) + "\n").encode("utf-8")
        path = self.journal_path(plan_id)
        with _LOCK:
            fd = _JOURNALS.get(path)
            if fd is None:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                # A torn last line (a crash mid-write) must not swallow this one.
                size = os.fstat(fd).st_size
                if size and _last_byte(path, size) != b"\n":
                    os.write(fd, b"\n")
                _JOURNALS[path] = fd
            os.write(fd, line)

    def _read(self, path: Path) -> PlanRecord:
        rec = PlanRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
        journal = path.with_suffix(JOURNAL_SUFFIX)
        try:
            raw = journal.read_bytes()
        except FileNotFoundError:
            return rec
        entries = []
        for line in raw.split(b"\n"):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # a torn line from a crash
            if isinstance(entry, dict):
                entries.append(entry)
        _replay(rec, entries)
        return rec

    def load(self, plan_id: str) -> PlanRecord:
        try:
            return self._read(self.path(plan_id))
        except FileNotFoundError:
            raise PlanStoreError(f"no plan {plan_id!r} (see `agx plans`)") from None
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
            raise PlanStoreError(f"plan record {self.path(plan_id)} is unreadable: {exc}") from None

    def all(self) -> list[PlanRecord]:
        out = []
        for p in sorted(self.dir.glob("*.json")):
            try:
                out.append(self._read(p))
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
        """Mark "running" plans whose process is gone as "interrupted" and clean up after them.

        - Processes the dead run started are killed: every process carrying the run's token,
          and recorded process groups whose leader is provably the recorded one. A process
          id that now belongs to someone else is never signalled.
        - A worktree that was being created when the run died (record not "ready") is removed
          with its ref: no task ran in it. A finished worktree stays for inspection.
        - Worktrees under .agx/worktrees and refs under refs/agx that no record knows (left by
          a crash of an older agx) are removed, so `git fsck` and `git gc` stay clean.
        """
        recovered = []
        records = self.all()
        for rec in records:
            if rec.state != "running" or _pid_alive(rec.pid, rec.pid_start):
                continue
            groups = [(int(t["pgid"]), t.get("pgid_start")) for t in rec.tasks.values()
                      if t.get("pgid") and t.get("status") == "running"]
            if rec.run_token or groups:
                from agx.workspace.processes import kill_run_processes

                kill_run_processes(rec.run_token, groups)
            for t in rec.tasks.values():
                if t.get("status") in ("running", "pending"):
                    t["status"] = "interrupted"
                t.pop("pgid", None)
                t.pop("pgid_start", None)
            if rec.worktree_ready and rec.worktree and rec.branch and rec.branch.startswith("refs/agx/"):
                from agx.workspace.git_isolation import sync_plan_ref

                if (self.repo / rec.worktree).is_dir():  # a task's commit whose ref update the kill cut short
                    sync_plan_ref(self.repo / rec.worktree, rec.branch)
            if not rec.worktree_ready:
                from agx.workspace.git_isolation import remove_plan_checkout

                remove_plan_checkout(self.repo, rec.plan_id, rec.worktree, rec.branch)
                rec.errors = [*rec.errors, "interrupted while its worktree was being created (removed)"]
                rec.worktree, rec.branch, rec.worktree_ready = None, None, True
            rec.state = "interrupted"
            rec.finished_at = rec.finished_at or time.time()
            self.save(rec)
            recovered.append(rec.plan_id)
        from agx.workspace.git_isolation import GitError, sweep_orphans

        try:
            sweep_orphans(self.repo, lambda plan_id: self.path(plan_id).exists())
        except (GitError, OSError):
            pass  # not a git repository (nothing to sweep), or git refused: the next start retries
        return recovered


def _last_byte(path: Path, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1)


class PlanRecorder:
    """An executor subscriber that keeps a plan's record current: in memory, and on disk
    through the store's journal (one appended line per task event, see the module's doc)."""

    def __init__(self, store: PlanStore, rec: PlanRecord):
        self.store = store
        self.rec = rec
        self._tasks_list: list | None = None
        self._task_ids: set = set()

    def _task(self, task_id: str) -> dict[str, Any]:
        return self.rec.tasks.setdefault(task_id, {"status": "pending"})

    def _set(self, task_id: str, drop: tuple[str, ...] = (), **values: Any) -> None:
        t = self._task(task_id)
        t.update(values)
        for key in drop:
            t.pop(key, None)
        entry: dict[str, Any] = {"task": task_id, "set": values}
        if drop:
            entry["drop"] = list(drop)
        self.store.append(self.rec.plan_id, entry)

    def _add_plan_task(self, task: dict[str, Any]) -> None:
        tasks = self.rec.plan.setdefault("tasks", [])
        if tasks is not self._tasks_list:  # the caller replaced the plan: re-index it once
            self._tasks_list = tasks
            self._task_ids = {t.get("id") for t in tasks}
        if task.get("id") in self._task_ids:
            return
        self._task_ids.add(task.get("id"))
        tasks.append(task)
        self.store.append(self.rec.plan_id, {"task": task.get("id"), "set": {}, "plan_task": task})

    def __call__(self, event: ev.PlanEvent) -> None:
        if isinstance(event, ev.TaskOutput):
            return  # output is kept in memory; the record stores it once the task ends
        if isinstance(event, ev.TaskAdded):
            self._task(event.task.get("id"))
            self._add_plan_task(event.task)
        elif isinstance(event, ev.TaskStarted):
            self._set(event.task_id, status="running", started_at=event.ts)
        elif isinstance(event, ev.TaskProcessStarted):
            self._set(event.task_id, pgid=event.pgid, pgid_start=getattr(event, "started", None))
        elif isinstance(event, ev.TaskFinished):
            self._set(event.task_id, ("pgid", "pgid_start"), status="succeeded", seconds=round(event.seconds, 3),
                      commit=event.commit, output_tail=event.output[-2000:])
        elif isinstance(event, ev.TaskFailed):
            self._set(event.task_id, ("pgid", "pgid_start"), status="failed", seconds=round(event.seconds, 3),
                      error=event.error)
        elif isinstance(event, ev.TaskCancelled):
            self._set(event.task_id, ("pgid", "pgid_start"), status="cancelled", seconds=round(event.seconds, 3))
        elif isinstance(event, ev.TaskSkipped):
            self._set(event.task_id, status="skipped", error=event.reason)
        elif isinstance(event, ev.RunFinished):
            self.rec.wall_s = round(event.wall_s, 3)
            self.rec.task_s = round(event.task_s, 3)
            self.store.append(self.rec.plan_id, {"rec": {"wall_s": self.rec.wall_s, "task_s": self.rec.task_s}})
