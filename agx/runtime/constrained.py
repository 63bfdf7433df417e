"""Grammar-constrained sampling that pays for the grammar only when it must.

llama-cpp-python 0.3.36 builds one sampler chain per generation (`Llama._init_sampler`):
penalties -> grammar -> greedy (or top-k, typical, top-p, min-p, temperature, dist). The
grammar sampler therefore decodes and checks *every* token of the vocabulary against the
grammar on every step, before anything else looks at the logits. That pass costs more the
larger the vocabulary (SmolLM2 49k tokens, Llama 3 128k, Qwen2.5 152k, Gemma 3 262k) and
measured 0.56x of free decoding on the bundled 135M model.

`FastGrammarSampler` ("fast" mode) does what llama.cpp's own `common_sampler` does and adds a
cheap middle step, all on llama.cpp's samplers through the low-level API:

1. Draw a token from the unconstrained chain (penalties, then greedy or the role's sampling
   samplers), exactly as free decoding would.
2. Ask the grammar about that one token. Accepted (the usual case): done.
3. Rejected: take the highest-scoring candidates (at least `FIRST_WINDOW`, all ties at the
   cut included, ordered by score then token id), apply the grammar to just those and sample
   again from the survivors. This is exact whenever the window holds the token(s) the
   grammar-first chain could pick: for greedy, one valid token; for top-k sampling, k valid
   tokens. Otherwise the window widens, and as a last resort the grammar is applied to the
   whole vocabulary, as grammar-first does.

Greedy decoding (temperature 0) gives byte-identical output to the grammar-first chain: the
argmax of the penalised logits, if the grammar allows it, is also the argmax over the
allowed tokens (llama.cpp's greedy keeps the first maximum, i.e. the lowest token id, and so
does the window's order); if not, the window holds every token scoring at least as high as
the best allowed one. tests/test_constrained_sampling.py checks this on real prompts.

With temperature (dist sampling), write P for the distribution of the role's chain over the
whole vocabulary (after top-k / top-p / min-p truncation and temperature), m for the mass P
puts on grammar-valid tokens, and Q for the grammar-first distribution (the same chain
applied after masking invalid tokens). Then the fast path samples

    P_fast(t) = P(t) * [t valid] + (1 - m) * Q(t)

- no truncation (top_k = 0, top_p = 1, min_p = 0, typical_p = 1): Q is P restricted to the
  valid tokens and renormalised, so P_fast = Q exactly (this is rejection sampling);
- with truncation (agx's defaults: top_k 40, top_p 0.95, min_p 0.05) the two differ only in
  *when* the truncation happens: grammar-first truncates among valid tokens, the first draw
  truncates among all tokens. Both put mass only on valid tokens, both equal P when every token
  in P's truncated support is valid, and the resample step draws from Q exactly (up to the
  order of equal logits at the top-k cut). The random stream is consumed differently (two
  draws on a rejection), so a fixed seed gives a different, equally valid, sample.

`GrammarCache` keeps compiled grammars (llama.cpp's parsed rules and start state) per loaded
model, keyed by a hash of the grammar text, and hands out clones: parsing a 200-tool plan
grammar again for every plan is not free, and cloning is.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from agx.runtime.engine import EngineError

SamplingMode = Literal["fast", "grammar_first"]
SAMPLING_MODES: tuple[str, ...] = ("fast", "grammar_first")

# The first window after a rejection: enough for the forced punctuation of JSON (the token
# the grammar wants is nearly always among the model's top few dozen), small enough that the
# grammar pass over it costs microseconds rather than the milliseconds of a full vocabulary.
FIRST_WINDOW = 64
WINDOW_GROWTH = 16


@dataclass
class ConstrainedStats:
    """What the grammar cost during one generation (reported in GenerationStats)."""

    tokens: int = 0  # tokens sampled under the grammar
    rejections: int = 0  # first draws the grammar refused (then resampled)
    window_hits: int = 0  # rejections settled inside a candidate window
    full_passes: int = 0  # rejections that needed the grammar over the whole vocabulary


# llama_token_data as numpy sees it: {int32 id, float logit, float p}, 12 bytes, no padding.
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class _TokenBuffer:
    """A reusable llama_token_data_array over a numpy array (no per-token allocation)."""

    def __init__(self, capacity: int):
        import llama_cpp

        assert _TOKEN_DATA.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)
        self.data = np.zeros(capacity, dtype=_TOKEN_DATA)
        self.array = llama_cpp.llama_token_data_array(
            data=self.data.ctypes.data_as(llama_cpp.llama_token_data_p), size=0, selected=-1, sorted=False
        )
        self.ref = ctypes.byref(self.array)

    def fill(self, ids: np.ndarray, logits: np.ndarray) -> None:
        n = len(ids)
        view = self.data[:n]
        view["id"] = ids
        view["logit"] = logits
        view["p"] = 0.0
        self.array.size = n
        self.array.selected = -1
        self.array.sorted = False

    def refill_logits(self, logits: np.ndarray) -> None:
        """Only the logits: for a buffer whose ids are still in order 0..n-1 and whose p are 0
        (nothing sorted, cut or normalised it since `fill`). A third of `fill`'s cost."""
        n = len(logits)
        self.data["logit"][:n] = logits
        self.array.size = n
        self.array.selected = -1
        self.array.sorted = False

    def selected_id(self) -> int:
        sel = self.array.selected
        if sel < 0 or sel >= self.array.size:
            raise EngineError("llama.cpp's sampler selected no token")
        return int(self.data[sel]["id"])


def _chain(*samplers):
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    for s in samplers:
        llama_cpp.llama_sampler_chain_add(chain, s)  # the chain owns it from now on
    return chain


@dataclass(frozen=True)
class SamplingParams:
    """The subset of Llama.generate's sampling arguments the fast path reproduces."""

    temp: float
    top_k: int
    top_p: float
    min_p: float
    typical_p: float
    repeat_penalty: float
    frequency_penalty: float
    presence_penalty: float
    penalty_last_n: int
    seed: int

    @property
    def greedy(self) -> bool:
        return self.temp == 0.0

    @property
    def window_exact(self) -> bool:
        """Whether a window of valid candidates can stand in for the whole vocabulary: greedy
        needs one valid token, top-k sampling k of them; without top-k, every valid token
        carries probability and only a full pass is exact."""
        return self.greedy or (self.temp > 0 and self.top_k > 0)

    def needed_valid(self) -> int:
        return 1 if self.greedy else self.top_k


class FastGrammarSampler:
    """Stands in for llama-cpp-python's LlamaSampler in `Llama.generate` (same `sample(ctx,
    idx)` / `close()` surface) when a grammar constrains the output."""

    def __init__(self, vocab, n_vocab: int, grammar_sampler, params: SamplingParams, stats: ConstrainedStats):
        import llama_cpp

        self._lc = llama_cpp
        self.n_vocab = n_vocab
        self.params = params
        self.stats = stats
        self.grammar = grammar_sampler  # owned (a clone from GrammarCache)
        p = params
        # Penalties first, as in Llama._init_sampler; they only read the logits of recent
        # tokens, so applying them before the grammar is the same as after (-inf stays -inf).
        self.pre = _chain(
            llama_cpp.llama_sampler_init_penalties(n_vocab, p.penalty_last_n, p.repeat_penalty, p.frequency_penalty, p.presence_penalty)
        )
        if p.temp < 0.0:
            picks = [llama_cpp.llama_sampler_init_dist(p.seed)]
        elif p.temp == 0.0:
            picks = [llama_cpp.llama_sampler_init_greedy()]
        else:
            picks = [
                llama_cpp.llama_sampler_init_top_k(p.top_k),
                llama_cpp.llama_sampler_init_typical(p.typical_p, 1),
                llama_cpp.llama_sampler_init_top_p(p.top_p, 1),
                llama_cpp.llama_sampler_init_min_p(p.min_p, 1),
                llama_cpp.llama_sampler_init_temp(p.temp),
                llama_cpp.llama_sampler_init_dist(p.seed),
            ]
        self.pick = _chain(*picks)
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._full = _TokenBuffer(n_vocab)
        self._window = _TokenBuffer(n_vocab)
        self._one = _TokenBuffer(1)
        # Whether the full buffer still holds ids 0..n-1 in order with p = 0: penalties and greedy
        # only read and rewrite logits, the sampling chain (top-k, dist) sorts, cuts and sets p.
        self._full_in_order = False
        self._closed = False

    # -- the surface Llama.generate uses -----------------------------------------------------
    def sample(self, ctx, idx: int = -1) -> int:
        lc = self._lc
        ctx_p = ctx.ctx if hasattr(ctx, "ctx") else ctx
        logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx_p, idx), shape=(self.n_vocab,))
        self.stats.tokens += 1
        full = self._full
        if self._full_in_order:
            full.refill_logits(logits)
        else:
            full.fill(self._ids, logits)
        lc.llama_sampler_apply(self.pre, full.ref)
        lc.llama_sampler_apply(self.pick, full.ref)
        self._full_in_order = self.params.greedy
        token = full.selected_id()
        if not self._allowed(token):
            self.stats.rejections += 1
            token = self._resample(logits)
        self.accept(token)
        return token

    def accept(self, token: int) -> None:
        lc = self._lc
        lc.llama_sampler_accept(self.grammar, token)
        lc.llama_sampler_accept(self.pre, token)
        lc.llama_sampler_accept(self.pick, token)

    def reset(self) -> None:
        for s in (self.grammar, self.pre, self.pick):
            self._lc.llama_sampler_reset(s)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for s in (self.grammar, self.pre, self.pick):
            self._lc.llama_sampler_free(s)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- the grammar, only where needed ------------------------------------------------------
    def _allowed(self, token: int) -> bool:
        one = self._one
        one.data[0] = (token, 0.0, 0.0)
        one.array.size, one.array.selected, one.array.sorted = 1, -1, False
        self._lc.llama_sampler_apply(self.grammar, one.ref)
        return not math.isinf(float(one.data[0]["logit"]))

    def _resample(self, logits: np.ndarray) -> int:
        lc = self._lc
        full = self._full
        if not self._full_in_order:
            # The first draw sorted and cut the buffer: rebuild the penalised logits.
            full.fill(self._ids, logits)
            lc.llama_sampler_apply(self.pre, full.ref)
        scores = full.data["logit"][: self.n_vocab].copy()
        if self.params.window_exact:
            need = self.params.needed_valid()
            size = max(FIRST_WINDOW, 2 * need)
            while size < self.n_vocab // 2:
                token = self._try_window(scores, size, need)
                if token is not None:
                    self.stats.window_hits += 1
                    return token
                size *= WINDOW_GROWTH
        # The whole vocabulary, in id order, exactly as the grammar-first chain sees it.
        self.stats.full_passes += 1
        full.fill(self._ids, scores)
        lc.llama_sampler_apply(self.grammar, full.ref)
        if not np.isfinite(full.data["logit"][: self.n_vocab]).any():
            # The grammar-first chain would pick an invalid token here and llama.cpp would abort
            # in grammar accept; say what happened instead.
            raise EngineError("the grammar allows no token at this point of the output")
        lc.llama_sampler_apply(self.pick, full.ref)
        self._full_in_order = self.params.greedy
        return full.selected_id()

    def _try_window(self, scores: np.ndarray, size: int, need: int) -> int | None:
        """Sample among the `size` best-scoring tokens (plus ties at the cut), or None when fewer
        than `need` of them are valid and the answer could lie outside."""
        lc = self._lc
        cut = np.partition(scores, self.n_vocab - size)[self.n_vocab - size]
        ids = np.flatnonzero(scores >= cut).astype(np.int32)
        vals = scores[ids]
        order = np.lexsort((ids, -vals))  # best score first, lowest id among equals
        win = self._window
        win.fill(ids[order], vals[order])
        lc.llama_sampler_apply(self.grammar, win.ref)
        n_valid = int(np.isfinite(win.data["logit"][: len(ids)]).sum())
        if n_valid < need:
            return None
        lc.llama_sampler_apply(self.pick, win.ref)
        return win.selected_id()


# -- compiled grammars --------------------------------------------------------------------------
def grammar_key(text: str, root: str = "root") -> str:
    return hashlib.sha256(root.encode() + b"\0" + text.encode("utf-8")).hexdigest()


@dataclass
class GrammarCache:
    """Parsed llama.cpp grammars for one model's vocabulary, keyed by a hash of the text.

    `clone(text)` returns a fresh grammar sampler in its start state (the caller frees it);
    the parse happens once per distinct grammar. Bounded (least recently used goes first)
    because a plan grammar over a large catalogue holds thousands of rules."""

    vocab: object
    capacity: int = 16
    _entries: "OrderedDict[str, object]" = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    hits: int = 0
    misses: int = 0

    def compiled(self, text: str, root: str = "root"):
        """The cached pristine sampler for `text` (parsed now if new). Raises EngineError for a
        grammar llama.cpp cannot parse (llama-cpp-python would crash on it later)."""
        import llama_cpp

        key = grammar_key(text, root)
        with self._lock:
            sampler = self._entries.get(key)
            if sampler is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return sampler
            self.misses += 1
            sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, text.encode("utf-8"), root.encode("utf-8"))
            if not sampler:
                raise EngineError("invalid GBNF grammar: llama.cpp could not parse it")
            self._entries[key] = sampler
            while len(self._entries) > self.capacity:
                _, old = self._entries.popitem(last=False)
                llama_cpp.llama_sampler_free(old)
            return sampler

    def clone(self, text: str, root: str = "root"):
        import llama_cpp

        pristine = self.compiled(text, root)
        with self._lock:
            return llama_cpp.llama_sampler_clone(pristine)

    def close(self) -> None:
        import llama_cpp

        with self._lock:
            for sampler in self._entries.values():
                llama_cpp.llama_sampler_free(sampler)
            self._entries.clear()


def sampling_params_from(kwargs: dict, llama) -> SamplingParams | None:
    """SamplingParams for a `Llama._init_sampler(**kwargs)` call, or None when the call asks for
    something the fast path does not reproduce (a Python logits processor, mirostat)."""
    if kwargs.get("logits_processor") or kwargs.get("mirostat_mode", 0):
        return None
    return SamplingParams(
        temp=float(kwargs.get("temp", 0.8)),
        top_k=int(kwargs.get("top_k", 40)),
        top_p=float(kwargs.get("top_p", 0.95)),
        min_p=float(kwargs.get("min_p", 0.05)),
        typical_p=float(kwargs.get("typical_p", 1.0)),
        repeat_penalty=float(kwargs.get("repeat_penalty", 1.0)),
        frequency_penalty=float(kwargs.get("frequency_penalty", 0.0)),
        presence_penalty=float(kwargs.get("presence_penalty", 0.0)),
        penalty_last_n=int(llama.last_n_tokens_size),
        seed=int(llama._seed),
    )
