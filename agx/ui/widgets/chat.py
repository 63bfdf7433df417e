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


_answer_class = None


def answer_class():
    """The Markdown answer widget class, built on first use: importing Textual's Markdown
    (markdown-it, syntax highlighting) costs a large share of start-up, so the first paint
    does not wait for it."""
    global _answer_class
    if _answer_class is None:
        from textual.widgets import Markdown

        class Answer(Markdown):
            """One streamed answer; `append` adds text as it arrives (parsed incrementally)."""

            def __init__(self, role: str, text: str = "", **kwargs) -> None:
                super().__init__(text, **kwargs)
                self.role = role
                self.border_title = role.capitalize()
                self.received = len(text)

        _answer_class = Answer
    return _answer_class


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
        answer = answer_class()(role, text)
        self._answers[stream_id] = answer
        self.mount(answer)
        return answer

    def append_answer(self, stream_id: int, text: str) -> None:
        answer = self._answers.get(stream_id)
        if answer is not None and text:
            answer.received += len(text)
            answer.append(text)

    def answer(self, stream_id: int):
        return self._answers.get(stream_id)

    def end_answer(self, stream_id: int, footer: str | None = None) -> None:
        answer = self._answers.get(stream_id)
        if answer is not None and footer:
            answer.border_subtitle = footer
