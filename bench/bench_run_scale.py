"""End-to-end scale of `agx run --plan FILE --yes`: the real CLI in a subprocess.

    python bench/bench_run_scale.py [--tasks 1000 10000] [--shape random|flat] [--tool read|shell]
                                    [--seed 0] [--baseline-rev REV --baseline-tasks 250]

For each size N, a plan of N no-op tasks is generated and run by the real command in a fresh
git repository: every task is `read_files` of README.md (read-only: no process, no commit, so
what is measured is agx's own per-task cost — scheduling, events, the plan store, the printer,
the session log). `random` (default): each task depends on up to 3 random earlier tasks (the
DAG of bench_scheduler.py); `flat`: no dependencies. `--tool shell` makes every task the
command `true` instead (a process per task, change tracking, the sandbox: what a command task
costs; the 2 s / 20 s targets are for the no-op tasks). Printed per size: wall time of the whole
command (process start to exit, imports and git setup included), peak RSS of the agx process,
and the run's own wall time as recorded in the plan (first dispatch to last task).

Targets (issue 13): 1,000 tasks < 2 s, 10,000 < 20 s end to end, memory flat (RSS grows with
the plan's size only, not with time). `--baseline-rev` runs the same plans through the agx of
an older commit (a temporary `git worktree` of this repository) for comparison; the issue
measured the old plan store at 250 tasks 15 s, 1,000 tasks 213 s. The bare scheduler without
the CLI or the plan store is bench/bench_scheduler.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_plan(n: int, shape: str, seed: int, tool: str = "read") -> dict:
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        deps = []
        if shape == "random" and i:
            k = rng.randint(0, min(3, i))
            deps = [f"t{j}" for j in rng.sample(range(i), k)]
        if tool == "shell":
            tasks.append({"id": f"t{i}", "title": f"true {i}", "tool": "shell", "args": {"command": "true"},
                          "deps": deps})
        else:
            tasks.append({"id": f"t{i}", "title": f"read {i}", "tool": "read_files", "args": {"paths": ["README.md"]},
                          "deps": deps})
    return {"goal": f"{n} no-op tasks", "tasks": tasks}


def make_repo(folder: Path) -> Path:
    repo = folder / "repo"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "b@example.com"], ["config", "user.name", "b"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "README.md").write_text("# bench\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=repo, check=True)
    return repo


def run_once(n: int, shape: str, seed: int, pythonpath: Path | None = None, tool: str = "read") -> dict:
    with tempfile.TemporaryDirectory(prefix="agx-bench-scale-") as tmp:
        tmp = Path(tmp)
        repo = make_repo(tmp)
        plan_file = tmp / "plan.json"
        plan_file.write_text(json.dumps(make_plan(n, shape, seed, tool)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGX_")}
        if pythonpath is not None:
            env["PYTHONPATH"] = str(pythonpath)
        # --max-parallel 4 is the default; said here so the figure does not drift with agx.toml.
        cmd = [sys.executable, "-m", "agx", "-C", str(repo), "run", "--plan", str(plan_file), "--yes",
               "--max-parallel", "4"]
        err_file = tmp / "stderr.txt"
        with open(err_file, "wb") as err:
            t0 = time.perf_counter()
            # cwd outside this checkout: `python -m` puts the working directory first on sys.path,
            # which would shadow the baseline's PYTHONPATH with this checkout's agx.
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                                    cwd=tmp)
            # wait4: this child's own peak RSS (RUSAGE_CHILDREN would be the largest of all children).
            _, status, rusage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        stderr = err_file.read_bytes().decode("utf-8", "replace")
        recs = sorted((repo / ".agx" / "plans").glob("*.json"))
        rec = json.loads(recs[-1].read_text()) if recs else {}
        ok = rec.get("state") == "done" and sum(1 for t in rec.get("tasks", {}).values()
                                                 if t.get("status") == "succeeded") == n
        return {"tasks": n, "wall_s": wall, "peak_rss_mb": rusage.ru_maxrss / 1024, "exit": proc.returncode,
                "run_wall_s": rec.get("wall_s"), "ok": ok, "stderr": stderr[-500:]}


def old_checkout(rev: str) -> tuple[Path, callable]:
    path = Path(tempfile.mkdtemp(prefix="agx-bench-old-"))
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(path / "src"), rev], cwd=ROOT, check=True)

    def cleanup():
        subprocess.run(["git", "worktree", "remove", "--force", str(path / "src")], cwd=ROOT, check=False)

    return path / "src", cleanup


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--shape", choices=["random", "flat"], default="random")
    ap.add_argument("--tool", choices=["read", "shell"], default="read")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline-rev", help="also run the agx of this commit (e.g. 3549ac1, before the journal)")
    ap.add_argument("--baseline-tasks", type=int, nargs="+", default=[250])
    args = ap.parse_args()

    what = "read-only no-op tasks" if args.tool == "read" else "`true` shell tasks"
    print(f"agx run --plan FILE --yes, {args.shape} DAG of {what}, real CLI subprocess")
    print(f"{'agx':<10} {'tasks':>7} {'wall s':>8} {'run s':>8} {'peak RSS MB':>12}  ok  target")
    targets = {1000: 2.0, 10000: 20.0} if args.tool == "read" else {}
    failed = False
    for n in args.tasks:
        r = run_once(n, args.shape, args.seed, tool=args.tool)
        target = targets.get(n)
        meets = target is None or r["wall_s"] < target
        failed |= not (r["ok"] and meets)
        print(f"{'this':<10} {n:>7} {r['wall_s']:>8.2f} {r['run_wall_s'] or float('nan'):>8.2f} {r['peak_rss_mb']:>12.1f}  "
              f"{'yes' if r['ok'] else 'NO '}  {f'< {target:g} s: ' + ('met' if meets else 'MISSED') if target else ''}",
              flush=True)
        if not r["ok"]:
            print(r["stderr"], file=sys.stderr)
    if args.baseline_rev:
        src, cleanup = old_checkout(args.baseline_rev)
        try:
            for n in args.baseline_tasks:
                r = run_once(n, args.shape, args.seed, pythonpath=src, tool=args.tool)
                print(f"{args.baseline_rev[:10]:<10} {n:>7} {r['wall_s']:>8.2f} {r['run_wall_s'] or float('nan'):>8.2f} "
                      f"{r['peak_rss_mb']:>12.1f}  {'yes' if r['ok'] else 'NO '}", flush=True)
        finally:
            cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
