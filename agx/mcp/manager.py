"""The MCP servers of one agx process: started lazily, in the background, on a loop of their own.

    manager = McpManager(server_specs(config, repo), base_dir=repo)
    manager.start()                       # returns at once; servers start on the agx-mcp thread
    manager.wait_ready()                  # blocks until every enabled server is up or failed
    outcome = manager.call("time.get_current_time", {"timezone": "Etc/UTC"})      # any thread
    outcome = await manager.call_async("time.get_current_time", {...})              # any loop

Why a thread with its own event loop: the SDK is asyncio (anyio) code whose sessions must live
in the task that opened them, while agx calls tools from the CLI's main thread, the shell's
worker threads and the executor's loop. One long-lived task per server owns its transport and
session; calls from anywhere are submitted to that loop (`run_coroutine_threadsafe`), and
cancelling the caller cancels the request there, which makes the SDK send
`notifications/cancelled` to the server (checked in tests/test_mcp.py).

A server that cannot start, does not answer `initialize` within its `timeout_s`, or dies is
reported in one line — name, command, exit status, last stderr lines — and the others go on.
A call in flight when its server dies fails with that line. A server that dies after it was up
is restarted on its next use (a call, or waiting for the servers), at most `max_restarts` times
per process ([mcp] max_restarts), the first restart no sooner than `restart_backoff_s` after the
death and each next one twice as late; each restart is reported in one line (`notices()`, the
`on_notice` callback, the `agx.mcp` logger). Past the limit, calls fail at once saying so.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import enum
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from agx.mcp.settings import ServerSpec

STDERR_TAIL_LINES = 3
STDERR_TAIL_CHARS = 300
# How long a call that saw the connection close waits for the process's exit to be noticed,
# so the report names the exit status.
DEATH_NOTICE_S = 3.0
# How long a call whose server died waits for its cancelled request to wind down.
CANCEL_WIND_DOWN_S = 2.0

log = logging.getLogger("agx.mcp")


class State(str, enum.Enum):
    DISABLED = "disabled"
    STOPPED = "stopped"  # not started yet (servers start on first need)
    STARTING = "starting"
    UP = "up"
    FAILED = "failed"  # could not start, or died: `error` says how


class McpCallError(Exception):
    """A tool call that produced no result: server down, no such tool, timeout, protocol error."""


@dataclass
class CallOutcome:
    text: str  # the result's content as text (results.result_text)
    is_error: bool  # the tool reported an error (isError): `text` is its message
    seconds: float
    result: Any = None  # the SDK's CallToolResult


@dataclass
class ServerStatus:
    name: str
    state: State
    display: str  # command line or URL
    source: str
    tools: list = field(default_factory=list)  # mcp Tool objects, when up
    error: str | None = None
    restarts: int = 0  # restarts after a death, this process


# -- the server's process, for its exit status ----------------------------------------------
# The SDK's stdio transport does not expose the process it spawns. We wrap its spawn function
# once and hand the process to whoever set `_spawned` in the current context (our start task).
_spawned: contextvars.ContextVar[list | None] = contextvars.ContextVar("agx_mcp_spawned", default=None)
_spawn_hook_installed = False


def _install_spawn_hook() -> None:
    global _spawn_hook_installed
    if _spawn_hook_installed:
        return
    _spawn_hook_installed = True
    import mcp.client.stdio as stdio

    original = getattr(stdio, "_create_platform_compatible_process", None)
    if original is None:  # another SDK version: reports then say "exit status unknown"
        return

    async def recording(*args, **kwargs):
        process = await original(*args, **kwargs)
        holder = _spawned.get()
        if holder is not None:
            holder.append(process)
        return process

    stdio._create_platform_compatible_process = recording


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class _Server:
    def __init__(self, spec: ServerSpec):
        self.spec = spec
        self.state = State.STOPPED if spec.enabled else State.DISABLED
        self.tools: list = []
        self.session = None
        self.process = None
        self.stderr = None  # a temporary file: the server's stderr, for reports
        self.error: str | None = None
        self.task: asyncio.Task | None = None
        self.ready: asyncio.Event | None = None  # set once up or failed
        self.stop: asyncio.Event | None = None
        self.down: asyncio.Event | None = None  # set when it failed after being up
        self.life = 0  # how many times it was started; a call remembers the life it was made in
        self.deaths: dict[int, str] = {}  # life -> the report of how that life ended
        self.was_up = False
        self.restarts = 0
        self.died_at: float | None = None  # loop time of the last death
        self.died_how: str = ""  # e.g. "exited with status 7", for the restart's report

    def can_restart(self) -> bool:
        return self.was_up and self.restarts < self.spec.max_restarts

    def limit_note(self) -> str:
        n = self.spec.max_restarts
        return (f"; not restarted: restart limit reached ({n} restart{'s' if n != 1 else ''} per session, "
                f"[mcp] max_restarts)")

    def stderr_tail(self) -> str:
        if self.stderr is None:
            return ""
        try:
            self.stderr.flush()
            size = os.fstat(self.stderr.fileno()).st_size
            data = os.pread(self.stderr.fileno(), 4096, max(0, size - 4096))
        except (OSError, ValueError):
            return ""
        lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
        tail = " | ".join(lines[-STDERR_TAIL_LINES:])
        return tail if len(tail) <= STDERR_TAIL_CHARS else "..." + tail[-STDERR_TAIL_CHARS:]

    def report(self, what: str) -> str:
        """One line: name, command, what happened, last stderr lines."""
        tail = self.stderr_tail()
        return f"mcp server {self.spec.name!r} ({self.spec.display}) {what}" + (f"; stderr: {tail}" if tail else "")

    def status(self) -> ServerStatus:
        return ServerStatus(self.spec.name, self.state, self.spec.display, self.spec.source,
                            list(self.tools) if self.state is State.UP else [], self.error, self.restarts)


class McpManager:
    def __init__(self, specs: list[ServerSpec], base_dir: str | Path | None = None,
                 on_notice: Callable[[str], None] | None = None):
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.on_notice = on_notice  # called (on the manager's thread) with each one-line notice
        self._notices: list[str] = []
        self._servers: dict[str, _Server] = {s.name: _Server(s) for s in specs}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    # -- what is configured ----------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._servers)

    @property
    def enabled(self) -> list[str]:
        return [n for n, s in self._servers.items() if s.state is not State.DISABLED]

    def statuses(self) -> list[ServerStatus]:
        return [s.status() for s in self._servers.values()]

    def notices(self) -> list[str]:
        """One line per event worth telling the user that is not a failure: restarts so far."""
        return list(self._notices)

    def _notice(self, line: str) -> None:
        self._notices.append(line)
        log.warning("%s", line)
        if self.on_notice is not None:
            with contextlib.suppress(Exception):
                self.on_notice(line)

    def counts(self) -> tuple[int, int]:
        """(servers up, servers enabled): the shell's status bar."""
        enabled = [s for s in self._servers.values() if s.state is not State.DISABLED]
        return sum(1 for s in enabled if s.state is State.UP), len(enabled)

    # -- the loop thread -------------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise McpCallError("the MCP manager is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="agx-mcp", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
                atexit.register(self.close)  # servers are stopped (not orphaned) when agx exits
            return self._loop

    def _submit(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())

    # -- starting --------------------------------------------------------------------------
    def start(self, names: list[str] | None = None) -> None:
        """Start these servers (default: every enabled one) in the background; returns at once."""
        if self.enabled:
            self._submit(self._start(names))

    def wait_ready(self, names: list[str] | None = None) -> list[ServerStatus]:
        """Start (if needed) and wait until each server is up or has failed; their statuses."""
        if self.enabled:
            self._submit(self._wait_ready(names)).result()
        return [s.status() for n, s in self._servers.items() if names is None or n in names]

    async def _start(self, names: list[str] | None) -> list[_Server]:
        chosen = [s for n, s in self._servers.items() if (names is None or n in names) and s.state is not State.DISABLED]
        loop = asyncio.get_running_loop()
        for srv in chosen:
            delay = 0.0
            if srv.state is State.FAILED and srv.can_restart() and srv.task is not None and not srv.task.done():
                # Its last life is still winding down (transport closing): one task per server.
                await asyncio.wait([srv.task], timeout=DEATH_NOTICE_S)
            if srv.state is State.FAILED and srv.can_restart() and (srv.task is None or srv.task.done()):
                # Died after it was up: start it again, after the back-off.
                srv.restarts += 1
                due = (srv.died_at or 0.0) + srv.spec.restart_backoff_s * 2 ** (srv.restarts - 1)
                delay = max(0.0, due - loop.time())
                srv.state = State.STOPPED
            if srv.state is State.STOPPED:
                srv.state = State.STARTING
                srv.life += 1
                srv.ready, srv.stop, srv.down = asyncio.Event(), asyncio.Event(), asyncio.Event()
                srv.task = loop.create_task(self._run_server(srv, delay), name=f"agx-mcp-{srv.spec.name}")
        return chosen

    async def _wait_ready(self, names: list[str] | None) -> None:
        chosen = await self._start(names)
        waits = [srv.ready.wait() for srv in chosen if srv.ready is not None]
        if waits:
            await asyncio.gather(*waits)

    async def _run_server(self, srv: _Server, delay: float = 0.0) -> None:
        """The server's whole life, in one task: the SDK's transport and session must be
        entered and left in the same task. `delay`: a restart's back-off."""
        import anyio
        from mcp import ClientSession

        spec = srv.spec
        stage = "could not start"
        restart = srv.restarts if srv.was_up else 0
        if delay > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(srv.stop.wait(), delay)
            if srv.stop.is_set():  # closed during the back-off
                srv.state = State.STOPPED
                srv.ready.set()
                return
        if restart:
            stage = f"restart {restart} of {spec.max_restarts} failed: could not start"
        try:
            async with contextlib.AsyncExitStack() as stack:
                if spec.url:
                    read, write = await self._open_http(stack, spec)
                else:
                    read, write = await self._open_stdio(stack, srv)
                session = await stack.enter_async_context(ClientSession(read, write))
                stage = "did not answer"
                try:
                    with anyio.fail_after(spec.timeout_s):
                        await session.initialize()
                        srv.tools = await _list_all_tools(session)
                except TimeoutError:
                    raise TimeoutError(f"no answer to initialize/tools/list within {spec.timeout_s:g}s") from None
                srv.session, srv.state, srv.error, srv.was_up = session, State.UP, None, True
                if restart:
                    self._notice(f"mcp server {spec.name!r} ({spec.display}) restarted (restart {restart} of "
                                 f"{spec.max_restarts}) after it {srv.died_how}")
                srv.ready.set()
                await self._until_stopped_or_dead(srv)
        except Exception as exc:  # noqa: BLE001 - any failure of one server is reported, not raised
            if srv.state is not State.FAILED:
                how = self._describe_failure(srv, stage, _leaf(exc))
                self._died(srv, how)
        finally:
            srv.session = None
            if srv.state is State.UP:
                srv.state = State.STOPPED
            srv.ready.set()
            if srv.state is State.FAILED:
                srv.down.set()
            if srv.stderr is not None:
                srv.stderr.close()
                srv.stderr = None

    async def _open_stdio(self, stack: contextlib.AsyncExitStack, srv: _Server):
        from mcp.client.stdio import StdioServerParameters, stdio_client

        _install_spawn_hook()
        spec = srv.spec
        # Kept open until the server's task ends, so failure reports can quote its last lines.
        srv.stderr = tempfile.TemporaryFile(prefix=f"agx-mcp-{spec.name}-")
        params = StdioServerParameters(command=spec.command, args=list(spec.args), env=dict(spec.env) or None,
                                       cwd=spec.cwd or str(self.base_dir))
        holder: list = []
        token = _spawned.set(holder)
        try:
            streams = await stack.enter_async_context(stdio_client(params, errlog=srv.stderr))
        finally:
            _spawned.reset(token)
        srv.process = holder[0] if holder else None
        return streams[0], streams[1]

    async def _open_http(self, stack: contextlib.AsyncExitStack, spec: ServerSpec):
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        client = await stack.enter_async_context(httpx2.AsyncClient(
            headers=spec.headers, timeout=httpx2.Timeout(30.0, read=max(300.0, spec.timeout_s))))
        streams = await stack.enter_async_context(streamable_http_client(spec.url, http_client=client))
        return streams[0], streams[1]

    async def _until_stopped_or_dead(self, srv: _Server) -> None:
        waiters = [asyncio.ensure_future(srv.stop.wait())]
        if srv.process is not None:
            waiters.append(asyncio.ensure_future(srv.process.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        if not srv.stop.is_set():
            await asyncio.sleep(0.05)  # let the last stderr lines land
            self._died(srv, f"exited with status {self._exit_status(srv)}")

    def _died(self, srv: _Server, how: str) -> None:
        """The server failed (to start, or while up): its one-line report, for this life's calls."""
        srv.state = State.FAILED
        srv.error = srv.report(how)
        if srv.was_up:
            srv.died_at, srv.died_how = asyncio.get_running_loop().time(), how
            if not srv.can_restart():
                srv.error += srv.limit_note()
        srv.deaths[srv.life] = srv.error
        srv.down.set()

    @staticmethod
    def _exit_status(srv: _Server) -> str:
        code = getattr(srv.process, "returncode", None)
        if code is None:
            return "unknown"
        return f"{code} (signal {-code})" if code < 0 else str(code)

    def _describe_failure(self, srv: _Server, stage: str, exc: BaseException) -> str:
        code = getattr(srv.process, "returncode", None) if srv.process is not None else None
        if code is not None:
            return f"exited with status {self._exit_status(srv)} before answering"
        if isinstance(exc, FileNotFoundError):
            return f"could not start: command not found ({srv.spec.command})"
        if isinstance(exc, TimeoutError):
            return f"{stage}: {exc}"
        text = str(exc) or type(exc).__name__
        return f"{stage}: {text}"

    # -- calling ---------------------------------------------------------------------------
    def call(self, qualified: str, args: dict[str, Any] | None = None, timeout: float | None = None) -> CallOutcome:
        """Call SERVER.TOOL from any thread (not from the manager's own loop); blocks."""
        fut = self._submit(self._call(qualified, args or {}, timeout))
        try:
            return fut.result()
        except BaseException:
            fut.cancel()  # Ctrl-C: the request is cancelled on the server too
            raise

    async def call_async(self, qualified: str, args: dict[str, Any] | None = None, timeout: float | None = None) -> CallOutcome:
        """Call SERVER.TOOL from any event loop. Cancelling the caller cancels the request on
        the server (the SDK sends notifications/cancelled)."""
        return await asyncio.wrap_future(self._submit(self._call(qualified, args or {}, timeout)))

    async def _call(self, qualified: str, args: dict[str, Any], timeout: float | None) -> CallOutcome:
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        from agx.mcp.results import result_text

        name, dot, tool = qualified.partition(".")
        srv = self._servers.get(name)
        if not dot or srv is None:
            known = ", ".join(self._servers) or "none configured"
            raise McpCallError(f"{qualified}: no MCP server named {name!r} (servers: {known}); tools are named SERVER.TOOL")
        if srv.state is State.DISABLED:
            raise McpCallError(f"{qualified}: mcp server {name!r} is disabled in {srv.spec.source}")
        await self._wait_ready([name])
        if srv.state is not State.UP or srv.session is None:
            raise McpCallError(srv.error or f"mcp server {name!r} is not running")
        if tool not in {t.name for t in srv.tools}:
            raise McpCallError(f"{qualified}: server {name!r} has no tool {tool!r}")
        limit = timeout if timeout is not None else srv.spec.timeout_s
        life, down = srv.life, srv.down

        def death() -> str:
            return srv.deaths.get(life) or srv.report("closed the connection")

        t0 = time.perf_counter()
        # The request races the server's death: a call in flight when the server dies fails
        # with the death's report, whether or not the SDK notices the closed connection.
        call = asyncio.ensure_future(srv.session.call_tool(tool, args, read_timeout_seconds=limit))
        died = asyncio.ensure_future(down.wait())
        try:
            await asyncio.wait([call, died], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the caller gave up: cancel the request on the server
            call.cancel()
            await asyncio.wait([call], timeout=CANCEL_WIND_DOWN_S)
            raise
        finally:
            died.cancel()
        if not call.done():
            call.cancel()
            await asyncio.wait([call], timeout=CANCEL_WIND_DOWN_S)
            raise McpCallError(death())
        try:
            result = call.result()
        except asyncio.CancelledError:
            raise McpCallError(death()) from None
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise McpCallError(f"{qualified}: no result within {limit:g}s (request cancelled on the server)") from None
            if exc.code == CONNECTION_CLOSED:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(down.wait(), DEATH_NOTICE_S)
                raise McpCallError(death()) from None
            raise McpCallError(f"{qualified}: {exc.message or exc}") from None
        except Exception as exc:  # noqa: BLE001 - e.g. a result that does not match the protocol
            raise McpCallError(f"{qualified}: {type(_leaf(exc)).__name__}: {_leaf(exc)}") from None
        return CallOutcome(result_text(result), bool(result.is_error), time.perf_counter() - t0, result)

    # -- stopping --------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> None:
        """Stop every server (stdin closed, then SIGTERM/SIGKILL by the SDK) and the loop."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._stop_all(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)

    async def _stop_all(self) -> None:
        tasks = []
        for srv in self._servers.values():
            if srv.stop is not None:
                srv.stop.set()
            if srv.task is not None and not srv.task.done():
                tasks.append(srv.task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def _list_all_tools(session) -> list:
    """tools/list, following pagination cursors."""
    from mcp_types import PaginatedRequestParams

    tools, cursor = [], None
    for _ in range(100):  # a server that pages forever is cut off, not followed
        result = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        tools.extend(result.tools)
        cursor = result.next_cursor
        if not cursor:
            break
    return tools


# -- the process's manager ------------------------------------------------------------------
_process_manager: McpManager | None = None
_process_lock = threading.Lock()


def process_manager() -> McpManager | None:
    """The manager set up for this process (None: no MCP servers in use)."""
    return _process_manager


def set_process_manager(manager: McpManager | None) -> None:
    global _process_manager
    with _process_lock:
        old, _process_manager = _process_manager, manager
    if old is not None and old is not manager:
        old.close()


def manager_for(config, base_dir: str | Path) -> McpManager:
    """This process's manager for `config` (made once; the executor's MCP runner uses it)."""
    from agx.mcp.settings import server_specs

    global _process_manager
    with _process_lock:
        if _process_manager is not None and _process_manager.base_dir == Path(base_dir):
            return _process_manager
    manager = McpManager(server_specs(config, Path(base_dir)), base_dir=base_dir)
    set_process_manager(manager)
    return manager
