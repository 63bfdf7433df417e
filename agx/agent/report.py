"""Echo's report of a finished request, written from the session's record (never from memory).

`summary_text` (agx/agent/session.py) is the exact report both front ends print; Echo then says
the same in a few sentences of prose, streamed. Echo is given only the record, so it cannot claim
a change or a test result that did not happen."""

from __future__ import annotations

import json
from typing import Any

REPORT_SYSTEM = (
    "You are Echo. Tell the user, in two to four short sentences, what happened to their request, "
    "using only the facts in the JSON record: what changed (per file), whether the tests pass, what "
    "failed and why, and how to apply or discard the result (give the commands as written)."
)


def report_request(summary: dict[str, Any], max_tokens: int = 160):
    from agx.runtime.engine import ChatRequest

    facts = {k: v for k, v in summary.items() if k not in ("base_commit",)}
    return ChatRequest(messages=[{"role": "system", "content": REPORT_SYSTEM},
                                 {"role": "user", "content": json.dumps(facts, ensure_ascii=False)}],
                       max_tokens=max_tokens, temperature=0.2)


def stream_report(engine, summary: dict[str, Any], cancel=None):
    """Echo's prose report, as text pieces (a ChatStream)."""
    return engine.chat(report_request(summary), cancel=cancel)
