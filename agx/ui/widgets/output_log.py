"""A virtualized, append-only text view for task output (Textual's line API).

Textual's `Log` refreshes once per written line, which costs seconds for a 100,000-line
write. This view stores plain lines, updates its virtual size once per write, and renders only
the rows on screen, so appending a frame's worth of output and scrolling stay O(screen).
ANSI escapes and other control characters are stripped (they would corrupt the screen).
"""

from __future__ import annotations

import re

from rich.cells import cell_len
from rich.segment import Segment
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f]")


class OutputLog(ScrollView, can_focus=True):
    def __init__(self, max_lines: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_lines = max_lines
        self._lines: list[str] = []
        self._open_last = False  # the last line has no newline yet
        self._width = 0

    @property
    def line_count(self) -> int:
        return len(self._lines)

    @property
    def lines(self) -> list[str]:
        return self._lines

    def clear(self) -> None:
        self._lines, self._open_last, self._width = [], False, 0
        self.virtual_size = Size(0, 0)
        self.scroll_to(0, 0, animate=False)
        self.refresh()

    def write(self, text: str) -> None:
        """Append text (any number of lines, possibly ending mid-line)."""
        if not text:
            return
        follow = self.scroll_y >= self.max_scroll_y  # autoscroll only while at the bottom
        text = _ESCAPES.sub("", text.replace("\r\n", "\n").replace("\t", "    "))
        pieces = text.split("\n")
        first = 0
        if self._open_last and self._lines:
            self._lines[-1] += pieces[0]
            self._width = max(self._width, cell_len(self._lines[-1]))
            first = 1
        new = pieces[first:]
        self._open_last = not text.endswith("\n")
        if not self._open_last:
            new = new[:-1]  # the empty piece after the final newline
        if new:
            self._width = max(self._width, max(cell_len(line) for line in new))
            self._lines.extend(new)
        if self.max_lines is not None and len(self._lines) > self.max_lines:
            del self._lines[: len(self._lines) - self.max_lines]
        self.virtual_size = Size(self._width, len(self._lines))
        if follow:  # set directly: scroll_to() defers until the new size is laid out
            self.scroll_target_y = self.scroll_y = self.max_scroll_y
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        style = self.rich_style
        if index >= len(self._lines):
            return Strip.blank(width, style)
        strip = Strip([Segment(self._lines[index], style)])
        return strip.crop_extend(scroll_x, scroll_x + width, style)
