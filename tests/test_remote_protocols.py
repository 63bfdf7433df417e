"""Protocol details of servers that cannot run here, against TEST DOUBLES on 127.0.0.1.

vLLM needs a GPU and Ollama is not installable on this machine, so two small stdlib HTTP
servers stand in for the parts of their wire behaviour the engine depends on, as their docs
describe it: vLLM's 400 for a schema it rejects and its usage chunk (stream_options), and
Ollama's native /api/chat (NDJSON, the `format` field, eval counts) and /api/tags.
Everything else about the remote backend is tested against a real server in
test_remote_engine.py and test_remote_failures.py.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fixtures_remote import remote_role

from agx.runtime.engine import ChatRequest, EngineError
from agx.runtime.openai_engine import OpenAIEngine

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


class _Double(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, dict]]

    def log_message(self, *args):  # quiet
        pass

    def _json(self, status: int, data: dict) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _stream(self, content_type: str, chunks: list[bytes]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(chunk)
            self.wfile.flush()
        self.close_connection = True

    def _body(self) -> dict:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, body))
        return body


class VLLMDouble(_Double):
    """TEST DOUBLE of vLLM's OpenAI server: rejects every response_format with a 400."""

    def do_GET(self):
        self._json(200, {"object": "list", "data": [{"id": "Qwen/Qwen2.5-Coder-32B-Instruct", "object": "model"}]})

    def do_POST(self):
        body = self._body()
        if "response_format" in body:
            return self._json(400, {"object": "error", "type": "BadRequestError", "code": 400,
                                    "message": "The provided JSON schema contains features not supported by xgrammar."})
        events = [{"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]},
                  {"choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": "stop"}]},
                  {"choices": [], "usage": {"prompt_tokens": 17, "completion_tokens": 2, "total_tokens": 19}}]
        self._stream("text/event-stream", [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"])


class OllamaDouble(_Double):
    """TEST DOUBLE of Ollama's native API: /api/tags and streamed /api/chat (NDJSON)."""

    def do_GET(self):
        if self.path == "/api/tags":
            return self._json(200, {"models": [{"name": "qwen2.5-coder:32b"}, {"name": "llama3:latest"}]})
        self._json(404, {"error": "not found"})

    def do_POST(self):
        self._body()
        lines = [{"model": "qwen2.5-coder:32b", "message": {"role": "assistant", "content": p}, "done": False}
                 for p in ('{"ok"', ": ", "true}")]
        lines.append({"model": "qwen2.5-coder:32b", "message": {"role": "assistant", "content": ""}, "done": True,
                      "done_reason": "stop", "prompt_eval_count": 21, "eval_count": 3})
        self._stream("application/x-ndjson", [(json.dumps(line) + "\n").encode() for line in lines])


@pytest.fixture()
def double_server():
    servers = []

    def start(handler):
        cls = type(handler.__name__, (handler,), {"seen": []})
        server = ThreadingHTTPServer(("127.0.0.1", 0), cls)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", cls.seen

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def test_schema_rejected_by_server_is_a_clear_error(double_server):
    url, seen = double_server(VLLMDouble)
    engine = OpenAIEngine(("delta",), remote_role(url, model="Qwen/Qwen2.5-Coder-32B-Instruct"))
    with pytest.raises(EngineError) as err:
        engine.complete(ChatRequest(messages=[{"role": "user", "content": "plan"}], json_schema=SCHEMA))
    assert "rejected the JSON schema" in str(err.value) and "not supported by xgrammar" in str(err.value)
    forms = [body["response_format"] for path, body in seen if path.endswith("/chat/completions")]
    assert forms == [
        {"type": "json_schema", "json_schema": {"name": "agx_output", "schema": SCHEMA, "strict": True}},
        {"type": "json_object", "schema": SCHEMA},
    ]
    # Unconstrained requests still work, and usage from the final chunk fills the stats.
    text, stats = engine.complete(ChatRequest(messages=[{"role": "user", "content": "hi"}], stop=["\n\n"]))
    assert text == "Hi there" and (stats.prompt_tokens, stats.completion_tokens) == (17, 2)
    last = seen[-1][1]
    assert last["stream_options"] == {"include_usage": True} and last["stop"] == ["\n\n"]
    assert last["repetition_penalty"] == last["repeat_penalty"]


def test_schema_mode_none_sends_no_schema(double_server):
    url, seen = double_server(VLLMDouble)
    engine = OpenAIEngine(("delta",), remote_role(url, model="Qwen/Qwen2.5-Coder-32B-Instruct", schema_mode="none"))
    assert engine.complete(ChatRequest(messages=[{"role": "user", "content": "x"}], json_schema=SCHEMA))[0]
    assert "response_format" not in seen[-1][1]


def test_ollama_format_uses_native_chat_with_format(double_server):
    url, seen = double_server(OllamaDouble)
    rc = remote_role(url, model="qwen2.5-coder:32b", schema_mode="ollama_format")
    rc.sampling.seed = 7
    engine = OpenAIEngine(("delta",), rc)
    stream = engine.chat(ChatRequest(messages=[{"role": "user", "content": "ok?"}], json_schema=SCHEMA,
                                     max_tokens=50, stop=["###"]))
    assert list(stream) == ['{"ok"', ": ", "true}"]
    assert json.loads(stream.text) == {"ok": True}
    s = stream.stats
    assert (s.prompt_tokens, s.completion_tokens, s.finish_reason) == (21, 3, "stop")
    path, body = seen[-1]
    assert path == "/api/chat" and body["format"] == SCHEMA and body["stream"] is True
    assert body["options"]["num_predict"] == 50 and body["options"]["stop"] == ["###"]
    assert body["options"]["seed"] == 7 and body["options"]["temperature"] == 0.0

    # "llama3" is Ollama's short name for llama3:latest; an unknown name lists what is there.
    assert OpenAIEngine(("echo",), remote_role(url, model="llama3", schema_mode="ollama_format")).complete(
        ChatRequest(messages=[{"role": "user", "content": "x"}]))[0]
    with pytest.raises(EngineError, match="it serves: qwen2.5-coder:32b, llama3:latest"):
        OpenAIEngine(("delta",), remote_role(url, model="mistral", schema_mode="ollama_format")).complete(
            ChatRequest(messages=[{"role": "user", "content": "x"}]))


def test_bad_base_url_is_a_clear_error():
    from agx.config.schema import RoleConfig

    with pytest.raises(EngineError, match="is not an http"):
        OpenAIEngine(("delta",), RoleConfig(backend="openai", base_url="worker2:8000/v1", model="m"))
