"""First paint of the shell: from process start to the first frame on screen.

Each sample is a fresh process (so imports count) that runs the app headless and reports when
its first refresh completed; models load in the background and do not delay it. Baseline: a
bare Textual app with one Static, measured the same way in the same run.

    python bench/bench_ui_first_paint.py [--runs 5]

Target: < 300 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r'''
import time, json, sys, asyncio
T0 = time.perf_counter()
kind, repo = sys.argv[1], sys.argv[2]
if kind == "agx":
    from pathlib import Path
    from agx.config import load_config
    from agx.runtime.pool import EnginePool
    from agx.ui.app import AgxApp
    config = load_config(Path(repo), overrides=[], use_user_file=False).config
    app = AgxApp(config, EnginePool(config, Path(repo)), Path(repo), watch_files=False)
else:
    from textual.app import App
    from textual.widgets import Static
    class Bare(App):
        def compose(self):
            yield Static("hello")
    app = Bare()
async def main():
    painted = asyncio.Event()
    async with app.run_test(size=(160, 45)) as pilot:
        app.call_after_refresh(painted.set)
        await painted.wait()
        t = time.perf_counter() - T0
        print(json.dumps({"first_paint_s": t}), flush=True)
        app.exit()
asyncio.run(main())
'''


def sample(kind: str, repo: Path) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(repo)], capture_output=True, text=True, timeout=120)
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)["first_paint_s"]
    raise SystemExit(f"child failed: {out.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    repo = Path(tempfile.mkdtemp()) / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    bare, shell = [], []
    for _ in range(args.runs):
        bare.append(sample("bare", repo))
        shell.append(sample("agx", repo))
    b, s = statistics.median(bare) * 1000, statistics.median(shell) * 1000
    print(f"first paint (ms, median of {args.runs}, process start -> first frame):")
    print(f"  bare Textual app {b:6.0f}   agx shell {s:6.0f}   ratio {s / b:.2f}")
    print(f"  target < 300 ms: {'met' if s < 300 else 'NOT met'}")


if __name__ == "__main__":
    main()
