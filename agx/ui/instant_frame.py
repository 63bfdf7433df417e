"""Instant first frame: the shell's last first frame, on screen while Python loads Textual.

Why: before Textual can draw, Python has to import it (and the shell's widgets). On the 2-core
dev VM that alone is ~400 ms, on any machine most of the time to the first frame. So each start
keeps the exact bytes Textual wrote for its first frame (`FrameCache.store`), and the next start
in the same terminal size, directory, config and agx code writes them at once
(`hold_terminal`), ~80 ms after the process starts. Textual then takes over the screen
(`handover_driver`) and its own first frame lands on the same picture.

Nothing a person types is lost or scribbled over: from the start on (frame or not) the terminal
does not echo, does not wait for Enter and translates nothing, so keys stay in its input queue,
as typed, until Textual reads them (it switches modes with TCSANOW, which keeps the queue).
ctrl+c still interrupts. Whatever ends the start before Textual has the terminal, `HeldTerminal.release`
restores the terminal exactly as it was. `ui.instant_frame = false` in agx.toml turns it off
(the shell then deletes the kept frame, so the next start has none to show).

This module uses the standard library only: it runs before anything heavy is imported.
"""

from __future__ import annotations

import os
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from agx.config.paths import xdg_agx_dir
from agx.workspace.files import atomic_write

ENTER_ALT_SCREEN = "\x1b[?1049h"
LEAVE_ALT_SCREEN = "\x1b[?1049l"
HIDE_CURSOR = "\x1b[?25l"
SHOW_CURSOR = "\x1b[?25h"
FRAME_SUFFIX = ".frame"
KEEP_FRAMES = 24  # one per (directory, terminal size, config); the oldest go first
# Environment that changes what Textual draws (colours, driver) or what agx loads.
_ENV_PREFIXES = ("AGX_", "TEXTUAL")
_ENV_NAMES = ("TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "TERM_PROGRAM", "COLUMNS", "LINES")
_UI_DIR = Path(__file__).resolve().parent


def frame_cache_dir(environ=None) -> Path:
    return xdg_agx_dir("XDG_CACHE_HOME", ".cache", environ) / "frames"


def _stamp(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{path}:-"
    return f"{path}:{st.st_mtime_ns}:{st.st_size}"


@dataclass
class FrameCache:
    """Kept first frames, one file per start situation and terminal size.

    `fingerprint` is everything else the first frame depends on: agx's UI code (by file
    stamps, so an edited stylesheet is not replayed), the config files, the directory, the
    arguments and the drawing-related environment. A stale frame would only be on screen
    until Textual draws over it, but it would flash.
    """

    directory: Path
    fingerprint: str

    @classmethod
    def for_start(cls, cwd: Path, argv: list[str], config_files: list[Path], environ=None) -> FrameCache:
        environ = os.environ if environ is None else environ
        parts = [sys.version, str(Path(cwd).resolve()), "\0".join(argv)]
        parts += [f"{k}={environ[k]}" for k in sorted(environ)
                  if k in _ENV_NAMES or k.startswith(_ENV_PREFIXES)]
        parts += [_stamp(p) for p in config_files]
        parts += [_stamp(p) for p in sorted(_ui_files())]
        parts.append(_stamp(_textual_init()))  # a Textual upgrade may draw differently
        data = "\n".join(parts).encode("utf-8", "surrogateescape")
        # Two checksums, 64 bits: enough to tell ~24 kept frames apart; hashlib would add ~5 ms
        # of imports to every start.
        digest = f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"
        return cls(frame_cache_dir(environ), digest)

    def path(self, columns: int, rows: int) -> Path:
        return self.directory / f"{self.fingerprint}-{columns}x{rows}{FRAME_SUFFIX}"

    def load(self, columns: int, rows: int) -> str | None:
        try:
            # bytes, then decode: text mode would turn a "\r" of the frame into "\n"
            return self.path(columns, rows).read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def store(self, columns: int, rows: int, frame: str) -> None:
        """Keep `frame` (atomically: a start never reads half a file), unless it is already kept."""
        target = self.path(columns, rows)
        if self.load(columns, rows) == frame:
            return
        try:
            atomic_write(target, frame.encode("utf-8"))
        except OSError:  # a full disk or read-only home costs only the instant frame
            return
        self._prune()

    def forget(self, columns: int | None = None, rows: int | None = None) -> None:
        """Delete this start's kept frame (every size when none is given)."""
        pattern = f"{self.fingerprint}-*{FRAME_SUFFIX}" if columns is None else self.path(columns, rows).name
        for path in self.directory.glob(pattern):
            try:
                path.unlink()
            except OSError:
                pass

    def _prune(self) -> None:
        try:
            frames = sorted(self.directory.glob(f"*{FRAME_SUFFIX}"), key=lambda p: p.stat().st_mtime)
        except OSError:
            return
        for old in frames[:-KEEP_FRAMES]:
            try:
                old.unlink()
            except OSError:
                pass


def _textual_init() -> Path:
    import importlib.util

    try:
        spec = importlib.util.find_spec("textual")  # finds, does not import
    except (ImportError, ValueError):
        spec = None
    return Path(spec.origin) if spec is not None and spec.origin else Path("textual-not-found")


def _ui_files() -> list[Path]:
    files = []
    for folder in (_UI_DIR, _UI_DIR / "widgets"):
        try:
            files += [Path(e.path) for e in os.scandir(folder) if e.name.endswith((".py", ".tcss"))]
        except OSError:
            pass
    return files


@dataclass
class HeldTerminal:
    """The terminal from agx's start until Textual takes it over: quiet (no echo, no line
    buffering) and, when a kept frame was found, on the alternate screen showing it."""

    fd: int
    original_attrs: list
    frame_shown: bool = False
    skip_alt_screen: bool = False  # Textual's own "enter the alternate screen" would clear it
    handed_over: bool = field(default=False)

    def release(self) -> None:
        """Give the terminal back as it was, unless Textual has it (it restores it itself)."""
        if self.handed_over:
            return
        self.handed_over = True
        import termios

        try:
            termios.tcsetattr(0, termios.TCSANOW, self.original_attrs)
        except termios.error:
            pass
        if self.frame_shown:
            _write_all(self.fd, SHOW_CURSOR + LEAVE_ALT_SCREEN)


def hold_terminal(cache: FrameCache, fd: int | None = None) -> HeldTerminal | None:
    """Quiet the terminal for the start and put the kept first frame for its size on screen
    if there is one. None when there is no terminal (then the start goes on exactly as
    without this module)."""
    if fd is None:
        try:
            fd = sys.__stderr__.fileno()  # Textual draws on stderr
        except (AttributeError, OSError, ValueError):
            return None
    if os.name != "posix" or os.environ.get("TERM", "dumb") in ("", "dumb"):
        return None
    try:
        if not (os.isatty(fd) and os.isatty(0)):
            return None
        columns, rows = os.get_terminal_size(fd)
    except OSError:
        return None
    import termios

    try:
        original = termios.tcgetattr(0)
        quiet = termios.tcgetattr(0)
    except termios.error:
        return None
    # No echo (typed keys would land on the frame, or in the shell's scrollback) and no line
    # buffering (keys wait in the queue as they are); ISIG stays: ctrl+c interrupts a slow start.
    quiet[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN)
    # Keys must reach the shell as typed, as Textual's own modes would take them: Enter as "\r"
    # (ICRNL would queue it as "\n", ctrl+j, and an early message would not be sent) and
    # ctrl+q/ctrl+s as keys, not flow control (IXON would swallow an early ctrl+q).
    quiet[0] &= ~(termios.ICRNL | termios.INLCR | termios.IGNCR | termios.IXON | termios.IXOFF)
    # ...but no ctrl+z: a start stopped now would leave the frame over the user's prompt.
    quiet[6][termios.VSUSP] = b"\0" if isinstance(quiet[6][termios.VSUSP], bytes) else 0
    try:
        termios.tcsetattr(0, termios.TCSANOW, quiet)
    except termios.error:
        return None
    held = HeldTerminal(fd=fd, original_attrs=original)
    frame = cache.load(columns, rows)
    if frame:
        held.frame_shown = held.skip_alt_screen = True
        if not _write_all(fd, ENTER_ALT_SCREEN + HIDE_CURSOR + frame):
            held.release()
            return None
    return held


def _write_all(fd: int, text: str) -> bool:
    data = text.encode("utf-8", "replace")
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        return False
    return True


def handover_driver(base: type, held: HeldTerminal) -> type:
    """A subclass of Textual's terminal driver `base` that takes the screen from `held`
    without clearing it, and restores the terminal modes agx started with on exit."""

    class HandoverDriver(base):  # type: ignore[misc, valid-type]
        def write(self, data: str) -> None:
            if held.skip_alt_screen and data == ENTER_ALT_SCREEN:
                held.skip_alt_screen = False  # already there, with the cached frame on it
                return
            super().write(data)

        def start_application_mode(self) -> None:
            first = not held.handed_over
            super().start_application_mode()
            held.handed_over = True
            held.skip_alt_screen = False  # a later start (after ctrl+z) must enter it again
            if first and getattr(self, "attrs_before", None) is not None:
                # Textual saved the quiet modes set above; on exit it must restore the user's.
                self.attrs_before = held.original_attrs

    HandoverDriver.__name__ = HandoverDriver.__qualname__ = f"Handover{base.__name__}"
    return HandoverDriver
