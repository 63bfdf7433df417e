"""First paint of the shell: from process start to the first frame in a real terminal.

Each sample starts a fresh process on a pseudo-terminal (160x45) and reads what it writes
until the frame's text appears: for agx, the real command (`python -m agx`, so CLI parsing,
config validation and every import count) until the input's placeholder is on screen; for
the baseline, a bare Textual app with one Static until its text is on screen. Then it sends
ctrl+q and waits for the process to exit. Models load in the background after the first
frame and do not delay it.

agx is measured two ways (agx/ui/instant_frame.py):
  cold   an empty frame cache (first start in this directory/size/config): the first frame
         is Textual's own;
  warm   the cache holds the last start's first frame, which agx writes before it imports
         Textual: "first frame" is that, "live frame" is Textual's first frame drawn over it
         (the second time the placeholder appears), from when on the shell reacts to keys.

    python bench/bench_ui_first_paint.py [--runs 5]

Target: < 300 ms.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

BARE = r'''
from textual.app import App
from textual.widgets import Static
class Bare(App):
    BINDINGS = [("ctrl+q", "quit", "Quit")]
    def compose(self):
        yield Static("bare textual app painted")
Bare().run()
'''


def first_paint(cmd: list[str], marker: bytes, cwd: Path, env: dict | None = None, *,
                wait_for=None, timeout: float = 60.0) -> tuple[float, float | None]:
    """Seconds until `marker` is first on screen, and until it is drawn a second time (None
    if not within a second after the first); then, once `wait_for()` is true, ctrl+q."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 45, 160, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor", **(env or {})}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                            start_new_session=True)
    os.close(slave)
    seen = b""
    painted = repainted = None
    deadline = t0 + timeout
    try:
        while time.perf_counter() < deadline:
            if painted is not None and (repainted is not None or time.perf_counter() - t0 > painted + 1.0):
                break
            ready, _, _ = select.select([master], [], [], 0.01)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                seen += chunk
                count = _visible(seen).count(marker)
                now = time.perf_counter() - t0
                if count >= 1 and painted is None:
                    painted = now
                if count >= 2 and repainted is None:
                    repainted = now
            elif proc.poll() is not None:
                break
        while wait_for is not None and not wait_for() and time.perf_counter() < deadline:
            if select.select([master], [], [], 0.05)[0]:
                os.read(master, 65536)
        os.write(master, b"\x11")  # ctrl+q
        quit_by = time.perf_counter() + 15
        while proc.poll() is None and time.perf_counter() < quit_by:
            # keep reading: a child blocked on a full pty could not exit
            if select.select([master], [], [], 0.05)[0]:
                try:
                    os.read(master, 65536)
                except OSError:
                    break
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        os.close(master)
    if painted is None:
        tail = seen[-1500:].decode("utf-8", "replace")
        raise SystemExit(f"no first frame within {timeout}s from {cmd}: {tail!r}")
    return painted, repainted


_ESCAPES = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")


def _visible(stream: bytes) -> bytes:
    """The text of a terminal byte stream without its control sequences (the input's cursor,
    drawn on the placeholder's first letter, splits the words with styling codes)."""
    return _ESCAPES.sub(b"", stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    repo = work / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    agx = [sys.executable, "-m", "agx"]
    warm_cache = work / "warm-cache"
    frames = warm_cache / "agx" / "frames"
    # Prime the warm cache: one start that stays until it has kept its first frame.
    first_paint(agx, b"Message Echo", repo, {"XDG_CACHE_HOME": str(warm_cache)},
                wait_for=lambda: any(frames.glob("*.frame")))
    bare, cold, warm, live = [], [], [], []
    for n in range(args.runs):
        bare.append(first_paint([sys.executable, "-c", BARE], b"bare textual app painted", repo)[0])
        cold.append(first_paint(agx, b"Message Echo", repo, {"XDG_CACHE_HOME": str(work / f"cold-{n}")})[0])
        first, second = first_paint(agx, b"Message Echo", repo, {"XDG_CACHE_HOME": str(warm_cache)})
        warm.append(first)
        if second is not None:
            live.append(second)
    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    runs = lambda xs: [round(x * 1000) for x in xs]  # noqa: E731
    b = ms(bare)
    print(f"first paint in a pseudo-terminal (ms, median of {args.runs}, process start -> frame text on screen):")
    print(f"  bare Textual app            {b:6.0f}")
    print(f"  agx, cold (Textual's frame) {ms(cold):6.0f}   ratio to bare {ms(cold) / b:.2f}")
    print(f"  agx, warm: first frame      {ms(warm):6.0f}   ratio to bare {ms(warm) / b:.2f}")
    if live:
        print(f"  agx, warm: live frame       {ms(live):6.0f}   ratio to bare {ms(live) / b:.2f}"
              f"   ({len(live)} of {args.runs} runs showed it)")
    print(f"  runs bare {runs(bare)}, cold {runs(cold)}, warm {runs(warm)}, live {runs(live)}")
    print(f"  target < 300 ms: warm {'met' if ms(warm) < 300 else 'NOT met'}, "
          f"cold {'met' if ms(cold) < 300 else 'NOT met'}")


if __name__ == "__main__":
    main()
