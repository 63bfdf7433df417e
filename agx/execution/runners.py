"""How each built-in tool runs (declared with its spec in agx/execution/builtin_tools.py).

A runner is an async function taking a `TaskContext` (the task's arguments with `${ID}`
placeholders already substituted, the working directory, limits, the engine) and returning a
`RunnerResult`, or raising `TaskError` with a message for the user. Runners never touch
anything outside `ctx.workdir` (file tools check every path, see policy.resolve_in_worktree).

Commands run in their own process group (start_new_session) so that a cancel or timeout kills
the whole group — the shell *and* anything it started — and leaves no process behind.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from agx.execution.policy import UnsafePath, resolve_in_worktree
from agx.execution.sandbox import make_scratch, remove_scratch, wrap_command
from agx.workspace.crashpoints import crash_point
from agx.workspace.files import atomic_write
from agx.workspace.worktree_state import candidate_files as _candidate_files
from agx.workspace.worktree_state import changed_between, dirty_state  # noqa: F401 - part of this module's API
from agx.workspace.processes import start_time


class TaskError(Exception):
    """A task failed; the message says why (shown to the user, stored with the plan)."""


@dataclass
class OutputBuffer:
    """Captured output with a byte cap: what exceeds `cap` is dropped and counted."""

    cap: int
    _parts: list[str] = field(default_factory=list)
    kept: int = 0
    dropped: int = 0

    def add(self, text: str) -> str:
        """Keep what fits; return the kept part (what should be shown live)."""
        data = text.encode("utf-8", "replace")
        room = self.cap - self.kept
        if room <= 0:
            self.dropped += len(data)
            return ""
        if len(data) > room:
            self.dropped += len(data) - room
            text = data[:room].decode("utf-8", "ignore")
            data = text.encode("utf-8")
        self.kept += len(data)
        self._parts.append(text)
        return text

    @property
    def text(self) -> str:
        out = "".join(self._parts)
        if self.dropped:
            out += f"\n[agx: output capped at {self.cap} bytes; {self.dropped} more bytes dropped]\n"
        return out


@dataclass
class TaskContext:
    task_id: str
    title: str
    tool: str
    args: dict[str, Any]
    workdir: Path
    output: OutputBuffer
    emit: Callable[[str, str], None]  # (text, stream) -> TaskOutput event
    engine: Any = None  # agx.runtime.engine.Engine for ask_model
    code_engine: Any = None  # the engine that writes `code` edits (Delta's); None: `engine`
    test_command: str | None = None
    # (pgid, leader's start time) once a command runs, (None) when it is over.
    register_pgid: Callable[..., None] = lambda pgid, started=None: None
    # True when changes get committed: commands then note which files they changed.
    track_changes: bool = False
    # Added to command processes' environment (the run's token: workspace/processes.py).
    env: dict[str, str] = field(default_factory=dict)
    # [execution.sandbox] (agx.config.schema.SandboxConfig) for commands; None: no sandbox.
    sandbox: Any = None
    # Outputs of the task's dependencies by id (the `code` tool shows them to the model).
    dep_outputs: dict[str, str] = field(default_factory=dict)

    def write(self, text: str, stream: str = "stdout") -> None:
        kept = self.output.add(text)
        if kept:
            self.emit(kept, stream)


@dataclass
class RunnerResult:
    output: str
    # Paths (relative to workdir) this task changed; None = unknown, in which case the
    # committer takes everything the worktree shows as changed (git_commit does that).
    changed_paths: list[str] | None = field(default_factory=list)
    commit_message: str | None = None  # git_commit: the user's message


Runner = Callable[[TaskContext], Awaitable[RunnerResult]]

# Seconds between SIGTERM and SIGKILL when stopping a process group.
KILL_GRACE_S = 0.5


def kill_process_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal a whole process group; False when it no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


class _ExitAwareProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's stream protocol plus a future set when the process itself exits.

    `Process.wait()` also waits for the pipes to close, which a background grandchild can
    hold open for as long as it lives; we need the moment the shell exits."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        super().__init__(limit=2**16, loop=loop)
        self.exited: asyncio.Future = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


async def _wait_exit(protocol: _ExitAwareProtocol, timeout: float) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(protocol.exited), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        pass


async def run_command(ctx: TaskContext, command: str) -> int:
    """Run `command` with /bin/sh in ctx.workdir, streaming output into ctx; returns the exit code.

    On cancellation (cancel or timeout) the process group gets SIGTERM, then SIGKILL after a
    short grace, and we wait for the shell to be reaped before re-raising. When the shell
    exits normally, whatever it left running in the background is killed too.
    A sandboxed command gets a temp dir of its own, removed once its process group is gone.
    """
    scratch = await asyncio.to_thread(make_scratch, ctx.sandbox)
    try:
        return await _run_command(ctx, command, scratch)
    finally:
        remove_scratch(scratch)


async def _run_command(ctx: TaskContext, command: str, scratch: Path | None) -> int:
    loop = asyncio.get_running_loop()
    env = dict(os.environ)
    env.setdefault("GIT_TERMINAL_PROMPT", "0")  # a command must never wait on a password prompt
    # The run's token, set before the spawn: whatever this command starts can be found and
    # killed after a crash of agx, even before its process group is recorded.
    env.update(ctx.env)
    # /bin/sh -c command, inside the OS sandbox where there is one (agx/execution/sandbox.py).
    argv, sandbox_env = await asyncio.to_thread(wrap_command, command, ctx.sandbox, ctx.workdir, scratch)
    env.update(sandbox_env)
    spawn = asyncio.ensure_future(loop.subprocess_exec(
        lambda: _ExitAwareProtocol(loop),
        *argv,
        cwd=str(ctx.workdir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # own session and process group: pgid == pid
        env=env,
    ))
    try:
        transport, protocol = await asyncio.shield(spawn)
    except asyncio.CancelledError:
        # Cancelled while the process was being set up: it may already run (and have
        # started children). Let the spawn finish so we know its group, then kill it.
        try:
            transport, protocol = await asyncio.wait_for(spawn, 5.0)
        except Exception:
            raise asyncio.CancelledError() from None
        kill_process_group(transport.get_pid())
        await _wait_exit(protocol, 5.0)
        transport.close()
        raise
    pgid = transport.get_pid()
    crash_point("spawned")
    ctx.register_pgid(pgid, start_time(pgid))

    async def pump(reader: asyncio.StreamReader | None, stream: str) -> None:
        while reader is not None:
            chunk = await reader.read(65536)
            if not chunk:
                return
            ctx.write(chunk.decode("utf-8", "replace"), stream)

    pumps = [asyncio.ensure_future(pump(protocol.stdout, "stdout")),
             asyncio.ensure_future(pump(protocol.stderr, "stderr"))]
    try:
        await asyncio.shield(protocol.exited)
        code = transport.get_returncode()
        # Children left in the background keep the pipes open; the task is over, so the
        # group goes (no process survives its task), then the pipes reach EOF.
        kill_process_group(pgid)
        await asyncio.wait(pumps, timeout=2.0)
        return code if code is not None else -1
    except asyncio.CancelledError:
        kill_process_group(pgid, signal.SIGTERM)
        await _wait_exit(protocol, KILL_GRACE_S)
        kill_process_group(pgid, signal.SIGKILL)
        await _wait_exit(protocol, 5.0)
        raise
    finally:
        for p in pumps:
            p.cancel()
        transport.close()
        ctx.register_pgid(None)


async def run_command_tracked(ctx: TaskContext, command: str) -> tuple[int, list[str] | None]:
    """run_command, plus which files the command changed (when ctx.track_changes).

    The working tree's dirty files are read just before the command starts and just after
    it exits; what changed in between is this task's. Files changed by another command
    running at the same moment cannot be told apart (they land in whichever task's commit
    comes first) — a limit of sharing one worktree."""
    before = await asyncio.to_thread(dirty_state, ctx.workdir) if ctx.track_changes else None
    code = await run_command(ctx, command)
    after = await asyncio.to_thread(dirty_state, ctx.workdir) if ctx.track_changes else None
    return code, changed_between(before, after)


async def run_shell(ctx: TaskContext) -> RunnerResult:
    command = ctx.args.get("command")
    if not isinstance(command, str) or not command.strip():
        raise TaskError("shell: empty command")
    code, changed = await run_command_tracked(ctx, command)
    if code != 0:
        tail = ctx.output.text[-400:].strip()
        raise TaskError(f"exit code {code}" + (f": {tail}" if tail else ""))
    return RunnerResult(ctx.output.text, changed_paths=changed)


def _safe(ctx: TaskContext, rel: str, for_write: bool = False) -> Path:
    try:
        return resolve_in_worktree(ctx.workdir, rel, for_write=for_write)
    except UnsafePath as exc:
        raise TaskError(str(exc)) from None


async def run_read_files(ctx: TaskContext) -> RunnerResult:
    paths = ctx.args.get("paths") or []
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise TaskError("read_files: no paths given")
    for rel in paths:
        path = _safe(ctx, rel)
        if not path.is_file():
            raise TaskError(f"{rel}: no such file")
        data = await asyncio.to_thread(path.read_bytes)
        ctx.write(f"=== {rel} ===\n" if len(paths) > 1 else "")
        ctx.write(data.decode("utf-8", "replace"))
        if len(paths) > 1 and not data.endswith(b"\n"):
            ctx.write("\n")
    return RunnerResult(ctx.output.text)


MAX_SEARCH_MATCHES = 500


def _search_sync(ctx: TaskContext, regex: re.Pattern, sub: str | None) -> int:
    matches = 0
    for rel in _candidate_files(ctx.workdir, sub):
        path = ctx.workdir / rel
        try:
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if b"\0" in data[:8192]:  # binary
            continue
        for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if regex.search(line):
                matches += 1
                if matches > MAX_SEARCH_MATCHES:
                    return matches
                ctx.write(f"{rel}:{n}: {line}\n")
    return matches


async def run_search(ctx: TaskContext) -> RunnerResult:
    pattern = ctx.args.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise TaskError("search: empty pattern")
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise TaskError(f"search: invalid regular expression {pattern!r}: {exc}") from None
    sub = ctx.args.get("path") or None
    if sub:
        _safe(ctx, sub)
    matches = await asyncio.to_thread(_search_sync, ctx, regex, sub)
    if matches > MAX_SEARCH_MATCHES:
        ctx.write(f"[agx: stopped after {MAX_SEARCH_MATCHES} matches]\n")
    elif matches == 0:
        ctx.write("(no matches)\n")
    return RunnerResult(ctx.output.text)


async def run_write_file(ctx: TaskContext) -> RunnerResult:
    rel = ctx.args.get("path")
    content = ctx.args.get("content")
    if not isinstance(content, str):
        raise TaskError("write_file: content must be text")
    path = _safe(ctx, rel, for_write=True)
    if path.is_dir():
        raise TaskError(f"{rel}: is a directory")
    data = content.encode("utf-8")
    await asyncio.to_thread(atomic_write, path, data)
    ctx.write(f"wrote {rel} ({len(data)} bytes)\n")
    return RunnerResult(ctx.output.text, changed_paths=[rel])


def apply_edits(text: str, edits: list[dict[str, str]], rel: str) -> str:
    """Apply exact search/replace pairs in order; each search must occur exactly once."""
    for i, edit in enumerate(edits, 1):
        search, replace = edit.get("search"), edit.get("replace")
        if not isinstance(search, str) or not isinstance(replace, str):
            raise TaskError(f"{rel}: edit {i}: search and replace must be text")
        if not search:
            raise TaskError(f"{rel}: edit {i}: empty search text")
        count = text.count(search)
        first = search.strip().splitlines()[0][:60] if search.strip() else search[:60]
        if count == 0:
            raise TaskError(f"{rel}: edit {i}: search text not found: {first!r}")
        if count > 1:
            raise TaskError(f"{rel}: edit {i}: search text occurs {count} times (must be unique): {first!r}")
        text = text.replace(search, replace, 1)
    return text


async def run_edit_file(ctx: TaskContext) -> RunnerResult:
    rel = ctx.args.get("path")
    edits = ctx.args.get("edits") or []
    if not edits:
        raise TaskError("edit_file: no edits given")
    path = _safe(ctx, rel, for_write=True)
    if not path.is_file():
        raise TaskError(f"{rel}: no such file")
    original = (await asyncio.to_thread(path.read_bytes)).decode("utf-8", "surrogateescape")
    updated = apply_edits(original, edits, rel)
    await asyncio.to_thread(atomic_write, path, updated.encode("utf-8", "surrogateescape"))
    ctx.write(f"edited {rel} ({len(edits)} edit{'s' if len(edits) != 1 else ''})\n")
    return RunnerResult(ctx.output.text, changed_paths=[rel])


async def run_ask_model(ctx: TaskContext) -> RunnerResult:
    from agx.runtime.engine import CancelToken, ChatRequest

    if ctx.engine is None:
        raise TaskError("ask_model: no model available to this run")
    prompt = ctx.args.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise TaskError("ask_model: empty prompt")
    loop = asyncio.get_running_loop()
    token = CancelToken()

    def generate() -> str:
        stream = ctx.engine.chat(ChatRequest(messages=[{"role": "user", "content": prompt}]), cancel=token)
        for piece in stream:
            loop.call_soon_threadsafe(ctx.write, piece)
        return stream.stats.finish_reason

    # The model call blocks (llama.cpp releases the GIL); a thread keeps the loop responsive.
    fut = loop.run_in_executor(None, generate)
    try:
        finish = await asyncio.shield(fut)
    except asyncio.CancelledError:
        token.cancel()  # the generation stops within one token
        try:
            await asyncio.wait_for(fut, 10.0)
        except Exception:
            pass
        raise
    except Exception as exc:  # EngineError and friends: a message for the user
        raise TaskError(f"ask_model: {exc}") from None
    await asyncio.sleep(0)  # let the last call_soon_threadsafe writes land
    if finish == "error":
        raise TaskError("ask_model: generation failed")
    return RunnerResult(ctx.output.text)


def detect_test_command(workdir: Path) -> str | None:
    """The project's test command by convention, or None."""
    w = Path(workdir)

    def mentions(name: str, word: str) -> bool:
        f = w / name
        return f.is_file() and word in f.read_text(errors="replace")

    if (w / "pytest.ini").exists() or (w / "conftest.py").exists() or (w / "tests").is_dir() \
            or mentions("pyproject.toml", "pytest") or mentions("setup.cfg", "pytest"):
        return "python -m pytest -q"
    if (w / "package.json").exists():
        return "npm test"
    if (w / "Cargo.toml").exists():
        return "cargo test"
    if (w / "go.mod").exists():
        return "go test ./..."
    makefile = w / "Makefile"
    if makefile.exists() and re.search(r"^test\s*:", makefile.read_text(errors="replace"), re.M):
        return "make test"
    return None


async def run_tests(ctx: TaskContext) -> RunnerResult:
    command = ctx.args.get("command") or ctx.test_command or detect_test_command(ctx.workdir)
    if not command:
        raise TaskError("run_tests: no test command found; set execution.test_command in agx.toml")
    ctx.write(f"$ {command}\n")
    code, changed = await run_command_tracked(ctx, command)
    if code != 0:
        raise TaskError(f"tests failed (exit code {code})")
    return RunnerResult(ctx.output.text, changed_paths=changed)


async def run_git_commit(ctx: TaskContext) -> RunnerResult:
    message = ctx.args.get("message")
    if not isinstance(message, str) or not message.strip():
        raise TaskError("git_commit: empty message")
    # The executor's committer makes the commit (under its lock) with this message.
    return RunnerResult("", changed_paths=None, commit_message=message.strip())


async def run_mcp_tool(ctx: TaskContext) -> RunnerResult:
    """A `server.tool` of an MCP server (agx/mcp): tools/call with the task's args. Cancelling
    the task cancels the request on the server; a call that changed no file makes no commit."""
    from agx.mcp.manager import McpCallError, process_manager

    manager = process_manager()
    if manager is None:
        raise TaskError(f"{ctx.tool}: no MCP servers are configured (agx.toml [mcp.servers] or .mcp.json)")
    before = await asyncio.to_thread(dirty_state, ctx.workdir) if ctx.track_changes else None
    try:
        outcome = await manager.call_async(ctx.tool, ctx.args)
    except McpCallError as exc:
        raise TaskError(str(exc)) from None
    ctx.write(outcome.text)
    if outcome.is_error:
        raise TaskError(f"{ctx.tool}: {outcome.text.strip()[:400] or 'the tool reported an error'}")
    after = await asyncio.to_thread(dirty_state, ctx.workdir) if ctx.track_changes else None
    return RunnerResult(ctx.output.text, changed_paths=changed_between(before, after))
