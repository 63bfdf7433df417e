"""Rewriting llama.cpp GBNF rule sets: copies of a rule subtree with one rule swapped.

The plan grammar needs one variant of every tool's argument rules in which a string can not
hold a `${ID}` placeholder (schema_grammar: the first task has no deps, so a placeholder in its
arguments is always invalid — the bundled model's most common invalid plan, `t1` quoting
`${t1}`). llama-cpp-python's SchemaConverter writes those rules once, all over one `char`
rule; rather than a second converter, the subtree above `char` is copied under a prefix with
`char` swapped for a stricter rule.

Works on the text `SchemaConverter.format_grammar()` writes: one `name ::= body` per line.
"""

from __future__ import annotations

import re

# A JSON string character (as SchemaConverter's `char`) that never starts a placeholder: a `$`
# may not be followed by `{` and a letter (plan.PLACEHOLDER_RE). A `$` takes the next one or two
# characters with it, never another `$` (else `${${t1}` gets through: `${$` as one unit, then
# `{t1}`; the shipped adapter wrote exactly that), so every `$` starts a unit that is checked.
# Hence a string can not end in `$` or hold `$$`: a small loss in a first task's arguments
# only. Validation reads decoded strings, so the escape `\u0024` is refused too.
_HEX = "[0-9a-fA-F]"
# \uXXXX for any XXXX but 0024 (GBNF has no "except": the four digits spelled out by prefix)
_NOT_DOLLAR_ESCAPE = (f'"u" ([1-9a-fA-F] {_HEX} {_HEX} {_HEX} | "0" [1-9a-fA-F] {_HEX} {_HEX} '
                      f'| "00" [013-9a-fA-F] {_HEX} | "002" [0-35-9a-fA-F])')
NO_PLACEHOLDER_CHAR = (
    r'[^"\\$] | "\\" (["\\/bfnrt] | ' + _NOT_DOLLAR_ESCAPE + ') '
    r'| "$" ([^"\\{$] | "{" [^"\\A-Za-z$])'
)


def parse_rules(text: str) -> dict[str, str]:
    """`name ::= body` lines as {name: body}, in order (blank and comment lines skipped)."""
    rules: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, body = line.partition("::=")
        if not sep:
            raise ValueError(f"not a GBNF rule line: {line[:80]!r}")
        rules[name.strip()] = body.strip()
    return rules


# In a rule body: a string literal, a character class, a {m,n} count, or a rule name (group 1).
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|\{[^}]*\}|([A-Za-z][A-Za-z0-9-]*)')


def _spans(body: str):
    """(start, end) of each rule reference in a rule body: names outside string literals,
    character classes and {m,n} repetition counts."""
    for m in _TOKEN.finditer(body):
        if m.group(1):
            yield m.start(1), m.end(1)


def rule_refs(body: str) -> set[str]:
    """The names of the rules a body refers to."""
    return {body[a:b] for a, b in _spans(body)}


def rename_refs(body: str, mapping: dict[str, str]) -> str:
    """`body` with each reference to a rule in `mapping` renamed."""
    out, last = [], 0
    for a, b in _spans(body):
        name = body[a:b]
        if name in mapping:
            out += [body[last:a], mapping[name]]
            last = b
    out.append(body[last:])
    return "".join(out)


def copy_with_swapped_rule(rules: dict[str, str], roots: list[str], old: str, new: str, prefix: str) -> tuple[dict[str, str], dict[str, str]]:
    """Copies of the rules under `roots` that reach rule `old`, under names `prefix + name`,
    with `old` replaced by rule `new` in them. Rules that do not reach `old` are shared, not
    copied. Returns ({copy's name: body}, {original name: name to use now}) — a root that
    does not reach `old` maps to itself."""
    refs = {name: rule_refs(body) for name, body in rules.items()}  # scanned once
    reaching = {old}  # rules from which `old` can be reached: grown to a fixed point (cycles too)
    grew = True
    while grew:
        before = len(reaching)
        reaching |= {name for name, r in refs.items() if name not in reaching and r & reaching}
        grew = len(reaching) > before
    below: dict[str, None] = {}  # what the roots use that reaches `old`, in the order first met
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in reaching and name != old and name not in below:
            below[name] = None
            todo.extend(sorted(refs[name], reverse=True))
    mapping = {name: prefix + name for name in below}
    mapping[old] = new
    copies = {prefix + name: rename_refs(rules[name], mapping) for name in below}
    return copies, {root: mapping.get(root, root) for root in roots}


def merge_identical(rules: dict[str, str], roots: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """`rules` with rules whose bodies are identical merged into the first of them (repeated
    until no two are alike: merging children can make parents alike), and `roots` (any name ->
    rule name) renamed to match. The first task's argument copies are mostly one string rule
    per tool argument, alike across tools: merged, TaskBench's 40 `inputs` strings are one."""
    while True:
        first: dict[str, str] = {}
        alias = {}
        for name, body in rules.items():
            if body in first:
                alias[name] = first[body]
            else:
                first[body] = name
        if not alias:
            return rules, roots
        rules = {name: rename_refs(body, alias) for name, body in rules.items() if name not in alias}
        roots = {k: alias.get(v, v) for k, v in roots.items()}
