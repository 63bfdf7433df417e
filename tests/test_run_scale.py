"""Issue 13 item 5: `agx run` is linear in the number of tasks, and stays crash safe.

The plan record used to be re-serialised on every task event (1,000 tasks: 213 s). Task events
now go to an append-only journal that the next save folds in (agx/workspace/plan_store.py).
These tests run the real CLI in a subprocess; bench/bench_run_scale.py measures the same
path at 1,000 and 10,000 tasks against the issue's targets.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from agx.workspace.plan_store import PlanRecord, PlanStore


def read_task(i: int, deps=()) -> dict:
    return {"id": f"t{i}", "title": f"read {i}", "tool": "read_files", "args": {"paths": ["README.md"]},
            "deps": list(deps)}


def write_plan(tmp_path: Path, tasks: list[dict]) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"goal": "scale", "tasks": tasks}))
    return path


def agx_cmd(repo: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "agx", "-C", str(repo), *args]


def test_a_thousand_task_plan_runs_end_to_end_in_linear_time(git_repo, tmp_path):
    # A chain every 10 tasks plus fan-in: dependencies are exercised, not only a flat list.
    tasks = [read_task(i, deps=[f"t{i - 1}"] if i % 10 else []) for i in range(1000)]
    plan = write_plan(tmp_path, tasks)
    t0 = time.perf_counter()
    out = subprocess.run(agx_cmd(git_repo, "run", "--plan", str(plan), "--yes"), capture_output=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    # The target is 2 s on an idle machine (bench/bench_run_scale.py); the bound here
    # leaves room for a busy CI machine and still fails the quadratic store (213 s).
    assert wall < 15, f"1,000 no-op tasks took {wall:.1f}s end to end"
    (rec,) = PlanStore(git_repo).all()
    assert rec.state == "done" and len(rec.tasks) == 1000
    assert all(t["status"] == "succeeded" for t in rec.tasks.values())
    assert [t["id"] for t in rec.plan["tasks"]] == [f"t{i}" for i in range(1000)]
    # Finished: the journal is folded into the record.
    assert not list((git_repo / ".agx" / "plans").glob("*.journal"))


def test_kill_9_mid_run_of_a_big_plan_keeps_every_recorded_task_state(git_repo, tmp_path):
    """The journal is crash safe: after kill -9, the next start reads every task state that
    was recorded (1,000 finished reads), marks the rest interrupted and kills the slow task."""
    tasks = [read_task(i) for i in range(1000)]
    tasks.append({"id": "slow", "title": "wait", "tool": "shell", "args": {"command": "sleep 600"},
                  "deps": [f"t{i}" for i in range(1000)]})
    tasks += [read_task(i, deps=["slow"]) for i in range(1000, 1100)]
    plan = write_plan(tmp_path, tasks)
    proc = subprocess.Popen(agx_cmd(git_repo, "run", "--plan", str(plan), "--yes"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    pgid = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and pgid is None:
            recs = PlanStore(git_repo).all() if (git_repo / ".agx" / "plans").is_dir() else []
            if recs:
                pgid = recs[0].tasks.get("slow", {}).get("pgid")
            time.sleep(0.1)
        assert pgid, "the run never reached its slow task"
        assert list((git_repo / ".agx" / "plans").glob("*.journal")), "task events go to the journal"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()

    assert subprocess.run(agx_cmd(git_repo, "plans"), capture_output=True, timeout=120).returncode == 0
    (rec,) = PlanStore(git_repo).all()
    assert rec.state == "interrupted"
    statuses = [rec.tasks[t["id"]]["status"] for t in tasks]
    assert statuses[:1000] == ["succeeded"] * 1000
    assert rec.tasks["slow"]["status"] == "interrupted"
    assert all(rec.tasks[f"t{i}"]["status"] == "interrupted" for i in range(1000, 1100))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pgid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the slow task's process outlived recovery")


def test_journal_replay_skips_a_torn_line_and_appends_after_it(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    store = PlanStore(repo)
    rec = PlanRecord(plan_id="p1", state="running", tasks={"a": {"status": "pending"}})
    store.save(rec)
    store.append("p1", {"task": "a", "set": {"status": "running"}})
    store.append("p1", {"task": "b", "set": {}, "plan_task": {"id": "b", "tool": "shell"}})
    store.append("p1", {"task": "b", "set": {}, "plan_task": {"id": "b", "tool": "shell"}})  # replayed twice: once
    import agx.workspace.plan_store as ps

    ps._close_journal(store.journal_path("p1"))  # as after a crash: the next writer opens it afresh
    with open(store.journal_path("p1"), "ab") as fh:
        fh.write(b'{"task":"a","set":{"status":"succ')  # a write torn by kill -9
    store.append("p1", {"task": "b", "set": {"status": "succeeded"}})
    loaded = store.load("p1")
    assert loaded.tasks == {"a": {"status": "running"}, "b": {"status": "succeeded"}}
    assert loaded.plan["tasks"] == [{"id": "b", "tool": "shell"}]
    # A save folds the journal in and removes it.
    store.save(loaded)
    assert not store.journal_path("p1").exists()
    assert store.load("p1").tasks == loaded.tasks
