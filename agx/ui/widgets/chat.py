"""The chat pane: the conversation, Echo's answers streamed as Markdown.

The pane is anchored (Textual's `anchor()`): it follows new text while the view is at the
bottom, and stops following as soon as the user scrolls up, until they scroll back down.
"""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widgets import Static


class UserTurn(Static):
    """What the user typed."""


class Notice(Static):
    """A line from agx itself (routing decisions, errors, plan outcomes)."""


class Answer(Static):
    """One streamed answer, shown as Markdown (Rich's renderer: code blocks highlighted).

    Why not Textual's Markdown widget: it builds a widget per block and re-lays out the screen
    as blocks arrive, which on a 2-core machine took most of a core at 30 fps and starved the
    llama.cpp threads beside it (decode fell to ~0.4 of headless). One Static whose renderable
    is rebuilt per frame costs a fraction of that; `source` is the raw text, as received.
    """

    def __init__(self, role: str, text: str = "", **kwargs) -> None:
        super().__init__("", **kwargs)
        self.role = role
        self.border_title = role.capitalize()
        self.source = text
        if text:
            self._render_source()

    def append(self, text: str) -> None:
        self.source += text
        self._render_source()

    def _render_source(self) -> None:
        from rich.markdown import Markdown

        self.update(Markdown(self.source, code_theme="monokai", hyperlinks=False))


class ChatPane(VerticalScroll):
    """A scrolling transcript. Answers are addressed by the stream id the app gave them."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._answers: dict = {}
        self.can_focus = True

    def on_mount(self) -> None:
        self.anchor()

    def add_user(self, text: str) -> UserTurn:
        turn = UserTurn(text, markup=False)
        self.mount(turn)
        return turn

    def add_notice(self, text: str, kind: str = "info") -> Notice:
        notice = Notice(text, markup=False, classes=kind)
        self.mount(notice)
        return notice

    def start_answer(self, stream_id: int, role: str, text: str = ""):
        answer = Answer(role, text)
        self._answers[stream_id] = answer
        self.mount(answer)
        return answer

    def append_answer(self, stream_id: int, text: str) -> None:
        answer = self._answers.get(stream_id)
        if answer is not None and text:
            answer.append(text)

    def answer(self, stream_id: int):
        return self._answers.get(stream_id)

    def end_answer(self, stream_id: int, footer: str | None = None) -> None:
        answer = self._answers.get(stream_id)
        if answer is not None and footer:
            answer.border_subtitle = footer
