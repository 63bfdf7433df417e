"""`agx doctor`'s probe of a remote role: reachable, model listed, latency of a one-token request.

Each step runs once without retries (doctor should answer fast and say what is wrong, not
wait out a backoff), and a failed step stops the probe with a line saying what to fix.
"""

from __future__ import annotations

import time

from agx.config.schema import RoleConfig
from agx.runtime.engine import EngineError


def check_remote_role(role: str, rc: RoleConfig) -> tuple[bool, list[str]]:
    """Probe one role with backend = "openai"; returns (all good, lines to print)."""
    from agx.runtime.openai_engine import OpenAIEngine, _model_matches

    lines = [f"backend: openai-compatible server at {rc.base_url} (schema_mode = {rc.schema_mode})"]
    probe_rc = rc.model_copy(update={"max_retries": 0, "read_timeout_s": min(rc.read_timeout_s, 60.0)})
    try:
        engine = OpenAIEngine((role,), probe_rc)
        engine.headers()
    except EngineError as exc:
        return False, lines + [f"verdict: FAILED — {exc}"]
    if rc.api_key_env:
        lines.append(f"api key: from ${rc.api_key_env}")

    t0 = time.perf_counter()
    try:
        names = engine.list_models()
    except EngineError as exc:
        return False, lines + ["reachable: NO", f"verdict: FAILED — {exc}"]
    ms = (time.perf_counter() - t0) * 1000
    listing = "/api/tags" if rc.schema_mode == "ollama_format" else "/models"
    lines.append(f"reachable: yes ({listing} answered in {ms:.0f} ms)")

    if names is None:
        lines.append(f"model:   {rc.model!r} — the server has no model listing; not checked")
    elif any(_model_matches(rc.model, n) for n in names):
        lines.append(f"model:   {rc.model!r} listed")
    else:
        served = ", ".join(names[:10]) or "nothing"
        return False, lines + [f"model:   {rc.model!r} NOT LISTED — the server has: {served}",
                               f"verdict: FAILED — set roles.{role}.model to one of those names"]

    try:
        stats = engine.ping()
    except EngineError as exc:
        return False, lines + [f"verdict: FAILED — one-token request: {exc}"]
    lines.append(f"latency: one-token request {stats.total_s * 1000:.0f} ms "
                 f"(first token after {stats.time_to_first_token_s * 1000:.0f} ms)")
    lines.append("verdict: OK")
    return True, lines
