"""The agent loop on small coding tasks: grounded edits (the `code` tool) vs edits written blind.

Each task under bench/agent_tasks/<name>/ is a tiny repository (its files) plus task.json:
{"request": ..., "check": a shell command that passes once the change is made}. For each task
and each mode, in a fresh git repository, agx is driven as a peer would drive it:

    agx run REQUEST --yes --json   (execution.test_command = the task's check)

and its JSON Lines events are read. Modes, in the same run: `grounded` (the default catalogue,
with `code`) and `blind` (agent.code_tool=false: only write_file/edit_file, whose text Delta
writes inside the plan before reading any file — today's way without the code tool).

Per task and mode: model-written edits that applied (code / write_file / edit_file tasks that
finished, of those that ran), rounds used, whether the check passes on the plan's branch at the
end, wall time. The 135M bundled model makes passing checks rare; the figure that matters for
it is "edits applied". Rerun with a real model:

    python bench/bench_agent.py                                  # bundled model, 2 rounds
    python bench/bench_agent.py --profile mac --max-rounds 3     # a real Delta (see agx.toml profiles)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent / "agent_tasks"
EDIT_TOOLS = ("code", "write_file", "edit_file")


def make_repo(task_dir: Path, where: Path) -> Path:
    repo = where / task_dir.name
    shutil.copytree(task_dir, repo, ignore=shutil.ignore_patterns("task.json", "__pycache__"))
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "bench@example.com"],
                 ["config", "user.name", "bench"], ["add", "-A"], ["commit", "-q", "-m", "task"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


def run_one(task_dir: Path, mode: str, args, where: Path) -> dict:
    spec = json.loads((task_dir / "task.json").read_text())
    repo = make_repo(task_dir, where / mode)
    sets = [f"execution.test_command={spec['check']}", f"agent.max_rounds={args.max_rounds}",
            f"agent.code_tool={'true' if mode == 'grounded' else 'false'}", *args.set]
    cmd = [sys.executable, "-m", "agx", "-C", str(repo)]
    if args.profile:
        cmd += ["--profile", args.profile]
    for s in sets:
        cmd += ["--set", s]
    cmd += ["run", spec["request"], "--yes", "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - t0
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    tools = {}
    ran = applied = 0
    for e in events:
        if e["event"] == "TaskAdded":
            tools[e["task"]["id"]] = e["task"]["tool"]
        elif e["event"] in ("TaskFinished", "TaskFailed") and tools.get(e["task_id"]) in EDIT_TOOLS:
            ran += 1
            applied += e["event"] == "TaskFinished"
    summary = events[-1]["summary"] if events and events[-1]["event"] == "SessionFinished" else {}
    where_to_check = repo / summary["worktree"] if summary.get("worktree") else repo
    check = subprocess.run(spec["check"], shell=True, cwd=where_to_check, capture_output=True)
    used = sorted({t for t in tools.values()})
    return {"task": task_dir.name, "mode": mode, "edits_ran": ran, "edits_applied": applied,
            "rounds": summary.get("rounds", 0), "reason": summary.get("reason", f"no summary (exit {proc.returncode})"),
            "check_passes": check.returncode == 0, "check_passed_before": (summary.get("tests_before") or {}).get("ok"),
            "wall_s": round(wall, 1), "tools": used}


def _events(proc) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def edit_step(task_dir: Path, mode: str, args, where: Path, engine) -> dict:
    """Part 2, the edit alone: one edit of the task's file, written by the model either with the
    file in view (a one-task plan: `code {paths, instruction}`) or blind (Delta plans with only
    edit_file / write_file in its catalogue, before reading anything: today's way); then run by
    `agx run --plan --yes --json`. Applied = the edit task finished (its search text was found)."""
    from agx.execution.builtin_tools import builtin_catalogue
    from agx.planning.planner import Planner
    from agx.planning.tools import ToolCatalogue

    spec = json.loads((task_dir / "task.json").read_text())
    repo = make_repo(task_dir, where / f"edit-{mode}")
    source = next(p.name for p in sorted(task_dir.glob("*.py")))
    t0 = time.perf_counter()
    if mode == "grounded":
        plan = {"goal": spec["request"], "tasks": [{"id": "t1", "title": f"edit {source}", "tool": "code",
                                                     "args": {"paths": [source], "instruction": spec["request"]},
                                                     "deps": []}]}
    else:
        full = builtin_catalogue()
        cat = ToolCatalogue.of([full.get("edit_file"), full.get("write_file")])
        result = Planner(engine, cat, repo_dir=repo, repair_rounds=1).plan(spec["request"])
        plan = result.plan.model_dump() if result.plan is not None else None
    if plan is None:
        return {"task": task_dir.name, "mode": mode, "edits_ran": 0, "edits_applied": 0, "check_passes": False,
                "wall_s": round(time.perf_counter() - t0, 1), "note": "no valid plan"}
    plan_file = where / f"{task_dir.name}-{mode}.json"
    plan_file.write_text(json.dumps(plan))
    cmd = [sys.executable, "-m", "agx", "-C", str(repo), "--set", f"execution.test_command={spec['check']}",
           *[x for s in args.set for x in ("--set", s)], "run", "--plan", str(plan_file), "--yes", "--json"]
    if args.profile:
        cmd[3:3] = ["--profile", args.profile]
    events = _events(subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout))
    tools = {t["id"]: t["tool"] for t in plan["tasks"]}
    ran = sum(1 for e in events if e["event"] in ("TaskFinished", "TaskFailed") and tools.get(e["task_id"]) in EDIT_TOOLS)
    ok = sum(1 for e in events if e["event"] == "TaskFinished" and tools.get(e["task_id"]) in EDIT_TOOLS)
    errors = [e["error"][:120] for e in events if e["event"] == "TaskFailed"]
    summary = events[-1]["summary"] if events and events[-1]["event"] == "SessionFinished" else {}
    where_to_check = repo / summary["worktree"] if summary.get("worktree") else repo
    check = subprocess.run(spec["check"], shell=True, cwd=where_to_check, capture_output=True)
    return {"task": task_dir.name, "mode": mode, "edits_ran": ran, "edits_applied": ok,
            "check_passes": check.returncode == 0, "wall_s": round(time.perf_counter() - t0, 1), "errors": errors}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", help="agx profile (a real model); default: the bundled model")
    ap.add_argument("--max-rounds", type=int, default=2)
    ap.add_argument("--tasks", nargs="*", help="task names (default: all under bench/agent_tasks)")
    ap.add_argument("--modes", nargs="*", default=["grounded", "blind"])
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--set", action="append", default=[], help="extra agx --set KEY=VALUE")
    ap.add_argument("--parts", nargs="*", default=["loop", "edits"],
                    help="loop: the whole agent loop per task; edits: the edit step alone (model-written edits)")
    args = ap.parse_args()
    tasks = sorted(d for d in TASKS_DIR.iterdir() if (d / "task.json").is_file())
    if args.tasks:
        tasks = [d for d in tasks if d.name in args.tasks]
    rows, edit_rows = [], []
    with tempfile.TemporaryDirectory(prefix="agx-bench-agent-") as tmp:
        if "loop" in args.parts:
            for d in tasks:
                for mode in args.modes:
                    row = run_one(d, mode, args, Path(tmp))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        if "edits" in args.parts:
            from agx.config import load_config
            from agx.runtime.pool import EnginePool

            root = Path(__file__).resolve().parents[1]
            pool = EnginePool(load_config(root, overrides=list(args.set), profile=args.profile).config, root)
            engine = pool.engine("delta")
            for d in tasks:
                for mode in args.modes:
                    row = edit_step(d, mode, args, Path(tmp), engine)
                    edit_rows.append(row)
                    print(json.dumps(row), flush=True)
            pool.close()
    if edit_rows:
        print("\nthe edit step alone (one model-written edit per task)")
        print(f"{'mode':<9} {'edits applied':>14} {'checks pass':>12} {'mean wall s':>12}")
        for mode in args.modes:
            mine = [r for r in edit_rows if r["mode"] == mode]
            ran, ok = sum(r["edits_ran"] for r in mine), sum(r["edits_applied"] for r in mine)
            share = f"{ok}/{ran} ({100 * ok / ran:.0f}%)" if ran else "0/0"
            print(f"{mode:<9} {share:>14} {sum(r['check_passes'] for r in mine):>5}/{len(mine):<6} "
                  f"{sum(r['wall_s'] for r in mine) / max(len(mine), 1):>12.1f}")
    if not rows:
        return 0
    print("\nthe whole loop (agx run REQUEST --yes --json)")
    print(f"{'mode':<9} {'edits applied':>14} {'checks pass':>12} {'mean rounds':>12} {'mean wall s':>12}")
    for mode in args.modes:
        mine = [r for r in rows if r["mode"] == mode]
        ran = sum(r["edits_ran"] for r in mine)
        ok = sum(r["edits_applied"] for r in mine)
        share = f"{ok}/{ran} ({100 * ok / ran:.0f}%)" if ran else "0/0"
        print(f"{mode:<9} {share:>14} {sum(r['check_passes'] for r in mine):>5}/{len(mine):<6} "
              f"{sum(r['rounds'] for r in mine) / max(len(mine), 1):>12.1f} "
              f"{sum(r['wall_s'] for r in mine) / max(len(mine), 1):>12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
