"""First paint of the shell: from process start to the first frame in a real terminal.

Each sample starts a fresh process on a pseudo-terminal (160x45) and reads what it writes
until the frame's text appears: for agx, the real command (`python -m agx`, so CLI parsing,
config validation and every import count) until the input's placeholder is on screen; for
the baseline, a bare Textual app with one Static until its text is on screen. Then it sends
ctrl+q and waits for the process to exit. Models load in the background after the first
frame and do not delay it.

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


def first_paint(cmd: list[str], marker: bytes, cwd: Path, timeout: float = 60.0) -> float:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 45, 160, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                            start_new_session=True)
    os.close(slave)
    seen = b""
    painted = None
    deadline = t0 + timeout
    try:
        while painted is None and time.perf_counter() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                seen += chunk
                if marker in _visible(seen):
                    painted = time.perf_counter() - t0
            elif proc.poll() is not None:
                break
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
    return painted


_ESCAPES = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")


def _visible(stream: bytes) -> bytes:
    """The text of a terminal byte stream without its control sequences (the input's cursor,
    drawn on the placeholder's first letter, splits the words with styling codes)."""
    return _ESCAPES.sub(b"", stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    repo = Path(tempfile.mkdtemp()) / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    bare, shell = [], []
    for _ in range(args.runs):
        bare.append(first_paint([sys.executable, "-c", BARE], b"bare textual app painted", repo))
        shell.append(first_paint([sys.executable, "-m", "agx"], b"Message Echo", repo))
    b, s = statistics.median(bare) * 1000, statistics.median(shell) * 1000
    print(f"first paint in a pseudo-terminal (ms, median of {args.runs}, process start -> frame text on screen):")
    print(f"  bare Textual app {b:6.0f}   agx shell {s:6.0f}   ratio {s / b:.2f}")
    print(f"  runs bare {[round(x * 1000) for x in bare]}, agx {[round(x * 1000) for x in shell]}")
    print(f"  target < 300 ms: {'met' if s < 300 else 'NOT met'}")


if __name__ == "__main__":
    main()
