"""Remote backend: a role served by an OpenAI-compatible server (vLLM, llama-server,
llama-cpp-python's server, Ollama).

Wire protocol: POST {base_url}/chat/completions with "stream": true; the reply is Server-Sent
Events, one `data: {chunk}` per event, ending with `data: [DONE]`. With
schema_mode = "ollama_format" the engine speaks Ollama's native /api/chat instead
(newline-delimited JSON), because that is where Ollama's `format` field (a JSON schema) lives.

Why the stdlib's http.client rather than an HTTP library: cancelling must unblock a reader
that sits in recv() on another thread. We own the socket, so the cancel callback shuts it down
and the read returns at once.

Failure policy (what callers can rely on):
- Connection refused/reset, connect timeout, or HTTP 502/503/504 before any text arrived:
  retried `max_retries` times with exponential backoff (0.25 s, 0.5 s, 1 s, ... capped at 4 s),
  then EngineError naming the URL. Nothing is retried once text has been yielded: the caller
  has already shown it.
- The server dies mid-stream (connection closed, or EOF without a finish reason / [DONE]): the
  text received so far stays in `stream.text`, `stats.finish_reason` becomes "error", and
  EngineError is raised from the iteration. `agx.conversation` logs that turn with the partial
  reply and the error.
- No data for read_timeout_s: EngineError (not retried: the server may still be working).
- Unknown model: the name is checked against GET /models before the first request, because
  llama-cpp-python's server silently serves its default model whatever name is asked for; a
  404 from the server on the request itself gives the same message.
- Schema rejected: the OpenAI form {"type": "json_schema", "json_schema": {...}} is sent
  first (vLLM, llama-server, Ollama >= 0.5); if the server answers 400/422, the llama.cpp form
  {"type": "json_object", "schema": {...}} (llama-cpp-python's server) is tried once and
  remembered for this engine; if both are refused, EngineError quotes the server.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import urlsplit

from agx.config.schema import RoleConfig
from agx.runtime.engine import CancelToken, ChatRequest, Engine, EngineError, EngineInfo, GenerationStats

_RETRY_STATUSES = {502, 503, 504}
_BACKOFF_FIRST_S = 0.25
_BACKOFF_CAP_S = 4.0
# Forms of response_format, in the order they are tried.
_SCHEMA_STYLES = ("json_schema", "json_object_schema")


class _Transient(Exception):
    """A failure worth retrying if no text has been yielded yet (connection-level)."""


class _HTTPStatus(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


@dataclass(frozen=True)
class Endpoint:
    """Where a role's server lives: base_url split into what http.client needs."""

    scheme: str
    host: str
    port: int
    prefix: str  # path of base_url without a trailing slash, e.g. "/v1"

    @classmethod
    def parse(cls, base_url: str) -> "Endpoint":
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EngineError(f"base_url {base_url!r} is not an http(s) URL (e.g. http://worker2:8000/v1)")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise EngineError(f"base_url {base_url!r} has an invalid port") from None
        # A bare host (http://worker2:8000) means the usual /v1 root of OpenAI-compatible servers.
        prefix = parts.path.rstrip("/") or "/v1"
        return cls(parts.scheme, parts.hostname, port, prefix)

    @property
    def native_root(self) -> str:
        """Ollama's native API lives beside /v1, not under it."""
        return self.prefix[: -len("/v1")] if self.prefix.endswith("/v1") else self.prefix

    def url(self, path: str = "") -> str:
        default = 443 if self.scheme == "https" else 80
        hostport = self.host if self.port == default else f"{self.host}:{self.port}"
        return f"{self.scheme}://{hostport}{path}"


def _error_message(raw: bytes) -> str:
    """The human part of an error body: OpenAI/vLLM/Ollama {"error": ...}, FastAPI {"detail": ...}."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text[:300] or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if isinstance(err, list):  # FastAPI validation errors: [{"loc": [...], "msg": ...}]
            err = "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg', '')}" if isinstance(e, dict) else str(e)
                for e in err[:3]
            )
        if err is not None:
            return str(err)[:300]
    return text[:300]


def _model_matches(wanted: str, listed: str) -> bool:
    # Ollama lists "qwen2.5-coder:32b" and "llama3:latest"; "llama3" means the latter.
    return wanted == listed or f"{wanted}:latest" == listed


class _Connection:
    """One HTTP exchange whose socket a cancel token can shut down from another thread."""

    def __init__(self, ep: Endpoint, connect_timeout: float, read_timeout: float):
        self.ep = ep
        cls = http.client.HTTPSConnection if ep.scheme == "https" else http.client.HTTPConnection
        kwargs: dict[str, Any] = {"timeout": connect_timeout}
        if ep.scheme == "https":
            kwargs["context"] = ssl.create_default_context()
        self.conn = cls(ep.host, ep.port, **kwargs)
        self.read_timeout = read_timeout
        self._closed = threading.Event()

    def open(self, method: str, path: str, body: dict | None, headers: dict[str, str]) -> http.client.HTTPResponse:
        try:
            self.conn.connect()
        except ConnectionRefusedError:
            raise _Transient("connection refused (is the server running?)") from None
        except (socket.timeout, TimeoutError):
            raise _Transient("connect timed out") from None
        except socket.gaierror as exc:
            raise EngineError(f"cannot resolve host {self.ep.host!r}: {exc.strerror or exc}") from None
        except ssl.SSLError as exc:
            raise EngineError(f"TLS handshake with {self.ep.url()} failed: {exc}") from None
        except OSError as exc:
            raise _Transient(exc.strerror or str(exc)) from None
        if self._closed.is_set():
            raise _Transient("cancelled")
        self.conn.sock.settimeout(self.read_timeout)
        payload = json.dumps(body).encode() if body is not None else None
        hdrs = {"Accept": "application/json, text/event-stream", **headers}
        if payload is not None:
            hdrs["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=payload, headers=hdrs)
            return self.conn.getresponse()
        except (socket.timeout, TimeoutError):
            raise EngineError(f"{self.ep.url(path)}: no response within read_timeout_s={self.read_timeout:g}") from None
        except (http.client.HTTPException, OSError) as exc:
            raise _Transient(f"connection lost before a response ({exc.__class__.__name__})") from None

    def abort(self) -> None:
        """Safe from any thread (the cancel callback): shutdown() wakes a reader blocked in
        recv() at once. The reading thread closes the connection itself; closing http.client
        objects from two threads races inside http.client."""
        self._closed.set()
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """From the thread that uses the connection."""
        self._closed.set()
        try:
            self.conn.close()
        except Exception:
            pass


class OpenAIEngine(Engine):
    """A role served by a remote OpenAI-compatible server; same interface as in-process."""

    def __init__(self, role_names: tuple[str, ...], role: RoleConfig):
        super().__init__()
        self.role_names = role_names
        self.role = role
        self.endpoint = Endpoint.parse(role.base_url or "")
        self._model_checked = False
        self._schema_style: str | None = None  # learned: which response_format form the server takes

    @property
    def role_label(self) -> str:
        return self.role_names[0] if self.role_names else "role"

    # -- Engine interface ---------------------------------------------------------------
    def info(self) -> EngineInfo:
        return EngineInfo(role_names=self.role_names, backend="openai", model=self.role.model,
                          accelerator="remote", n_ctx=self.role.n_ctx)

    def _load(self) -> None:
        # Nothing to load; only what the config and environment decide, so a server that is
        # down now does not poison the engine (load errors are cached for the engine's life).
        self.headers()

    def headers(self) -> dict[str, str]:
        env = self.role.api_key_env
        if not env:
            return {}
        key = os.environ.get(env)
        if not key:
            raise EngineError(f"roles.{self.role_label}.api_key_env names ${env}, but that variable is not set "
                              f"(export {env}=<key for {self.role.base_url}>)")
        return {"Authorization": f"Bearer {key}"}

    # -- plumbing -------------------------------------------------------------------------
    def _with_retries(self, attempt_fn, cancel: CancelToken, what: str):
        """Run attempt_fn() until it stops raising _Transient or retries run out."""
        tries = 0
        while True:
            try:
                return attempt_fn()
            except _Transient as exc:
                if cancel.cancelled:
                    raise
                if tries >= self.role.max_retries:
                    n = tries + 1
                    raise EngineError(f"cannot reach the {self.role_label} server at {self.endpoint.url(what)}: {exc} "
                                      f"({n} attempt{'s' if n > 1 else ''})") from None
                self._backoff(tries, cancel)
                tries += 1

    @staticmethod
    def _backoff(tries: int, cancel: CancelToken) -> None:
        """Wait 0.25 s, 0.5 s, 1 s, ... (capped) before retry number tries+1; a cancel cuts it short."""
        deadline = time.monotonic() + min(_BACKOFF_CAP_S, _BACKOFF_FIRST_S * (2 ** tries))
        while time.monotonic() < deadline and not cancel.cancelled:
            time.sleep(0.02)

    def _get_json(self, path: str, cancel: CancelToken) -> Any:
        def attempt():
            conn = _Connection(self.endpoint, self.role.connect_timeout_s, self.role.read_timeout_s)
            cancel.on_cancel(conn.abort)
            try:
                resp = conn.open("GET", path, None, self.headers())
                raw = resp.read()
            except (http.client.HTTPException, OSError) as exc:
                raise _Transient(f"connection lost ({exc.__class__.__name__})") from None
            finally:
                conn.close()
            if resp.status in _RETRY_STATUSES:
                raise _Transient(f"HTTP {resp.status}: {_error_message(raw)}")
            if resp.status >= 400:
                raise _HTTPStatus(resp.status, _error_message(raw))
            try:
                return json.loads(raw)
            except json.JSONDecodeError:
                raise EngineError(f"{self.endpoint.url(path)} did not answer JSON: {raw[:120]!r}") from None

        return self._with_retries(attempt, cancel, path)

    def list_models(self, cancel: CancelToken | None = None) -> list[str] | None:
        """Model names the server offers, or None when it has no model listing."""
        cancel = cancel or CancelToken()
        ollama = self.role.schema_mode == "ollama_format"
        path = f"{self.endpoint.native_root}/api/tags" if ollama else f"{self.endpoint.prefix}/models"
        try:
            data = self._get_json(path, cancel)
        except _HTTPStatus as exc:
            if exc.status == 404:
                return None
            raise self._status_error(exc, path) from None
        items = (data or {}).get("models" if ollama else "data") or []
        return [str(m.get("name" if ollama else "id")) for m in items if isinstance(m, dict)]

    def _ensure_model_known(self, cancel: CancelToken) -> None:
        if self._model_checked:
            return
        names = self.list_models(cancel)
        if names is not None and not any(_model_matches(self.role.model, n) for n in names):
            raise EngineError(self._unknown_model_message(names))
        self._model_checked = True

    def _unknown_model_message(self, names: list[str] | None) -> str:
        msg = f"the server at {self.endpoint.url()} has no model {self.role.model!r} (roles.{self.role_label}.model)"
        if names:
            msg += f"; it serves: {', '.join(names[:10])}"
        return msg

    def _status_error(self, exc: _HTTPStatus, path: str) -> EngineError:
        if exc.status in (401, 403):
            hint = f" — check ${self.role.api_key_env}" if self.role.api_key_env else " — set roles." \
                f"{self.role_label}.api_key_env to the variable holding the key"
            return EngineError(f"{self.endpoint.url(path)} refused the API key ({exc.status}: {exc.message}){hint}")
        return EngineError(f"{self.endpoint.url(path)} answered {exc.status}: {exc.message}")

    # -- requests -------------------------------------------------------------------------
    def _sampling(self, request: ChatRequest) -> dict[str, Any]:
        sp = self.role.sampling
        out = {
            "temperature": sp.temperature if request.temperature is None else request.temperature,
            "top_p": sp.top_p, "top_k": sp.top_k, "min_p": sp.min_p,
            "max_tokens": request.max_tokens or sp.max_tokens,
        }
        seed = request.seed if request.seed is not None else sp.seed
        if seed is not None and seed >= 0:
            out["seed"] = seed
        return out

    def _openai_body(self, request: ChatRequest, style: str | None) -> dict[str, Any]:
        sp = self.role.sampling
        body: dict[str, Any] = {
            "model": self.role.model,
            "messages": request.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self._sampling(request),
            # llama.cpp servers call it repeat_penalty, vLLM repetition_penalty; each ignores the other.
            "repeat_penalty": sp.repeat_penalty,
            "repetition_penalty": sp.repeat_penalty,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if request.json_schema is not None and self.role.schema_mode != "none":
            if style == "json_object_schema":
                body["response_format"] = {"type": "json_object", "schema": request.json_schema}
            else:
                body["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": "agx_output", "schema": request.json_schema, "strict": True}}
        return body

    def _ollama_body(self, request: ChatRequest) -> dict[str, Any]:
        s = self._sampling(request)
        options = {"temperature": s["temperature"], "top_p": s["top_p"], "top_k": s["top_k"], "min_p": s["min_p"],
                   "repeat_penalty": self.role.sampling.repeat_penalty, "num_predict": s["max_tokens"]}
        if "seed" in s:
            options["seed"] = s["seed"]
        if request.stop:
            options["stop"] = list(request.stop)
        body: dict[str, Any] = {"model": self.role.model, "messages": request.messages, "stream": True,
                                "options": options}
        if request.json_schema is not None:
            body["format"] = request.json_schema
        return body

    def _stream(self, request: ChatRequest, cancel: CancelToken, stats: GenerationStats) -> Iterator[str]:
        if cancel.cancelled:
            stats.finish_reason = "cancelled"
            return
        try:
            self._ensure_model_known(cancel)
        except _Transient:  # only when cancelled while retrying
            stats.finish_reason = "cancelled"
            return
        ollama = self.role.schema_mode == "ollama_format"
        wants_schema = request.json_schema is not None and self.role.schema_mode == "response_format"
        styles = [self._schema_style] if self._schema_style else list(_SCHEMA_STYLES)
        t0 = time.perf_counter()
        rejections: list[str] = []
        for style in styles if wants_schema else [None]:
            if ollama:
                path, body = f"{self.endpoint.native_root}/api/chat", self._ollama_body(request)
            else:
                path, body = f"{self.endpoint.prefix}/chat/completions", self._openai_body(request, style)
            try:
                yield from self._stream_attempts(path, body, ollama, cancel, stats, t0)
            except _HTTPStatus as exc:
                # Only a complaint about the schema moves on to the other form (a 400 can also mean
                # e.g. a prompt too long). llama-cpp-python answers a response_format it cannot
                # parse with 500.
                about_schema = any(w in exc.message.lower() for w in ("schema", "response_format", "grammar"))
                if wants_schema and about_schema and exc.status in (400, 422, 500):
                    rejections.append(exc.message)
                    continue  # try the other response_format form
                raise self._request_error(exc, path) from None
            if wants_schema:
                self._schema_style = style
            return
        raise EngineError(f"the server at {self.endpoint.url()} rejected the JSON schema "
                          f"(schema_mode = 'response_format'): {' / '.join(dict.fromkeys(rejections))}")

    def _request_error(self, exc: _HTTPStatus, path: str) -> EngineError:
        if exc.status == 404 and "model" in exc.message.lower():
            try:
                names = self.list_models()
            except EngineError:
                names = None
            return EngineError(self._unknown_model_message(names) + f" ({exc.message})")
        if exc.status == 404:
            return EngineError(f"{self.endpoint.url(path)} does not exist (404) — base_url should be the "
                               f"server's OpenAI root, e.g. http://worker2:8000/v1")
        if exc.status in (400, 422) and "model" in exc.message.lower() and "not" in exc.message.lower():
            return EngineError(self._unknown_model_message(None) + f" ({exc.message})")
        return self._status_error(exc, path)

    def _stream_attempts(self, path: str, body: dict, ollama: bool, cancel: CancelToken,
                         stats: GenerationStats, t0: float) -> Iterator[str]:
        """Connect (with retries), then yield text pieces; see the module docstring for failures."""
        state = {"conn": None}

        def attempt():
            conn = _Connection(self.endpoint, self.role.connect_timeout_s, self.role.read_timeout_s)
            cancel.on_cancel(conn.abort)
            resp = conn.open("POST", path, body, self.headers())
            if resp.status != 200:
                try:
                    raw = resp.read()
                except (http.client.HTTPException, OSError):
                    raw = b""
                conn.close()
                if resp.status in _RETRY_STATUSES:
                    raise _Transient(f"HTTP {resp.status}: {_error_message(raw)}")
                raise _HTTPStatus(resp.status, _error_message(raw))
            state["conn"] = conn
            return resp

        pieces = 0
        finish: str | None = None
        drops = 0  # connections lost after the headers but before any text: retried like refusals
        while True:
            try:
                resp = self._with_retries(attempt, cancel, path)
            except _Transient:  # cancelled while connecting
                stats.finish_reason = "cancelled"
                stats.total_s = time.perf_counter() - t0
                return
            conn: _Connection = state["conn"]
            parse = self._ollama_events if ollama else self._sse_events
            try:
                for event in parse(resp, cancel):
                    piece, event_finish = self._apply_event(event, ollama, stats)
                    if event_finish:
                        finish = event_finish
                    if piece:
                        if pieces == 0:
                            stats.time_to_first_token_s = time.perf_counter() - t0
                        pieces += 1
                        yield piece
                    if cancel.cancelled:
                        break
            except _Transient as exc:
                if not cancel.cancelled:
                    if pieces == 0 and drops < self.role.max_retries:
                        drops += 1
                        self._backoff(drops - 1, cancel)
                        continue
                    self._fail(stats, t0, pieces)
                    if pieces == 0:
                        # e.g. llama-cpp-python's server answers 200, then drops the stream when the
                        # prompt does not fit its context window.
                        raise EngineError(f"the {self.role_label} server at {self.endpoint.url()} {exc} before "
                                          f"sending any text ({drops + 1} attempts); see the server's log — a "
                                          f"prompt longer than its context window does this") from None
                    raise EngineError(f"the {self.role_label} server at {self.endpoint.url()} {exc} after "
                                      f"{pieces} piece{'s' if pieces != 1 else ''} of text; the partial reply "
                                      f"is kept") from None
            finally:
                conn.close()
            break
        if not stats.completion_tokens:
            stats.completion_tokens = pieces  # servers that send no usage: one piece ~ one token
        stats.total_s = time.perf_counter() - t0
        if cancel.cancelled:
            stats.finish_reason = "cancelled"
        elif finish is None:
            self._fail(stats, t0, pieces)
            raise EngineError(f"the {self.role_label} server at {self.endpoint.url()} ended the stream without "
                              f"finishing the reply after {pieces} pieces of text; the partial reply is kept")
        else:
            stats.finish_reason = finish

    @staticmethod
    def _fail(stats: GenerationStats, t0: float, pieces: int) -> None:
        stats.finish_reason = "error"
        stats.total_s = time.perf_counter() - t0
        stats.completion_tokens = stats.completion_tokens or pieces

    def _apply_event(self, event: dict, ollama: bool, stats: GenerationStats) -> tuple[str, str | None]:
        """One decoded chunk -> (text piece, finish reason or None); usage goes into stats."""
        if "error" in event:
            err = event["error"]
            msg = err.get("message", err) if isinstance(err, dict) else err
            raise _Transient(f"reported an error mid-stream: {msg}")
        if ollama:
            piece = (event.get("message") or {}).get("content") or ""
            if event.get("done"):
                stats.prompt_tokens = int(event.get("prompt_eval_count") or 0)
                stats.completion_tokens = int(event.get("eval_count") or 0)
                return piece, "length" if event.get("done_reason") == "length" else "stop"
            return piece, None
        usage = event.get("usage")
        if isinstance(usage, dict):
            stats.prompt_tokens = int(usage.get("prompt_tokens") or stats.prompt_tokens)
            stats.completion_tokens = int(usage.get("completion_tokens") or stats.completion_tokens)
        choices = event.get("choices") or []
        if not choices:
            return "", None
        choice = choices[0]
        piece = (choice.get("delta") or {}).get("content") or ""
        reason = choice.get("finish_reason")
        if reason:
            reason = reason if reason in ("stop", "length") else "stop"
        return piece, reason

    @staticmethod
    def _lines(resp: http.client.HTTPResponse, cancel: CancelToken) -> Iterator[bytes]:
        while True:
            try:
                line = resp.readline()
            except (socket.timeout, TimeoutError):
                if cancel.cancelled:
                    return
                raise _Transient("sent nothing for read_timeout_s") from None
            except Exception as exc:  # http.client raises assorted errors on a socket shut under it
                if cancel.cancelled:
                    return
                raise _Transient(f"closed the connection ({exc.__class__.__name__})") from None
            if not line:
                if cancel.cancelled:
                    return
                raise _Transient("closed the connection")
            yield line

    def _sse_events(self, resp: http.client.HTTPResponse, cancel: CancelToken) -> Iterator[dict]:
        data: list[str] = []
        for raw in self._lines(resp, cancel):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith(":"):  # comment / keep-alive ping
                continue
            if line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
                continue
            if line or not data:  # event:/id:/retry: fields, or a blank line with no data
                continue
            payload, data = "\n".join(data), []
            if payload.strip() == "[DONE]":
                return
            try:
                event = json.loads(payload)
            except json.JSONDecodeError:
                raise _Transient(f"sent a chunk that is not JSON: {payload[:80]!r}") from None
            if isinstance(event, dict):
                yield event

    def _ollama_events(self, resp: http.client.HTTPResponse, cancel: CancelToken) -> Iterator[dict]:
        for raw in self._lines(resp, cancel):
            if not raw.strip():
                continue
            try:
                event = json.loads(raw)
            except json.JSONDecodeError:
                raise _Transient(f"sent a line that is not JSON: {raw[:80]!r}") from None
            if isinstance(event, dict):
                yield event
                if event.get("done"):
                    return

    def ping(self) -> GenerationStats:
        """A one-token request (used by `agx doctor` to measure latency)."""
        _, stats = self.complete(ChatRequest(messages=[{"role": "user", "content": "Say OK."}], max_tokens=1,
                                             temperature=0.0))
        return stats
