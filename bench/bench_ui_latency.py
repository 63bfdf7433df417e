"""Keypress-to-screen latency in the shell while Echo streams at full speed.

Drives the real app headless (Textual's Pilot) on the bundled model: Echo answers a long
prompt while keys are typed into the input; each sample is the time from a key press until
the input widget shows it (posted as the terminal driver posts keys).
Baseline: the same presses with nothing streaming, measured in the same run.

    python bench/bench_ui_latency.py [--presses 60] [--max-tokens 400]

Target: p95 < 30 ms while streaming.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agx.config import load_config
from agx.runtime.pool import EnginePool
from agx.ui.app import AgxApp


REPORT: list[str] = []


def out(*args) -> None:
    # Textual captures stdout while an app runs: collect, print once asyncio.run returns.
    REPORT.append(" ".join(str(a) for a in args))


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def press_latencies(app, n: int, keep_going=lambda: True) -> list[float]:
    """Post each key exactly as the terminal driver does and time it until the input widget
    shows it. (Pilot.press waits for the whole app to go idle, which never happens while tokens
    stream, so it would measure the stream rather than the key.) The frame that paints the change
    follows within 1 / max_fps."""
    from textual import events
    from textual.widgets import Input

    box = app.query_one("#input", Input)
    samples = []
    for i in range(n):
        if not keep_going():
            break
        key = "x" if i % 2 == 0 else "backspace"
        before = box.value
        t0 = time.perf_counter()
        app.post_message(events.Key(key, "x" if key == "x" else None))
        while box.value == before:
            await asyncio.sleep(0.0005)
        samples.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(0.1)  # a fast typist: ~10 keys/s
    return samples


async def main(args) -> None:
    print('starting (loads the bundled model)…', file=sys.stderr, flush=True)
    repo = Path(tempfile.mkdtemp()) / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    config = load_config(repo, overrides=[f"roles.echo.sampling.max_tokens={args.max_tokens}",
                                          "roles.echo.sampling.temperature=0.7", "roles.echo.n_ctx=2048"],
                         use_user_file=False).config
    pool = EnginePool(config, repo)
    app = AgxApp(config, pool, repo, watch_files=False, route_messages=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await asyncio.to_thread(pool.engine("echo").wait_loaded)
        await pilot.pause(0.5)
        idle = await press_latencies(app, args.presses)
        sid = app.send_chat("Write a long story about a lighthouse keeper, in many paragraphs.")
        await asyncio.sleep(0.5)  # let the stream start
        answer = app.chat.answer(sid)
        streaming = await press_latencies(app, args.presses, lambda: "tok" not in str(answer.border_subtitle))
        while "tok" not in str(answer.border_subtitle):
            await pilot.pause(0.1)
        tok_s = app.query_one("#status").roles["echo"].tokens_per_s
    pool.close()
    out(f"keypress-to-screen latency (ms), {len(idle)} / {len(streaming)} presses")
    out(f"  idle       p50 {statistics.median(idle):6.1f}  p95 {pct(idle, 95):6.1f}")
    out(f"  streaming  p50 {statistics.median(streaming):6.1f}  p95 {pct(streaming, 95):6.1f}   "
          f"(Echo at {tok_s:.0f} tok/s)")
    out(f"  ratio p95 streaming/idle: {pct(streaming, 95) / max(pct(idle, 95), 1e-9):.2f}")
    out(f"  target p95 < 30 ms while streaming: {'met' if pct(streaming, 95) < 30 else 'NOT met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=60)
    parser.add_argument("--max-tokens", type=int, default=400)
    asyncio.run(main(parser.parse_args()))
    if not REPORT:
        # Seen intermittently: the headless app run ends before the measurement completes,
        # without an exception reaching us. Fail loudly rather than print nothing and exit 0.
        sys.exit("bench_ui_latency: the app run ended before any figures were taken; run it again")
    # sys.__stdout__: seen intermittently, sys.stdout was still Textual's capture here (the
    # report went nowhere and the script exited 0 with no output).
    print("\n".join(REPORT), file=sys.__stdout__, flush=True)
