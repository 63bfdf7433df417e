"""Delta plan validity on a fixed set of requests over agx's built-in tools.

For each request, in a temporary git repository: does Delta's first answer parse, is it valid
(0 repair rounds), and is it valid after up to N repair rounds? The baseline measured in the
same run is the same model with the portable JSON-schema constraint instead of the in-process
grammar (ids t1..tN, deps only backwards), so the ratio shows what the grammar buys.

    python bench/bench_plan_validity.py                 # bundled model, N=2
    python bench/bench_plan_validity.py --repair-rounds 1 --limit 4 --profile mac
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REQUESTS = [
    "Explain what src/app.py does",
    "Find every TODO in the repository and summarise them",
    "Add a docstring to greet in src/app.py",
    "Run the tests and explain any failure",
    "Create a CHANGELOG.md with one entry for version 0.1.0",
    "Rename greet to welcome in src/app.py and commit the change",
    "Add a test file tests/test_app.py that checks greet('bob')",
    "Show the git log summary and the list of Python files",
    "Read README.md and src/app.py, then suggest improvements",
    "Replace 'hello' with 'hi' in src/app.py, run the tests, then commit",
]


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "README.md").write_text("# demo\n\nA demo project with a greet function.\n")
    (repo / "src" / "app.py").write_text("def greet(name):\n    # TODO: localise\n    return 'hello ' + name\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.email=b@example.com", "-c", "user.name=bench", "commit", "-q", "-m", "initial"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


def measure(planner, requests: list[str]) -> dict:
    parsed = valid0 = validn = 0
    tokens = 0
    t0 = time.perf_counter()
    for text in requests:
        result = planner.plan(text)
        tokens += result.stats.completion_tokens
        from agx.planning.stream_parser import parse_plan_text
        from agx.planning.validate import validate_plan

        first, error = parse_plan_text(result.raw_outputs[0]) if result.raw_outputs else (None, "no output")
        parsed += error is None
        valid0 += error is None and validate_plan(first, planner.catalogue).ok
        validn += result.ok
        print(f"  {'ok ' if result.ok else 'BAD'} rounds={result.rounds} {text!r}"
              + ("" if result.ok else f"  [{result.errors[0][:90]}]"), flush=True)
    n = len(requests)
    return {"parseable": parsed / n, "valid0": valid0 / n, "validN": validn / n,
            "seconds": time.perf_counter() - t0, "tokens": tokens}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repair-rounds", type=int, default=2)
    ap.add_argument("--limit", type=int, default=len(REQUESTS), help="use the first N requests")
    ap.add_argument("--profile", default=None, help="agx hardware profile (default: bundled model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-baseline", action="store_true", help="skip the JSON-schema-only baseline")
    args = ap.parse_args()

    from agx.config import load_config
    from agx.execution.builtin_tools import builtin_catalogue
    from agx.planning.planner import Planner
    from agx.runtime.pool import EnginePool

    requests = REQUESTS[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp))
        config = load_config(repo, profile=args.profile, use_user_file=False,
                             overrides=[f"roles.delta.n_threads={args.threads}"]).config
        pool = EnginePool(config, repo)
        engine = pool.engine("delta")
        rows = {}
        planner = Planner(engine, builtin_catalogue(), repo_dir=repo, repair_rounds=args.repair_rounds, max_tasks=6)
        print(f"grammar ({'in-process GBNF' if planner.grammar else 'JSON schema'}), N={args.repair_rounds}:")
        rows["grammar"] = measure(planner, requests)
        if not args.no_baseline and planner.grammar is not None:
            planner.grammar = None  # the baseline: the portable JSON-schema constraint only
            print(f"baseline (JSON schema only), N={args.repair_rounds}:")
            rows["baseline"] = measure(planner, requests)
        pool.close()

    n = args.repair_rounds
    print(f"\nDelta plan validity, {len(requests)} requests, model {config.role('delta').model}")
    print(f"{'constraint':<12} {'parseable':>9} {'valid@0':>8} {'valid@' + str(n):>8} {'tokens':>7} {'seconds':>8}")
    for name, r in rows.items():
        print(f"{name:<12} {r['parseable']:>9.0%} {r['valid0']:>8.0%} {r['validN']:>8.0%} {r['tokens']:>7} {r['seconds']:>8.1f}")
    if "baseline" in rows:
        base = rows["baseline"]["validN"]
        ratio = rows["grammar"]["validN"] / base if base else float("inf")
        print(f"valid@{n} grammar / baseline: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
