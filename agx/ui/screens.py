"""Modal screens: help, edit a task's arguments, confirm, ask for text, no-repository choice."""

from __future__ import annotations

import json
from typing import Any, Callable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TextArea

from agx.ui.keymap import ACTIONS, GROUP_TITLES, display_key


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def __init__(self, keys: dict[str, str]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(self._table())
            yield Static(
                "Type a message to talk to Echo. [b]/plan <request>[/b] asks Delta for a plan; a message "
                "Echo judges to be a change request goes to Delta too (the decision is shown). "
                "[b]/run-plan FILE[/b] loads a hand-written plan (JSON: goal + tasks). [b]/chat <text>[/b] "
                "always goes to Echo. ctrl+p: command palette. Keys can be changed in agx.toml "
                "under [ui.keymap].\n\nesc or ? closes this screen.",
                id="help-text",
            )

    def _table(self) -> Table:
        table = Table(title="agx keys", expand=True, show_edge=False)
        table.add_column("key", style="bold cyan", no_wrap=True)
        table.add_column("action")
        table.add_column("when", style="dim")
        for action in ACTIONS:
            table.add_row(display_key(self.keys.get(action.name, action.key)), action.description,
                          GROUP_TITLES.get(action.group, action.group))
        return table

    async def action_dismiss(self, result: Any = None) -> None:
        self.dismiss(None)


class EditArgsScreen(ModalScreen[dict | None]):
    """A JSON editor for one task's arguments. `validate(args) -> errors` decides; the screen
    only closes on valid input (or cancel), so nothing typed is lost to a typo."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "save", "Save")]

    def __init__(self, task_id: str, tool: str, args: dict, validate: Callable[[dict], list[str]]) -> None:
        super().__init__()
        self.task_id, self.tool, self.args = task_id, tool, args
        self.validate_args = validate

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-box"):
            yield Label(f"Arguments of {self.task_id} ({self.tool}) — ctrl+s saves, esc cancels")
            yield TextArea(json.dumps(self.args, indent=2, ensure_ascii=False), id="edit-args",
                           show_line_numbers=True, tab_behavior="indent")
            yield Static("", id="edit-errors")
            with Horizontal(id="edit-buttons"):
                yield Button("Save", id="edit-save", variant="primary")
                yield Button("Cancel", id="edit-cancel")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "edit-save":
            self.action_save()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        errors_widget = self.query_one("#edit-errors", Static)
        try:
            value = json.loads(self.query_one(TextArea).text)
        except json.JSONDecodeError as exc:
            errors_widget.update(Text(f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", style="red"))
            return
        if not isinstance(value, dict):
            errors_widget.update(Text("arguments must be a JSON object {...}", style="red"))
            return
        problems = self.validate_args(value)
        if problems:
            errors_widget.update(Text("\n".join(problems), style="red"))
            return
        self.dismiss(value)


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str | Text, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(self.question, id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.yes} (y)", id="yes", variant="error")
                yield Button(f"{self.no} (n)", id="no", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class PromptScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, placeholder: str = "") -> None:
        super().__init__()
        self.question, self.placeholder = question, placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Label(self.question)
            yield Input(placeholder=self.placeholder, id="prompt-input")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class NoRepoScreen(ModalScreen[str]):
    """Outside a git repository: chat only, or `git init` here (plans need a repository)."""

    BINDINGS = [Binding("c", "choose('chat')", "Chat only"), Binding("g", "choose('init')", "git init"),
                Binding("q,escape", "choose('quit')", "Quit")]

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(
                f"{self.where} is not inside a git repository.\n\nDelta's plans run in a git worktree, "
                "so they need one. Echo can chat without it (nothing is logged).",
                id="confirm-question",
            )
            with Horizontal(id="confirm-buttons"):
                yield Button("Chat only (c)", id="chat", variant="primary")
                yield Button("git init here (g)", id="init")
                yield Button("Quit (q)", id="quit")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(str(event.button.id))

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
