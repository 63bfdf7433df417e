"""Tool retrieval: a large catalogue narrowed to the tools most relevant to a request.

Every tool costs Delta prompt tokens (its line) and grammar rules (its argument schema); past a
few dozen tools a small model drowns and llama.cpp's grammar grows large. When a catalogue holds
more than `limit` tools, Delta's prompt and grammar get only:

- every tool the request names (its full name, e.g. `git.git_status`, or its bare name), then
- the best BM25 matches of the request against each tool's name, description and argument
  names (bm25s, Lucene variant; words reduced to Snowball English stems), ties kept in
  catalogue order,

at most `limit` in all, in that order: the tools always kept, the named ones, then best match
first (ties in catalogue order, so prompts stay deterministic). Relevance order matters to a small
planner: BM25's top two alone score 50 node F1 on TaskBench multimedia's held-out split, and a
model shown the likeliest tools first learns to start from them. Works on any catalogue (built-in
+ MCP tools, or TaskBench's).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

from agx.planning.tools import ToolCatalogue, ToolSpec

_STOPWORDS = frozenset(
    "a an and are as at be but by for from has have i in into is it its me my of on or our please "
    "should so that the their them then this to us use using was we what when where which will with "
    "you your can could would do does done".split()
)
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_RE = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=None)
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """Snowball's English stem, so 'simplified'/'Simplifier' and 'summarize'/'Summarizer' meet.
    An earlier suffix strip (-s, -es, -ed, -ing, -ies) missed those: BM25 @20 left a gold tool
    out of 24 of TaskBench multimedia's 128 held-out requests, Snowball 16 (bench_retrieval_stem)."""
    return _stemmer().stemWord(word)


def tokens(text: str) -> list[str]:
    """Lower-case word stems; identifiers split at _, ., - and camelCase."""
    text = _CAMEL_RE.sub(" ", text)
    # An empty stem would be BM25's reserved empty token, which its scorer rejects in a query.
    return [s for s in (_stem(w) for w in _WORD_RE.findall(text.lower()) if w not in _STOPWORDS) if s]


def tool_text(spec: ToolSpec) -> str:
    props = (spec.args_schema or {}).get("properties") or {}
    return " ".join([spec.name, spec.name, spec.description, " ".join(props)])


def named_tools(catalogue: ToolCatalogue, request: str) -> list[str]:
    """Tools the request names outright: `server.tool`, or a tool's bare name as a word."""
    low = request.lower()
    found = []
    for spec in catalogue:
        name = spec.name.lower()
        bare = name.rpartition(".")[2]
        if name in low or (len(bare) > 2 and re.search(rf"(?<![\w.]){re.escape(bare)}(?![\w])", low)):
            found.append(spec.name)
    return found


class ToolIndex:
    """A BM25 index over one catalogue, reusable across requests."""

    def __init__(self, catalogue: ToolCatalogue):
        import bm25s

        self.catalogue = catalogue
        self.names = catalogue.names()
        docs = [tokens(tool_text(spec)) or ["_"] for spec in catalogue]
        self._bm25 = bm25s.BM25()
        self._bm25.index(docs, show_progress=False)

    def scores(self, request: str) -> list[float]:
        vocab = self._bm25.vocab_dict
        query = [t for t in tokens(request) if t in vocab]
        if not query:
            return [0.0] * len(self.names)
        return [float(s) for s in self._bm25.get_scores(query)]

    def ranked(self, request: str) -> list[str]:
        """Every tool's name, best BM25 match first, ties in catalogue order."""
        scores = self.scores(request)
        return [self.names[i] for i in sorted(range(len(self.names)), key=lambda i: (-scores[i], i))]

    def select(self, request: str, limit: int, always: Iterable[str] = ()) -> ToolCatalogue:
        keep: list[str] = []
        for name in [*always, *named_tools(self.catalogue, request)]:
            if name in self.catalogue.tools and name not in keep:
                keep.append(name)
        for name in self.ranked(request):
            if len(keep) >= limit:
                break
            if name not in keep:
                keep.append(name)
        return ToolCatalogue.of(self.catalogue.get(name) for name in keep[:max(limit, 1)])


def select_tools(catalogue: ToolCatalogue, request: str, limit: int, always: Iterable[str] = ()) -> ToolCatalogue:
    """`catalogue` itself when it has at most `limit` tools, else the `limit` most relevant."""
    if len(catalogue) <= limit:
        return catalogue
    return ToolIndex(catalogue).select(request, limit, always)
