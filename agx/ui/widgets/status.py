"""The status bar: per role, model, backend (CPU/Metal/CUDA/remote), adapter, tokens/s of the
last answer and context used; a spinner while a model loads."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.widgets import Static

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


@dataclass
class RoleStatus:
    role: str
    model: str = "?"
    accelerator: str = "?"
    adapter: str | None = None
    n_ctx: int = 0
    state: str = "loading"  # loading | ready | error
    load_started: float = 0.0
    load_s: float | None = None
    tokens_per_s: float | None = None
    context_used: int = 0
    error: str | None = None
    shared_with: str | None = None  # another role on the same loaded model


class StatusBar(Static):
    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.roles: dict[str, RoleStatus] = {}
        self.extra = ""
        self.mcp = ""  # "MCP up/total" when MCP servers are configured
        self._frame = 0

    def on_mount(self) -> None:
        self.set_interval(0.1, self._tick)

    def _tick(self) -> None:
        if any(r.state == "loading" for r in self.roles.values()):
            self._frame += 1
            self.refresh_status()

    def set_role(self, status: RoleStatus) -> None:
        self.roles[status.role] = status
        self.refresh_status()

    def refresh_status(self) -> None:
        self.update(self.render_text())

    def render_text(self, now: float | None = None) -> Text:
        now = now or time.monotonic()
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, r in enumerate(self.roles.values()):
            if i:
                text.append("  │  ", style="dim")
            text.append(r.role.capitalize(), style="bold")
            text.append(" ")
            text.append(Path(r.model).name if "/" in r.model else r.model, style="cyan")
            text.append(f" {r.accelerator}", style="magenta")
            if r.adapter:
                text.append(f" +{r.adapter}", style="green")
            if r.state == "loading":
                spin = SPINNER[self._frame % len(SPINNER)]
                text.append(f" {spin} loading {now - r.load_started:.1f}s", style="yellow")
            elif r.state == "error":
                text.append(" ✗ load failed", style="bold red")
            else:
                if r.tokens_per_s:
                    text.append(f" {r.tokens_per_s:.0f} tok/s", style="")
                if r.n_ctx:
                    pct = 100 * r.context_used / r.n_ctx
                    text.append(f" ctx {r.context_used}/{r.n_ctx} ({pct:.0f}%)", style="dim")
        if self.mcp:
            text.append("  │  ", style="dim")
            text.append(self.mcp, style="cyan")
        if self.extra:
            text.append("  │  ", style="dim")
            text.append(self.extra)
        return text
