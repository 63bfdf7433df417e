"""Remote backend failures against real llama-cpp-python servers: a server that needs an API
key, and a server killed in the middle of a streamed reply."""

from __future__ import annotations

import json

import pytest
from fixtures_remote import LlamaServer, remote_role

from agx.conversation import Conversation
from agx.runtime.engine import ChatRequest, EngineError
from agx.runtime.openai_engine import OpenAIEngine
from agx.workspace.sessionlog import SessionLog, read_records

KEY = "sekrit-test-key"


@pytest.fixture()
def keyed_server(tmp_path, tiny_model_path):
    server = LlamaServer(tiny_model_path, tmp_path, api_key=KEY).wait_ready()
    yield server
    server.stop()


def test_api_key_from_env_and_wrong_key(keyed_server, monkeypatch):
    monkeypatch.setenv("REMOTE_TEST_KEY", KEY)
    engine = OpenAIEngine(("delta",), remote_role(keyed_server.base_url, api_key_env="REMOTE_TEST_KEY"))
    text, stats = engine.complete(ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=4))
    assert text and stats.completion_tokens >= 1

    monkeypatch.setenv("REMOTE_TEST_KEY", "wrong")
    engine = OpenAIEngine(("delta",), remote_role(keyed_server.base_url, api_key_env="REMOTE_TEST_KEY"))
    with pytest.raises(EngineError) as err:
        engine.complete(ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=4))
    assert "refused the API key (401" in str(err.value) and "$REMOTE_TEST_KEY" in str(err.value)


def test_server_killed_mid_stream_keeps_partial_text_and_log(keyed_server, tmp_path, monkeypatch):
    monkeypatch.setenv("REMOTE_TEST_KEY", KEY)
    engine = OpenAIEngine(("delta",), remote_role(keyed_server.base_url, api_key_env="REMOTE_TEST_KEY"))
    log = SessionLog(tmp_path / "session.jsonl", "remote-kill")
    conv = Conversation("delta", engine, log=log)
    conv.send("hello", max_tokens=4).read()  # one complete turn before the crash

    stream = conv.send("Write a long story about a dragon and a knight.", max_tokens=400)
    pieces = iter(stream)
    first = next(pieces)
    keyed_server.stop()  # SIGKILL while the reply streams
    with pytest.raises(EngineError) as err:
        for _ in pieces:
            pass
    msg = str(err.value)
    assert keyed_server.base_url.rsplit("/v1", 1)[0] in msg and "the partial reply is kept" in msg
    assert stream.text.startswith(first) and stream.stats.finish_reason == "error"
    assert stream.stats.completion_tokens < 400

    lines = log.path.read_bytes().splitlines()
    assert len(lines) == 2 and all(json.loads(line) for line in lines)  # every line parses
    ok_turn, crashed = list(read_records(log.path))
    assert ok_turn["error"] is None and ok_turn["stats"]["finish_reason"] in ("stop", "length")
    assert crashed["response"] == stream.text and crashed["error"] == msg
    assert crashed["stats"]["finish_reason"] == "error"
    # The conversation keeps the partial turn, so the user sees what arrived.
    assert conv.history[-1] == {"role": "assistant", "content": stream.text}

    # The dead server is now a refused connection: retried, then a clear error.
    with pytest.raises(EngineError, match="connection refused"):
        conv.send("still there?").read()
