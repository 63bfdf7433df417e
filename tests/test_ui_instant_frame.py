"""The instant first frame (agx/ui/instant_frame.py) and keys typed while the shell starts.

Real parts throughout: pseudo-terminals, `python -m agx` as a child process on one, the bundled
model, a git repository in a temp dir.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import pytest

from agx.workspace.files import TMP_SUFFIX
from agx.ui.instant_frame import (ENTER_ALT_SCREEN, HIDE_CURSOR, KEEP_FRAMES, LEAVE_ALT_SCREEN, FrameCache,
                                  frame_cache_dir)

COLUMNS, ROWS = 120, 36
_ESCAPES = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")
TEXTUAL_STARTED = b"\x1b[?1004h"  # focus reporting: Textual's driver turns it on as it starts


def _visible(stream: bytes) -> str:
    return _ESCAPES.sub(b"", stream).decode("utf-8", "replace")


class PtyProcess:
    """A child process on its own pseudo-terminal; everything it writes is kept in `out`."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str]):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self.attrs_at_start = termios.tcgetattr(slave)
        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.out = b""

    def pump(self, timeout: float = 0.02) -> None:
        if select.select([self.master], [], [], timeout)[0]:
            try:
                self.out += os.read(self.master, 65536)
            except OSError:
                pass

    def wait_for(self, test, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not test():
            if time.monotonic() > deadline or self.proc.poll() is not None and not test():
                raise AssertionError(f"{what} never happened; screen text: {_visible(self.out)[-2000:]!r}")
            self.pump()

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def terminal_attrs(self) -> list:
        return termios.tcgetattr(self.master)  # a pty master reports its terminal's modes

    def quit(self) -> int:
        self.type("\x11")  # ctrl+q
        deadline = time.monotonic() + 30
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.pump(0.05)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait()
        self.pump(0.05)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


def _agx_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}  # pytest sets them
    env.update(TERM="xterm-256color", COLORTERM="truecolor", XDG_CACHE_HOME=str(tmp_path / "cache"),
               XDG_CONFIG_HOME=str(tmp_path / "config"))
    return env


def _kept_frames(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "agx" / "frames").glob("*.frame"))


def test_second_start_shows_the_kept_frame_at_once_and_keeps_early_keys(git_repo, tmp_path):
    env = _agx_env(tmp_path)
    cmd = [sys.executable, "-m", "agx", "--set", "roles.echo.n_ctx=1024", "--set", "roles.delta.n_ctx=1024"]

    # First start: nothing kept yet. Keys typed before anything is drawn reach the input; the
    # first frame, which then shows them, is not kept (the next start would show them too).
    first = PtyProcess(cmd, git_repo, env)
    try:
        first.type("early")
        first.wait_for(lambda: TEXTUAL_STARTED in first.out, 60, "Textual's start")
        first.wait_for(lambda: "early" in _visible(first.out), 30, "the early keys in the input")
        assert first.quit() == 0
    finally:
        first.close()
    assert not _kept_frames(tmp_path)

    # Second start, nothing typed: its first frame is kept.
    cold = PtyProcess(cmd, git_repo, env)
    try:
        cold.wait_for(lambda: _kept_frames(tmp_path), 60, "the first frame being kept")
        assert cold.quit() == 0
    finally:
        cold.close()
    [kept] = _kept_frames(tmp_path)
    assert kept.name.endswith(f"-{COLUMNS}x{ROWS}.frame")
    # (The terminal turns each "\n" into "\r\n" on the way out, for Textual as for us.)
    frame = kept.read_bytes().replace(b"\n", b"\r\n")
    assert "Message Echo" in _visible(frame)  # the input's placeholder: the shell's first frame

    # Third start: the kept frame is the first thing on screen, before Textual has started.
    second = PtyProcess(cmd, git_repo, env)
    try:
        second.wait_for(lambda: frame in second.out, 30, "the kept frame")
        assert second.out.startswith(ENTER_ALT_SCREEN.encode() + HIDE_CURSOR.encode() + frame)
        typed_before_textual = TEXTUAL_STARTED not in second.out
        second.type("hello")
        second.wait_for(lambda: TEXTUAL_STARTED in second.out, 60, "Textual's start")
        assert typed_before_textual, "the test must type while only the kept frame is up"
        # What Textual draws after the kept frame shows the keys typed meanwhile in the input.
        second.wait_for(lambda: "hello" in _visible(second.out[len(frame):]), 30, "the typed keys")
        assert second.quit() == 0
    finally:
        second.close()

    # Fourth start: a whole message typed and sent (Enter) while only the kept frame is up is
    # sent once the shell reads it, waits for the model, and Echo answers it (session log).
    third = PtyProcess(cmd, git_repo, env)
    try:
        third.wait_for(lambda: frame in third.out, 30, "the kept frame")
        typed_before_textual = TEXTUAL_STARTED not in third.out
        third.type("say hi\r")
        assert typed_before_textual, "the test must type while only the kept frame is up"
        third.wait_for(lambda: any('"say hi"' in p.read_text() for p in (git_repo / ".agx" / "sessions").glob("*.jsonl"))
                       if (git_repo / ".agx" / "sessions").is_dir() else False, 120, "Echo's answer in the session log")
        # Textual must not enter the alternate screen again: that would clear the frame.
        assert third.out.count(ENTER_ALT_SCREEN.encode()) == 1
        assert third.quit() == 0
        assert LEAVE_ALT_SCREEN.encode() in third.out
        # The terminal is left in the modes it had before agx started (echo, line editing, ...).
        assert third.terminal_attrs() == third.attrs_at_start
    finally:
        third.close()


_HOLD_SCRIPT = textwrap.dedent("""
    import os, sys, termios
    from pathlib import Path
    from agx.ui.instant_frame import FrameCache, hold_terminal
    held = hold_terminal(FrameCache(Path(sys.argv[1]), "fingerprint"))
    iflag, lflag = termios.tcgetattr(0)[0], termios.tcgetattr(0)[3]
    os.write(2, f"HELD icrnl={bool(iflag & termios.ICRNL)} ixon={bool(iflag & termios.IXON)} "
                f"echo={bool(lflag & termios.ECHO)} icanon={bool(lflag & termios.ICANON)} "
                f"isig={bool(lflag & termios.ISIG)} susp={termios.tcgetattr(0)[6][termios.VSUSP]!r} "
                f"shown={held.frame_shown}|".encode())
    held.release()
    iflag, lflag = termios.tcgetattr(0)[0], termios.tcgetattr(0)[3]
    os.write(2, f"RELEASED icrnl={bool(iflag & termios.ICRNL)} ixon={bool(iflag & termios.IXON)} "
                f"echo={bool(lflag & termios.ECHO)} icanon={bool(lflag & termios.ICANON)} "
                f"susp={termios.tcgetattr(0)[6][termios.VSUSP]!r}|".encode())
""")


@pytest.mark.parametrize("kept", [True, False], ids=["with a kept frame", "without one"])
def test_hold_terminal_quiets_the_terminal_and_release_restores_it(tmp_path, kept):
    cache = FrameCache(tmp_path / "frames", "fingerprint")
    if kept:
        cache.store(COLUMNS, ROWS, "\x1b[1;1HKEPT FRAME")
    child = PtyProcess([sys.executable, "-c", _HOLD_SCRIPT, str(cache.directory)], tmp_path, _agx_env(tmp_path))
    try:
        child.wait_for(lambda: child.proc.poll() is not None, 30, "the script's end")
        child.pump(0.1)
        out = child.out.decode()
        # ctrl+c still interrupts a slow start; ctrl+z does not stop it with the frame up
        # Enter queued as "\r", ctrl+q as a key (not flow control), as Textual will read them
        assert "HELD icrnl=False ixon=False echo=False icanon=False isig=True susp=b'\\x00'" in out
        assert "RELEASED icrnl=True ixon=True echo=True icanon=True susp=b'\\x1a'" in out
        if kept:
            assert out.startswith(ENTER_ALT_SCREEN + HIDE_CURSOR + "\x1b[1;1HKEPT FRAME")
            assert "shown=True" in out and LEAVE_ALT_SCREEN + "RELEASED icrnl=True" in out
        else:
            assert "shown=False" in out and ENTER_ALT_SCREEN not in out and LEAVE_ALT_SCREEN not in out
        assert child.proc.returncode == 0
    finally:
        child.close()


def test_hold_terminal_does_nothing_without_a_terminal(tmp_path):
    cache = FrameCache(tmp_path / "frames", "fingerprint")
    cache.store(COLUMNS, ROWS, "KEPT FRAME")
    out = subprocess.run([sys.executable, "-c", _HOLD_SCRIPT.split("iflag, lflag")[0] + "print(held)", str(cache.directory)],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "None" and "KEPT" not in out.stderr


def test_the_key_follows_everything_the_first_frame_depends_on(tmp_path):
    config = tmp_path / "agx.toml"
    config.write_text("[ui]\nmax_fps = 30\n")
    env = {"TERM": "xterm-256color", "HOME": "/home/a", "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def key(cwd=tmp_path, argv=(), environ=env):
        return FrameCache.for_start(cwd, list(argv), [config], environ).fingerprint

    base = key()
    assert key() == base  # deterministic
    assert key(environ={**env, "HOME": "/home/b"}) == base  # nothing drawn depends on it
    assert key(environ={**env, "TERM": "xterm"}) != base  # colours
    assert key(environ={**env, "AGX_UI__MAX_FPS": "10"}) != base  # a config layer
    assert key(argv=["--resume"]) != base
    assert key(cwd=tmp_path / "..") != base
    config.write_text("[ui]\nmax_fps = 20\n")  # same size, new mtime
    os.utime(config, ns=(1, 1))
    assert key() != base
    cache = FrameCache.for_start(tmp_path, [], [config], env)
    assert cache.directory == frame_cache_dir(env) == tmp_path / "cache" / "agx" / "frames"
    assert cache.path(80, 24) != cache.path(81, 24)


def test_frames_are_kept_whole_pruned_and_never_raise(tmp_path):
    cache = FrameCache(tmp_path / "frames", "fp")
    assert cache.load(80, 24) is None
    cache.store(80, 24, "frame one ✓\r\n\x1b[2;1Hline\r")
    assert cache.load(80, 24) == "frame one ✓\r\n\x1b[2;1Hline\r"  # byte for byte
    assert not list(cache.directory.glob(f".*{TMP_SUFFIX}"))  # written beside, then renamed over
    old = time.time_ns() - 1000 * 10**9
    os.utime(cache.path(80, 24), ns=(old, old))
    for width in range(KEEP_FRAMES + 5):
        cache.store(100 + width, 30, f"frame {width}")
        # Ages in store order (each newer than the one before, all older than a new store).
        stamp = time.time_ns() - (500 - width) * 10**9
        os.utime(cache.path(100 + width, 30), ns=(stamp, stamp))
    kept = sorted(cache.directory.glob("*.frame"))
    assert len(kept) == KEEP_FRAMES
    assert cache.load(100 + KEEP_FRAMES + 4, 30) is not None and cache.load(80, 24) is None  # oldest went
    cache.forget()
    assert not list(cache.directory.glob("*.frame"))
    blocked = FrameCache(tmp_path / "a-file" / "frames", "fp")
    (tmp_path / "a-file").write_text("not a folder")
    blocked.store(80, 24, "frame")  # a cache folder that cannot be made costs only the frame
    assert blocked.load(80, 24) is None


@pytest.mark.parametrize("enabled", [True, False])
async def test_the_shell_keeps_its_first_frame_unless_turned_off(git_repo, tmp_path, enabled):
    from agx.config import load_config
    from agx.ui.app import AgxApp

    config = load_config(git_repo, overrides=[f"ui.instant_frame={str(enabled).lower()}"], use_user_file=False).config
    cache = FrameCache(tmp_path / "frames", "fp")
    cache.store(100, 30, "an older frame")
    app = AgxApp(None, None, git_repo, configure=lambda: (config, None), load_models=False, watch_files=False,
                 frames=cache)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        deadline = time.monotonic() + 10
        while enabled and cache.load(100, 30) == "an older frame" and time.monotonic() < deadline:
            await pilot.pause(0.05)
        kept = cache.load(100, 30)
        if enabled:
            assert kept is not None and kept != "an older frame"
            assert "Message Echo" in _visible(kept.encode())
            assert kept.startswith("\x1b[1;1H")  # drawn by absolute position, like Textual's own frames
        else:
            assert kept is None  # turned off: not kept, and the old one is gone
