"""Starting the shell from the CLI: `agx` with no command (agx/cli/main.py calls run_shell)."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from agx.ui.app import AgxApp
from agx.ui.instant_frame import FrameCache, HeldTerminal, handover_driver


def run_shell(ctx, frames: FrameCache | None = None, held: HeldTerminal | None = None) -> int:
    """Entry point from `agx` with no command (ctx: agx.cli.context.CliContext). `frames` keeps
    this start's first frame for the next; `held`: the terminal with the last one on it."""
    with _private_terminal():
        # The config is validated after the first frame (see AgxApp.__init__).
        app = AgxApp(None, None, ctx.repo, ctx.cwd, resume=bool(getattr(ctx.args, "resume", False)),
                     configure=lambda: (ctx.config, ctx.pool), frames=frames)
        if held is not None:
            from textual.drivers.linux_driver import LinuxDriver

            if issubclass(app.driver_class, LinuxDriver):
                app.driver_class = handover_driver(app.driver_class, held)
            else:  # a driver chosen by TEXTUAL_DRIVER: let it start from a clean terminal
                held.release()
        try:
            code = app.run()
        finally:
            if app.pool is not None:
                try:
                    app.pool.close()
                except Exception:
                    pass
    if app.config_error:
        print(f"agx: {app.config_error}", file=sys.stderr)
    return int(code or 0)


@contextmanager
def _private_terminal():
    """Let Textual draw on a duplicate of the terminal's file descriptor.

    Textual writes frames to sys.__stderr__ (fd 2). While llama.cpp loads a model,
    llama-cpp-python points fds 1 and 2 at /dev/null (its suppress_stdout_stderr), so frames
    drawn meanwhile would be lost and later partial updates would leave the screen stale. A
    duplicate made here still reaches the terminal whatever happens to fd 2 later.
    """
    original = sys.__stderr__
    try:
        private = os.fdopen(os.dup(original.fileno()), "w", encoding=original.encoding or "utf-8",
                            errors=original.errors or "strict", buffering=1)
    except (OSError, AttributeError, ValueError):  # no real stderr (embedded): draw as Textual would
        yield
        return
    sys.__stderr__ = private
    try:
        yield
    finally:
        sys.__stderr__ = original
        private.close()
