"""The chat pane: the conversation, Echo's answers streamed as Markdown.

The pane is anchored (Textual's `anchor()`): it follows new text while the view is at the
bottom, and stops following as soon as the user scrolls up, until they scroll back down.
"""

from __future__ import annotations

import re

from textual.containers import VerticalScroll
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget
from textual.binding import Binding
from textual.widgets import Input, Static


class MessageInput(Input):
    """The message line. ctrl+j sends like Enter, as readline's accept-line does; it also
    catches an Enter typed in the first instant of a start, before agx has set the terminal's
    modes: the terminal queues it as "\n", which Textual reads as ctrl+j."""

    BINDINGS = [Binding("ctrl+j", "submit", "Send", show=False)]


class UserTurn(Static):
    """What the user typed."""


class Notice(Static):
    """A line from agx itself (routing decisions, errors, plan outcomes)."""


class Answer(Widget):
    """One streamed answer, shown as Markdown (Rich's renderer: code blocks highlighted).

    Cost per frame is what matters here: on a 2-core machine every millisecond the UI thread
    spends while llama.cpp decodes stalls both decode threads. So the answer renders its
    Markdown to lines itself (once per frame, at its width) and serves them through the line
    API, and while streaming it reserves height in steps of `GROW_STEP` lines: a frame that
    only adds text repaints this widget, and the screen is laid out again (the expensive part
    of a Textual frame, ~10 ms here) once per `GROW_STEP` new lines instead of every frame.
    Blocks that are complete (see `stable_prefix_end`) are rendered once and kept; only the
    block still arriving is rendered per frame, and only lines that changed are repainted.
    `finish()` renders the whole text once more and drops the reserve. `source` is the raw
    text, as received.

    (Textual's Markdown widget, tried first, builds a widget per block and re-lays out the
    screen as blocks arrive: most of a core at 30 fps, decode fell to ~0.4 of headless.)
    """

    DEFAULT_CSS = "Answer { height: auto; }"
    GROW_STEP = 6

    def __init__(self, role: str, text: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.role = role
        self.border_title = role.capitalize()
        self.source = text
        self.streaming = True
        self._strips: list[Strip] = []
        self._width = 0  # the width _strips were rendered at
        self._reserved = 0  # content lines the layout gives this widget
        self._cut = 0  # source[:_cut] holds only complete top-level blocks
        self._frozen_key: tuple[str, int] = ("", 0)
        self._frozen: list[Strip] = []  # their rendering at _frozen_key's width

    def append(self, text: str) -> None:
        self.source += text
        self._rerender()

    def finish(self) -> None:
        """The answer is complete: shrink to its text."""
        self.streaming = False
        self._rerender()

    def _render_lines_at(self, width: int) -> None:
        self._width = width
        if width <= 0 or not self.source:
            self._strips = []
            return
        if not self.streaming:
            self._strips = self._markdown_strips(self.source, width)
            return
        # While streaming, completed top-level blocks do not change: render them once, and
        # per frame only the block still arriving (Markdown parse + render are O(text)).
        self._cut = stable_prefix_end(self.source, self._cut)
        prefix, tail = self.source[:self._cut].rstrip(), self.source[self._cut:]
        if (prefix, width) != self._frozen_key:
            self._frozen_key = (prefix, width)
            self._frozen = self._markdown_strips(prefix, width) if prefix else []
        strips = list(self._frozen)
        if tail.strip():
            if strips:  # Rich's gap between blocks (a table after it would add one more: cosmetic,
                strips.append(Strip.blank(width, self.rich_style))  # and gone once finish() renders whole)
            strips.extend(self._markdown_strips(tail, width))
        self._strips = strips

    def _markdown_strips(self, text: str, width: int) -> list[Strip]:
        from rich.markdown import Markdown

        console = self.app.console
        options = console.options.update(width=width, height=None, highlight=False)
        lines = console.render_lines(Markdown(text, code_theme="monokai", hyperlinks=False),
                                     options, style=self.rich_style, pad=True)
        return [Strip(line, width) for line in lines]

    def _wanted_height(self) -> int:
        needed = len(self._strips)
        if not self.streaming:
            return needed
        if needed > self._reserved or self._reserved == 0:
            return needed + self.GROW_STEP
        return self._reserved

    def _rerender(self) -> None:
        if not self.is_mounted:
            return
        before = self._strips
        self._render_lines_at(self.content_size.width or self._width)
        wanted = self._wanted_height()
        if wanted != self._reserved:
            self._reserved = wanted
            self.refresh(layout=True)
            return
        # Repaint only the lines that changed (usually the last one or two): the screen's
        # layout stays as it is, and the compositor redraws a few lines, not the whole answer.
        after = self._strips
        first = next((i for i, (a, b) in enumerate(zip(before, after)) if a != b), min(len(before), len(after)))
        last = max(len(before), len(after))
        if first < last:
            self.refresh(Region(0, first, self.content_size.width, last - first))

    def on_mount(self) -> None:
        self.call_after_refresh(self._rerender)

    def notify_style_update(self) -> None:
        # New styles (a theme switched from the palette): the kept lines carry the old colours.
        super().notify_style_update()
        self._frozen_key = ("", 0)
        self._width = 0
        if self.is_mounted:
            self.call_after_refresh(self._rerender)

    def on_resize(self) -> None:
        if self.content_size.width != self._width:
            self._rerender()

    def get_content_height(self, container, viewport, width: int) -> int:
        if width != self._width:
            self._render_lines_at(width)
        self._reserved = self._wanted_height()
        return self._reserved

    def render_line(self, y: int) -> Strip:
        if y < len(self._strips):
            return self._strips[y]
        return Strip.blank(self.content_size.width, self.rich_style)


_FENCE = re.compile(r" {0,3}(```|~~~)")
# A line that may continue the block before a blank line (list item, indented or quoted text).
_CONTINUES = re.compile(r"[ \t>*+\-]|\d+[.)]")


def stable_prefix_end(text: str, start: int = 0) -> int:
    """Where the last complete top-level Markdown block of a growing `text` ends.

    A boundary is a blank line outside code fences followed by a line that starts a new block
    and cannot continue the previous one (not indented, not a list marker or quote); the text
    before it renders the same whatever arrives later. `start` is a previous result (it only
    moves forward). Returns an offset into `text` where the next block begins (0: none yet).
    """
    cut, pos, in_fence, blank = start, start, False, False
    for line in text[start:].splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # the last line is still arriving
        bare = line.strip()
        if _FENCE.match(line):
            if blank and not in_fence and not line[0].isspace():
                cut = pos
            in_fence = not in_fence
            blank = False
        elif not in_fence:
            if not bare:
                blank = True
            else:
                if blank and not _CONTINUES.match(line):
                    cut = pos
                blank = False
        pos += len(line)
    return cut


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
        if answer is None:
            return
        if footer:
            answer.border_subtitle = footer
        answer.finish()
