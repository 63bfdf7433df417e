"""Talking to Echo in the shell: streamed answers (coalesced into frames) and Echo's routing of a message."""

from __future__ import annotations

from textual import work

from agx.runtime.engine import CancelToken, EngineError
from agx.ui.pacing import has_spare_core
from agx.ui.messages import (ChatFinished, RouteDecided, TextPending)
from agx.ui.widgets import StatusBar


class ChatMixin:
    """Part of AgxApp (agx/ui/app.py): methods only; state lives on the app."""

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

    def send_report(self, summary: dict) -> int:
        """Echo's report of a finished request (agx/agent/report.py), streamed like an answer."""
        self._stream_ids += 1
        sid = self._stream_ids
        self.chat.start_answer(sid, "echo")
        self._report_worker(sid, summary)
        return sid

    @work(thread=True, group="chat")
    def _report_worker(self, sid: int, summary: dict) -> None:
        from agx.agent.report import stream_report

        def start(token):
            engine = self._engine("echo")
            return engine, stream_report(engine, summary, cancel=token)

        self._stream_answer(sid, "echo", start)

    @work(thread=True, group="chat")
    def _chat_worker(self, sid: int, text: str, role: str) -> None:
        def start(token):
            conv = self._conversation(role)
            return conv.engine, conv.send(text, cancel=token)

        self._stream_answer(sid, role, start)

    def _stream_answer(self, sid: int, role: str, start) -> None:
        """(Worker thread) `start(cancel_token) -> (engine, stream)`, streamed into answer `sid`
        through the frame coalescer; one answer at a time, in the order asked."""
        with self._chat_lock:
            token = CancelToken()
            self._chat_cancel = token
            try:
                engine, stream = start(token)
                self.call_from_thread(self._generation_started, ("chat", sid), engine)
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
        """Chat, or a change request for Delta (agx/agent/route.py, config agent.route): the
        classifier (default) needs no model; "model" asks Echo's engine a constrained yes/no."""
        from agx.agent.route import decide

        method = self.config.agent.route if self.config is not None else "classifier"
        if method != "model":
            d = decide(None, text, method)
            self.post_message(RouteDecided(text, d.change_repo, d.raw, error=d.error))
            return
        with self._chat_lock:
            try:
                engine = self._engine("echo")
            except EngineError as exc:
                self.post_message(RouteDecided(text, False, error=str(exc)))
                return
            d = decide(engine, text, "model")
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

