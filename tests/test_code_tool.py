"""The file-grounded `code` tool: a grammar built from the files, so every edit applies.

Random derivations of the generated GBNF (a small interpreter below walks the grammar text
itself) must all parse and apply; llama.cpp must accept every grammar; the bundled model's
answers under the grammar apply to real files, and the executor commits them on the plan branch.
"""

from __future__ import annotations

import asyncio
import random
import re
import subprocess

import pytest

from agx.execution.grounded_edit import (EditFormatError, FileView, apply_file_edit, complete_part, edit_grammar,
                                         parse_edits)
from agx.planning.plan import Plan

TRICKY = {
    "quotes.py": 'x = "a \\"quoted\\" \\\\ value"\ny = \'single\'\n\tz = 1\r\n\ndef f():\n    return x\n\ndef f():\n    return x\n',
    "unicode.md": "# Überschrift — ∑\n\nline with ünïcödé\nlast line without newline",
    "dupes.txt": "same\nsame\n\n\n",
    "empty.txt": "",
}


# -- a tiny GBNF interpreter: random strings of the generated grammar -------------------------
_TOKEN = re.compile(r'\s*(?:(?P<lit>"(?:[^"\\]|\\.)*")|(?P<cls>\[[^\]]*\])|(?P<name>[A-Za-z0-9-]+)|(?P<op>::=|[()|?*]))')


def _unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt == "x":
                out.append(chr(int(body[i + 2:i + 4], 16)))
                i += 4
                continue
            out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_gbnf(text: str) -> dict[str, list]:
    rules = {}
    for line in text.strip().splitlines():
        name, body = line.split(" ::= ", 1)
        tokens = [(m.lastgroup, m.group(m.lastgroup)) for m in _TOKEN.finditer(body)]
        pos = 0

        def alternation():
            nonlocal pos
            alts = [sequence()]
            while pos < len(tokens) and tokens[pos] == ("op", "|"):
                pos += 1
                alts.append(sequence())
            return ("alt", alts)

        def sequence():
            nonlocal pos
            items = []
            while pos < len(tokens) and tokens[pos] not in (("op", "|"), ("op", ")")):
                kind, val = tokens[pos]
                pos += 1
                if (kind, val) == ("op", "("):
                    item = alternation()
                    pos += 1  # ")"
                elif kind == "lit":
                    item = ("lit", _unescape(val[1:-1]))
                elif kind == "cls":
                    item = ("cls", val)
                else:
                    item = ("ref", val)
                if pos < len(tokens) and tokens[pos] in (("op", "?"), ("op", "*")):
                    item = (tokens[pos][1], item)
                    pos += 1
                items.append(item)
            return ("seq", items)

        rules[name] = alternation()
    return rules


def derive(rules: dict, rng: random.Random, node=("ref", "root")) -> str:
    kind = node[0]
    if kind == "ref":
        return derive(rules, rng, rules[node[1]])
    if kind == "lit":
        return node[1]
    if kind == "cls":  # [^\n]*-style content: random text that may look like markup
        return rng.choice(["", "x", "@@", "### quotes.py", "-same", "=", " +", '"\\', "ü"])
    if kind == "seq":
        return "".join(derive(rules, rng, item) for item in node[1])
    if kind == "alt":
        return derive(rules, rng, rng.choice(node[1]))
    if kind == "?":
        return derive(rules, rng, node[1]) if rng.random() < 0.5 else ""
    if kind == "*":
        return "".join(derive(rules, rng, node[1]) for _ in range(rng.choice([0, 1, 1, 2, 3])))
    raise AssertionError(kind)


def views_of(files: dict[str, str | None]) -> list[FileView]:
    return [FileView(p, t) for p, t in files.items()]


def _removed_runs(out: str, path: str) -> list[list[str]]:
    """Each hunk's "-" lines in the raw output of `path`'s block (read apart from parse_edits)."""
    lines = out.split("\n")
    i = lines.index(f"### {path}") + 1
    runs: list[list[str]] = []
    while i < len(lines) and not lines[i].startswith("### "):
        if lines[i] == "@@":
            runs.append([])
        elif lines[i].startswith("-"):
            runs[-1].append(lines[i][1:])
        i += 1
    return runs


@pytest.mark.parametrize("seed", range(300))
def test_every_string_the_grammar_allows_parses_and_applies(seed):
    views = views_of({**TRICKY, "brand/new.py": None})
    out = derive(parse_gbnf(edit_grammar(views)), random.Random(seed))
    edits = parse_edits(out, views)  # never EditFormatError for a string of the grammar
    by_path = {v.path: v for v in views}
    for e in edits:
        view, new = by_path[e.path], apply_file_edit(by_path[e.path], e)
        if e.rewrite is not None:
            assert new == "".join(line + "\n" for line in e.rewrite)
            continue
        # Each hunk sits where its "-" lines are in the file, hunks go down without overlapping,
        # and the new file is the old one with exactly those lines replaced.
        assert [view.lines[h.start:h.end] for h in e.hunks] == _removed_runs(out, e.path)
        assert all(a.end <= b.start for a, b in zip(e.hunks, e.hunks[1:]))
        expected, cur = [], 0
        for h in e.hunks:
            expected += view.lines[cur:h.start] + h.new_lines
            cur = h.end
        expected += view.lines[cur:]
        assert new == "\n".join(expected) + ("\n" if expected and view.trailing_newline else "")


def test_the_random_derivations_reach_hunks_in_every_editable_file():
    views = views_of({**TRICKY, "brand/new.py": None})
    rules = parse_gbnf(edit_grammar(views))
    seen = set()
    for seed in range(300):
        out = derive(rules, random.Random(seed))
        seen |= {e.path for e in parse_edits(out, views) if e.hunks}
    assert seen == {"quotes.py", "unicode.md"}  # dupes.txt and empty.txt have no unique line: "=" only


def test_hunks_replace_exactly_the_named_lines():
    views = views_of({"a.py": "import os\n\ndef f():\n    return 1\n\ndef g():\n    return 1\n", "n.txt": None})
    out = ("### a.py\n@@\n-def f():\n-    return 1\n+def f():\n+    return 2\n@@\n-def g():\n+def g(x):\n"
           "### n.txt\n=\n+hello\n")
    a, n = parse_edits(out, views)
    assert apply_file_edit(views[0], a) == "import os\n\ndef f():\n    return 2\n\ndef g(x):\n    return 1\n"
    assert apply_file_edit(views[1], n) == "hello\n"


def test_no_trailing_newline_and_crlf_are_kept():
    v = FileView("u.md", TRICKY["unicode.md"])
    (e,) = parse_edits("### u.md\n@@\n-line with ünïcödé\n+changed\n", [v])
    assert apply_file_edit(v, e) == "# Überschrift — ∑\n\nchanged\nlast line without newline"
    q = FileView("q.py", TRICKY["quotes.py"])
    (e,) = parse_edits("### q.py\n@@\n-\tz = 1\r\n+\tz = 2\r\n", [q])
    assert apply_file_edit(q, e) == TRICKY["quotes.py"].replace("\tz = 1\r", "\tz = 2\r")


@pytest.mark.parametrize("out, message", [
    ("### a.py\n@@\n-same\n+x\n", "occurs once"),                    # duplicated line as anchor
    ("### a.py\n@@\n-b\n@@\n-a\n", "go down the file"),              # hunks upwards
    ("### a.py\n@@\n-a\n-c\n", "consecutive"),                       # skips a line
    ("### other.py\n=\n", "not one of the task's files"),
    ("### a.py\n@@\n-a\n### a.py\n=\n", "out of order or repeated"),
    ("sure, here you go\n", "expected '### <path>'"),
    ("", "holds no edit"),
])
def test_outputs_outside_the_grammar_are_refused_with_a_reason(out, message):
    views = views_of({"a.py": "a\nb\nc\nsame\nsame\n"})
    with pytest.raises(EditFormatError, match=message):
        parse_edits(out, views)


def test_llama_cpp_compiles_every_grammar():
    from llama_cpp import LlamaGrammar

    for files in (TRICKY, {"new.py": None}, {"dupes.txt": TRICKY["dupes.txt"]}):
        LlamaGrammar.from_string(edit_grammar(views_of(files)), verbose=False)


def test_a_cut_answer_keeps_its_complete_lines():
    assert complete_part("### a\n@@\n-x\n+y\n+partial li") == "### a\n@@\n-x\n+y\n"


# -- the bundled model, real files, real commits ----------------------------------------------
@pytest.fixture()
def delta(tmp_path):
    from agx.config import load_config
    from agx.runtime.pool import EnginePool

    config = load_config(tmp_path, overrides=["roles.delta.n_ctx=2048", "roles.delta.n_threads=2",
                                              "roles.delta.sampling.max_tokens=160"], use_user_file=False).config
    pool = EnginePool(config, tmp_path)
    yield pool.engine("delta")
    pool.close()


@pytest.mark.parametrize("name", ["quotes.py", "unicode.md", "calc.py"])
def test_the_bundled_models_answers_under_the_grammar_apply(delta, tiny_model_path, name):
    from agx.execution.code_tool import build_messages
    from agx.runtime.engine import ChatRequest

    files = {**TRICKY, "calc.py": "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"}
    views = [FileView(name, files[name])]
    text, stats = delta.complete(ChatRequest(messages=build_messages("Fix the bug and add a comment.", views, {}),
                                             grammar=edit_grammar(views), temperature=0.0))
    edits = parse_edits(complete_part(text) if stats.finish_reason == "length" else text, views)
    assert edits and edits[0].path == name
    apply_file_edit(views[0], edits[0])


def test_a_code_task_edits_the_worktree_file_and_commits_it(git_repo, delta, tiny_model_path):
    from agx.config.schema import ExecutionConfig
    from agx.execution.builtin_tools import builtin_catalogue
    from agx.execution.plan_run import finish_run, start_run
    from agx.execution.policy import ApprovalMode, Policy
    from agx.planning.plan import Plan

    plan = Plan.model_validate({"goal": "g", "tasks": [
        {"id": "t1", "title": "Read app", "tool": "read_files", "args": {"paths": ["src/app.py"]}, "deps": []},
        {"id": "t2", "title": "Make greet polite", "tool": "code", "deps": ["t1"],
         "args": {"paths": ["src/app.py"], "instruction": "greet should say 'good day' instead of 'hello'."}}]})
    run = start_run(git_repo, "code-1", request="make greet polite", goal=plan.goal, plan=plan.model_dump(),
                    catalogue=builtin_catalogue(), policy=Policy(ApprovalMode.ALL), engine=delta,
                    execution=ExecutionConfig())
    run.executor.add_plan(plan)
    run.executor.close_plan()
    result = asyncio.run(run.executor.run())
    finish_run(run, result)
    node = run.executor.nodes["t2"]
    assert node.status.value == "succeeded", node.error
    original = "def greet(name):\n    return 'hello ' + name\n"
    assert node.commit
    shown = subprocess.run(["git", "show", f"{node.commit}:src/app.py"], cwd=git_repo, capture_output=True, text=True)
    # The model's edit applied and was committed: the file changed, and only that file.
    assert shown.returncode == 0 and shown.stdout and shown.stdout != original
    touched = subprocess.run(["git", "diff", "--name-only", f"{node.commit}~1", node.commit], cwd=git_repo,
                             capture_output=True, text=True).stdout.split()
    assert touched == ["src/app.py"]
    # The user's checkout is untouched until apply.
    assert (git_repo / "src" / "app.py").read_text() == "def greet(name):\n    return 'hello ' + name\n"


def test_files_that_cannot_fit_the_context_are_refused_with_the_numbers(delta, tiny_model_path, tmp_path):
    from agx.execution.builtin_tools import builtin_catalogue
    from agx.execution.executor import Executor, run_plan
    from agx.execution.policy import ApprovalMode, Policy

    (tmp_path / "big.py").write_text("x = 1\n" * 1500)  # 9,000 characters: more than 2,048 tokens hold
    ex = Executor("p", builtin_catalogue(), tmp_path, policy=Policy(ApprovalMode.ALL), code_engine=delta)
    asyncio.run(run_plan(Plan.model_validate({"goal": "g", "tasks": [
        {"id": "t1", "title": "t", "tool": "code", "args": {"paths": ["big.py"], "instruction": "x"}, "deps": []}]}), ex))
    assert "do not fit Delta's context of 2048 tokens" in ex.nodes["t1"].error
    assert (tmp_path / "big.py").read_text() == "x = 1\n" * 1500
