"""Executor benchmarks: scheduler overhead and parallel efficiency.

    python bench/bench_scheduler.py [--tasks 1000] [--seed 0]

1. Scheduler overhead: a random DAG of N no-op tasks (each depends on up to 3 earlier tasks),
   run through the real Executor (events, dependency bookkeeping, skipping logic) with a no-op
   runner. Baseline in the same run: bare asyncio creating and awaiting the same N no-op
   coroutines in topological order — the floor any asyncio scheduler pays. Target: < 0.5 s.
2. Parallel efficiency on a wide DAG of sleeps: levels of tasks that each sleep D seconds,
   every task depending on two tasks of the level before. Ideal wall time = levels x D (the
   critical path, since a level fits in max_parallel). Efficiency = ideal / measured wall.
   Measured twice: with an in-process sleep runner (pure scheduling) and with real `sleep`
   processes through the shell runner (adds process start-up). Target: >= 0.95.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from agx.execution.executor import Executor
from agx.execution.policy import ApprovalMode, Policy
from agx.execution.builtin_tools import RUNNERS
from agx.execution.runners import RunnerResult, TaskContext
from agx.planning.plan import Plan, Task
from agx.planning.tools import Risk, ToolCatalogue, ToolSpec

CATALOGUE = ToolCatalogue.of([
    ToolSpec("noop", "does nothing", {"type": "object"}, Risk.READ, True),
    ToolSpec("nap", "sleeps args.s seconds in-process", {"type": "object"}, Risk.READ, True),
    ToolSpec("shell", "runs a command", {"type": "object"}, Risk.EXEC, True),
])


async def noop(ctx: TaskContext) -> RunnerResult:
    return RunnerResult("")


async def nap(ctx: TaskContext) -> RunnerResult:
    await asyncio.sleep(float(ctx.args["s"]))
    return RunnerResult("")


BENCH_RUNNERS = {"noop": noop, "nap": nap, "shell": RUNNERS["shell"]}


def random_dag(n: int, seed: int, max_deps: int = 3) -> Plan:
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        k = rng.randint(0, min(max_deps, i))
        deps = [f"t{j}" for j in rng.sample(range(i), k)] if k else []
        tasks.append(Task(id=f"t{i}", title=f"task {i}", tool="noop", deps=deps))
    return Plan(goal="random dag", tasks=tasks)


def wide_dag(levels: int, width: int, tool: str, seconds: float, seed: int) -> Plan:
    rng = random.Random(seed)
    tasks = []
    for lv in range(levels):
        for w in range(width):
            deps = [f"l{lv - 1}w{j}" for j in rng.sample(range(width), 2)] if lv else []
            args = {"s": seconds} if tool == "nap" else {"command": f"sleep {seconds}"}
            tasks.append(Task(id=f"l{lv}w{w}", title="sleep", tool=tool, args=args, deps=deps))
    return Plan(goal="wide dag", tasks=tasks)


async def run_executor(plan: Plan, max_parallel: int, workdir: Path) -> tuple[float, bool, int]:
    ex = Executor("bench", CATALOGUE, workdir, max_parallel=max_parallel, policy=Policy(ApprovalMode.ALL),
                  runners=BENCH_RUNNERS)
    events = 0

    def count(_event) -> None:
        nonlocal events
        events += 1

    ex.subscribe(count)  # one subscriber, as the headless printer would be
    t0 = time.perf_counter()
    ex.add_plan(plan)
    ex.close_plan()
    result = await ex.run()
    return time.perf_counter() - t0, result.ok, events


async def bare_asyncio(plan: Plan) -> float:
    """Floor: create and await each task's no-op coroutine, dependencies first."""
    t0 = time.perf_counter()
    done: dict[str, asyncio.Task] = {}
    for t in plan.tasks:  # ids are already in topological order
        for d in t.deps:
            await done[d]
        done[t.id] = asyncio.ensure_future(noop(None))  # type: ignore[arg-type]
    await asyncio.gather(*done.values())
    return time.perf_counter() - t0


def best_of(k: int, fn) -> float:
    return min(fn() for _ in range(k))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="agx-bench-"))

    plan = random_dag(args.tasks, args.seed)
    edges = sum(len(t.deps) for t in plan.tasks)
    print(f"1. scheduler overhead: random DAG, {args.tasks} no-op tasks, {edges} edges (best of {args.repeat})")
    for mp in (8, args.tasks):
        outcome = {}

        def once(mp=mp):
            wall, ok, events = asyncio.run(run_executor(plan, mp, workdir))
            outcome.update(ok=ok, events=events)
            return wall

        wall = best_of(args.repeat, once)
        assert outcome["ok"], "a no-op task failed"
        print(f"   executor, max_parallel={mp:<5} {wall * 1000:8.1f} ms  ({wall / args.tasks * 1e6:.0f} us/task, "
              f"{outcome['events']} events)  target < 500 ms: {'PASS' if wall < 0.5 else 'FAIL'}")
    base = best_of(args.repeat, lambda: asyncio.run(bare_asyncio(plan)))
    print(f"   baseline: bare asyncio, same DAG  {base * 1000:8.1f} ms")
    print(f"   executor (max_parallel=8) / bare asyncio = {wall / base:.1f}x" if base > 0 else "")

    print("\n2. parallel efficiency: wide DAG of sleeps (ideal = levels x sleep, the critical path)")
    for tool, levels, width, secs in (("nap", 4, 16, 0.5), ("shell", 4, 8, 0.5)):
        p = wide_dag(levels, width, tool, secs, args.seed)
        wall, ok, _ = asyncio.run(run_executor(p, width, workdir))
        assert ok, "a sleep task failed"
        ideal = levels * secs
        serial = levels * width * secs
        eff = ideal / wall
        label = "in-process sleep" if tool == "nap" else "`sleep` processes"
        print(f"   {label:<18} {levels} levels x {width} tasks x {secs}s, max_parallel={width}: wall {wall:.3f}s, "
              f"ideal {ideal:.2f}s, serial {serial:.1f}s -> efficiency {eff:.3f} "
              f"(target >= 0.95: {'PASS' if eff >= 0.95 else 'FAIL'}), speedup vs serial {serial / wall:.1f}x")


if __name__ == "__main__":
    main()
