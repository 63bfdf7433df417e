"""Decode speed with the shell on screen vs headless (`agx chat`'s path), same run, same model.

Headless: Conversation.send on the Echo engine, consumed in a plain loop. Shell: the same
prompt sent from the app's input; tokens/s from the answer's stats. Runs alternate
(headless, shell, headless, ...) so machine load affects both alike; the first pair warms up
and is reported but not counted. Also prints the share of a core the UI thread used while
the shell streamed. The harness waits with asyncio.sleep, not Pilot.pause (which forces a
screen update per call and would add its own drawing to the UI's cost).

    python bench/bench_ui_decode.py [--rounds 3] [--max-tokens 200] [--max-fps 30] [--render-budget 0.06]

Target: shell / headless >= 0.95.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from agx.config import load_config
from agx.conversation import Conversation
from agx.runtime.pool import EnginePool
from agx.ui.app import AgxApp


def out(*args) -> None:
    # Textual redirects sys.stdout while an app runs; write to the real stdout.
    print(*args, file=sys.__stdout__, flush=True)

PROMPT = "Explain in detail how a git worktree differs from a clone."


async def main(args) -> None:
    print('starting (loads the bundled model)…', file=sys.stderr, flush=True)
    repo = Path(tempfile.mkdtemp()) / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    config = load_config(repo, overrides=[f"roles.echo.sampling.max_tokens={args.max_tokens}",
                                          "roles.echo.sampling.temperature=0", "roles.echo.n_ctx=2048",
                                          f"ui.max_fps={args.max_fps}", f"ui.render_budget={args.render_budget}"],
                         use_user_file=False).config
    pool = EnginePool(config, repo)
    engine = pool.engine("echo")
    engine.wait_loaded()
    headless, shell, ui_share = [], [], []
    app = AgxApp(config, pool, repo, watch_files=False, route_messages=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause(0.5)
        for _ in range(args.rounds + 1):
            stream = await asyncio.to_thread(lambda: Conversation("echo", engine).send(PROMPT))
            await asyncio.to_thread(stream.read)
            headless.append(stream.stats.tokens_per_s)
            wall0, cpu0 = time.perf_counter(), time.thread_time()  # this is the UI thread
            sid = app.send_chat(PROMPT)
            answer = app.chat.answer(sid)
            while "tok" not in str(answer.border_subtitle):
                await asyncio.sleep(0.1)
            ui_share.append((time.thread_time() - cpu0) / (time.perf_counter() - wall0))
            shell.append(app.query_one("#status").roles["echo"].tokens_per_s)
            app._conversations.clear()  # same (empty) history for every shell round
    pool.close()
    h, s = statistics.median(headless[1:]), statistics.median(shell[1:])
    out(f"decode tokens/s (median of {args.rounds} after a warm-up pair; ui.max_fps={args.max_fps}, "
        f"ui.render_budget={args.render_budget}): headless {h:.1f}, shell {s:.1f}")
    out(f"  rounds headless {[round(x, 1) for x in headless]}, shell {[round(x, 1) for x in shell]}")
    out(f"  UI thread, share of a core while the shell streamed: {[round(x, 2) for x in ui_share]}")
    out(f"  ratio shell/headless: {s / h:.3f}  (target >= 0.95: {'met' if s / h >= 0.95 else 'NOT met'})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--max-fps", type=int, default=30, help="ui.max_fps for the shell rounds (default 30)")
    parser.add_argument("--render-budget", type=float, default=0.06,
                        help="ui.render_budget for the shell rounds (default 0.06; 1 = frames limited by max-fps only)")
    asyncio.run(main(parser.parse_args()))
