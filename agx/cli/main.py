"""`agx` entry point: global options, subcommand dispatch, error -> exit code mapping."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from agx import __version__
from agx.cli.context import EXIT_INTERRUPTED, EXIT_USAGE, CliContext, CliError

# Each module has `register(subparsers)`, which adds its subcommands and sets `func(ctx) -> int`.
COMMAND_MODULES = [
    "agx.cli.cmd_chat",
    "agx.cli.cmd_doctor",
    "agx.cli.cmd_models",
    "agx.cli.cmd_adapters",
    "agx.cli.cmd_data",
    "agx.cli.cmd_eval",
    "agx.cli.cmd_run",
    "agx.cli.cmd_plan",
    "agx.cli.cmd_mcp",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own exit code is 2 too; keep the format short
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"agx: error: {message}\n")


def build_parser(with_commands: bool = True) -> argparse.ArgumentParser:
    """The `agx` parser; without `with_commands`, only the global options (the shell's path:
    importing every command module costs ~60 ms of the shell's first paint)."""
    parser = _Parser(
        prog="agx",
        description=(
            "agx — a terminal agent shell for your own models. Echo chats; Delta plans a DAG of "
            "tasks and runs it in an isolated git worktree. With no command, opens the full-screen shell."
        ),
        epilog=(
            "exit codes: 0 success, 1 the job failed, 2 bad config/arguments/input, 130 interrupted. "
            "Config: agx.toml (see `agx config` / README)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"agx {__version__}")
    parser.add_argument("--profile", metavar="NAME", help="hardware profile from agx.toml (mac, worker1, worker2, ...)")
    parser.add_argument("--config", metavar="FILE", help="an extra config file, above ./agx.toml")
    parser.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[],
        help="override one config key, e.g. --set roles.echo.n_ctx=8192 (repeatable)",
    )
    parser.add_argument("-C", dest="directory", metavar="DIR", help="run as if started in DIR")
    parser.add_argument("--resume", action="store_true", help="shell: restore the last session")
    if not with_commands:
        parser.set_defaults(command=None)
        return parser
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


_OPTIONS_WITH_VALUE = {"--profile", "--config", "--set", "-C"}


def _opens_the_shell(argv: list[str]) -> bool:
    """True when `argv` names no command (and asks for no help): `agx [global options]`."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("-h", "--help", "--version"):
            return False
        elif arg in _OPTIONS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return False  # a command name
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(with_commands=not _opens_the_shell(argv))
    args = parser.parse_args(argv)

    from agx.config.errors import ConfigError
    from agx.runtime.engine import EngineError

    ctx = CliContext(args=args)
    if args.directory:
        ctx.cwd = Path(args.directory).resolve()
    try:
        if args.command is None:
            return _shell(ctx, argv)
        return int(args.func(ctx) or 0)
    except ConfigError as exc:
        print(f"agx: {exc}", file=sys.stderr)
        return exc.exit_code
    except CliError as exc:
        print(f"agx: {exc}", file=sys.stderr)
        return exc.code
    except EngineError as exc:
        print(f"agx: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("agx: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0


def _shell(ctx: CliContext, argv: list[str]) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty() and sys.stderr.isatty()):
        # No terminal to draw on or read keys from: the full-screen shell would draw into a pipe
        # and wait for keys forever. A bad config is still reported first.
        ctx.config
        raise CliError("the shell needs a terminal (stdin, stdout and stderr); without one use "
                       "`agx chat \"...\"` or `agx run \"...\"` (`agx --help` lists every command)", EXIT_USAGE)
    from agx.config.paths import DEFAULTS_FILE, user_config_path
    from agx.ui.instant_frame import FrameCache, hold_terminal

    extra = [Path(ctx.args.config)] if getattr(ctx.args, "config", None) else []
    frames = FrameCache.for_start(ctx.cwd, argv, [DEFAULTS_FILE, user_config_path(),
                                                   ctx.base_dir / "agx.toml", *extra])
    # Keys typed from now on wait for the shell; last start's first frame is on screen while
    # Textual loads (see agx/ui/instant_frame.py).
    held = hold_terminal(frames)
    try:
        try:
            from agx.ui.launch import run_shell
        except ImportError:
            if held:
                held.release()
            build_parser().print_help()
            return 0
        return run_shell(ctx, frames=frames, held=held)
    finally:
        if held:
            held.release()  # no-op once Textual has the terminal
