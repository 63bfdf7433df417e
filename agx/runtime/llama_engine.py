"""In-process backend: GGUF models through llama-cpp-python.

`LlamaCppModel` is one loaded model (weights + context) with its lock: a llama.cpp context is
not thread-safe, so every generation holds the lock. `LlamaCppEngine` is a role's view of a
model (sampling defaults, system prompt); roles whose model file and load settings agree share
one `LlamaCppModel` through `agx.runtime.pool`.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from agx.config.schema import RoleConfig, SamplingConfig
from agx.runtime.constrained import SAMPLING_MODES, ConstrainedStats, FastGrammarSampler, GrammarCache, sampling_params_from
from agx.runtime.engine import CancelToken, ChatRequest, Engine, EngineError, EngineInfo, GenerationStats
from agx.runtime.gguf_info import GGUFError, read_gguf_info


def gpu_offload_supported() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def accelerator_name() -> str:
    """What this llama.cpp build offloads to: CUDA, Metal, Vulkan, ... or CPU."""
    if not gpu_offload_supported():
        return "CPU"
    import llama_cpp

    try:
        info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    except Exception:
        info = ""
    for name in ("CUDA", "Metal", "Vulkan", "ROCm", "HIP", "SYCL"):
        if name.lower() in info.lower():
            return name
    return "Metal" if sys.platform == "darwin" else "GPU"


# llama-cpp-python (verbose=False) silences llama.cpp while it loads a model by pointing file
# descriptors 1 and 2 at /dev/null and back (its suppress_stdout_stderr). Two loads at once in
# two threads (Echo and Delta start loading together) interleave that save/restore, and fd 1 or
# 2 can stay on /dev/null for good: everything the process prints afterwards vanishes (seen as a
# benchmark that exited 0 with no output). Loads take turns.
LLAMA_STDIO_LOCK = threading.Lock()


def default_threads() -> int:
    try:
        import psutil

        return max(1, psutil.cpu_count(logical=False) or psutil.cpu_count() or 1)
    except Exception:
        import os

        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class LoadSettings:
    """Everything that fixes a loaded llama.cpp model; equal settings share one load."""

    path: str
    n_ctx: int
    n_gpu_layers: int
    n_threads: int
    n_batch: int
    chat_format: str | None
    adapter_path: str | None
    adapter_scale: float

    @classmethod
    def from_role(cls, role: RoleConfig, model_path: Path, adapter_path: Path | None) -> "LoadSettings":
        from agx.runtime.adapters import adapter_scale_for

        return cls(
            path=str(Path(model_path).resolve()),
            n_ctx=role.n_ctx,
            n_gpu_layers=role.n_gpu_layers,
            n_threads=role.n_threads or default_threads(),
            n_batch=role.n_batch,
            chat_format=role.chat_format,
            adapter_path=str(adapter_path) if adapter_path else None,
            adapter_scale=adapter_scale_for(adapter_path, role.adapter_scale) if adapter_path else 1.0,
        )


def _init_lora(llama, path: str):
    """Load a GGUF LoRA adapter into the model's weights table (not yet active)."""
    import llama_cpp

    handle = llama_cpp.llama_adapter_lora_init(llama.model, path.encode("utf-8"))
    # A failed init returns a NULL pointer object, which is falsy but not None.
    if not handle:
        raise EngineError(f"llama.cpp refused the adapter {path} (run `agx adapters list`, or reconvert it for this base)")
    return handle


def _activate_lora(llama, handle, scale: float) -> None:
    """Make `handle` (None: no adapter) the context's only adapter, then drop cached state.

    `reset()` matters: llama-cpp-python reuses the longest common token prefix of the previous
    prompt, whose KV entries were computed with the old adapter.
    """
    import ctypes

    import llama_cpp

    if handle is None:
        rc = llama_cpp.llama_set_adapters_lora(llama.ctx, None, 0, None)
    else:
        handles = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(handle)
        scales = (ctypes.c_float * 1)(scale)
        rc = llama_cpp.llama_set_adapters_lora(llama.ctx, handles, 1, scales)
    if rc:
        raise EngineError(f"llama.cpp could not activate the adapter (code {rc})")
    llama.reset()


class LlamaCppModel:
    """One loaded GGUF model and the lock that serialises its use."""

    def __init__(self, settings: LoadSettings):
        self.settings = settings
        self.llama = None
        self.lock = threading.Lock()
        self._load_lock = threading.Lock()
        self.gguf = None
        # Adapters loaded into this model (path -> llama.cpp handle), kept so switching back
        # is instant, and the one active in the context now.
        self._lora_handles: dict[str, object] = {}
        self.active_adapter: tuple[str | None, float] = (None, 1.0)

    def load(self) -> None:
        with self._load_lock:
            if self.llama is not None:
                return
            s = self.settings
            try:
                self.gguf = read_gguf_info(s.path)
            except GGUFError as exc:
                raise EngineError(f"cannot load model: {exc}") from None
            if s.adapter_path:
                from agx.runtime.adapters import check_adapter_against_base

                check_adapter_against_base(Path(s.adapter_path), self.gguf)
            from agx.runtime.build_check import ensure_build_usable

            ensure_build_usable()  # a build this CPU cannot run says so instead of dying with SIGILL
            Llama = _watched_llama_class()
            kwargs = dict(
                model_path=s.path,
                n_ctx=s.n_ctx,
                n_gpu_layers=s.n_gpu_layers,
                n_threads=s.n_threads,
                n_threads_batch=s.n_threads,
                n_batch=min(s.n_batch, s.n_ctx),
                verbose=False,
            )
            if s.chat_format:
                kwargs["chat_format"] = s.chat_format
            try:
                with LLAMA_STDIO_LOCK:
                    self.llama = Llama(**kwargs)
            except (ValueError, RuntimeError, OSError) as exc:
                raise EngineError(f"cannot load model {s.path}: {exc}") from None
            # The adapter goes through the same path as a runtime switch (not Llama(lora_path=),
            # which also turns off mmap for the base).
            if s.adapter_path:
                try:
                    self.apply_adapter(s.adapter_path, s.adapter_scale)
                except EngineError:
                    self._free_llama()
                    raise

    def apply_adapter(self, path: str | None, scale: float = 1.0) -> None:
        """Make `path` (None: none) the active LoRA adapter at `scale`, without reloading the
        base. The caller holds `self.lock` (or is loading). Checks the adapter against the
        base first, so a mismatch is explained rather than left to llama.cpp's log."""
        path = str(path) if path is not None else None
        if (path, scale) == self.active_adapter:
            return
        handle = None
        if path is not None:
            handle = self._lora_handles.get(path)
            if handle is None:
                from agx.runtime.adapters import check_adapter_against_base

                check_adapter_against_base(Path(path), self.gguf)
                handle = self._lora_handles[path] = _init_lora(self.llama, path)
        _activate_lora(self.llama, handle, scale)
        self.active_adapter = (path, scale)

    def set_adapter(self, path: str | Path | None, scale: float = 1.0) -> None:
        """Load the model if needed, then switch adapters under the model's lock."""
        self.load()
        with self.lock:
            if self.llama is None:
                raise EngineError("model was closed")
            self.apply_adapter(str(path) if path is not None else None, scale)

    def _free_llama(self) -> None:
        import llama_cpp

        if self.llama is None:
            return
        if self._lora_handles:
            # Detach from the context before freeing, then free before the model goes.
            llama_cpp.llama_set_adapters_lora(self.llama.ctx, None, 0, None)
            for handle in self._lora_handles.values():
                llama_cpp.llama_adapter_lora_free(handle)
            self._lora_handles.clear()
        self.active_adapter = (None, 1.0)
        self.llama.close()
        self.llama = None

    def close(self) -> None:
        with self.lock:
            self._free_llama()


class _TokenWatch:
    """Per-generation hook: counts sampled tokens, records the prompt length, and carries the
    cancel token that stops generation between two tokens."""

    def __init__(self, cancel: CancelToken, stats: GenerationStats, constrained_sampling: str = "fast"):
        self.cancel, self.stats = cancel, stats
        self.calls = 0
        # How a grammar is applied ("fast" or "grammar_first", see agx/runtime/constrained.py)
        # and what it cost during this generation.
        self.constrained_sampling = constrained_sampling
        self.constrained = ConstrainedStats()


def _watched_llama_class():
    """A Llama subclass whose token loop reports to the current _TokenWatch.

    `create_chat_completion` takes no stopping criteria, and its logits-processor hook runs
    inside a C callback where an exception cannot stop anything; `generate` is the Python-level
    loop every completion goes through, so that is where cancellation is checked, once per token.
    """
    from llama_cpp import Llama

    class WatchedLlama(Llama):
        agx_watch: "_TokenWatch | None" = None
        _agx_grammars: "GrammarCache | None" = None

        @property
        def agx_grammars(self) -> GrammarCache:
            """Compiled grammars for this model's vocabulary (agx/runtime/constrained.py)."""
            if self._agx_grammars is None:
                self._agx_grammars = GrammarCache(self._model.vocab)
            return self._agx_grammars

        def generate(self, tokens, *args, **kwargs):
            watch = self.agx_watch
            if watch is not None:
                watch.stats.prompt_tokens = len(tokens)
            try:
                for token in super().generate(tokens, *args, **kwargs):
                    if watch is not None:
                        if watch.cancel.cancelled:
                            return
                        watch.calls += 1
                    yield token
            finally:
                # Llama keeps its last sampler in self._sampler; free ours now rather than
                # whenever the garbage collector gets to it (it holds a grammar's state).
                if isinstance(self._sampler, FastGrammarSampler):
                    self._sampler.close()
                    self._sampler = None

        def _init_sampler(self, **kwargs):
            """Llama.generate builds its sampler chain here, once per generation. With a grammar
            and the "fast" mode, the grammar is consulted only when the model's own choice
            breaks it (FastGrammarSampler); anything else is llama-cpp-python's own chain."""
            watch = self.agx_watch
            grammar = kwargs.get("grammar")
            if grammar is None or watch is None or watch.constrained_sampling != "fast":
                return super()._init_sampler(**kwargs)
            params = sampling_params_from(kwargs, self)
            if params is None:
                return super()._init_sampler(**kwargs)
            compiled = self.agx_grammars.clone(grammar._grammar, grammar._root)
            return FastGrammarSampler(self._model.vocab, self._n_vocab, compiled, params, watch.constrained)

        def close(self):
            if self._agx_grammars is not None:
                self._agx_grammars.close()
                self._agx_grammars = None
            super().close()

    return WatchedLlama


# JSON schema text -> its GBNF (llama-cpp-python's converter is pure Python and, for a plan
# schema over dozens of tools, takes milliseconds to seconds); bounded, least recent first out.
_SCHEMA_GBNF: "OrderedDict[str, str]" = OrderedDict()
_SCHEMA_GBNF_LOCK = threading.Lock()
_SCHEMA_GBNF_CAPACITY = 32


def _schema_gbnf(schema_text: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    with _SCHEMA_GBNF_LOCK:
        text = _SCHEMA_GBNF.get(schema_text)
        if text is not None:
            _SCHEMA_GBNF.move_to_end(schema_text)
            return text
    text = json_schema_to_gbnf(schema_text)
    with _SCHEMA_GBNF_LOCK:
        _SCHEMA_GBNF[schema_text] = text
        while len(_SCHEMA_GBNF) > _SCHEMA_GBNF_CAPACITY:
            _SCHEMA_GBNF.popitem(last=False)
    return text


def _grammar_for(request: ChatRequest):
    from llama_cpp import LlamaGrammar

    if request.json_schema is not None:
        try:
            # Key order matters (it fixes the emission order), so the text is the key as is.
            return LlamaGrammar.from_string(_schema_gbnf(json.dumps(request.json_schema)), verbose=False)
        except Exception as exc:  # llama.cpp's converter raises plain exceptions
            raise EngineError(f"JSON schema cannot be turned into a grammar: {exc}") from None
    if request.grammar:
        try:
            return LlamaGrammar.from_string(request.grammar, verbose=False)
        except Exception as exc:
            raise EngineError(f"invalid GBNF grammar: {exc}") from None
    return None


def _adapter_label(path: str | None) -> str | None:
    """adapters/NAME/adapter.gguf reads as NAME; any other file by its file name."""
    if not path:
        return None
    p = Path(path)
    return p.parent.name if p.name == "adapter.gguf" else p.name


class LlamaCppEngine(Engine):
    def __init__(self, role_names: tuple[str, ...], role: RoleConfig, model: LlamaCppModel, *, is_tiny_default: bool = False):
        super().__init__()
        self.role_names = role_names
        self.role = role
        self.model = model
        self.is_tiny_default = is_tiny_default
        # This role's adapter. Roles sharing one base may want different adapters, so it is
        # applied under the model lock before each generation (a no-op when already active).
        self.adapter_path: str | None = model.settings.adapter_path
        self.adapter_scale: float = model.settings.adapter_scale
        self._purpose_of: tuple[str | None, str | None] = (None, None)  # (adapter path, its manifest's purpose)
        # How grammar-constrained output is sampled: "fast" (the grammar only when the model's
        # choice breaks it) or "grammar_first" (llama-cpp-python's chain, the grammar over the
        # whole vocabulary every token). Settable per engine so one process can compare both.
        self.constrained_sampling: str = getattr(role, "constrained_sampling", "fast")

    def set_adapter(self, path: str | Path | None, scale: float = 1.0) -> None:
        """Switch this role's LoRA adapter (None: the bare base) without reloading the base.

        Raises EngineError, leaving the current adapter in place, when the adapter does not fit.
        Blocks while a generation of this model is running.
        """
        path = str(path) if path is not None else None
        self.wait_loaded()
        self.model.set_adapter(path, scale)
        self.adapter_path, self.adapter_scale = path, scale

    def _adapter_for(self, request: ChatRequest) -> str | None:
        """The adapter this generation runs with: none for a request outside the adapter's
        purpose (a plan-only adapter never writes code or chat answers)."""
        if self.adapter_path is None:
            return None
        if self._purpose_of[0] != self.adapter_path:  # read once per adapter, not per generation
            from agx.runtime.adapters import adapter_purpose

            self._purpose_of = (self.adapter_path, adapter_purpose(self.adapter_path))
        purpose = self._purpose_of[1]
        return self.adapter_path if purpose is None or purpose == request.purpose else None

    @property
    def sampling(self) -> SamplingConfig:
        return self.role.sampling

    def info(self) -> EngineInfo:
        s = self.model.settings
        accelerator = accelerator_name() if s.n_gpu_layers != 0 else "CPU"
        return EngineInfo(
            role_names=self.role_names,
            backend="llama_cpp",
            model=s.path,
            accelerator=accelerator,
            cpu_threads=s.n_threads if accelerator == "CPU" else 0,
            adapter=_adapter_label(self.adapter_path),
            n_ctx=s.n_ctx,
            is_tiny_default=self.is_tiny_default,
        )

    @property
    def loaded(self) -> bool:
        # Roles sharing a model are loaded as soon as any of them loaded it.
        return self.model.llama is not None

    def _load(self) -> None:
        self.model.load()
        if self.adapter_path:
            # Activate it now (it is re-applied before each generation anyway), so a mismatch
            # fails at load time rather than at the first question.
            with self.model.lock:
                self.model.apply_adapter(self.adapter_path, self.adapter_scale)

    def _acquire(self, cancel: CancelToken) -> bool:
        # Poll so that a cancelled caller waiting behind another generation gives up promptly.
        while not self.model.lock.acquire(timeout=0.05):
            if cancel.cancelled:
                return False
        return True

    def _stream(self, request: ChatRequest, cancel: CancelToken, stats: GenerationStats) -> Iterator[str]:
        sp = self.sampling
        grammar = _grammar_for(request)
        if not self._acquire(cancel):
            stats.finish_reason = "cancelled"
            return
        llama = self.model.llama
        try:
            if llama is None:
                raise EngineError("model was closed")
            self.model.apply_adapter(self._adapter_for(request), self.adapter_scale)
            if self.constrained_sampling not in SAMPLING_MODES:
                raise EngineError(f"constrained_sampling must be one of {', '.join(SAMPLING_MODES)}, not {self.constrained_sampling!r}")
            if grammar is not None:
                # Parsed once per distinct grammar (then cloned); an unparseable grammar is an
                # error here instead of a crash inside llama.cpp's sampler chain.
                llama.agx_grammars.compiled(grammar._grammar, grammar._root)
            watch = _TokenWatch(cancel, stats, self.constrained_sampling)
            llama.agx_watch = watch
            t0 = time.perf_counter()
            seed = request.seed if request.seed is not None else sp.seed
            kwargs = dict(
                messages=request.messages,
                temperature=sp.temperature if request.temperature is None else request.temperature,
                top_p=sp.top_p,
                top_k=sp.top_k,
                min_p=sp.min_p,
                repeat_penalty=sp.repeat_penalty,
                max_tokens=request.max_tokens or sp.max_tokens,
                stop=list(request.stop) or None,
                stream=True,
                grammar=grammar,
            )
            if seed is not None and seed >= 0:
                kwargs["seed"] = seed
            try:
                chunks = llama.create_chat_completion(**kwargs)
                finish = "stop"
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    piece = choice.get("delta", {}).get("content")
                    if piece:
                        if not stats.time_to_first_token_s:
                            stats.time_to_first_token_s = time.perf_counter() - t0
                        yield piece
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                    if cancel.cancelled:
                        break
            except ValueError as exc:  # e.g. prompt longer than the context window
                raise EngineError(str(exc)) from None
            stats.completion_tokens = watch.calls
            stats.grammar_rejections = watch.constrained.rejections
            stats.grammar_full_passes = watch.constrained.full_passes
            stats.total_s = time.perf_counter() - t0
            stats.finish_reason = "cancelled" if cancel.cancelled else finish
        finally:
            if llama is not None:
                llama.agx_watch = None
            self.model.lock.release()

    def close(self) -> None:
        self.model.close()
