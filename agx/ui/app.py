"""The full-screen shell: `agx` with no command.

    AgxApp(config, pool, repo)             # agx/ui/launch.py's run_shell builds it for `agx`

Layout: status bar on top; chat pane + input on the left; plan, task and git panes on the
right; footer with the keys that apply now. Everything slow happens off the event loop:
model loading, chat and planning in thread workers (llama.cpp releases the GIL), the executor
as an asyncio task on the app's loop (its subprocesses are asyncio), git reads in threads,
file watching with watchfiles. Results come back as messages (agx/ui/messages.py); streamed
text goes through a FrameCoalescer drained once per frame, frames paced by ui/pacing.py
(`ui.max_fps`, and `ui.render_budget` while a local model decodes with no spare core).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from textual import on
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Input

from agx.runtime.engine import CancelToken
from agx.ui import plan_view as pv
from agx.ui.commands import ShellCommands
from agx.ui.instant_frame import FrameCache
from agx.ui.keymap import ACTIONS, bindings
from agx.ui.pacing import FramePacer
from agx.ui.messages import FrameCoalescer
from agx.ui.screens import ConfirmScreen, HelpScreen
from agx.ui.widgets import ChatPane, GitPane, MessageInput, PlanPane, StatusBar, TaskPane
from agx.ui.chat_flow import ChatMixin
from agx.ui.git_flow import GitMixin
from agx.ui.plan_flow import PlanFlowMixin
from agx.ui.review import ReviewMixin
from agx.ui.startup import StartupMixin

if TYPE_CHECKING:
    from agx.config.schema import AgxConfig


class AgxApp(StartupMixin, ChatMixin, PlanFlowMixin, ReviewMixin, GitMixin, App[int]):
    """The shell. Tests build it directly; `run_shell` builds it from a CliContext."""

    CSS_PATH = "shell.tcss"
    TITLE = "agx"
    BINDINGS = bindings()
    COMMANDS = App.COMMANDS | {ShellCommands}
    ENABLE_COMMAND_PALETTE = True

    def __init__(self, config: AgxConfig | None, pool: Any, repo: Path | None, cwd: Path | None = None, *,
                 resume: bool = False, load_models: bool = True, watch_files: bool = True,
                 route_messages: bool = True,
                 configure: Callable[[], tuple[AgxConfig, Any]] | None = None,
                 frames: FrameCache | None = None) -> None:
        """`config` and `pool` as loaded; or None and `configure`, which returns both and is
        called after the first frame is on screen (`agx` in a terminal: validating agx.toml
        imports pydantic, ~130 ms the first paint need not wait for). A ConfigError from it
        ends the app with exit code 2 and the message in `config_error`. `frames`: where the
        first frame is kept for the next start's instant frame (ui/instant_frame.py)."""
        super().__init__()
        self.frames = frames
        self.config = config
        self.pool = pool
        self._configure = configure
        self.config_error: str | None = None
        self._configured = threading.Event()  # set once config and pool are there
        if config is not None or configure is None:
            self._configured.set()
        self.repo = repo
        self.cwd = cwd or repo or Path.cwd()
        self.resume = resume
        self.load_models = load_models
        self.watch_files = watch_files
        self.route_messages = route_messages
        self.pacer = FramePacer(30, 1.0)  # replaced by the config's values in _apply_config
        self.coalescer = FrameCoalescer()
        self._flush_timer = None
        self._pool_lock = threading.Lock()
        self._chat_lock = threading.Lock()
        self._conversations: dict[str, Any] = {}
        self._stream_ids = 0
        self._chat_cancel: CancelToken | None = None
        self.session_log = None
        self.chat_only = repo is None
        self.plan: pv.PlanView | None = None
        self.plans: dict[str, pv.PlanView] = {}
        self._run = None  # plan_run.PlanRun while/after a plan runs
        self._run_worker = None
        self._session = None  # agent.session.AgentSession from a request's planning to its end
        self._review: dict = {"answer": None, "then": None}  # round 1's review inside the session
        self._round = 1
        self._diff_mode = "auto"  # auto | plan | task
        self.first_paint_s: float | None = None
        self._t_start = time.perf_counter()
        self._catalogue = None
        self.mcp = None  # agx.mcp.manager.McpManager when MCP servers are configured (ui/mcp_tools.py)

    # -- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield ChatPane(id="chat")
                yield MessageInput(placeholder="Message Echo · /plan <request> · /run-plan FILE · esc: to the plan · ? help",
                            id="input")
            with Vertical(id="right"):
                yield PlanPane(id="plan")
                yield TaskPane(id="task")
                yield GitPane(id="git")
        yield Footer()

    @property
    def chat(self) -> ChatPane:
        return self.query_one("#chat", ChatPane)

    @property
    def plan_pane(self) -> PlanPane:
        return self.query_one("#plan", PlanPane)

    @property
    def task_pane(self) -> TaskPane:
        return self.query_one("#task", TaskPane)

    @property
    def git_pane(self) -> GitPane:
        return self.query_one("#git", GitPane)

    @property
    def catalogue(self):
        if self._catalogue is None:
            from agx.execution.builtin_tools import builtin_catalogue

            self._catalogue = builtin_catalogue()
        return self._catalogue

    def effective_keys(self) -> dict[str, str]:
        keys = {a.name: a.key for a in ACTIONS}
        if self.config is not None:
            keys.update({k: v for k, v in self.config.ui.keymap.items() if k in keys})
        return keys

    # -- input ------------------------------------------------------------------------------
    @on(Input.Submitted, "#input")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        event.input.value = ""
        if text:
            self.handle_input(text)

    def handle_input(self, text: str) -> None:
        """Everything typed goes through here: slash commands, or a message to route."""
        if text.startswith("/"):
            command, _, rest = text.partition(" ")
            rest = rest.strip()
            if command == "/plan":
                if not rest:
                    self.chat.add_notice("usage: /plan <what to change in the repository>", "error")
                    return
                self.chat.add_user(text)
                self.start_planning(rest)
            elif command == "/run-plan":
                self.chat.add_user(text)
                self.load_plan_file(rest)
            elif command == "/chat":
                if rest:
                    self.chat.add_user(rest)
                    self.send_chat(rest)
            elif command == "/tools":
                from agx.ui.mcp_tools import tools_listing

                self.chat.add_notice(tools_listing(self.mcp))
                self._show_mcp_status()
            elif command == "/help":
                self.action_help()
            elif command in ("/quit", "/exit"):
                self.action_quit()
            else:
                self.chat.add_notice(f"unknown command {command} (commands: /plan, /run-plan, /chat, /tools, /help, /quit)",
                                     "error")
            return
        self.chat.add_user(text)
        if self.route_messages and not self.chat_only:
            self._route(text)
        else:
            self.send_chat(text)

    # -- general actions --------------------------------------------------------------------
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.effective_keys()))

    def action_focus_input(self) -> None:
        self.query_one("#input", Input).focus()

    def action_stop(self) -> None:
        """esc: stop the answer being generated, or move focus from the input to the plan."""
        if isinstance(self.screen, (HelpScreen,)) or len(self.screen_stack) > 1:
            self.screen.dismiss(None)
            return
        if self._chat_cancel is not None:
            self._chat_cancel.cancel()
            return
        if self.focused is self.query_one("#input", Input):
            self.plan_pane.focus()
        else:
            self.query_one("#input", Input).focus()

    async def action_quit(self) -> None:
        if self.plan is not None and self.plan.phase == pv.RUNNING_PHASE and self._run is not None:
            def done(yes: bool | None) -> None:
                if yes:
                    self.run_worker(self._cancel_and_exit(), group="quit")

            self.push_screen(ConfirmScreen(
                f"Plan {self.plan.plan_id} is running. Cancel it and quit? (Its ref refs/agx/{self.plan.plan_id} "
                "stays for inspection.)", yes="Cancel and quit", no="Keep running"), done)
            return
        await self._stop_background()
        self.exit(0)

    async def _cancel_and_exit(self) -> None:
        import asyncio

        if getattr(self, "_session", None) is not None:
            self._session.stop()
        if self._run is not None:
            self._run.executor.cancel_all()
        if self._run_worker is not None:
            try:
                await asyncio.wait_for(self._run_worker.wait(), timeout=15)
            except Exception:
                pass
        await self._stop_background()
        self.exit(130)

    async def _stop_background(self) -> None:
        if self._chat_cancel is not None:
            self._chat_cancel.cancel()
        if self._session is not None:  # planning, waiting for review, or running: all of it stops
            self._session.stop()
        event = getattr(self, "_watch_event", None)
        if event is not None:
            event.set()
