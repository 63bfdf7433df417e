"""Time to the first dispatched task: streaming plan parsing vs waiting for the whole plan.

    python bench/bench_streaming_dispatch.py [--requests 3] [--max-tokens 768]

Uses the real model (Delta's configured model; by default the bundled SmolLM2-135M) through
the real Planner and Executor on a temporary git repository:

  streaming:  Planner.plan() streams TaskAdded events into the executor as each task's JSON
              object closes; with `--auto read` policy a read-only task starts at once.
  whole plan: the same request planned first, then the complete plan handed to the executor.

Both start their clock right before plan() (model already loaded); planning is greedy
(temperature 0, seed 0) so both modes generate the same text — the script checks that.
Repair rounds are off (0) so both modes time the same single generation.

Two ratios are printed (target <= 0.3):
  paired:   in the streaming run, first dispatch / moment the whole plan was available
            (same generation, so machine-load noise cancels);
  separate: streaming run's first dispatch / a second, whole-plan run's first dispatch
            (only with --separate; noisy on a shared machine).
The time to the first generated token (prompt evaluation, paid by both modes) is shown too:
streaming can only win on the decode time after it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from agx.config import load_config
from agx import events as ev
from agx.execution.executor import Executor
from agx.execution.policy import ApprovalMode, Policy
from agx.execution.builtin_tools import builtin_catalogue
from agx.planning.plan import Task
from agx.planning.planner import Planner
from agx.planning.stream_parser import PlanStreamParser
from agx.runtime.pool import EnginePool

REQUESTS = [
    "Read README.md and src/app.py, then explain what the program does.",
    "Search the repository for the greet function and show the files that use it.",
    "Read the README, then add a usage section to it and run the tests.",
    "Find every TODO comment in the code and write them into TODO.md.",
]


def make_repo() -> Path:
    repo = Path(tempfile.mkdtemp(prefix="agx-bench-repo-"))
    (repo / "src").mkdir()
    (repo / "README.md").write_text("# greeter\n\nA tiny program that greets people.\n")
    (repo / "src" / "app.py").write_text("def greet(name):\n    # TODO: localise\n    return 'hello ' + name\n")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_app.py").write_text("from src.app import greet\n\ndef test_greet():\n    assert greet('a')\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=bench", "-c", "user.email=b@b", "commit", "-q", "-m", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


async def first_dispatch(planner: Planner, repo: Path, request: str, streaming: bool) -> dict:
    """Plan + run with auto-approved read-only tasks; seconds from plan() start to first TaskStarted."""
    ex = Executor("bench", builtin_catalogue(), repo, max_parallel=4, policy=Policy(ApprovalMode.READ))
    first: dict[str, float] = {}
    t0 = time.perf_counter()

    def on_event(event) -> None:
        if isinstance(event, ev.TaskStarted) and "t" not in first:
            first["t"] = time.perf_counter() - t0
            first["task"] = event.task_id

    ex.subscribe(on_event)
    run = asyncio.ensure_future(ex.run())
    await asyncio.sleep(0)

    def forward(event) -> None:
        if streaming and isinstance(event, ev.TaskAdded):
            try:
                ex.add_task(Task.model_validate(event.task))
            except ValueError:
                pass

    result = await asyncio.to_thread(planner.plan, request, forward)
    plan_s = time.perf_counter() - t0
    if result.plan is not None:
        ex.sync_plan(result.plan)
    ex.close_plan()
    ex.deny(None)  # write/exec tasks: nobody approves them in a benchmark
    await run
    ttft = result.stats.generations[0].time_to_first_token_s if result.stats.generations else 0.0
    text = result.raw_outputs[0] if result.raw_outputs else ""
    first_close = None  # where in the output the first task's JSON object closed (share of the text)
    probe = PlanStreamParser()
    for i, ch in enumerate(text):
        if probe.feed(ch):
            first_close = (i + 1) / len(text)
            break
    return {"first": first.get("t"), "task": first.get("task"), "plan_s": plan_s, "ok": result.ok, "ttft": ttft, "first_close": first_close,
            "text": result.raw_outputs[0] if result.raw_outputs else "", "tasks": len(result.plan.tasks) if result.plan else 0,
            "tokens": result.stats.completion_tokens}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=3, help=f"how many of the {len(REQUESTS)} fixed requests")
    ap.add_argument("--max-tokens", type=int, default=768)
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: config)")
    ap.add_argument("--separate", action="store_true", help="also time a separate whole-plan run per request")
    ap.add_argument("--constrained-sampling", choices=("fast", "grammar_first"), default=None,
                    help="how the plan grammar is applied (default: config); compare both for issue #16")
    args = ap.parse_args()

    repo = make_repo()
    overrides = ["roles.delta.n_ctx=4096"] + ([f"roles.delta.n_threads={args.threads}"] if args.threads else [])
    if args.constrained_sampling:
        overrides.append(f"roles.delta.constrained_sampling={args.constrained_sampling}")
    config = load_config(repo, overrides=overrides, use_user_file=False).config
    pool = EnginePool(config, repo)
    engine = pool.engine("delta")
    t = time.perf_counter()
    engine.wait_loaded()
    info = engine.info()
    print(f"model: {info.model} ({info.accelerator}), loaded in {time.perf_counter() - t:.1f}s (not counted)")
    planner = Planner(engine, builtin_catalogue(), repo_dir=repo, repair_rounds=0, max_tokens=args.max_tokens)

    paired, separate = [], []
    print(f"{'request':<44} {'prompt':>7} {'1st task':>9} {'plan done':>10} {'paired':>7} {'separate':>9}  notes")
    for request in REQUESTS[: args.requests]:
        s = asyncio.run(first_dispatch(planner, repo, request, streaming=True))
        w = asyncio.run(first_dispatch(planner, repo, request, streaming=False)) if args.separate else None
        label = request if len(request) <= 43 else request[:42] + "…"
        notes = f"{s['tokens']} tok, {s['tasks']} tasks, valid={s['ok']}, first={s['task']}"
        if s["first_close"] is not None:
            notes += f", 1st task closed at {s['first_close']:.0%} of the output"
        if w is not None:
            notes += ", same text" if s["text"] == w["text"] else ", TEXT DIFFERS"
        if s["first"] is None:
            print(f"{label:<44} {s['ttft']:>6.1f}s {'-':>9} {s['plan_s']:>9.1f}s {'-':>7} {'-':>9}  "
                  f"no read-only task could start ({notes})")
            continue
        r_paired = s["first"] / s["plan_s"]
        paired.append(r_paired)
        r_sep = "-"
        if w is not None and w["first"]:
            separate.append(s["first"] / w["first"])
            r_sep = f"{separate[-1]:.2f}"
        print(f"{label:<44} {s['ttft']:>6.1f}s {s['first']:>8.1f}s {s['plan_s']:>9.1f}s {r_paired:>7.2f} {r_sep:>9}  {notes}")
    if paired:
        med = statistics.median(paired)
        print(f"\nmedian paired ratio (first dispatch / whole plan ready): {med:.2f} "
              f"(target <= 0.3: {'PASS' if med <= 0.3 else 'FAIL'}) over {len(paired)} request(s)")
    if separate:
        print(f"median separate-run ratio: {statistics.median(separate):.2f}")
    if not paired:
        print("\nno request produced a read-only task, so nothing could be dispatched early")
    pool.close()


if __name__ == "__main__":
    main()
