"""The DAG executor on hand-written plans with real subprocesses (no git needed here)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psutil

from agx import events as ev
from agx.execution.executor import Executor, Status, run_plan
from agx.execution.policy import ApprovalMode, Policy
from agx.execution.builtin_tools import builtin_catalogue
from agx.planning.plan import Plan, Task

CAT = builtin_catalogue()


def plan_of(*tasks: dict) -> Plan:
    return Plan.model_validate({"goal": "test", "tasks": list(tasks)})


def sh(tid: str, command: str, deps=(), title=None) -> dict:
    return {"id": tid, "title": title or tid, "tool": "shell", "args": {"command": command}, "deps": list(deps)}


def make(tmp_path: Path, **kw) -> tuple[Executor, list]:
    kw.setdefault("policy", Policy(ApprovalMode.ALL))
    ex = Executor("p-test", CAT, tmp_path, **kw)
    seen: list = []
    ex.subscribe(seen.append)
    return ex, seen


def gone(pid: int, within_s: float = 3.0) -> bool:
    """True when the process no longer runs (a zombie waiting for its reaper counts as gone).
    A SIGKILLed process takes a moment to die on a loaded machine, so poll briefly."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_four_one_second_tasks_run_in_parallel(tmp_path):
    ex, _ = make(tmp_path, max_parallel=4)
    plan = plan_of(*(sh(f"s{i}", "sleep 1") for i in range(4)))
    t0 = time.perf_counter()
    result = asyncio.run(run_plan(plan, ex))
    wall = time.perf_counter() - t0
    assert result.ok
    assert wall < 2.0, f"4 x 1 s at max_parallel 4 took {wall:.2f}s"
    assert result.task_s > 3.9


def test_max_parallel_is_respected(tmp_path):
    ex, seen = make(tmp_path, max_parallel=2)
    plan = plan_of(*(sh(f"s{i}", "sleep 0.3") for i in range(4)))
    result = asyncio.run(run_plan(plan, ex))
    assert result.ok
    running = peak = 0
    for e in seen:
        if isinstance(e, ev.TaskStarted):
            running += 1
            peak = max(peak, running)
        elif isinstance(e, (ev.TaskFinished, ev.TaskFailed)):
            running -= 1
    assert peak == 2


def test_failure_skips_dependents_and_independent_branch_goes_on(tmp_path):
    ex, seen = make(tmp_path)
    plan = plan_of(
        sh("a", "echo boom >&2; exit 3"),
        sh("b", "echo b", deps=["a"]),
        sh("c", "echo c", deps=["b"]),
        sh("x", "echo independent"),
        sh("y", "echo ${x}-done", deps=["x"]),
    )
    result = asyncio.run(run_plan(plan, ex))
    assert not result.ok
    assert result.statuses == {"a": Status.FAILED, "b": Status.SKIPPED, "c": Status.SKIPPED,
                               "x": Status.SUCCEEDED, "y": Status.SUCCEEDED}
    failed = next(e for e in seen if isinstance(e, ev.TaskFailed))
    assert "exit code 3" in failed.error and "boom" in failed.error
    skipped = {e.task_id: e.reason for e in seen if isinstance(e, ev.TaskSkipped)}
    assert skipped == {"b": "dependency a failed", "c": "dependency b skipped"}
    # ${x} was replaced by x's output.
    assert ex.nodes["y"].output.strip() == "independent-done"
    assert isinstance(seen[-1], ev.RunFinished) and seen[-1].ok is False


def test_timeout_kills_the_task(tmp_path):
    ex, seen = make(tmp_path, task_timeout_s=0.5)
    plan = plan_of(sh("slow", "sleep 30"), sh("after", "echo hi", deps=["slow"]))
    t0 = time.perf_counter()
    result = asyncio.run(run_plan(plan, ex))
    assert time.perf_counter() - t0 < 5
    assert result.statuses == {"slow": Status.FAILED, "after": Status.SKIPPED}
    assert "timed out after 0.5s" in ex.nodes["slow"].error
    assert ex.nodes["slow"].pgid is None or gone(ex.nodes["slow"].pgid)


async def _wait_for_file(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def test_cancel_kills_the_whole_process_group(tmp_path):
    """A shell that started a grandchild `sleep`: cancel leaves neither alive."""
    ex, seen = make(tmp_path)
    cmd = "sleep 60 & echo $! > grandchild.pid; echo $$ > shell.pid; wait"
    plan = plan_of(sh("spawner", cmd), sh("dep", "echo never", deps=["spawner"]), sh("other", "sleep 0.2"))

    async def scenario():
        run = asyncio.ensure_future(run_plan(plan, ex))
        grandchild = int(await _wait_for_file(tmp_path / "grandchild.pid"))
        shell = int(await _wait_for_file(tmp_path / "shell.pid"))
        assert not gone(grandchild)
        ex.cancel("spawner")
        result = await run
        return result, grandchild, shell

    result, grandchild, shell = asyncio.run(scenario())
    assert result.statuses == {"spawner": Status.CANCELLED, "dep": Status.SKIPPED, "other": Status.SUCCEEDED}
    deadline = time.monotonic() + 3
    while not (gone(grandchild) and gone(shell)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(grandchild), "the grandchild sleep survived the cancel"
    assert gone(shell)


def test_cancel_all_stops_running_and_pending(tmp_path):
    ex, seen = make(tmp_path, max_parallel=1)
    plan = plan_of(sh("a", "echo $$ > a.pid; sleep 60"), sh("b", "sleep 60"), sh("c", "echo c", deps=["a"]))

    async def scenario():
        run = asyncio.ensure_future(run_plan(plan, ex))
        pid = int(await _wait_for_file(tmp_path / "a.pid"))
        ex.cancel_all()
        return await run, pid

    t0 = time.perf_counter()
    result, pid = asyncio.run(scenario())
    assert time.perf_counter() - t0 < 5
    assert result.statuses["a"] is Status.CANCELLED and result.statuses["b"] is Status.CANCELLED
    assert result.statuses["c"] in (Status.CANCELLED, Status.SKIPPED)
    assert gone(pid)


def test_finished_command_leaves_no_background_child(tmp_path):
    """A command that backgrounds a process and exits: the group goes with the task."""
    ex, _ = make(tmp_path)
    plan = plan_of(sh("bg", "sleep 60 & echo $! > bg.pid; echo started"))
    t0 = time.perf_counter()
    result = asyncio.run(run_plan(plan, ex))
    assert result.ok and time.perf_counter() - t0 < 5
    assert gone(int((tmp_path / "bg.pid").read_text()))


def test_output_is_capped_with_a_note(tmp_path):
    ex, seen = make(tmp_path, output_cap_bytes=2048)
    plan = plan_of(sh("noisy", "head -c 100000 /dev/zero | tr '\\0' x"))
    result = asyncio.run(run_plan(plan, ex))
    assert result.ok
    out = ex.nodes["noisy"].output
    assert out.startswith("x" * 2048)
    assert "output capped at 2048 bytes; 97952 more bytes dropped" in out
    shown = sum(len(e.text) for e in seen if isinstance(e, ev.TaskOutput))
    assert shown == 2048


def test_tasks_added_while_running_and_read_only_dispatch_before_close(tmp_path):
    """Streaming: read-only tasks start before the plan is closed; exec tasks wait for close."""
    (tmp_path / "notes.txt").write_text("alpha\n")
    ex, seen = make(tmp_path, policy=Policy(ApprovalMode.ALL))

    async def scenario():
        run = asyncio.ensure_future(ex.run())
        await asyncio.sleep(0)
        ex.add_task(Task(id="r", title="read", tool="read_files", args={"paths": ["notes.txt"]}))
        ex.add_task(Task(id="s", title="cmd", tool="shell", args={"command": "echo ${r}"}, deps=["r"]))
        await asyncio.sleep(0.5)  # the planner is "still generating"
        state_before_close = (ex.nodes["r"].status, ex.nodes["s"].status)
        # A task whose dependency arrives later:
        ex.add_task(Task(id="late", title="late", tool="shell", args={"command": "echo late"}, deps=["later"]))
        ex.add_task(Task(id="later", title="later", tool="search", args={"pattern": "alp"}))
        ex.close_plan()
        return state_before_close, await run

    (r_before, s_before), result = asyncio.run(scenario())
    assert r_before is Status.SUCCEEDED  # ran while the plan was open
    assert s_before is Status.PENDING  # exec task held until the plan was closed
    assert result.ok
    assert ex.nodes["s"].output.strip() == "alpha"
    assert "notes.txt:1: alpha" in ex.nodes["later"].output


def test_approval_gate(tmp_path):
    """--auto read: read tasks run unapproved; the others wait for approve()/deny()."""
    (tmp_path / "f.txt").write_text("x\n")
    ex, seen = make(tmp_path, policy=Policy(ApprovalMode.READ))
    plan = plan_of(
        {"id": "r", "title": "read", "tool": "read_files", "args": {"paths": ["f.txt"]}, "deps": []},
        sh("ok", "echo approved"),
        sh("no", "echo denied"),
        sh("after", "echo after", deps=["no"]),
    )

    async def scenario():
        ex.add_plan(plan)
        ex.close_plan()
        run = asyncio.ensure_future(ex.run())
        await asyncio.sleep(0.3)
        waiting = ex.undecided()
        statuses = {i: n.status for i, n in ex.nodes.items()}
        ex.approve(["ok"])
        ex.deny(["no", "after"])
        return waiting, statuses, await run

    waiting, statuses, result = asyncio.run(scenario())
    assert waiting == ["ok", "no", "after"]
    assert statuses["r"] is Status.SUCCEEDED and statuses["ok"] is Status.PENDING
    assert result.statuses == {"r": Status.SUCCEEDED, "ok": Status.SUCCEEDED, "no": Status.SKIPPED,
                               "after": Status.SKIPPED}
    assert any(isinstance(e, ev.TaskApprovalNeeded) for e in seen)


def test_pause_and_resume(tmp_path):
    ex, _ = make(tmp_path, max_parallel=4)
    plan = plan_of(sh("a", "echo a"), sh("b", "echo b", deps=["a"]))

    async def scenario():
        ex.pause()
        run = asyncio.ensure_future(run_plan(plan, ex))
        await asyncio.sleep(0.3)
        held = ex.nodes["a"].status
        ex.resume()
        return held, await run

    held, result = asyncio.run(scenario())
    assert held is Status.PENDING
    assert result.ok


def test_event_queue_consumer_sees_the_same_stream(tmp_path):
    ex, seen = make(tmp_path)

    async def scenario():
        q = ex.event_queue()
        result = await run_plan(plan_of(sh("a", "echo hi")), ex)
        got = []
        while not q.empty():
            got.append(q.get_nowait())
        return result, got

    result, got = asyncio.run(scenario())
    assert result.ok and got == seen
    assert [e.kind for e in got if e.kind != "TaskOutput" and e.kind != "TaskProcessStarted"] == [
        "TaskAdded", "Approved", "TaskStarted", "TaskFinished", "RunFinished"]


def test_unknown_tool_fails_clearly(tmp_path):
    from agx.planning.tools import ToolCatalogue, ToolSpec

    cat = ToolCatalogue.of([ToolSpec("image_gen", "plan-only tool", {"type": "object"})])
    ex = Executor("p", cat, tmp_path, policy=Policy(ApprovalMode.ALL))
    result = asyncio.run(run_plan(plan_of({"id": "i", "title": "img", "tool": "image_gen", "args": {}, "deps": []}), ex))
    assert result.statuses == {"i": Status.FAILED}
    assert "no runner for tool 'image_gen'" in ex.nodes["i"].error


def test_sync_plan_replaces_streamed_tasks_with_the_repaired_plan(tmp_path):
    """A repair round changes the plan: stale streamed tasks go, the final plan runs."""
    (tmp_path / "a.txt").write_text("A\n")
    (tmp_path / "b.txt").write_text("B\n")
    ex, seen = make(tmp_path, policy=Policy(ApprovalMode.ALL))

    async def scenario():
        run = asyncio.ensure_future(ex.run())
        await asyncio.sleep(0)
        # Round 0 streamed these (t1 reads the wrong file; bad depends on itself).
        ex.add_task(Task(id="t1", title="read", tool="read_files", args={"paths": ["a.txt"]}))
        ex.add_task(Task(id="bad", title="loop", tool="shell", args={"command": "echo loop"}, deps=["bad"]))
        await asyncio.sleep(0.3)
        final = plan_of(
            {"id": "t1", "title": "read", "tool": "read_files", "args": {"paths": ["b.txt"]}, "deps": []},
            sh("t2", "echo got ${t1}", deps=["t1"]),
        )
        ex.sync_plan(final)
        ex.close_plan()
        return await run

    result = asyncio.run(scenario())
    assert result.ok
    assert set(ex.nodes) == {"t1", "t2"}
    assert ex.nodes["t2"].output.strip() == "got B"
