"""`agx chat "prompt"`: stream a role's answer to stdout."""

from __future__ import annotations

import sys

from agx.cli.context import EXIT_USAGE, CliContext, CliError


def register(sub) -> None:
    p = sub.add_parser(
        "chat",
        help="ask Echo (or Delta) one question; the answer streams to stdout",
        description="Stream a role's answer to stdout. Reads the prompt from stdin when piped "
        "(with a prompt argument too, stdin is appended to it as context).",
    )
    p.add_argument("prompt", nargs="*", help="the message (default: read stdin)")
    p.add_argument("--role", choices=["echo", "delta"], default="echo", help="who answers (default: echo)")
    p.add_argument("--max-tokens", type=int, default=None, help="cap the answer's length")
    p.add_argument("--stats", action="store_true", help="print tokens, time to first token and tokens/s to stderr")
    p.add_argument("--no-log", action="store_true", help="do not write this turn to the session log")
    p.set_defaults(func=run)


def _read_prompt(args) -> str:
    from agx.cli.textinput import clean_text, read_stdin_text

    text = clean_text(" ".join(args.prompt)).strip()
    if not sys.stdin.isatty():
        piped = read_stdin_text()
        if piped.strip():
            text = f"{text}\n\n{piped}" if text else piped
    if not text.strip():
        raise CliError("nothing to ask: give a prompt or pipe text into agx chat", EXIT_USAGE)
    return text


def open_session_log(ctx: CliContext):
    from agx.workspace.sessionlog import SessionLog

    if ctx.repo is None:
        return None
    return SessionLog.open(ctx.repo)


def run(ctx: CliContext) -> int:
    args = ctx.args
    prompt = _read_prompt(args)
    from agx.conversation import Conversation

    ctx.warn_if_tiny(args.role)
    engine = ctx.pool.engine(args.role)
    engine.start_loading()
    log = None if args.no_log else open_session_log(ctx)
    conv = Conversation(args.role, engine, log, system_prompt=ctx.config.role(args.role).system_prompt)
    stream = conv.send(prompt, max_tokens=args.max_tokens)
    out = sys.stdout
    for piece in stream:
        out.write(piece)
        out.flush()
    out.write("\n")
    out.flush()
    s = stream.stats
    if args.stats:
        print(
            f"[{args.role}] prompt {s.prompt_tokens} tok, completion {s.completion_tokens} tok, "
            f"ttft {s.time_to_first_token_s * 1000:.0f} ms, {s.tokens_per_s:.1f} tok/s, finish={s.finish_reason}",
            file=sys.stderr,
        )
    return 0
