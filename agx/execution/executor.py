"""The asyncio DAG executor.

    ex = Executor(plan_id, catalogue, workdir, max_parallel=4, policy=Policy(...))
    ex.subscribe(print)                  # every PlanEvent, in order, on the loop's thread
    for t in plan.tasks: ex.add_task(t)  # may also arrive while running (streaming planner)
    ex.close_plan()                      # no more tasks: the run can finish
    result = await ex.run()

Scheduling: a task is *ready* when it is approved and every dependency succeeded; up to
`max_parallel` ready tasks run at once. A task that fails, times out, is cancelled or is not
approved makes its dependents skipped; independent branches go on. Bookkeeping is
incremental (a counter of unmet dependencies per task), so dispatch costs O(1) per edge.

Streaming: tasks added before `close_plan()` are not validated yet, so only read-only tasks
may start early; write/exec tasks wait for the closed (validated) plan even when approved.

Thread safety: `add_task`, `close_plan`, `approve`, `deny`, `cancel`, `cancel_all`, `pause`
and `resume` may be called from any thread (a planner thread, a UI thread); they hop onto
the executor's loop.
"""

from __future__ import annotations

import asyncio
import enum
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from agx import events as ev
from agx.execution.policy import Policy
from agx.execution.builtin_tools import RUNNERS, written_paths
from agx.execution.runners import OutputBuffer, Runner, RunnerResult, TaskContext, TaskError
from agx.planning.plan import Plan, Task, substitute_placeholders
from agx.planning.tools import Risk, ToolCatalogue, ToolSpec


class Status(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self not in (Status.PENDING, Status.RUNNING)


class Committer(Protocol):
    """Turns what a task changed into one commit (git_isolation.WorktreeCommitter)."""

    async def commit(self, message: str, paths: list[str] | None, exclude: set[str]) -> str | None: ...


@dataclass
class Node:
    task: Task
    spec: ToolSpec | None
    status: Status = Status.PENDING
    approved: bool | None = None  # None: not decided yet
    unmet: int = 0  # dependencies not succeeded yet
    dependents: list[str] = field(default_factory=list)
    started: float | None = None  # perf_counter
    finished: float | None = None
    started_at: float | None = None  # wall clock, for records
    output: str = ""
    error: str | None = None
    commit: str | None = None
    pgid: int | None = None
    aio_task: asyncio.Task | None = None
    cancel_requested: bool = False

    @property
    def seconds(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.perf_counter()) - self.started

    @property
    def risk(self) -> Risk:
        return self.spec.risk if self.spec else Risk.EXEC


@dataclass
class RunResult:
    ok: bool
    wall_s: float
    task_s: float
    statuses: dict[str, Status]


Subscriber = Callable[[ev.PlanEvent], Any]


class Executor:
    def __init__(
        self,
        plan_id: str,
        catalogue: ToolCatalogue,
        workdir: Path | str,
        *,
        max_parallel: int = 4,
        task_timeout_s: float = 300.0,
        output_cap_bytes: int = 1_000_000,
        policy: Policy | None = None,
        runners: dict[str, Runner] | None = None,
        engine: Any = None,
        code_engine: Any = None,
        committer: Committer | None = None,
        test_command: str | None = None,
        process_env: dict[str, str] | None = None,
        sandbox: Any = None,
    ):
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        self.plan_id = plan_id
        self.catalogue = catalogue
        self.workdir = Path(workdir)
        self.max_parallel = max_parallel
        self.task_timeout_s = task_timeout_s
        self.output_cap_bytes = output_cap_bytes
        self.policy = policy or Policy()
        self.runners = RUNNERS if runners is None else runners
        self.engine = engine
        self.code_engine = code_engine  # Delta's, for `code` tasks (None: engine)
        self.committer = committer
        self.test_command = test_command
        # Added to every task process's environment: the run's token (workspace/processes.py).
        self.process_env = dict(process_env or {})
        self.sandbox = sandbox  # [execution.sandbox] for command tasks; None: unsandboxed

        self.nodes: dict[str, Node] = {}
        self._order: list[str] = []  # insertion order, for summaries
        self._waiting_on: dict[str, list[str]] = {}  # dep id not added yet -> tasks needing it
        self._ready: list[str] = []  # FIFO: ids from _ready_head on wait for a free slot
        self._ready_head = 0
        self._queued: set[str] = set()  # ids in the live part of _ready
        self._running_writers: set[str] = set()  # running tasks that write named files (see _start)
        # Counters keep the "is the run over?" test O(1) per dispatch.
        self._pending = 0  # nodes in PENDING
        self._undecided = 0  # PENDING nodes with approved None
        self._running = 0
        self._closed = False
        self._paused = False
        self._subscribers: list[Subscriber] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._done: asyncio.Event | None = None
        self._t0: float | None = None
        self._finished_event_sent = False

    # -- events ----------------------------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> None:
        """Call `callback(event)` for every event, on the executor's loop thread, in order."""
        self._subscribers.append(callback)

    def event_queue(self) -> asyncio.Queue:
        """An asyncio.Queue receiving every event (for async consumers such as the TUI)."""
        q: asyncio.Queue = asyncio.Queue()
        self._subscribers.append(q.put_nowait)
        return q

    def _emit(self, event: ev.PlanEvent) -> None:
        for cb in list(self._subscribers):
            try:
                cb(event)
            except Exception as exc:  # a broken viewer must not stop the run
                print(f"agx: event subscriber failed: {type(exc).__name__}: {exc}", file=sys.stderr)

    # -- thread hopping ---------------------------------------------------------------------
    def _call(self, fn: Callable, *args) -> None:
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread or loop.is_closed():
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    # -- public control -------------------------------------------------------------------
    def add_task(self, task: Task | dict) -> None:
        """Add one task (while running too). Its dependencies may arrive later."""
        if isinstance(task, dict):
            task = Task.model_validate(task)
        self._call(self._add_task, task)

    def add_plan(self, plan: Plan) -> None:
        for t in plan.tasks:
            self.add_task(t)

    def close_plan(self) -> None:
        """No more tasks will be added: the plan is complete and validated."""
        self._call(self._close)

    def sync_plan(self, plan: Plan) -> None:
        """Replace what streamed in with the final (repaired) plan: tasks that changed or
        vanished are dropped (only read-only ones can have run), new ones added."""
        self._call(self._sync_plan, plan)

    def approve(self, task_ids: Iterable[str] | None = None) -> None:
        """Approve these tasks (None: every task not decided yet)."""
        self._call(self._approve, None if task_ids is None else tuple(task_ids))

    def deny(self, task_ids: Iterable[str] | None = None) -> None:
        """Refuse these tasks (None: every undecided one): they and their dependents are skipped."""
        self._call(self._deny, None if task_ids is None else tuple(task_ids))

    def cancel(self, task_id: str) -> None:
        self._call(self._cancel, task_id)

    def cancel_all(self) -> None:
        """Cancel every running task (killing its processes) and every pending one."""
        self._call(self._cancel_all)

    def pause(self) -> None:
        """Stop dispatching new tasks; running ones go on."""
        self._call(self._set_paused, True)

    def resume(self) -> None:
        self._call(self._set_paused, False)

    @property
    def paused(self) -> bool:
        return self._paused

    def undecided(self) -> list[str]:
        """Tasks waiting for an approval decision."""
        return [i for i in self._order if self.nodes[i].status is Status.PENDING and self.nodes[i].approved is None]

    # -- the run ----------------------------------------------------------------------------
    async def run(self) -> RunResult:
        """Run until the plan is closed and every task has finished, failed or been skipped."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._done = asyncio.Event()
        self._t0 = time.perf_counter()
        self._pump()
        try:
            await self._done.wait()
        except asyncio.CancelledError:
            self._cancel_all()
            await self._wait_running()
            raise
        await self._wait_running()
        return self._result()

    async def _wait_running(self) -> None:
        pending = [n.aio_task for n in self.nodes.values() if n.aio_task is not None and not n.aio_task.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def _result(self) -> RunResult:
        wall = time.perf_counter() - (self._t0 or time.perf_counter())
        task_s = sum(n.seconds for n in self.nodes.values() if n.started is not None)
        ok = bool(self.nodes) and all(n.status is Status.SUCCEEDED for n in self.nodes.values())
        if not self._finished_event_sent:
            self._finished_event_sent = True
            self._emit(ev.RunFinished(self.plan_id, ok=ok, wall_s=wall, task_s=task_s))
        return RunResult(ok, wall, task_s, {i: self.nodes[i].status for i in self._order})

    # -- internals (loop thread only) -------------------------------------------------------
    def _add_task(self, task: Task) -> None:
        old = self.nodes.get(task.id)
        if old is not None:
            if _same(old.task, task):
                return  # the same task streamed twice (e.g. a repair round repeats it)
            print(f"agx: task {task.id!r} added twice; keeping the first", file=sys.stderr)
            return
        if self._closed:
            print(f"agx: task {task.id!r} arrived after the plan was closed; ignored", file=sys.stderr)
            return
        spec = self.catalogue.get(task.tool)
        node = Node(task=task, spec=spec)
        self.nodes[task.id] = node
        self._order.append(task.id)
        self._pending += 1
        self._undecided += 1
        self._emit(ev.TaskAdded(self.plan_id, task={"id": task.id, "title": task.title, "tool": task.tool,
                                                   "args": task.args, "deps": list(task.deps)}))
        self._link(node)
        if self.policy.auto_approves(task, spec):
            node.approved = True
            self._undecided -= 1
            self._emit(ev.Approved(self.plan_id, task_ids=(task.id,)))
        else:
            self._emit(ev.TaskApprovalNeeded(self.plan_id, task_ids=(task.id,)))
        # A dependency that already failed dooms this task at once.
        for dep in dict.fromkeys(task.deps):
            d = self.nodes.get(dep)
            if d is not None and d.status.terminal and d.status is not Status.SUCCEEDED:
                self._skip(node, f"dependency {dep} {d.status.value}")
                break
        self._maybe_ready(node)
        self._pump()

    def _link(self, node: Node) -> None:
        """Count unmet dependencies and register this node with its dependencies."""
        tid = node.task.id
        node.unmet = 0
        for dep in dict.fromkeys(node.task.deps):
            d = self.nodes.get(dep)
            if d is None:
                node.unmet += 1
                self._waiting_on.setdefault(dep, []).append(tid)
            else:
                d.dependents.append(tid)
                if d.status is not Status.SUCCEEDED:
                    node.unmet += 1
        # Tasks that were waiting for this id to appear now depend on it.
        for child in self._waiting_on.pop(tid, []):
            node.dependents.append(child)

    def _sync_plan(self, plan: Plan) -> None:
        wanted = {t.id: t for t in plan.tasks}
        stale = [i for i, n in self.nodes.items() if i not in wanted or not _same(n.task, wanted[i])]
        if stale:
            for i in stale:
                node = self.nodes.pop(i)
                self._order.remove(i)
                if node.aio_task is not None and not node.aio_task.done():
                    node.cancel_requested = True
                    node.aio_task.cancel()
                    self._running -= 1  # no longer counted; its completion is ignored
                    node.aio_task = None
            self._relink_all()
        for t in plan.tasks:
            if t.id not in self.nodes:
                self._add_task(t)
        self._pump()

    def _relink_all(self) -> None:
        self._waiting_on.clear()
        for n in self.nodes.values():
            n.dependents = []
        for i in self._order:
            self._link(self.nodes[i])
        self._ready = [i for i in self._order if self._is_ready(self.nodes[i]) and self.nodes[i].aio_task is None]
        self._queued = set(self._ready)
        self._ready_head = 0
        pending = [n for n in self.nodes.values() if n.status is Status.PENDING]
        self._pending = len(pending)
        self._undecided = sum(1 for n in pending if n.approved is None)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Write/exec tasks held back during streaming may go now.
        for i in self._order:
            self._maybe_ready(self.nodes[i])
        self._pump()

    def _approve(self, ids: tuple[str, ...] | None) -> None:
        chosen = self.undecided() if ids is None else [i for i in ids if i in self.nodes]
        newly = []
        for i in chosen:
            n = self.nodes[i]
            if n.approved is None and n.status is Status.PENDING:
                n.approved = True
                self._undecided -= 1
                newly.append(i)
        if newly:
            self._emit(ev.Approved(self.plan_id, task_ids=tuple(newly)))
        for i in newly:
            self._maybe_ready(self.nodes[i])
        self._pump()

    def _deny(self, ids: tuple[str, ...] | None) -> None:
        chosen = self.undecided() if ids is None else [i for i in ids if i in self.nodes]
        for i in chosen:
            n = self.nodes[i]
            if n.status is Status.PENDING:
                self._skip(n, "not approved")
                n.approved = False
        self._pump()

    def _set_paused(self, paused: bool) -> None:
        self._paused = paused
        self._pump()

    def _cancel(self, task_id: str) -> None:
        n = self.nodes.get(task_id)
        if n is None or n.status.terminal:
            return
        if n.status is Status.RUNNING and n.aio_task is not None:
            n.cancel_requested = True
            n.aio_task.cancel()
            return
        self._set_status(n, Status.CANCELLED)
        self._emit(ev.TaskCancelled(self.plan_id, task_id=task_id))
        self._skip_dependents(n, f"dependency {task_id} cancelled")
        self._pump()

    def _cancel_all(self) -> None:
        self._closed = True
        for i in list(self._order):
            n = self.nodes[i]
            if n.status is Status.PENDING:
                self._set_status(n, Status.CANCELLED)
                self._emit(ev.TaskCancelled(self.plan_id, task_id=i))
        for n in self.nodes.values():
            if n.status is Status.RUNNING and n.aio_task is not None:
                n.cancel_requested = True
                n.aio_task.cancel()
        self._pump()

    def _is_ready(self, n: Node) -> bool:
        return (
            n.status is Status.PENDING
            and n.approved is True
            and n.unmet == 0
            and (self._closed or n.risk is Risk.READ)
        )

    def _set_status(self, n: Node, status: Status) -> None:
        """Every status change goes through here (keeps the pending counters right)."""
        if n.status is Status.PENDING and status is not Status.PENDING:
            self._pending -= 1
            if n.approved is None:
                self._undecided -= 1
        n.status = status

    def _maybe_ready(self, n: Node) -> None:
        if self._is_ready(n) and n.aio_task is None and n.task.id not in self._queued:
            self._queued.add(n.task.id)
            self._ready.append(n.task.id)

    def _pump(self) -> None:
        """Start ready tasks while there is room; then see whether the run is over."""
        if self._loop is None:
            return
        while not self._paused and self._running < self.max_parallel and self._ready_head < len(self._ready):
            tid = self._ready[self._ready_head]
            self._ready_head += 1
            self._queued.discard(tid)
            n = self.nodes.get(tid)
            if n is None or not self._is_ready(n) or n.aio_task is not None:
                continue
            self._start(n)
        if self._ready_head > 1024 and self._ready_head * 2 > len(self._ready):
            del self._ready[: self._ready_head]
            self._ready_head = 0
        self._check_done()

    def _start(self, n: Node) -> None:
        self._set_status(n, Status.RUNNING)
        n.started = time.perf_counter()
        n.started_at = time.time()
        self._running += 1
        if written_paths(n.task.tool, n.task.args):
            self._running_writers.add(n.task.id)
        self._emit(ev.TaskStarted(self.plan_id, task_id=n.task.id))
        n.aio_task = self._loop.create_task(self._execute(n), name=f"agx-task-{n.task.id}")

    def _check_done(self) -> None:
        if self._done is None or self._done.is_set() or not self._closed or self._running:
            return
        if self._ready_head < len(self._ready):
            return  # paused with work queued (or about to dispatch)
        if self._pending == 0:
            self._done.set()
            return
        if self._undecided:
            return  # someone still has to decide
        # Whatever is left can never become ready: a dependency that never arrived, or a cycle.
        for n in [self.nodes[i] for i in self._order if self.nodes[i].status is Status.PENDING]:
            if self._is_ready(n):
                return
        for n in [self.nodes[i] for i in self._order if self.nodes[i].status is Status.PENDING]:
            missing = [d for d in n.task.deps if d not in self.nodes]
            reason = f"unknown dependency {missing[0]}" if missing else "dependency cycle"
            self._set_status(n, Status.SKIPPED)
            self._emit(ev.TaskSkipped(self.plan_id, task_id=n.task.id, reason=reason))
        self._done.set()

    def _skip(self, n: Node, reason: str) -> None:
        if n.status is not Status.PENDING:
            return
        self._set_status(n, Status.SKIPPED)
        n.error = reason
        self._emit(ev.TaskSkipped(self.plan_id, task_id=n.task.id, reason=reason))
        self._skip_dependents(n, f"dependency {n.task.id} {'not approved' if reason == 'not approved' else 'skipped'}")

    def _skip_dependents(self, n: Node, reason: str) -> None:
        # Direct dependents get `reason`; theirs are told which skipped task they waited on.
        stack = [(c, reason) for c in n.dependents]
        while stack:
            cid, why = stack.pop()
            c = self.nodes.get(cid)
            if c is None or c.status is not Status.PENDING:
                continue
            self._set_status(c, Status.SKIPPED)
            c.error = why
            self._emit(ev.TaskSkipped(self.plan_id, task_id=cid, reason=why))
            stack.extend((g, f"dependency {cid} skipped") for g in c.dependents)

    def _finish(self, n: Node, status: Status) -> None:
        if self.nodes.get(n.task.id) is not n:
            return  # superseded by sync_plan
        n.finished = time.perf_counter()
        self._set_status(n, status)
        self._running -= 1
        tid = n.task.id
        self._running_writers.discard(tid)
        if status is Status.SUCCEEDED:
            self._emit(ev.TaskFinished(self.plan_id, task_id=tid, seconds=n.seconds, output=n.output, commit=n.commit))
            for c in n.dependents:
                child = self.nodes.get(c)
                if child is not None and child.status is Status.PENDING:
                    child.unmet -= 1
                    self._maybe_ready(child)
        elif status is Status.CANCELLED:
            self._emit(ev.TaskCancelled(self.plan_id, task_id=tid, seconds=n.seconds))
            self._skip_dependents(n, f"dependency {tid} cancelled")
        else:
            self._emit(ev.TaskFailed(self.plan_id, task_id=tid, seconds=n.seconds, error=n.error or "failed"))
            self._skip_dependents(n, f"dependency {tid} failed")
        self._pump()

    def _context(self, n: Node) -> TaskContext:
        # Trailing newlines dropped, as the shell's $(...) does: outputs usually end with one,
        # and it rarely belongs inside the argument that quotes them.
        outputs = {d: self.nodes[d].output.rstrip("\n") for d in n.task.deps if d in self.nodes}
        args = substitute_placeholders(n.task.args, outputs) if outputs else n.task.args
        tid = n.task.id

        def emit(text: str, stream: str) -> None:
            self._emit(ev.TaskOutput(self.plan_id, task_id=tid, text=text, stream=stream))

        def register_pgid(pgid: int | None, started: float | None = None) -> None:
            n.pgid = pgid
            if pgid is not None:
                self._emit(ev.TaskProcessStarted(self.plan_id, task_id=tid, pgid=pgid, started=started))

        return TaskContext(
            task_id=tid,
            title=n.task.title,
            tool=n.task.tool,
            args=args,
            workdir=self.workdir,
            output=OutputBuffer(self.output_cap_bytes),
            emit=emit,
            engine=self.engine,
            code_engine=self.code_engine,
            test_command=self.test_command,
            register_pgid=register_pgid,
            track_changes=self.committer is not None,
            env=self.process_env,
            sandbox=self.sandbox,
            dep_outputs=outputs,
        )

    def _paths_owned_by_running_writers(self, exclude_id: str) -> set[str]:
        """Files that running file-writing tasks (write_file, edit_file, code) are about to commit themselves."""
        owned = set()
        for i in self._running_writers:  # not every node: that made each commit O(tasks)
            m = self.nodes.get(i)
            if i != exclude_id and m is not None and m.status is Status.RUNNING:
                owned.update(written_paths(m.task.tool, m.task.args))
        return owned

    async def _execute(self, n: Node) -> None:
        ctx = self._context(n)
        status = Status.FAILED
        try:
            runner = self.runners.get(n.task.tool)
            if runner is None:
                raise TaskError(f"agx has no runner for tool {n.task.tool!r} (plan-only catalogue tool)")
            async with asyncio.timeout(self.task_timeout_s):  # no extra task, unlike wait_for
                result: RunnerResult = await runner(ctx)
            n.output = result.output
            if self.committer is not None and (n.risk is not Risk.READ or result.commit_message):
                message = result.commit_message or n.task.title
                n.commit = await self.committer.commit(
                    f"{message}\n\nagx-plan: {self.plan_id}\nagx-task: {n.task.id}",
                    result.changed_paths,
                    self._paths_owned_by_running_writers(n.task.id),
                )
            status = Status.SUCCEEDED
        except asyncio.CancelledError:
            n.output = ctx.output.text
            status = Status.CANCELLED
            if not n.cancel_requested:
                n.cancel_requested = True
        except TimeoutError:
            n.output = ctx.output.text
            n.error = f"timed out after {self.task_timeout_s:g}s"
        except TaskError as exc:
            n.output = ctx.output.text
            n.error = str(exc)
        except Exception as exc:  # a runner bug: report it as this task's failure
            n.output = ctx.output.text
            n.error = f"internal error: {type(exc).__name__}: {exc}"
        self._finish(n, status)


def _same(a: Task, b: Task) -> bool:
    return (a.title, a.tool, a.args, list(a.deps)) == (b.title, b.tool, b.args, list(b.deps))


async def run_plan(plan: Plan, executor: Executor) -> RunResult:
    """Convenience: add a whole plan, close it, run it."""
    executor.add_plan(plan)
    executor.close_plan()
    return await executor.run()

