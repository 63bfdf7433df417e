"""The streamed answer widget: incremental Markdown rendering and how rarely it re-lays out the screen."""

from __future__ import annotations

from rich.console import Console
from rich.markdown import Markdown
from textual.app import App

from agx.ui.widgets.chat import Answer, ChatPane, stable_prefix_end

SAMPLE = """A git worktree is a second checkout of the same repository.

## Worktree vs clone

1. **Shared objects**: a worktree shares `.git`.
2. **Branches**: one branch per worktree.

   Indented text still belongs to item 2.

Plain paragraph after the list, long enough to wrap around the sixty-column console we render at.

```bash
git worktree add ../feature feature

git worktree list
```

> A quote
continues lazily.

- a bullet
- another

Done.
"""


def _lines(text: str, width: int = 60) -> list[str]:
    console = Console(width=width, color_system=None)
    return ["".join(s.text for s in line).rstrip()
            for line in console.render_lines(Markdown(text), console.options, pad=False)]


def test_stable_prefix_renders_like_the_whole_text():
    checked = 0
    for end in range(1, len(SAMPLE) + 1):
        text = SAMPLE[:end]
        cut = stable_prefix_end(text)
        assert cut == 0 or text[cut - 1] == "\n"
        if not cut or not text[cut:].strip():
            continue
        split = _lines(text[:cut].rstrip()) + [""] + _lines(text[cut:])
        assert split == _lines(text), f"prefix cut at {cut} renders differently:\n{text[cut - 30:cut + 30]!r}"
        checked += 1
    assert checked > 100
    # Never inside a fence or a list: the blank lines there do not end the block.
    fenced = SAMPLE[:SAMPLE.index("git worktree list")]
    assert stable_prefix_end(fenced) == SAMPLE.index("```bash")
    listed = SAMPLE[:SAMPLE.index("Plain paragraph")]
    # The list may still continue, and a list marker after a blank line may extend the one
    # before it, so the cut stays before the list (the heading is the last complete block).
    assert stable_prefix_end(listed) == SAMPLE.index("## Worktree")


class _ChatApp(App):
    def compose(self):
        yield ChatPane(id="chat")


async def test_streamed_answer_grows_in_steps_and_ends_exact():
    app = _ChatApp()
    async with app.run_test(size=(70, 40)) as pilot:
        chat = app.query_one(ChatPane)
        answer: Answer = chat.start_answer(1, "echo")
        await pilot.pause()
        heights = []
        pieces = [SAMPLE[i:i + 4] for i in range(0, len(SAMPLE), 4)]
        for piece in pieces:
            chat.append_answer(1, piece)
            await pilot.pause()
            heights.append(answer.content_size.height)
            assert heights[-1] >= len(answer._strips), "the reserve must never cut text off"
        assert answer.source == SAMPLE
        changes = sum(1 for a, b in zip(heights, heights[1:]) if a != b)
        # One layout per GROW_STEP new lines, not one per piece (there are ~190 pieces).
        assert changes <= len(answer._strips) // Answer.GROW_STEP + 2, (changes, heights)
        chat.end_answer(1, "12 tok · 50 tok/s")
        await pilot.pause()
        width = answer.content_size.width
        shown = [strip.text.rstrip() for strip in answer._strips]
        assert shown == _lines(SAMPLE, width)
        assert answer.content_size.height == len(shown)  # no reserve left


async def test_theme_change_recolours_a_finished_answer():
    app = _ChatApp()
    async with app.run_test(size=(70, 30)) as pilot:
        chat = app.query_one(ChatPane)
        answer = chat.start_answer(1, "echo", "Some **bold** text and `code`.")
        chat.end_answer(1)
        await pilot.pause()
        before = answer._strips[0]
        app.theme = "textual-light" if app.theme != "textual-light" else "textual-dark"
        await pilot.pause()
        await pilot.pause()
        after = answer._strips[0]
        assert after.text == before.text
        assert after != before, "the answer kept the previous theme's colours"
