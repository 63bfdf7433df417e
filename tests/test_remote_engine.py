"""The remote backend (backend = "openai") against a real llama-cpp-python server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import pytest
from fixtures_remote import MODEL_ALIAS, free_port, llama_server, remote_role  # noqa: F401 (fixture)

from agx.runtime.engine import CancelToken, ChatRequest, EngineError
from agx.runtime.openai_engine import OpenAIEngine


def _engine(server, **fields) -> OpenAIEngine:
    return OpenAIEngine(("delta",), remote_role(server.base_url, **fields))


def test_streamed_chat_yields_pieces_and_stats(llama_server):
    engine = _engine(llama_server)
    stream = engine.chat(ChatRequest(messages=[{"role": "user", "content": "Name three colours."}], max_tokens=24))
    pieces = list(stream)
    assert len(pieces) > 1, "a streamed reply arrives in several pieces"
    assert stream.text == "".join(pieces) and stream.text.strip()
    s = stream.stats
    assert s.finish_reason in ("stop", "length")
    assert 1 < s.completion_tokens <= 24
    assert 0 < s.time_to_first_token_s <= s.total_s
    assert engine.info().backend == "openai" and engine.info().model == MODEL_ALIAS


def test_stop_string_ends_the_reply(llama_server):
    engine = _engine(llama_server)
    request = ChatRequest(messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
                          max_tokens=40)
    full = engine.complete(request)[0]
    assert "3" in full, f"the tiny model was expected to count past 3: {full!r}"
    stopped, stats = engine.complete(ChatRequest(messages=request.messages, max_tokens=40, stop=["3"]))
    assert "3" not in stopped and full.startswith(stopped)
    assert stats.finish_reason == "stop"


def _plan_schema():
    from agx.execution.builtin_tools import builtin_catalogue
    from agx.planning.schema_grammar import plan_json_schema

    return plan_json_schema(builtin_catalogue(), max_tasks=2, max_deps=1)


def test_schema_constrained_plan_through_remote_delta(llama_server, tmp_path):
    from agx.config import load_config
    from agx.execution.builtin_tools import builtin_catalogue
    from agx.planning.plan import Plan
    from agx.runtime.pool import EnginePool

    config = load_config(tmp_path, use_user_file=False, overrides=[
        "roles.delta.backend=openai", f"roles.delta.base_url={llama_server.base_url}",
        f"roles.delta.model={MODEL_ALIAS}", "roles.delta.sampling.temperature=0",
    ]).config
    pool = EnginePool(config, tmp_path)
    delta = pool.engine("delta")
    assert isinstance(delta, OpenAIEngine)
    schema = _plan_schema()
    text, stats = delta.complete(ChatRequest(
        messages=[{"role": "system", "content": "You plan tasks as JSON."},
                  {"role": "user", "content": "Plan: read README.md, then summarise it."}],
        json_schema=schema, max_tokens=400))
    assert stats.finish_reason == "stop", f"the schema bounds the plan, so it must finish: {text!r}"
    data = json.loads(text)
    try:
        import jsonschema
    except ImportError:  # optional: the Plan model below checks the same structure
        jsonschema = None
    if jsonschema is not None:
        jsonschema.validate(data, schema)
    plan = Plan.model_validate(data)
    assert 1 <= len(plan.tasks) <= 2
    assert {t.tool for t in plan.tasks} <= set(builtin_catalogue().names())
    # llama-cpp-python's server refuses OpenAI's json_schema form; the engine fell back and remembers.
    assert delta._schema_style == "json_object_schema"


def test_unknown_model_name_is_a_clear_error(llama_server):
    # The fact this guards against: llama-cpp-python's server answers any model name with its
    # own model, so the engine checks the name against /v1/models before the first request.
    body = json.dumps({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 1}).encode()
    req = urllib.request.Request(f"{llama_server.base_url}/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status == 200  # the server itself does not object
    engine = _engine(llama_server, model="qwen2.5-coder-32b")
    with pytest.raises(EngineError) as err:
        engine.complete(ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=4))
    msg = str(err.value)
    assert "'qwen2.5-coder-32b'" in msg and f"it serves: {MODEL_ALIAS}" in msg and "roles.delta.model" in msg


def test_refused_connection_retries_then_names_the_url():
    port = free_port()  # nothing listens there
    engine = OpenAIEngine(("delta",), remote_role(f"http://127.0.0.1:{port}/v1", max_retries=2))
    t0 = time.perf_counter()
    with pytest.raises(EngineError) as err:
        engine.complete(ChatRequest(messages=[{"role": "user", "content": "hi"}]))
    elapsed = time.perf_counter() - t0
    msg = str(err.value)
    assert f"http://127.0.0.1:{port}/v1" in msg and "connection refused" in msg and "3 attempts" in msg
    assert 0.7 <= elapsed < 5, f"two backoffs (0.25 s + 0.5 s) expected, took {elapsed:.2f}s"
    # The failure is not cached: a later call tries again (and fails the same way, quickly).
    engine.role.max_retries = 0
    with pytest.raises(EngineError, match="1 attempt"):
        engine.complete(ChatRequest(messages=[{"role": "user", "content": "hi"}]))


def test_missing_api_key_variable_is_a_clear_error(llama_server, monkeypatch):
    monkeypatch.delenv("AGX_TEST_NO_SUCH_KEY", raising=False)
    engine = _engine(llama_server, api_key_env="AGX_TEST_NO_SUCH_KEY")
    with pytest.raises(EngineError, match=r"api_key_env names \$AGX_TEST_NO_SUCH_KEY, but that variable is not set"):
        engine.complete(ChatRequest(messages=[{"role": "user", "content": "hi"}]))


def test_cancel_closes_the_stream_promptly(llama_server):
    engine = _engine(llama_server)
    engine.list_models()  # warm: the connection below is the only thing in flight
    engine._model_checked = True
    # A long, never-seen prompt keeps the server busy evaluating it before the first token,
    # so the client sits blocked in recv(): only closing the socket can end the wait quickly.
    filler = " ".join(f"{uuid.uuid4().hex[:8]}" for _ in range(100))
    token = CancelToken()
    stream = engine.chat(ChatRequest(messages=[{"role": "user", "content": f"Summarise: {filler}"}],
                                     max_tokens=200), token)
    cancelled_at: list[float] = []

    def cancel_soon():
        time.sleep(0.15)
        cancelled_at.append(time.perf_counter())
        token.cancel()

    threading.Thread(target=cancel_soon, daemon=True).start()
    stream.read()
    ended = time.perf_counter()
    assert stream.stats.finish_reason == "cancelled"
    assert cancelled_at, "the stream ended before it was cancelled"
    assert ended - cancelled_at[0] < 0.25, f"took {ended - cancelled_at[0]:.3f}s after cancel"
    # The server is still usable afterwards.
    assert engine.complete(ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=2))[0]


def test_doctor_probes_a_remote_role(llama_server, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGX_")}
    env.update(AGX_ROLES__DELTA__BACKEND="openai", AGX_ROLES__DELTA__MODEL=MODEL_ALIAS)
    proc = subprocess.run([sys.executable, "-m", "agx", "--set", f"roles.delta.base_url={llama_server.base_url}",
                           "doctor"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    delta = proc.stdout.split("[delta]")[1]
    assert "reachable: yes" in delta and f"'{MODEL_ALIAS}' listed" in delta
    assert "latency: one-token request" in delta and "verdict: OK" in delta


def test_doctor_check_names_what_is_wrong(llama_server):
    from agx.runtime.remote_check import check_remote_role

    ok, lines = check_remote_role("delta", remote_role(llama_server.base_url, model="qwen-coder"))
    assert not ok and f"model:   'qwen-coder' NOT LISTED — the server has: {MODEL_ALIAS}" in lines

    port = free_port()
    ok, lines = check_remote_role("delta", remote_role(f"http://127.0.0.1:{port}/v1"))
    assert not ok and "reachable: NO" in lines
    assert f"http://127.0.0.1:{port}/v1/models: connection refused" in lines[-1]

    ok, lines = check_remote_role("delta", remote_role(llama_server.base_url, api_key_env="AGX_TEST_UNSET_KEY"))
    assert not ok and "AGX_TEST_UNSET_KEY" in lines[-1]
