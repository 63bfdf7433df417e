"""The full-screen shell: `agx` with no command.

    run_shell(ctx) -> exit code            # called by agx/cli/main.py

Layout: status bar on top; chat pane + input on the left; plan, task and git panes on the
right; footer with the keys that apply now. Everything slow happens off the event loop:
model loading, chat and planning in thread workers (llama.cpp releases the GIL), the executor
as an asyncio task on the app's loop (its subprocesses are asyncio), git reads in threads,
file watching with watchfiles. Results come back as messages (agx/ui/messages.py); streamed
text goes through a FrameCoalescer drained once per frame, frames paced by ui/pacing.py
(`ui.max_fps`, and `ui.render_budget` while a local model decodes with no spare core).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from textual import on, work
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import Footer, Input

from agx.config.errors import ConfigError
from agx.config.roles import ROLE_NAMES
from agx import events as ev
from agx.runtime.build_check import BuildUnusableError
from agx.runtime.engine import CancelToken, EngineError
from agx.ui import plan_view as pv
from agx.ui.commands import ShellCommands
from agx.ui.gitview import GitSnapshot, snapshot
from agx.ui.instant_frame import FrameCache, HeldTerminal, handover_driver
from agx.ui.keymap import ACTIONS, bindings, check_keymap
from agx.ui.pacing import FramePacer, has_spare_core
from agx.ui.messages import (ChatFinished, EngineLoaded, FrameCoalescer, GitChanged, PlanEventArrived,
                             PlanningEnded, RouteDecided, TextPending, PlanApplied,
                             PlanDiscarded, PlanOpDone, PlanOpFailed, PlanUndone)
from agx.ui.screens import ConfirmScreen, EditArgsScreen, HelpScreen, NoRepoScreen, PromptScreen
from agx.ui.widgets import ChatPane, GitPane, MessageInput, PlanPane, StatusBar, TaskPane
from agx.ui.widgets.status import RoleStatus

if TYPE_CHECKING:
    from agx.config.schema import AgxConfig

class AgxApp(App[int]):
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
        self._plan_cancel: CancelToken | None = None
        self.session_log = None
        self.chat_only = repo is None
        self.plan: pv.PlanView | None = None
        self.plans: dict[str, pv.PlanView] = {}
        self._run = None  # plan_run.PlanRun while/after a plan runs
        self._run_worker = None
        self._session = None  # agent.session.AgentSession while a plan's rounds run
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

    def on_mount(self) -> None:
        # llama.cpp generation threads drop and retake the GIL around every ctypes call; with
        # the default 5 ms switch interval each retake can wait behind a busy UI thread, which
        # starves decoding while the screen is busy. A short interval hands the GIL back fast.
        sys.setswitchinterval(0.0005)
        # Focus now, not with focus() (a queued callback): keys typed while the shell started
        # are already in the message queue ahead of it, and with no focused widget they are lost.
        self.screen.set_focus(self.query_one("#input", Input))
        if self.config is not None:
            self._apply_config()
        # Everything else starts after the first frame is on screen: importing llama.cpp in a
        # loader thread holds the GIL for a while, and the first paint must not wait for it.
        self.call_after_refresh(self._painted)

    def _apply_config(self) -> None:
        """What the config decides on screen: frame pacing, keys, the status bar's roles."""
        ui = self.config.ui
        self.pacer = FramePacer(ui.max_fps, ui.render_budget)
        problems = check_keymap(self.config.ui.keymap)
        for line in problems:
            self.notify(line, severity="warning", timeout=10)
        good = {k: v for k, v in self.config.ui.keymap.items() if k in self.effective_keys()}
        if good:
            self.set_keymap(good)
        status = self.query_one(StatusBar)
        for role in ROLE_NAMES:
            rc = self.config.role(role)
            status.roles[role] = RoleStatus(role=role, model=rc.model, n_ctx=rc.n_ctx,
                                            accelerator="remote" if rc.backend == "openai" else "…",
                                            state="loading" if self.load_models else "idle",
                                            load_started=time.monotonic())
        status.refresh_status()

    def _painted(self) -> None:
        if self.first_paint_s is not None:
            return
        self.first_paint_s = time.perf_counter() - self._t_start
        first_frame = self._full_frame() if self.frames is not None else None
        if self.config is None and self._configure is not None:
            try:
                self.config, self.pool = self._configure()
            except ConfigError as exc:
                self.config_error = str(exc)
                self.exit(exc.exit_code)
                return
            self._apply_config()
            self._configured.set()
        if self.frames is not None:
            self._keep_first_frame(first_frame)
        if self.repo is None:
            self.push_screen(NoRepoScreen(str(self.cwd)), self._on_no_repo_choice)
        else:
            self._open_session()
        if self.load_models:
            self._load_models()

    def _full_frame(self) -> str | None:
        """The bytes Textual writes to draw the whole screen as it is now (what App._display
        writes for a full update; export_screenshot renders the same compositor update)."""
        try:
            return self.screen._compositor.render_update(full=True).render_segments(self.console)
        except Exception:  # Textual internals moved: the next start just has no instant frame
            return None

    def _keep_first_frame(self, frame: str | None) -> None:
        frames, (columns, rows) = self.frames, self.size
        if not self.config.ui.instant_frame:
            frames.forget()
        elif frame and not self.query_one("#input", Input).value:
            # (Keys typed during the start are in this frame, and the next start would show
            # them: then the earlier frame stays.) Written off the event loop: the disk may be
            # slow, and the user is typing now. Not a daemon: a quit right after the start
            # still waits the few ms the write takes.
            threading.Thread(target=frames.store, args=(columns, rows, frame), name="agx-keep-frame").start()

    # -- start-up ---------------------------------------------------------------------------
    def _on_no_repo_choice(self, choice: str | None) -> None:
        if choice == "quit":
            self.exit(0)
        elif choice == "init":
            from agx.workspace import gitread

            try:
                gitread.init(self.cwd)
            except gitread.GitReadError as exc:
                self.chat.add_notice(f"git init failed: {exc} — chat only", "error")
                return
            self.repo = self.cwd.resolve()
            self.chat_only = False
            self.chat.add_notice(f"Initialised a git repository in {self.repo}.")
            self._open_session()
        else:
            self.chat.add_notice("Chat only: not a git repository, so no plans and no session log.")
            self.refresh_git()

    def _open_session(self) -> None:
        from agx.workspace.sessionlog import SessionLog, latest_session

        assert self.repo is not None
        restored = False
        if self.resume:
            path = latest_session(self.repo)
            if path is not None:
                self.session_log = SessionLog(path, path.stem)
                self._restore(path)
                restored = True
            else:
                self.chat.add_notice("No earlier session to resume; starting a new one.")
        if not restored:
            self.session_log = SessionLog.open(self.repo)
        self._recover_stale()
        self.refresh_git()
        self._start_mcp()
        if self.watch_files:
            self._watch_repo()

    @work(thread=True, group="mcp")
    def _start_mcp(self) -> None:
        """MCP servers start in the background; the status bar counts them, and once they are
        up their tools join the catalogue (ui/mcp_tools.py)."""
        from agx.execution.builtin_tools import builtin_catalogue
        from agx.ui import mcp_tools

        self._configured.wait()
        try:
            self.mcp = mcp_tools.manager_if_configured(self.config, self.repo or self.cwd)
        except Exception as exc:  # noqa: BLE001 - a bad .mcp.json or header variable: say so, go on
            self.call_from_thread(self.chat.add_notice, f"MCP servers not started: {exc}", "error")
            return
        if self.mcp is None:
            return
        self.mcp.start()
        self.call_from_thread(self._show_mcp_status)
        statuses = self.mcp.wait_ready()
        self._catalogue = mcp_tools.catalogue_now(builtin_catalogue(), self.mcp)
        self.call_from_thread(self._show_mcp_status)
        self.call_from_thread(self.set_interval, 2.0, self._show_mcp_status)  # a server may die later
        for st in statuses:
            if st.error:
                self.call_from_thread(self.chat.add_notice, st.error, "error")

    def _show_mcp_status(self) -> None:
        from agx.ui.mcp_tools import status_text

        status = self.query_one(StatusBar)
        text = status_text(self.mcp)
        if text != status.mcp:
            status.mcp = text
            status.refresh_status()

    @work(thread=True, group="startup")
    def _recover_stale(self) -> None:
        from agx.workspace.plan_store import PlanStore

        try:
            recovered = PlanStore(self.repo).recover_stale()
        except Exception:
            return
        for plan_id in recovered:
            self.call_from_thread(self.chat.add_notice,
                                  f"Plan {plan_id} was interrupted when agx last stopped; its worktree is kept.")

    def _restore(self, path: Path) -> None:
        """Replay the session log: chat turns into the pane and Echo's history, plans from
        their records in .agx/plans (with their states)."""
        from agx.workspace.plan_store import PlanStore, PlanStoreError
        from agx.workspace.sessionlog import read_records

        chat = self.chat
        history: dict[str, list[dict[str, str]]] = {}
        plan_ids: list[str] = []
        for rec in read_records(path):
            kind = rec.get("type")
            if kind == "chat":
                messages = rec.get("messages") or []
                user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
                role = rec.get("role", "echo")
                chat.add_user(user)
                self._stream_ids += 1
                chat.start_answer(self._stream_ids, role, rec.get("response") or "")
                chat.end_answer(self._stream_ids)
                history.setdefault(role, []).extend(
                    [{"role": "user", "content": user}, {"role": "assistant", "content": rec.get("response") or ""}])
            elif kind == "route":
                chat.add_notice(rec.get("text", ""), "route")
            elif kind == "plan" and rec.get("plan_id") and rec["plan_id"] not in plan_ids:
                plan_ids.append(rec["plan_id"])
        self._restored_history = history
        store = PlanStore(self.repo) if plan_ids else None
        for plan_id in plan_ids:
            try:
                prec = store.load(plan_id)
            except PlanStoreError:
                continue
            view = view_from_record(prec)
            self.plans[plan_id] = view
            if prec.base_commit:
                self._restored_runs = getattr(self, "_restored_runs", {})
                self._restored_runs[plan_id] = prec
            for tid, t in prec.tasks.items():
                if t.get("output_tail"):
                    self.task_pane.set_output(tid, t["output_tail"])
        n_turns = sum(len(h) // 2 for h in history.values())
        chat.add_notice(f"Resumed session {path.stem}: {n_turns} turn(s), {len(plan_ids)} plan(s).")
        if plan_ids and plan_ids[-1] in self.plans:
            self._show_plan(self.plans[plan_ids[-1]])

    @work(thread=True, group="load")
    def _load_models(self) -> None:
        engines = {}
        for role in ROLE_NAMES:
            try:
                engine = self._engine(role)
                info = engine.info()
                self.call_from_thread(self._set_role_info, role, info)
                engine.start_loading()
                engines[role] = engine
            except EngineError as exc:
                self.post_message(EngineLoaded(role, False, error=str(exc)))
        for role, engine in engines.items():
            try:
                engine.wait_loaded()
                self.post_message(EngineLoaded(role, True, seconds=engine.load_seconds or 0.0))
            except BuildUnusableError as exc:
                self.post_message(EngineLoaded(role, False, error=str(exc), fatal=True))
                return
            except EngineError as exc:
                self.post_message(EngineLoaded(role, False, error=str(exc)))

    def _engine(self, role: str):
        self._configured.wait(timeout=30)  # a message typed before the config was read waits for it
        if self.pool is None:
            raise EngineError("no models in this session")
        with self._pool_lock:
            return self.pool.engine(role)

    def _engine_or_none(self, role: str):
        """As `agx run`: without the engine, ask_model tasks fail with a clear error."""
        try:
            return self._engine(role)
        except EngineError:
            return None

    def _set_role_info(self, role: str, info) -> None:
        status = self.query_one(StatusBar)
        rs = status.roles[role]
        rs.model, rs.accelerator, rs.adapter, rs.n_ctx = info.model, info.accelerator, info.adapter, info.n_ctx
        status.refresh_status()
        if info.is_tiny_default and role == "echo":
            from agx.runtime.bundled import TINY_MODEL_NOTICE

            self.chat.add_notice(f"Note: {TINY_MODEL_NOTICE}", "warning")

    def on_engine_loaded(self, msg: EngineLoaded) -> None:
        status = self.query_one(StatusBar)
        rs = status.roles[msg.role]
        rs.state = "ready" if msg.ok else "error"
        rs.load_s, rs.error = msg.seconds, msg.error
        status.refresh_status()
        if msg.fatal:
            self.config_error = msg.error  # printed after the terminal is restored
            self.exit(1)
            return
        if not msg.ok:
            self.chat.add_notice(f"{msg.role}: {msg.error}", "error")

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

    # -- chat -------------------------------------------------------------------------------
    def _conversation(self, role: str):
        from agx.conversation import Conversation

        if role not in self._conversations:
            conv = Conversation(role, self._engine(role), self.session_log,
                                system_prompt=self.config.role(role).system_prompt)
            conv.history = list(getattr(self, "_restored_history", {}).get(role, []))
            self._conversations[role] = conv
        return self._conversations[role]

    def history_for(self, role: str) -> list[dict[str, str]]:
        """The conversation history `role` will be sent (restored turns included)."""
        if role in self._conversations:
            return self._conversations[role].history
        return list(getattr(self, "_restored_history", {}).get(role, []))

    def send_chat(self, text: str, role: str = "echo") -> int:
        """Stream `role`'s answer to `text` into a new answer block; returns its stream id."""
        self._stream_ids += 1
        sid = self._stream_ids
        answer = self.chat.start_answer(sid, role)
        status = self.query_one(StatusBar).roles.get(role)
        if status is not None and status.state == "loading":
            answer.border_subtitle = "waiting for the model to load…"
        self._chat_worker(sid, text, role)
        return sid

    @work(thread=True, group="chat")
    def _chat_worker(self, sid: int, text: str, role: str) -> None:
        with self._chat_lock:  # one answer at a time, in the order asked
            token = CancelToken()
            self._chat_cancel = token
            try:
                conv = self._conversation(role)
                stream = conv.send(text, cancel=token)
                self.call_from_thread(self._generation_started, ("chat", sid), conv.engine)
                for piece in stream:
                    if self.coalescer.push(("chat", sid), piece):
                        self.post_message(TextPending())
                s = stream.stats
                self.post_message(ChatFinished(sid, role, s.tokens_per_s, s.prompt_tokens, s.completion_tokens,
                                               s.finish_reason))
            except EngineError as exc:
                self.post_message(ChatFinished(sid, role, error=str(exc)))
            finally:
                self._chat_cancel = None

    def on_chat_finished(self, msg: ChatFinished) -> None:
        self.pacer.generation_ended(("chat", msg.stream_id))
        self.flush_text()
        if msg.error:
            self.chat.end_answer(msg.stream_id, "failed")
            self.chat.add_notice(f"{msg.role}: {msg.error}", "error")
            return
        footer = f"{msg.completion_tokens} tok · {msg.tokens_per_s:.0f} tok/s"
        if msg.finish_reason == "cancelled":
            footer += " · stopped"
        elif msg.finish_reason == "length":
            footer += " · cut at max_tokens"
        self.chat.end_answer(msg.stream_id, footer)
        status = self.query_one(StatusBar)
        rs = status.roles.get(msg.role)
        if rs is not None:
            rs.tokens_per_s = msg.tokens_per_s or rs.tokens_per_s
            rs.context_used = msg.prompt_tokens + msg.completion_tokens
            status.refresh_status()

    # -- frame coalescing -------------------------------------------------------------------
    def on_text_pending(self, _: TextPending) -> None:
        if self._flush_timer is not None:
            return
        delay = self.pacer.delay()
        if delay <= 0:
            self.flush_text()
        else:
            self._flush_timer = self.set_timer(delay, self.flush_text)

    def _generation_started(self, key, engine) -> None:
        """Pace frames to the render budget while `engine` decodes with no core to spare."""
        self.pacer.generation_started(key, not has_spare_core(engine.info().cpu_threads))

    def flush_text(self) -> None:
        """Move every buffered piece of text onto the screen (at most once per frame)."""
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        self.pacer.frame_drawn()
        for (kind, ident), text in self.coalescer.drain().items():
            if kind == "chat":
                self.chat.append_answer(ident, text)
            elif kind == "task":
                self.task_pane.add_output(ident, text)

    # -- routing ----------------------------------------------------------------------------
    @work(thread=True, group="chat")
    def _route(self, text: str) -> None:
        """Echo's constrained yes/no (agx/agent/route.py): chat, or a change request for Delta."""
        from agx.agent.route import decide

        with self._chat_lock:
            try:
                engine = self._engine("echo")
            except EngineError as exc:
                self.post_message(RouteDecided(text, False, error=str(exc)))
                return
            d = decide(engine, text)
            self.post_message(RouteDecided(text, d.change_repo, d.raw, error=d.error))

    def on_route_decided(self, msg: RouteDecided) -> None:
        if msg.error:
            line = f"Echo could not classify the message ({msg.error}); answering it as chat."
        elif msg.change_repo:
            line = "Echo → Delta: this asks to change the repository, so Delta plans it (/chat <text> to just talk)."
        else:
            line = "Echo: conversation (not a change request)."
        self.chat.add_notice(line, "route")
        if self.session_log is not None:
            self.session_log.append("route", text=line, message=msg.text, change_repo=msg.change_repo, raw=msg.raw)
        if msg.change_repo and not msg.error:
            self.start_planning(msg.text)
        else:
            self.send_chat(msg.text)

    # -- planning ---------------------------------------------------------------------------
    def _busy_with_plan(self) -> bool:
        return self.plan is not None and self.plan.phase in (pv.PLANNING, pv.RUNNING_PHASE)

    def start_planning(self, request: str) -> None:
        if self.repo is None:
            self.chat.add_notice("Plans need a git repository (restart agx in one, or choose git init).", "error")
            return
        if self._busy_with_plan():
            self.chat.add_notice(f"Plan {self.plan.plan_id} is still {self.plan.phase}; wait, or cancel it first.",
                                 "error")
            return
        self._plan_worker(request)

    @work(thread=True, group="planner")
    def _plan_worker(self, request: str) -> None:
        from agx.planning.planner import Planner

        token = CancelToken()
        self._plan_cancel = token
        try:
            catalogue = self.catalogue
            if self.mcp is not None:  # MCP tools: wait for servers still starting; the relevant ones only
                from agx.execution.builtin_tools import builtin_catalogue
                from agx.ui import mcp_tools

                catalogue = mcp_tools.planning_catalogue(builtin_catalogue(), self.mcp, request, self.config.mcp.max_tools)
                self._catalogue = mcp_tools.catalogue_now(builtin_catalogue(), self.mcp)
            planner = Planner(self._engine("delta"), catalogue, self.repo, self.config.execution.repair_rounds)
            result = planner.plan(request, on_event=lambda e: self.post_message(PlanEventArrived(e)), cancel=token)
            self.post_message(PlanningEnded(result.plan_id, result))
        except EngineError as exc:
            self.post_message(PlanningEnded(None, error=str(exc)))
        finally:
            self._plan_cancel = None

    def on_plan_event_arrived(self, msg: PlanEventArrived) -> None:
        event = msg.event
        if isinstance(event, ev.PlanningStarted):
            view = pv.PlanView(event.plan_id, request=event.request)
            self.plans[event.plan_id] = view
            self.plan = view
        view = self.plans.get(event.plan_id)
        if view is None:
            return
        changed = view.apply(event)
        if self.session_log is not None and not isinstance(event, ev.TaskOutput):
            self.session_log.append("plan_event", **event.to_record())
        if view is self.plan:
            if changed is None:
                self.plan_pane.show(view)
            else:
                self.plan_pane.refresh_tasks(changed)
            self._show_selected_task()
            self.refresh_bindings()
        if isinstance(event, (ev.TaskFinished, ev.RunFinished)):
            self.refresh_git()

    def on_planning_ended(self, msg: PlanningEnded) -> None:
        if msg.error or msg.result is None:
            self.chat.add_notice(f"Delta could not plan: {msg.error}", "error")
            if self.plan is not None and self.plan.phase == pv.PLANNING:
                self.plan.phase = pv.REJECTED
                self.plan_pane.show(self.plan)
            return
        result = msg.result
        view = self.plans.get(result.plan_id)
        if view is None:
            return
        plan_dict = result.plan.model_dump() if result.plan is not None else (result.plan_dict or {})
        view.set_plan(plan_dict, result.errors, result.levels or None)
        view.phase = pv.REVIEW
        self._plan_ready(view, result.to_record())

    def _plan_ready(self, view: pv.PlanView, record: dict) -> None:
        """A plan (from Delta or a file) is ready for review: record it, show it, focus it."""
        from agx.execution import plan_run

        if self.session_log is not None:
            self.session_log.append("plan", **record)
        if self.repo is not None:
            plan_run.save_planned(self.repo, view.plan_id, view.request, view.plan_dict(), view.errors)
        self.plan = view
        self._show_plan(view)
        n = len(view.tasks)
        if view.errors:
            shown = "\n".join(f"  • {e}" for e in view.errors[:8])
            self.chat.add_notice(f"Plan {view.plan_id} has problems Delta could not repair:\n{shown}\n"
                                 "Edit (e) or delete (d) tasks, replan with feedback (r), or reject (x).", "error")
        else:
            self.chat.add_notice(
                f"Plan {view.plan_id}: {n} task(s), critical path {len(view.critical)}. "
                "a approves all · space skips a task · e edits · d deletes · r replans · x rejects.", "plan")
        self.plan_pane.focus()
        self.refresh_bindings()

    def load_plan_file(self, path_text: str, plan_id: str | None = None) -> None:
        """`/run-plan FILE`: a hand-written plan (the planner's JSON shape) goes to review as if
        Delta had planned it — validated the same way."""
        from agx.planning.plan_file import PlanFileError, read_plan_json
        from agx.planning.validate import validate_plan
        from agx.workspace.plan_store import new_plan_id

        if self.repo is None:
            self.chat.add_notice("Plans need a git repository.", "error")
            return
        if not path_text:
            self.chat.add_notice("usage: /run-plan FILE (JSON: {\"goal\": ..., \"tasks\": [...]})", "error")
            return
        if self._busy_with_plan():
            self.chat.add_notice(f"Plan {self.plan.plan_id} is still {self.plan.phase}.", "error")
            return
        path = Path(path_text).expanduser()
        if not path.is_absolute():
            path = self.cwd / path
        try:
            data = read_plan_json(path)  # the same reader as `agx run --plan`
        except PlanFileError as exc:
            self.chat.add_notice(str(exc), "error")
            return
        report = validate_plan(data, self.catalogue)
        pid = plan_id or new_plan_id()
        view = pv.PlanView(pid, request=f"/run-plan {path_text}")
        view.set_plan(report.plan.model_dump() if report.plan is not None else (data if isinstance(data, dict) else {}),
                      report.errors, report.levels or None)
        view.phase = pv.REVIEW
        self.plans[pid] = view
        self._plan_ready(view, {"plan_id": pid, "request": view.request, "plan": view.plan_dict(),
                                "errors": view.errors, "source": str(path)})

    def _show_plan(self, view: pv.PlanView) -> None:
        self.plan = view
        self.plan_pane.show(view)
        self._show_selected_task()
        self.refresh_git()

    # -- selection --------------------------------------------------------------------------
    @on(PlanPane.TaskSelected)
    def _task_selected(self, _: PlanPane.TaskSelected) -> None:
        try:
            self._show_selected_task()
        except NoMatches:  # a selection message that arrives while the app is shutting down
            return
        if self._diff_mode == "task":
            self.refresh_git()

    def _show_selected_task(self) -> None:
        tid = self.plan_pane.selected_task_id()
        tv = self.plan.tasks.get(tid) if (self.plan is not None and tid) else None
        self.task_pane.show_task(tv)

    def _selected(self) -> pv.TaskView | None:
        tid = self.plan_pane.selected_task_id()
        if self.plan is None or tid is None:
            return None
        return self.plan.tasks.get(tid)

    # -- actions: availability --------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        phase = self.plan.phase if self.plan is not None else None
        review = {"approve_all", "toggle_task", "edit_task", "delete_task", "replan", "reject"}
        running = {"cancel_task", "cancel_all", "pause"}
        after = {"apply", "discard", "undo", "show_diff"}
        if action in review:
            return phase == pv.REVIEW
        if action in running:
            return phase == pv.RUNNING_PHASE
        if action in after:
            if phase not in (pv.FINISHED, pv.APPLIED, pv.UNDONE):
                return False
            if action == "apply":
                return phase in (pv.FINISHED, pv.UNDONE)
            if action == "undo":
                return phase == pv.APPLIED
            return True
        return True

    def _plan_action_ok(self, *phases: str) -> bool:
        if self.plan is None or self.plan.phase not in phases:
            self.notify("Not now: that key works on a plan that is " + " or ".join(phases) + ".", severity="warning")
            return False
        return True

    # -- actions: review --------------------------------------------------------------------
    def action_approve_all(self) -> None:
        if not self._plan_action_ok(pv.REVIEW):
            return
        from agx.planning.validate import validate_plan

        view = self.plan
        report = validate_plan(view.plan_dict(), self.catalogue)
        if report.errors:
            view.errors = report.errors
            self.plan_pane.refresh_tasks()
            shown = "\n".join(f"  • {e}" for e in report.errors[:8])
            self.chat.add_notice(f"The plan is not valid yet:\n{shown}", "error")
            return
        approved, denied = view.approved_ids(), view.denied_ids()
        if not approved:
            self.chat.add_notice("Every task is skipped: nothing to run (x rejects the plan).", "error")
            return
        view.errors = []
        self.start_run(view, report.plan, approved, denied)

    def action_toggle_task(self) -> None:
        if not self._plan_action_ok(pv.REVIEW):
            return
        tv = self._selected()
        if tv is None:
            return
        tv.status = pv.DENIED if tv.status in (pv.AWAITING, pv.APPROVED) else pv.APPROVED
        self.plan_pane.refresh_tasks({tv.id})
        self._show_selected_task()

    def action_edit_task(self) -> None:
        if not self._plan_action_ok(pv.REVIEW):
            return
        tv = self._selected()
        if tv is None:
            self.notify("Select a task first (arrow keys in the plan pane).", severity="warning")
            return
        view = self.plan
        tid = tv.id

        def validate(args: dict) -> list[str]:
            from agx.planning.validate import validate_plan

            plan = view.plan_dict()
            for t in plan["tasks"]:
                if t.get("id") == tid:
                    t["args"] = args
            report = validate_plan(plan, self.catalogue)
            return [e for e in report.errors if e.startswith(f"task {tid!r}")]

        def done(args: dict | None) -> None:
            if args is None:
                return
            tv.task = {**tv.task, "args": args}
            self._replan_structure(view)
            self.chat.add_notice(f"Edited the arguments of {tid}.", "plan")
            if self.session_log is not None:
                self.session_log.append("plan_edit", plan_id=view.plan_id, task_id=tid, args=args)

        self.push_screen(EditArgsScreen(tid, str(tv.task.get("tool", "?")), dict(tv.task.get("args") or {}),
                                        validate), done)

    def _replan_structure(self, view: pv.PlanView) -> None:
        """After an edit or delete: re-validate and redraw (levels from validate.py)."""
        from agx.planning.validate import validate_plan

        report = validate_plan(view.plan_dict(), self.catalogue)
        statuses = {tid: tv.status for tid, tv in view.tasks.items()}
        view.set_plan(view.plan_dict(), report.errors, report.levels or None)
        for tid, st in statuses.items():
            if tid in view.tasks:
                view.tasks[tid].status = st
        self.plan_pane.show(view)
        self._show_selected_task()
        if self.repo is not None:
            from agx.execution import plan_run

            plan_run.save_planned(self.repo, view.plan_id, view.request, view.plan_dict(), view.errors)

    def action_delete_task(self) -> None:
        if not self._plan_action_ok(pv.REVIEW):
            return
        tv = self._selected()
        if tv is None:
            return
        view = self.plan
        dependents = view.dependents_of(tv.id)
        if dependents:
            self.chat.add_notice(f"{', '.join(dependents)} depend(s) on {tv.id}: delete or edit those first.", "error")
            return
        del view.tasks[tv.id]
        self._replan_structure(view)
        self.chat.add_notice(f"Deleted task {tv.id}.", "plan")
        if self.session_log is not None:
            self.session_log.append("plan_edit", plan_id=view.plan_id, task_id=tv.id, deleted=True)

    def action_replan(self) -> None:
        if not self._plan_action_ok(pv.REVIEW):
            return
        view = self.plan

        def done(feedback: str | None) -> None:
            if not feedback:
                return
            self._close_plan(view, pv.REJECTED, "discarded")
            request = f"{view.request}\n\nFeedback on the previous plan: {feedback}"
            self.chat.add_notice(f"Replanning with your feedback: {feedback}", "plan")
            self.start_planning(request)

        self.push_screen(PromptScreen("What should Delta change in this plan?", "e.g. also add a test"), done)

    def action_reject(self) -> None:
        if not self._plan_action_ok(pv.REVIEW):
            return
        self._close_plan(self.plan, pv.REJECTED, "discarded")
        self.chat.add_notice(f"Rejected plan {self.plan.plan_id}.", "plan")
        self.query_one("#input", Input).focus()

    def _close_plan(self, view: pv.PlanView, phase: str, state: str) -> None:
        from agx.execution import plan_run

        view.phase = phase
        if self.repo is not None:
            plan_run.set_state(self.repo, view.plan_id, state)
        if self.session_log is not None:
            self.session_log.append("plan_decision", plan_id=view.plan_id, decision=phase)
        self.plan_pane.refresh_tasks()
        self.refresh_bindings()

    # -- running ----------------------------------------------------------------------------
    def start_run(self, view: pv.PlanView, plan, approved: list[str], denied: list[str]) -> None:
        view.phase = pv.RUNNING_PHASE
        for tid in approved:
            view.tasks[tid].status = pv.PENDING
        self.plan_pane.refresh_tasks()
        self.refresh_bindings()
        if self.session_log is not None:
            self.session_log.append("plan_decision", plan_id=view.plan_id, decision="approved",
                                    approved=approved, denied=denied)
        self.chat.add_notice(f"Running plan {view.plan_id} in worktree .agx/worktrees/{view.plan_id}, ref refs/agx/{view.plan_id} "
                             f"({len(approved)} approved, {len(denied)} skipped).", "plan")
        self._run_worker = self._run_plan(view, plan, approved, denied)

    @work(group="executor", exit_on_error=False)
    async def _run_plan(self, view: pv.PlanView, plan, approved: list[str], denied: list[str]) -> None:
        """The reviewed plan is round 1 of the agent loop (agx/agent/session.py, as `agx run`):
        the session runs it, observes, and lets Delta replan (each round confirmed here)."""
        import asyncio

        from agx.agent.session import AgentSession
        from agx.execution.policy import ApprovalMode, Policy
        from agx.execution.sandbox import unavailable_notice

        from_file = view.request.startswith("/run-plan")
        rounds = 1 if from_file else self.config.agent.max_rounds
        # ask_model tasks talk to Echo; `code` tasks and follow-up plans need Delta.
        echo = await asyncio.to_thread(self._engine_or_none, "echo")
        needs_delta = rounds > 1 or any(t.tool == "code" for t in plan.tasks)
        delta = await asyncio.to_thread(self._engine_or_none, "delta") if needs_delta else None
        sandbox_note = await asyncio.to_thread(unavailable_notice, self.config.execution.sandbox)
        if sandbox_note and not getattr(self, "_sandbox_noted", False):  # said once per session
            self._sandbox_noted = True
            self.chat.add_notice(f"Sandbox: {sandbox_note}", "error")
        session = AgentSession(self.repo, self.config, catalogue=self.catalogue, policy=Policy(ApprovalMode.ASK),
                               delta=delta, echo=echo, approve=self._round_approver(approved, denied),
                               on_event=self._on_session_event, max_rounds=rounds, keep_empty=True)
        self._session = session
        self._diff_mode = "auto"
        try:
            outcome = await session.run(view.request, plan, plan_id=view.plan_id)
        except Exception as exc:  # PlanRunError, EngineError: the user's to see, not a crash
            view.phase = pv.REVIEW
            self.chat.add_notice(f"Could not start the plan: {exc}", "error")
            self.refresh_bindings()
            return
        finally:
            self._session = None
        last = outcome.last_result
        view.phase, view.ok, view.wall_s = pv.FINISHED, outcome.ok, (last.wall_s if last else 0.0)
        self._run_finished(view)
        if rounds > 1:
            from agx.agent.session import summary_text

            self.chat.add_notice(summary_text(outcome.summary), "plan" if outcome.ok else "error")

    def _round_approver(self, approved: list[str], denied: list[str]):
        """Round 1: what the review decided. Later rounds: a confirmation listing Delta's tasks."""
        reviewed = {"done": False}

        async def approve(executor, ids: list[str]) -> tuple[list[str], list[str]]:
            if not reviewed["done"]:
                reviewed["done"] = True
                no = [i for i in ids if i in denied]
                return [i for i in ids if i not in no], no
            return await self._confirm_round(executor, ids)

        return approve

    async def _confirm_round(self, executor, ids: list[str]) -> tuple[list[str], list[str]]:
        import asyncio

        from rich.text import Text

        from agx.execution.printer import approval_details, visible
        from agx.planning.tools import Risk

        fut = asyncio.get_running_loop().create_future()
        lines = []
        for i in ids:
            node = executor.nodes[i]
            lines.append(f"  {i} [{node.risk.value}] {node.task.tool}: {visible(node.task.title)}")
            if node.risk is not Risk.READ:  # writes and commands in full: what "y" runs is on screen
                lines.extend("      " + line for line in approval_details(node.task.args, 58))  # the box is 66 wide
        # Text, not markup: a command's own [brackets] must show as typed.
        self.push_screen(ConfirmScreen(Text("Delta's follow-up plan (the last round missed the goal):\n"
                                            + "\n".join(lines) + "\nRun these tasks?"), yes="Run them", no="Stop here"),
                         lambda yes: fut.done() or fut.set_result(bool(yes)))
        yes = await fut
        return (list(ids), []) if yes else ([], list(ids))

    def _on_session_event(self, event: ev.PlanEvent) -> None:
        """The agent session's stream: its own round events as notices, the rest as before."""
        from agx.agent.events import RoundObserved, RoundStarted, SessionFinished

        session = self._session
        if session is not None and session.run_handle is not None and self._run is not session.run_handle:
            self._run = session.run_handle  # the worktree now exists: diffs, cancel, quit use it
            if self._run.record.excluded:
                from agx.workspace.git_isolation import display

                self.chat.add_notice("Kept out of the plan (untracked files that look like secrets; its tasks do not "
                                     f"see them and no commit will hold them): "
                                     f"{', '.join(map(display, self._run.record.excluded))}")
        if isinstance(event, RoundStarted):
            if event.round > 1:
                self.chat.add_notice(f"Round {event.round}: Delta replans from what happened.", "plan")
            return
        if isinstance(event, RoundObserved):
            if event.tests is not None:
                self.chat.add_notice(f"Tests after round {event.round}: {'pass' if event.tests['ok'] else 'FAIL'}.",
                                     "plan" if event.tests["ok"] else "error")
            return
        if isinstance(event, (SessionFinished, ev.PlanningStarted, ev.Planned)):
            # Planning events come only from follow-up rounds here (the shell planned round 1
            # itself): their tasks arrive as TaskAdded into the same view; a new view would hide round 1.
            return
        self._on_executor_event(event)

    def _on_executor_event(self, event: ev.PlanEvent) -> None:
        """Executor subscriber (the app's loop thread): output to the coalescer, the rest as
        messages so they are handled in order like the planner's."""
        if isinstance(event, ev.TaskOutput):
            view = self.plans.get(event.plan_id)
            if view is not None and event.task_id in view.tasks:
                view.tasks[event.task_id].output_chars += len(event.text)
            if self.coalescer.push(("task", event.task_id), event.text):
                self.post_message(TextPending())
            return
        self.post_message(PlanEventArrived(event))

    def _run_finished(self, view: pv.PlanView) -> None:
        self.flush_text()
        if self.session_log is not None and self._run is not None:
            rec = self._run.record
            self.session_log.append("plan_outcome", plan_id=view.plan_id, state=rec.state, wall_s=rec.wall_s,
                                    task_s=rec.task_s, tasks=rec.tasks)
        counts = view.counts()
        summary = ", ".join(f"{n} {pv_word(s)}" for s, n in counts.items())
        verdict = "finished" if view.ok else "finished with problems"
        self.chat.add_notice(
            f"Plan {view.plan_id} {verdict} in {view.wall_s or 0:.1f}s ({summary}). "
            "y applies it to your branch · v shows the diff · n discards it.", "plan" if view.ok else "error")
        if view is self.plan:
            self.plan_pane.refresh_tasks()
        self.refresh_bindings()
        self.refresh_git()

    def action_cancel_task(self) -> None:
        if not self._plan_action_ok(pv.RUNNING_PHASE) or self._run is None:
            return
        tv = self._selected()
        if tv is not None:
            self._run.executor.cancel(tv.id)
            self.chat.add_notice(f"Cancelling {tv.id}…", "plan")

    def action_cancel_all(self) -> None:
        if not self._plan_action_ok(pv.RUNNING_PHASE) or self._run is None:
            return
        self._run.executor.cancel_all()
        if getattr(self, "_session", None) is not None:
            self._session.stop()  # and no follow-up round
        self.chat.add_notice("Cancelling every task…", "plan")

    def action_pause(self) -> None:
        if not self._plan_action_ok(pv.RUNNING_PHASE) or self._run is None:
            return
        ex = self._run.executor
        if self.plan.paused:
            ex.resume()
        else:
            ex.pause()
        self.plan.paused = not self.plan.paused
        self.chat.add_notice("Dispatch paused (running tasks go on)." if self.plan.paused else "Dispatch resumed.",
                             "plan")
        self.plan_pane.refresh_tasks()

    # -- after a run ------------------------------------------------------------------------
    def action_apply(self) -> None:
        if self.plan is None or self.plan.phase not in (pv.FINISHED, pv.UNDONE):
            self.notify("Nothing to apply: run a plan first.", severity="warning")
            return
        self._git_op("apply", self.plan.plan_id)

    def action_undo(self) -> None:
        if not self._plan_action_ok(pv.APPLIED):
            return
        self._git_op("undo", self.plan.plan_id)

    def action_discard(self) -> None:
        if not self._plan_action_ok(pv.FINISHED, pv.APPLIED, pv.UNDONE):
            return
        plan_id = self.plan.plan_id

        def done(yes: bool | None) -> None:
            if yes:
                self._git_op("discard", plan_id)

        self.push_screen(ConfirmScreen(f"Discard plan {plan_id}? Its worktree and ref refs/agx/{plan_id} are deleted."),
                         done)

    @work(thread=True, group="git-op")
    def _git_op(self, what: str, plan_id: str) -> None:
        from agx.execution import plan_run
        from agx.workspace.plan_store import PlanStore

        try:
            store = PlanStore(self.repo)
            rec = store.load(plan_id)
            if what == "apply":
                plan_run.apply_plan(store, rec)
                mode = rec.applied.get("mode") if rec.applied else "?"
                n = len(rec.applied.get("files", [])) if rec.applied else 0
                detail = (f"Applied plan {plan_id}: {n} file(s), "
                          + ("one commit on your branch." if mode == "commit" else "left uncommitted (you had local changes).")
                          + " u undoes it.")
            elif what == "undo":
                plan_run.undo_plan(store, rec)
                detail = f"Undid plan {plan_id}'s apply."
            else:
                removed = plan_run.discard_plan(store, rec)
                detail = f"Discarded plan {plan_id} ({', '.join(removed) or 'nothing left'})."
            done = {"apply": PlanApplied, "undo": PlanUndone}.get(what, PlanDiscarded)
            self.post_message(done(plan_id, detail))
        except Exception as exc:  # PlanRunError, PlanStoreError: one line for the user
            self.post_message(PlanOpFailed(plan_id, f"{what} failed: {exc}"))

    # Textual dispatches by the message's own class: one handler per outcome type.
    def on_plan_applied(self, msg: PlanApplied) -> None:
        self._plan_op_done(msg)

    def on_plan_undone(self, msg: PlanUndone) -> None:
        self._plan_op_done(msg)

    def on_plan_discarded(self, msg: PlanDiscarded) -> None:
        self._plan_op_done(msg)

    def on_plan_op_failed(self, msg: PlanOpFailed) -> None:
        self._plan_op_done(msg)

    def _plan_op_done(self, msg: PlanOpDone) -> None:
        ok = not isinstance(msg, PlanOpFailed)
        self.chat.add_notice(msg.detail, "plan" if ok else "error")
        view = self.plans.get(msg.plan_id)
        if ok and view is not None:
            view.phase = {PlanApplied: pv.APPLIED, PlanUndone: pv.UNDONE, PlanDiscarded: pv.DISCARDED}[type(msg)]
            if self.session_log is not None:
                self.session_log.append("plan_decision", plan_id=view.plan_id, decision=view.phase)
            if view is self.plan:
                self.plan_pane.refresh_tasks()
        self.refresh_bindings()
        self.refresh_git()

    def action_show_diff(self) -> None:
        order = ["plan", "task", "worktree"]
        self._diff_mode = order[(order.index(self._diff_mode) + 1) % 3] if self._diff_mode in order else "task"
        self.refresh_git()

    # -- git pane ---------------------------------------------------------------------------
    def refresh_git(self) -> None:
        self._git_refresh_worker(*self._diff_target())

    def _diff_target(self) -> tuple[tuple[str, ...] | None, str]:
        view = self.plan
        rec = self._run.record if (self._run is not None and view is not None
                                   and self._run.record.plan_id == view.plan_id) else None
        if rec is None and view is not None:
            rec = getattr(self, "_restored_runs", {}).get(view.plan_id)
        mode = self._diff_mode
        if rec is not None and mode in ("auto", "plan", "task"):
            tv = self._selected()
            if mode == "task" and tv is not None and tv.commit:
                return ("show", "--format=commit %H%n%s%n", tv.commit), f"task {tv.id}'s commit {tv.commit[:10]}"
            if rec.base_commit and rec.branch and view.phase != pv.DISCARDED:
                return ("diff", rec.base_commit, rec.branch), f"plan {rec.plan_id}: whole diff ({rec.branch})"
        return None, "working tree vs HEAD"

    @work(thread=True, group="git", exclusive=True)
    def _git_refresh_worker(self, diff_args: tuple[str, ...] | None, title: str) -> None:
        snap = snapshot(self.repo, diff_args, title)
        self.call_from_thread(self._show_git, snap)

    def _show_git(self, snap: GitSnapshot) -> None:
        try:
            self.git_pane.show(snap)
        except NoMatches:  # the app is exiting and its screen is gone; the snapshot has no reader
            pass

    @work(group="watch", exclusive=True, exit_on_error=False)
    async def _watch_repo(self) -> None:
        """Refresh the git pane when files change (watchfiles; bursts collapse)."""
        from watchfiles import awatch

        repo = str(self.repo)

        def interesting(_change, path: str) -> bool:
            rel = path[len(repo):]
            return "/.git/objects/" not in rel and "/.agx/" not in rel and not rel.endswith(".lock")

        try:
            async for _ in awatch(repo, watch_filter=interesting, debounce=300, step=100,
                                  stop_event=self._watch_stop()):
                self.post_message(GitChanged())
        except Exception as exc:  # e.g. inotify limits: the pane still refreshes after each task
            self.log.warning(f"file watching stopped: {exc}")

    def _watch_stop(self):
        import asyncio

        self._watch_event = asyncio.Event()
        return self._watch_event

    def on_git_changed(self, _: GitChanged) -> None:
        # The watcher is a separate task: a change can arrive while the app exits and its
        # panes are already removed (seen in CI); then there is nothing left to refresh.
        try:
            self.refresh_git()
        except NoMatches:
            pass

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
        for token in (self._chat_cancel, self._plan_cancel):
            if token is not None:
                token.cancel()
        event = getattr(self, "_watch_event", None)
        if event is not None:
            event.set()


def pv_word(status: str) -> str:
    from agx.ui.widgets.plan import STATUS_WORDS

    return STATUS_WORDS.get(status, status)


def view_from_record(rec) -> pv.PlanView:
    """A PlanView for a plan record from .agx/plans (for --resume)."""
    view = pv.PlanView(rec.plan_id, request=rec.request)
    view.set_plan(rec.plan or {}, rec.errors)
    mapping = {"succeeded": pv.DONE, "failed": pv.FAILED, "skipped": pv.SKIPPED, "cancelled": pv.CANCELLED,
               "interrupted": pv.CANCELLED, "running": pv.CANCELLED, "pending": pv.PENDING}
    for tid, t in (rec.tasks or {}).items():
        tv = view.tasks.get(tid)
        if tv is None:
            continue
        tv.status = mapping.get(t.get("status", ""), tv.status)
        tv.seconds, tv.commit, tv.error = t.get("seconds"), t.get("commit"), t.get("error")
    view.phase = {"planned": pv.REVIEW, "running": pv.FINISHED, "done": pv.FINISHED, "failed": pv.FINISHED,
                  "cancelled": pv.FINISHED, "interrupted": pv.FINISHED, "applied": pv.APPLIED,
                  "discarded": pv.DISCARDED, "undone": pv.UNDONE}.get(rec.state, pv.FINISHED)
    if view.phase == pv.FINISHED:
        view.ok = rec.state == "done"
        view.wall_s = rec.wall_s
    return view


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
