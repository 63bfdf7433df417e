"""The engine interface: the single narrow seam between agx and any model.

A backend (in-process llama.cpp, a remote OpenAI-compatible server) subclasses `Engine` and
implements `_load` and `_stream`. Callers use only:

    engine.start_loading()                 # optional: begin loading in the background
    stream = engine.chat(ChatRequest(...), cancel=token)
    for piece in stream: ...               # text pieces as they are generated
    stream.text, stream.stats              # full text and GenerationStats once exhausted

`chat` may be called from any thread; backends serialise access to a model themselves.
Cancellation: `token.cancel()` from any thread; the stream stops within one token and
`stream.stats.finish_reason == "cancelled"` (iteration ends normally, no exception).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator


class EngineError(Exception):
    """A model could not be loaded or a generation failed; the message is for the user."""


class GenerationCancelled(EngineError):
    pass


class CancelToken:
    """Thread-safe cancellation flag shared between a caller and a running generation."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def cancel(self) -> None:
        with self._lock:
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            try:
                cb()
            except Exception:  # a callback failing must not stop cancellation
                pass

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Run `callback` when cancelled (at once if already cancelled), e.g. to close a socket."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback()


@dataclass
class ChatRequest:
    messages: list[dict[str, str]]
    max_tokens: int | None = None  # None: the role's sampling.max_tokens
    temperature: float | None = None
    stop: list[str] = field(default_factory=list)
    # Constrain output to JSON matching this schema (grammar-based in-process, the server's
    # structured-output feature remotely).
    json_schema: dict[str, Any] | None = None
    # A raw GBNF grammar (in-process backends only); ignored when json_schema is set.
    grammar: str | None = None
    seed: int | None = None
    # What the output is for: "plan" for Delta's plans. An adapter whose manifest says
    # "purpose": "plan" (agenix-delta-smollm2) is applied to those requests only; everything
    # else the role generates (code, answers) runs on the bare base it was not trained away from.
    purpose: str | None = None


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    time_to_first_token_s: float = 0.0
    total_s: float = 0.0
    finish_reason: str = "stop"  # stop | length | cancelled | error
    # Grammar-constrained in-process generations, "fast" sampling (agx/runtime/constrained.py):
    # tokens whose first draw the grammar refused, and how many of those needed the grammar
    # over the whole vocabulary. Zero otherwise.
    grammar_rejections: int = 0
    grammar_full_passes: int = 0

    @property
    def tokens_per_s(self) -> float:
        """Decode speed: tokens after the first over the time after the first."""
        decode_s = self.total_s - self.time_to_first_token_s
        if self.completion_tokens <= 1 or decode_s <= 0:
            return 0.0
        return (self.completion_tokens - 1) / decode_s


@dataclass
class EngineInfo:
    role_names: tuple[str, ...]
    backend: str  # "llama_cpp" | "openai"
    model: str  # file path or remote model name
    accelerator: str  # "CPU", "Metal", "CUDA", "remote", ...
    adapter: str | None = None
    n_ctx: int = 0
    is_tiny_default: bool = False
    cpu_threads: int = 0  # CPU threads it decodes with on this machine (0: remote or fully offloaded)


class ChatStream:
    """Iterator over generated text pieces; holds the full text and stats when done."""

    def __init__(self, pieces: Iterator[str], stats: GenerationStats):
        self._pieces = pieces
        self.stats = stats
        self._parts: list[str] = []
        self.done = False

    def __iter__(self) -> Iterator[str]:
        try:
            for piece in self._pieces:
                self._parts.append(piece)
                yield piece
        finally:
            self.done = True

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def read(self) -> str:
        """Consume the whole stream and return its text."""
        for _ in self:
            pass
        return self.text


class Engine(ABC):
    """Base class of every backend. Subclasses implement `_load` and `_stream`."""

    def __init__(self) -> None:
        self._load_lock = threading.Lock()
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None
        self._load_thread: threading.Thread | None = None
        self.load_seconds: float | None = None

    # -- loading -------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._loaded.is_set() and self._load_error is None

    def start_loading(self) -> None:
        """Begin loading on a background thread; returns at once."""
        with self._load_lock:
            if self._loaded.is_set() or self._load_thread is not None:
                return
            self._load_thread = threading.Thread(target=self._load_guarded, daemon=True, name="agx-load")
            self._load_thread.start()

    def wait_loaded(self, timeout: float | None = None) -> None:
        """Block until loaded (loading now if nobody started it). Raises the load error."""
        self.start_loading()
        if not self._loaded.wait(timeout):
            raise EngineError("model is still loading")
        if self._load_error is not None:
            if isinstance(self._load_error, EngineError):
                raise self._load_error
            raise EngineError(str(self._load_error)) from self._load_error

    def _load_guarded(self) -> None:
        t0 = time.perf_counter()
        try:
            self._load()
        except BaseException as exc:  # surfaced to callers by wait_loaded
            self._load_error = exc
        finally:
            self.load_seconds = time.perf_counter() - t0
            self._loaded.set()

    # -- generation ----------------------------------------------------------------------
    def chat(self, request: ChatRequest, cancel: CancelToken | None = None) -> ChatStream:
        """Start a generation. The returned stream is lazy: work happens while iterating."""
        stats = GenerationStats()
        token = cancel or CancelToken()
        return ChatStream(self._guarded_stream(request, token, stats), stats)

    def _guarded_stream(self, request: ChatRequest, cancel: CancelToken, stats: GenerationStats) -> Iterator[str]:
        self.wait_loaded()
        yield from self._stream(request, cancel, stats)

    def complete(self, request: ChatRequest, cancel: CancelToken | None = None) -> tuple[str, GenerationStats]:
        stream = self.chat(request, cancel)
        return stream.read(), stream.stats

    @abstractmethod
    def info(self) -> EngineInfo: ...

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _stream(self, request: ChatRequest, cancel: CancelToken, stats: GenerationStats) -> Iterator[str]:
        """Yield text pieces, filling `stats`; return early (finish_reason="cancelled") on cancel."""

    def close(self) -> None:
        """Free the model's resources. Optional."""
