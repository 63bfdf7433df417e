"""The shell's start: config on screen, first frame kept, session log, MCP servers, models loading."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from textual import work
from textual.widgets import Input

from agx.config.errors import ConfigError
from agx.config.roles import ROLE_NAMES
from agx.runtime.build_check import BuildUnusableError
from agx.runtime.engine import EngineError
from agx.ui import plan_view as pv
from agx.ui.keymap import check_keymap
from agx.ui.pacing import FramePacer
from agx.ui.messages import EngineLoaded
from agx.ui.screens import NoRepoScreen
from agx.ui.widgets import StatusBar
from agx.ui.widgets.status import RoleStatus


class StartupMixin:
    """Part of AgxApp (agx/ui/app.py): methods only; state lives on the app."""

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
        if self.route_messages and self.config.agent.route == "classifier":
            self._warm_router()

    @work(thread=True, group="startup")
    def _warm_router(self) -> None:
        """Fit the chat-or-change classifier now (importing scikit-learn takes ~1.4 s) rather
        than on the first message."""
        from agx.agent.route import routing_classifier

        try:
            routing_classifier()
        except Exception:  # the first message then says what went wrong
            pass

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
        # A restarted server is said in the chat (from the manager's thread: call_from_thread).
        self.mcp.on_notice = lambda line: self.call_from_thread(self.chat.add_notice, line, "error")
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
            view = pv.view_from_record(prec)
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

