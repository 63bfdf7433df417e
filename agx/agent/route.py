"""Echo's first decision about a message: conversation, or a change request for Delta.

A constrained yes/no (a JSON schema with one boolean), so even the tiny model answers in form.
Front ends call `decide` and only show the result."""

from __future__ import annotations

import json
from dataclasses import dataclass

ROUTE_SCHEMA = {
    "type": "object",
    "properties": {"change_repo": {"type": "boolean"}},
    "required": ["change_repo"],
    "additionalProperties": False,
}
ROUTE_SYSTEM_PROMPT = (
    "Decide whether the user's message asks to change files in their code repository (edit, add, "
    "fix, refactor, write code, run commands) or is conversation (questions, explanations, chat). "
    'Answer only JSON: {"change_repo": true} or {"change_repo": false}.'
)


@dataclass(frozen=True)
class RouteDecision:
    change_repo: bool
    raw: str = ""
    error: str | None = None  # set when Echo could not decide: the message is then treated as chat


def decide(engine, text: str) -> RouteDecision:
    """Ask `engine` (Echo's) whether `text` asks to change the repository. Blocks; never raises
    for a model failure (the decision then says why and falls back to chat)."""
    from agx.runtime.engine import ChatRequest, EngineError

    try:
        out, _ = engine.complete(ChatRequest(
            messages=[{"role": "system", "content": ROUTE_SYSTEM_PROMPT}, {"role": "user", "content": text}],
            json_schema=ROUTE_SCHEMA, temperature=0.0, max_tokens=16))
        return RouteDecision(bool(json.loads(out).get("change_repo")), out)
    except (EngineError, ValueError, AttributeError) as exc:
        return RouteDecision(False, error=str(exc))
