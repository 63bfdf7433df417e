"""The command palette (ctrl+p): every shell action, searchable by its description."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from agx.ui.keymap import ACTIONS, display_key


class ShellCommands(Provider):
    def _entries(self):
        app = self.app
        keys = getattr(app, "effective_keys", lambda: {})()
        for action in ACTIONS:
            if action.name == "stop":
                continue
            key = display_key(keys.get(action.name, action.key))
            yield action, f"{action.description}  [{key}]", partial(app.run_action, action.name)

    async def discover(self) -> Hits:
        for action, title, callback in self._entries():
            yield DiscoveryHit(title, callback, help=f"action: {action.name}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for action, title, callback in self._entries():
            score = max(matcher.match(title), matcher.match(action.name))
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=f"action: {action.name}")
