"""A conversation with one role: history, system prompt, and logging of each turn.

Used by `agx chat` and by the shell's chat pane, so both log identically.
"""

from __future__ import annotations

from typing import Iterator

from agx.runtime.engine import CancelToken, ChatRequest, ChatStream, Engine
from agx.workspace.sessionlog import SessionLog

ECHO_SYSTEM_PROMPT = (
    "You are Echo, the conversational half of agx, a terminal agent shell. Answer clearly and "
    "briefly. Ask a clarifying question when a request is ambiguous. When the user wants the "
    "repository changed, say that Delta (agx's planner) can plan it with /plan."
)
DELTA_SYSTEM_PROMPT = "You are Delta, agx's planner and coder. Answer precisely; prefer code and concrete steps."


def default_system_prompt(role: str) -> str:
    return DELTA_SYSTEM_PROMPT if role == "delta" else ECHO_SYSTEM_PROMPT


class Conversation:
    def __init__(self, role: str, engine: Engine, log: SessionLog | None = None, system_prompt: str | None = None,
                 max_history_messages: int = 40):
        self.role = role
        self.engine = engine
        self.log = log
        self.system_prompt = system_prompt or default_system_prompt(role)
        self.history: list[dict[str, str]] = []
        self.max_history_messages = max_history_messages

    def messages_for(self, user_text: str) -> list[dict[str, str]]:
        recent = self.history[-self.max_history_messages:]
        return [{"role": "system", "content": self.system_prompt}, *recent, {"role": "user", "content": user_text}]

    def send(self, user_text: str, cancel: CancelToken | None = None, max_tokens: int | None = None) -> ChatStream:
        """Stream the reply; the turn is added to history and the log when the stream ends."""
        request = ChatRequest(messages=self.messages_for(user_text), max_tokens=max_tokens)
        inner = self.engine.chat(request, cancel)
        return ChatStream(self._record(user_text, request, inner), inner.stats)

    def _record(self, user_text: str, request: ChatRequest, inner: ChatStream) -> Iterator[str]:
        error: str | None = None
        try:
            yield from inner
        except Exception as exc:
            error = str(exc)
            raise
        finally:
            reply = inner.text
            self.history += [{"role": "user", "content": user_text}, {"role": "assistant", "content": reply}]
            if self.log is not None:
                info = self.engine.info()
                s = inner.stats
                self.log.append(
                    "chat",
                    role=self.role,
                    model=info.model,
                    adapter=info.adapter,
                    messages=request.messages,
                    response=reply,
                    error=error,
                    stats={
                        "prompt_tokens": s.prompt_tokens,
                        "completion_tokens": s.completion_tokens,
                        "ttft_s": round(s.time_to_first_token_s, 4),
                        "tokens_per_s": round(s.tokens_per_s, 2),
                        "finish_reason": s.finish_reason if error is None else "error",
                    },
                )
