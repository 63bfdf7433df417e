"""Decode speed with the shell on screen vs headless (`agx chat`'s path), same run, same model.

Headless: Conversation.send on the Echo engine, consumed in a plain loop. Shell: the same
prompt sent from the app's input; tokens/s from the answer's stats. Runs alternate
(headless, shell, headless, ...) so machine load affects both alike.

    python bench/bench_ui_decode.py [--rounds 3] [--max-tokens 200]

Target: shell / headless >= 0.95.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import statistics
import subprocess
import tempfile
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
                                          f"ui.max_fps={args.max_fps}"],
                         use_user_file=False).config
    pool = EnginePool(config, repo)
    engine = pool.engine("echo")
    engine.wait_loaded()
    headless, shell = [], []
    app = AgxApp(config, pool, repo, watch_files=False, route_messages=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause(0.5)
        for _ in range(args.rounds):
            stream = await asyncio.to_thread(lambda: Conversation("echo", engine).send(PROMPT))
            await asyncio.to_thread(stream.read)
            headless.append(stream.stats.tokens_per_s)
            sid = app.send_chat(PROMPT)
            answer = app.chat.answer(sid)
            while "tok" not in str(answer.border_subtitle):
                await pilot.pause(0.1)
            shell.append(app.query_one("#status").roles["echo"].tokens_per_s)
            app._conversations.clear()  # same (empty) history for every shell round
    pool.close()
    h, s = statistics.median(headless), statistics.median(shell)
    out(f"decode tokens/s (median of {args.rounds}): headless {h:.1f}, shell {s:.1f}")
    out(f"  rounds headless {[round(x, 1) for x in headless]}, shell {[round(x, 1) for x in shell]}")
    out(f"  ratio shell/headless: {s / h:.3f}  (target >= 0.95: {'met' if s / h >= 0.95 else 'NOT met'})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--max-fps", type=int, default=30, help="ui.max_fps for the shell rounds (default 30)")
    asyncio.run(main(parser.parse_args()))
