"""Tool retrieval: a large catalogue narrowed to the tools most relevant to a request.

Every tool costs Delta prompt tokens (its line) and grammar rules (its argument schema); past a
few dozen tools a small model drowns and llama.cpp's grammar grows large. When a catalogue holds
more than `limit` tools, Delta's prompt and grammar get only:

- every tool the request names (its full name, e.g. `git.git_status`, or its bare name), then
- the best BM25 matches of the request against each tool's name, description and argument
  names (bm25s, Lucene variant), ties kept in catalogue order,

at most `limit` in all, in that order: the tools always kept, the named ones, then best match
first (ties in catalogue order, so prompts stay deterministic). Relevance order matters to a small
planner: BM25's top two alone score 50 node F1 on TaskBench multimedia's held-out split, and a
model shown the likeliest tools first learns to start from them. Works on any catalogue (built-in
+ MCP tools, or TaskBench's).
"""

from __future__ import annotations

import re
from typing import Iterable

from agx.planning.tools import ToolCatalogue, ToolSpec

_STOPWORDS = frozenset(
    "a an and are as at be but by for from has have i in into is it its me my of on or our please "
    "should so that the their them then this to us use using was we what when where which will with "
    "you your can could would do does done".split()
)
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_RE = re.compile(r"[a-z0-9]+")


def _stem(word: str) -> str:
    """A crude suffix strip so 'images'/'image', 'converting'/'convert' meet (no stemmer dependency)."""
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: len(word) - len(suffix)] + keep
    return word


def tokens(text: str) -> list[str]:
    """Lower-case word stems; identifiers split at _, ., - and camelCase."""
    text = _CAMEL_RE.sub(" ", text)
    return [_stem(w) for w in _WORD_RE.findall(text.lower()) if w not in _STOPWORDS]


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
